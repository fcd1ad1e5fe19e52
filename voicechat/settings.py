"""Settings for voicechat: every value comes from the environment (or `.env`), with defaults that run offline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_str(name: str, default: str) -> str:
    """A string setting; blank counts as unset, so a copied `.env.example` with empty lines still starts.

    Read from os.environ (where `.env` was loaded) rather than through django-environ, which would treat a
    value starting with `$` (easily a random SECRET_KEY) as a reference to another variable.
    """
    return os.environ.get(name, "").strip() or default


def env_list(name: str, default: list[str]) -> list[str]:
    return [item.strip() for item in env_str(name, "").split(",") if item.strip()] or default


def env_bool(name: str, default: bool) -> bool:
    """A strict boolean: anything but a known spelling fails at start-up, naming the variable."""
    raw = env_str(name, str(default)).lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use true or false.")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = env_str(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}.")
    return value


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env_str(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}.")
    return value


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY to a long random string (or DEBUG=true for local work)."
        )
    SECRET_KEY = "django-insecure-local-development-only-never-use-in-production"

ALLOWED_HOSTS: list[str] = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS: list[str] = env_list("CSRF_TRUSTED_ORIGINS", [])
for _origin in CSRF_TRUSTED_ORIGINS:
    if "://" not in _origin:
        raise ImproperlyConfigured(f"CSRF_TRUSTED_ORIGINS entry {_origin!r} needs a scheme, e.g. https://{_origin}.")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "voicechat.urls"
WSGI_APPLICATION = "voicechat.wsgi.application"
ASGI_APPLICATION = "voicechat.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "chat.context_processors.site",
            ],
        },
    },
]

_database_url = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
if not _database_url.startswith(("sqlite://", "postgres://", "postgresql://", "pgsql://")):
    raise ImproperlyConfigured(
        f"DATABASE_URL={_database_url!r} is not supported; use sqlite:///path or postgres://user@host:port/name."
    )
try:
    DATABASES = {"default": environ.Env.db_url_config(_database_url)}
except (environ.ImproperlyConfigured, KeyError, ValueError) as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and a busy timeout let the turn's background writes and page reads share the file.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
    )
    # Keep the file open: Channels closes "old" connections around every database call, and reopening
    # SQLite (with its PRAGMAs) each time costs more than the query.
    DATABASES["default"]["CONN_MAX_AGE"] = None
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env_int("CONN_MAX_AGE", 0))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} must start with redis://, rediss:// or unix://.")
    CHANNEL_LAYERS: dict[str, Any] = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:index"
LOGOUT_REDIRECT_URL = "login"
ALLOW_SIGNUP = env_bool("ALLOW_SIGNUP", True)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Serve the committed bundle straight from static/ so `make run` needs no collectstatic.
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- HTTPS hardening: on whenever DEBUG is off; documented variables relax it for plain-HTTP runs.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
if env_bool("USE_X_FORWARDED_PROTO", not DEBUG):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 30,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "voicechat API",
    "DESCRIPTION": "Conversations, messages and stored reply audio of the logged-in user.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
}

# --- Voice pipeline ---------------------------------------------------------------------------
MAX_MESSAGE_CHARS = env_int("MAX_MESSAGE_CHARS", 4000, minimum=1)
LLM_HISTORY_CHARS = env_int("LLM_HISTORY_CHARS", 12000, minimum=100)
# Longest WebSocket frame a client may send; over it the socket is closed (4009) before anything is parsed.
WS_MAX_FRAME_BYTES = env_int("WS_MAX_FRAME_BYTES", 64 * 1024, minimum=1024)
# How often each process closes replies that a dead process left `streaming` (0: never).
TURN_SWEEP_SECONDS = env_float("TURN_SWEEP_SECONDS", 30.0)
# `pipelined` speaks each sentence as soon as it is written; `whole_reply` waits for the whole reply
# and makes one TTS request (what peers do) — kept for the benchmark's baseline.
SPEECH_MODE = env_str("SPEECH_MODE", "pipelined")
if SPEECH_MODE not in ("pipelined", "whole_reply"):
    raise ImproperlyConfigured(f"SPEECH_MODE={SPEECH_MODE!r} is unknown; use pipelined or whole_reply.")

ELEVENLABS_API_KEY = env_str("ELEVENLABS_API_KEY", "")
ELEVENLABS_BASE_URL = env_str("ELEVENLABS_BASE_URL", "https://api.elevenlabs.io").rstrip("/")
if not ELEVENLABS_BASE_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"ELEVENLABS_BASE_URL={ELEVENLABS_BASE_URL!r} must be an http(s) URL.")
ELEVENLABS_VOICE_ID = env_str("ELEVENLABS_VOICE_ID", "JBFqnCBsd6RMkjVDRZzb")
ELEVENLABS_MODEL_ID = env_str("ELEVENLABS_MODEL_ID", "eleven_flash_v2_5")
ELEVENLABS_OUTPUT_FORMAT = env_str("ELEVENLABS_OUTPUT_FORMAT", "pcm_24000")
_PCM_RATES = {8000, 16000, 22050, 24000, 32000, 44100, 48000}
if not (
    ELEVENLABS_OUTPUT_FORMAT.startswith("pcm_")
    and ELEVENLABS_OUTPUT_FORMAT[4:].isdigit()
    and int(ELEVENLABS_OUTPUT_FORMAT[4:]) in _PCM_RATES
):
    raise ImproperlyConfigured(
        f"ELEVENLABS_OUTPUT_FORMAT={ELEVENLABS_OUTPUT_FORMAT!r} is not supported; "
        "use a raw PCM format such as pcm_24000 or pcm_16000."
    )
ELEVENLABS_MAX_CONCURRENCY = env_int("ELEVENLABS_MAX_CONCURRENCY", 4, minimum=1)
ELEVENLABS_TIMEOUT = env_float("ELEVENLABS_TIMEOUT", 10.0, minimum=0.1)
ELEVENLABS_MAX_RETRIES = env_int("ELEVENLABS_MAX_RETRIES", 2)

OPENAI_BASE_URL = env_str("OPENAI_BASE_URL", "https://api.openai.com/v1")
OPENAI_API_KEY = env_str("OPENAI_API_KEY", "")
OPENAI_MODEL = env_str("OPENAI_MODEL", "gpt-4o-mini")
OPENAI_TIMEOUT = env_float("OPENAI_TIMEOUT", 30.0, minimum=0.1)
DEMO_LLM_TOKENS_PER_SECOND = env_float("DEMO_LLM_TOKENS_PER_SECOND", 30.0, minimum=0.0)

# Providers are configured like STORAGES: an alias maps to a dotted BACKEND plus keyword OPTIONS.
TTS_PROVIDERS: dict[str, dict[str, Any]] = {
    "elevenlabs": {
        "BACKEND": "chat.providers.elevenlabs.ElevenLabsTTS",
        "OPTIONS": {
            "api_key": ELEVENLABS_API_KEY,
            "base_url": ELEVENLABS_BASE_URL,
            "voice_id": ELEVENLABS_VOICE_ID,
            "model_id": ELEVENLABS_MODEL_ID,
            "output_format": ELEVENLABS_OUTPUT_FORMAT,
            "max_concurrency": ELEVENLABS_MAX_CONCURRENCY,
            "timeout": ELEVENLABS_TIMEOUT,
            "max_retries": ELEVENLABS_MAX_RETRIES,
        },
    },
    "espeak": {"BACKEND": "chat.providers.espeak.EspeakTTS", "OPTIONS": {}},
}
LLM_PROVIDERS: dict[str, dict[str, Any]] = {
    "demo": {"BACKEND": "chat.providers.demo.DemoLLM", "OPTIONS": {"tokens_per_second": DEMO_LLM_TOKENS_PER_SECOND}},
    "openai": {
        "BACKEND": "chat.providers.openai.OpenAILLM",
        "OPTIONS": {
            "base_url": OPENAI_BASE_URL,
            "api_key": OPENAI_API_KEY,
            "model": OPENAI_MODEL,
            "timeout": OPENAI_TIMEOUT,
        },
    },
}


def _backend(name: str, default: str, aliases: dict[str, dict[str, Any]]) -> str:
    """Resolve a *_BACKEND variable to an alias, registering a dotted path as the alias `custom`."""
    value = env_str(name, default)
    if value in aliases:
        return value
    if "." in value:
        aliases["custom"] = {"BACKEND": value, "OPTIONS": {}}
        return "custom"
    raise ImproperlyConfigured(f"{name}={value!r} is unknown; use one of {', '.join(aliases)} or a dotted path.")


TTS_BACKEND = _backend("TTS_BACKEND", "elevenlabs" if ELEVENLABS_API_KEY else "espeak", TTS_PROVIDERS)
LLM_BACKEND = _backend("LLM_BACKEND", "demo", LLM_PROVIDERS)

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(f"LOG_LEVEL={LOG_LEVEL!r} is unknown; use DEBUG, INFO, WARNING, ERROR or CRITICAL.")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # httpx logs full request URLs at INFO; keep vendor chatter out of the app's log.
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}
