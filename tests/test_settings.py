"""Settings come from the environment: wrong values fail at start-up naming the variable; production is secure."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DEBUG", "SECRET", "ELEVENLABS", "TTS_"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"DEBUG": "true", "MAX_MESSAGE_CHARS": "lots"}, "MAX_MESSAGE_CHARS"),
        ({"DEBUG": "true", "DATABASE_URL": "nonsense"}, "DATABASE_URL"),
        ({"DEBUG": "true", "ELEVENLABS_OUTPUT_FORMAT": "mp3_44100_128"}, "ELEVENLABS_OUTPUT_FORMAT"),
        ({"DEBUG": "true", "TTS_BACKEND": "bogus"}, "TTS_BACKEND"),
        ({"DEBUG": "true", "LLM_BACKEND": "bogus"}, "LLM_BACKEND"),
        ({"DEBUG": "true", "REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"DEBUG": "true", "ELEVENLABS_TIMEOUT": "-1"}, "ELEVENLABS_TIMEOUT"),
        ({"DEBUG": "true", "SPEECH_MODE": "fast"}, "SPEECH_MODE"),
        ({"DEBUG": "false"}, "SECRET_KEY"),
    ],
)
def test_it_names_the_variable_that_is_wrong(env: dict[str, str], variable: str) -> None:
    done = run_manage("check", **env)
    assert done.returncode != 0
    assert variable in done.stderr
    assert "ImproperlyConfigured" in done.stderr


def test_it_is_secure_by_default_in_production() -> None:
    done = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(45)[:60],
        ALLOWED_HOSTS="example.com",
    )
    assert done.returncode == 0, done.stderr + done.stdout


def test_it_relaxes_https_for_a_plain_http_run() -> None:
    script = "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE)"
    done = run_manage(
        "shell",
        "-c",
        script,
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(45),
        SECURE_SSL_REDIRECT="false",
        SESSION_COOKIE_SECURE="false",
    )
    assert done.stdout.splitlines()[-1].split() == ["False", "False"], done.stderr


def test_it_picks_espeak_without_a_key_and_elevenlabs_with_one() -> None:
    script = "from django.conf import settings as s; print(s.TTS_BACKEND)"
    assert run_manage("shell", "-c", script, DEBUG="true").stdout.splitlines()[-1] == "espeak"
    keyed = run_manage("shell", "-c", script, DEBUG="true", ELEVENLABS_API_KEY="k")
    assert keyed.stdout.splitlines()[-1] == "elevenlabs"
