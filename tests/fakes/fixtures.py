"""Pytest fixtures that start the loopback vendor fakes."""
