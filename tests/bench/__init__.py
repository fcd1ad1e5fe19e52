"""The voice-path benchmark: `make bench` (python -m tests.bench)."""
