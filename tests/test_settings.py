"""Settings come from the environment: wrong values fail at start-up naming the variable; production is secure."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_SOURCE = (ROOT / "voicechat" / "settings.py").read_text()
# Every variable settings.py reads goes through one of its helpers.
VARIABLES = sorted(
    set(re.findall(r'(?:env_(?:str|list|bool|int|float|rate)|_backend)\(\s*"([A-Z][A-Z0-9_]+)"', SETTINGS_SOURCE))
)
PRINT_SETTINGS = "import django; django.setup(); from django.conf import settings as s; print({names})"


def python(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run Python in the project with exactly these variables of ours set (the rest of the environment kept)."""
    clean = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    clean["DJANGO_SETTINGS_MODULE"] = "voicechat.settings"
    env.setdefault("SECRET_KEY", "")  # set, even if empty, so a developer's .env cannot fill it in
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def settings_values(names: str, **env: str) -> list[str]:
    done = python("-c", PRINT_SETTINGS.format(names=names), **env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()


def test_it_finds_the_variables_settings_read() -> None:
    assert {"DEBUG", "SECRET_KEY", "DATABASE_URL", "TTS_BACKEND", "LLM_BACKEND", "USE_X_FORWARDED_PROTO"} <= set(
        VARIABLES
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"MAX_MESSAGE_CHARS": "abc"}, "MAX_MESSAGE_CHARS"),
        ({"MAX_MESSAGE_CHARS": "0"}, "MAX_MESSAGE_CHARS"),
        ({"DATABASE_URL": "nonsense"}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://root@localhost/db"}, "DATABASE_URL"),
        ({"ELEVENLABS_OUTPUT_FORMAT": "mp3_44100_128"}, "ELEVENLABS_OUTPUT_FORMAT"),
        ({"ELEVENLABS_BASE_URL": "api.elevenlabs.io"}, "ELEVENLABS_BASE_URL"),
        ({"ELEVENLABS_TIMEOUT": "-1"}, "ELEVENLABS_TIMEOUT"),
        ({"ELEVENLABS_MAX_CONCURRENCY": "many"}, "ELEVENLABS_MAX_CONCURRENCY"),
        ({"ELEVENLABS_HTTP_CLIENT": "requests"}, "ELEVENLABS_HTTP_CLIENT"),
        ({"TTS_BACKEND": "bogus"}, "TTS_BACKEND"),
        ({"LLM_BACKEND": "bogus"}, "LLM_BACKEND"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"SPEECH_MODE": "fast"}, "SPEECH_MODE"),
        ({"ALLOW_SIGNUP": "sometimes"}, "ALLOW_SIGNUP"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"CSRF_TRUSTED_ORIGINS": "example.com"}, "CSRF_TRUSTED_ORIGINS"),
        ({"SECURE_HSTS_SECONDS": "a year"}, "SECURE_HSTS_SECONDS"),
    ],
)
def test_it_names_the_variable_that_is_wrong(env: dict[str, str], variable: str) -> None:
    done = python("-c", "import django; django.setup()", DEBUG=env.pop("DEBUG", "true"), **env)
    assert done.returncode != 0
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured: ")
    assert variable in last_line


def test_it_needs_a_secret_key_without_debug() -> None:
    done = python("-c", "import django; django.setup()", DEBUG="false")
    assert done.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is not set" in done.stderr


def test_it_is_secure_by_default_in_production() -> None:
    done = python(
        "manage.py",
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(45)[:60],
        ALLOWED_HOSTS="example.com",
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "no issues" in done.stdout


def test_it_relaxes_https_for_a_plain_http_run() -> None:
    names = "s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS"
    relaxed = {"SECURE_SSL_REDIRECT": "false", "SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "0"}
    strict = settings_values(names, DEBUG="false", SECRET_KEY="k" * 60)
    assert strict == ["True True True 31536000"]
    plain = settings_values(names, DEBUG="false", SECRET_KEY="k" * 60, SECURE_HSTS_SECONDS="0", **relaxed)
    assert plain == ["False False False 0"]


def test_it_treats_blank_variables_as_unset() -> None:
    names = "s.TTS_BACKEND, s.DATABASES['default']['ENGINE'], s.ALLOWED_HOSTS, s.SECURE_SSL_REDIRECT, s.LOG_LEVEL"
    blank = {"TTS_BACKEND": "", "DATABASE_URL": "", "ALLOWED_HOSTS": " ", "SECURE_SSL_REDIRECT": "", "LOG_LEVEL": ""}
    assert settings_values(names, DEBUG="true", **blank) == [
        "espeak django.db.backends.sqlite3 ['localhost', '127.0.0.1', '[::1]'] False INFO"
    ]


def test_it_picks_espeak_without_a_key_and_elevenlabs_with_one() -> None:
    assert settings_values("s.TTS_BACKEND", DEBUG="true") == ["espeak"]
    assert settings_values("s.TTS_BACKEND", DEBUG="true", ELEVENLABS_API_KEY="k") == ["elevenlabs"]


def test_it_switches_to_postgres_and_redis_by_url() -> None:
    names = "s.DATABASES['default']['ENGINE'], s.CHANNEL_LAYERS['default']['BACKEND']"
    urls = {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/voicechat", "REDIS_URL": "redis://127.0.0.1:6379/0"}
    assert settings_values(names, DEBUG="true", **urls) == [
        "django.db.backends.postgresql chat.channel_layer.RedisChannelLayer"
    ]


def test_it_sizes_the_channel_layers_redis_pool_past_redis_pys_default() -> None:
    names = "s.CHANNEL_LAYERS['default']['CONFIG']['hosts'][0]['max_connections']"
    url = {"REDIS_URL": "redis://127.0.0.1:6379/0"}
    assert settings_values(names, DEBUG="true", **url) == ["1000"]
    assert settings_values(names, DEBUG="true", REDIS_MAX_CONNECTIONS="300", **url) == ["300"]


def test_it_reuses_postgresql_connections_and_checks_them_first() -> None:
    names = "s.DATABASES['default']['CONN_MAX_AGE'], s.DATABASES['default']['CONN_HEALTH_CHECKS']"
    url = {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/voicechat"}
    assert settings_values(names, DEBUG="true", **url) == ["60 True"]
    assert settings_values(names, DEBUG="true", CONN_MAX_AGE="0", **url) == ["0 True"]


def env_example() -> dict[str, str]:
    """Every `NAME=value` of .env.example, commented-out examples included."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    pairs = (re.match(r"^#?\s*([A-Z][A-Z0-9_]+)=(.*)$", line) for line in lines)
    return {m.group(1): m.group(2).strip() for m in pairs if m}


def test_it_documents_every_variable_in_env_example_and_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    assert sorted(set(VARIABLES) - set(env_example())) == []
    assert [name for name in VARIABLES if f"`{name}`" not in readme] == []


def test_it_starts_with_every_value_from_env_example() -> None:
    values = {**env_example(), "DEBUG": "true"}
    done = python("manage.py", "check", **values)
    assert done.returncode == 0, done.stderr
