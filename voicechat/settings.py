"""Settings for voicechat: every value comes from the environment (or `.env`), with defaults that run offline."""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta
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


def _keepalive_options(idle_seconds: int) -> dict[int, int]:
    """TCP keepalive that notices a vanished Redis in about idle + 15 s (Linux option names; else the OS's)."""
    import socket

    names = {"TCP_KEEPIDLE": idle_seconds, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}
    return {getattr(socket, name): value for name, value in names.items() if hasattr(socket, name)}


def env_rate(name: str, default: str) -> str:
    """A throttle rate as Django REST framework reads it: a count per second, minute, hour or day."""
    raw = env_str(name, default)
    count, _, period = raw.partition("/")
    if not (count.isdigit() and period[:1] in ("s", "m", "h", "d")):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a rate; use e.g. 120/min, 5/hour or 1000/day.")
    return raw


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
    "axes",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Outside everything that can answer early (a bad Host, CSRF), so every response carries the policies.
    "csp.middleware.CSPMiddleware",
    "django_permissions_policy.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out log-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "voicechat.urls"
WSGI_APPLICATION = "voicechat.wsgi.application"
ASGI_APPLICATION = "voicechat.asgi.application"
# Seconds Daphne waits for the app to answer a WebSocket handshake before it refuses (403) or drops it
# (`voicechat/serve.py` passes it as --websocket_connect_timeout). Daphne's command line defaults to 5,
# which a busy process missed under a burst of new conversations and lost them; 20 is its Server
# class's own default. Uvicorn does not bound the app's answer.
WS_CONNECT_TIMEOUT_SECONDS = env_int("WS_CONNECT_TIMEOUT_SECONDS", 20, minimum=1)

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
    # Tests on a file too, not Django's in-memory default: shared-cache memory databases refuse a second
    # writer at once ("table is locked") where a file waits its busy timeout, as production does.
    DATABASES["default"]["TEST"] = {"NAME": str(Path(tempfile.gettempdir()) / f"voicechat-test-{os.getpid()}.sqlite3")}
else:
    # Channels closes "old" connections around every database call from a consumer; with Django's
    # default of 0 that opened a new PostgreSQL connection (a server process) for each one. Two Daphnes
    # at 300 streams then lost 60 % of their handshakes (resets, 403s); reused for a minute, none.
    # Each worker thread keeps one, so a process holds a handful; checked before reuse.
    DATABASES["default"].setdefault("CONN_MAX_AGE", env_int("CONN_MAX_AGE", 60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "")
# channels_redis waits for messages with BZPOPMIN blocking this long on the server (its class attribute
# `brpop_timeout`); tests/test_settings.py fails if an upgrade changes it.
CHANNEL_LAYER_BLOCKING_READ_SECONDS = 5
# redis-py's default socket_timeout is also 5 s, so an idle consumer's blocking read raced its own
# read timeout and lost about once per 5 s (TimeoutError, close 1011). The layer's reads therefore
# have no socket timeout by default: with one, redis-py sends every command through
# asyncio.wait_for, which on Python 3.11 can swallow a cancellation (CPython gh-86296), and a socket
# closed while its channel's first BZPOPMIN was connecting left a consumer reading forever. A Redis
# that goes away is noticed by TCP keepalive instead (REDIS_KEEPALIVE_SECONDS idle, then 3 probes 5 s
# apart) and by the health-check PING. A timeout may still be set; it must outlast the blocking read.
REDIS_SOCKET_TIMEOUT = env_float("REDIS_SOCKET_TIMEOUT", 0.0)
if REDIS_SOCKET_TIMEOUT and REDIS_SOCKET_TIMEOUT < CHANNEL_LAYER_BLOCKING_READ_SECONDS + 5:
    raise ImproperlyConfigured(
        f"REDIS_SOCKET_TIMEOUT={REDIS_SOCKET_TIMEOUT} must be 0 (no read timeout, the default) or at least "
        f"{CHANNEL_LAYER_BLOCKING_READ_SECONDS + 5}: the channel layer's reads block "
        f"{CHANNEL_LAYER_BLOCKING_READ_SECONDS} s on the server."
    )
REDIS_KEEPALIVE_SECONDS = env_int("REDIS_KEEPALIVE_SECONDS", 15, minimum=1)
REDIS_CONNECT_TIMEOUT = env_float("REDIS_CONNECT_TIMEOUT", 5.0, minimum=0.1)
REDIS_HEALTH_CHECK_INTERVAL = env_int("REDIS_HEALTH_CHECK_INTERVAL", 30)
# Connections each process's Redis pools may open (the channel layer's, and the limits' one). redis-py 8
# caps a pool at 100 unless told and then fails the command (MaxConnectionsError) instead of waiting:
# at a few hundred sockets a burst of group joins or slot releases ran past it. Both pools wait up to
# REDIS_CONNECT_TIMEOUT for a connection when all of these are busy.
REDIS_MAX_CONNECTIONS = env_int("REDIS_MAX_CONNECTIONS", 1000, minimum=10)
CHANNEL_LAYER_PREFIX = env_str("CHANNEL_LAYER_PREFIX", "asgi")
CHANNEL_LAYER_CAPACITY = env_int("CHANNEL_LAYER_CAPACITY", 1000, minimum=10)
CHANNEL_LAYER_GROUP_EXPIRY = env_int("CHANNEL_LAYER_GROUP_EXPIRY", 86400, minimum=60)
if REDIS_URL:
    if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} must start with redis://, rediss:// or unix://.")
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    CHANNEL_LAYERS: dict[str, Any] = {
        "default": {
            "BACKEND": "chat.channel_layer.RedisChannelLayer",  # channels_redis's, with a pool that waits
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": REDIS_SOCKET_TIMEOUT or None,
                        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
                        "socket_keepalive": True,
                        "socket_keepalive_options": _keepalive_options(REDIS_KEEPALIVE_SECONDS),
                        # A pooled connection idle this long is PINGed before use, and the retry below
                        # reconnects it, so a Redis restart or an idle-closing proxy costs no message.
                        "health_check_interval": REDIS_HEALTH_CHECK_INTERVAL,
                        "max_connections": REDIS_MAX_CONNECTIONS,
                        "timeout": REDIS_CONNECT_TIMEOUT,  # the longest a command waits for a free connection
                        # Safe to repeat: channels_redis writes messages with ZADD of a unique member.
                        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
                    }
                ],
                "prefix": CHANNEL_LAYER_PREFIX,
                "capacity": CHANNEL_LAYER_CAPACITY,
                # Keep at least Daphne's --websocket_timeout (24 h by default): an older socket would
                # silently leave its groups.
                "group_expiry": CHANNEL_LAYER_GROUP_EXPIRY,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# The cache holds the REST and sign-up throttles' counters: shared through Redis when there is one, so
# every process counts against the same limit; per process otherwise (one process is the embedded default).
if REDIS_URL:
    CACHES: dict[str, Any] = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": "vc"}
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "voicechat"}}

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
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out client before a password is checked
    "django.contrib.auth.backends.ModelBackend",
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "media")))
# Reply audio: a local folder (one machine, or a shared mount), or an S3-compatible bucket so processes
# on several machines serve each other's audio. The audio endpoint streams byte ranges from either.
AUDIO_STORAGE = env_str("AUDIO_STORAGE", "local")
if AUDIO_STORAGE == "local":
    _audio_storage: dict[str, Any] = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
elif AUDIO_STORAGE == "s3":
    S3_BUCKET = env_str("S3_BUCKET", "")
    if not S3_BUCKET:
        raise ImproperlyConfigured("AUDIO_STORAGE=s3 needs S3_BUCKET, the name of an existing bucket.")
    S3_ENDPOINT_URL = env_str("S3_ENDPOINT_URL", "") or None
    if S3_ENDPOINT_URL and not S3_ENDPOINT_URL.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"S3_ENDPOINT_URL={S3_ENDPOINT_URL!r} must be an http(s) URL.")
    S3_ADDRESSING_STYLE = env_str("S3_ADDRESSING_STYLE", "auto")
    if S3_ADDRESSING_STYLE not in ("auto", "path", "virtual"):
        raise ImproperlyConfigured(f"S3_ADDRESSING_STYLE={S3_ADDRESSING_STYLE!r} is unknown; use auto, path, virtual.")
    S3_TIMEOUT = env_float("S3_TIMEOUT", 10.0, minimum=0.1)
    from botocore.config import Config as _BotoConfig

    _audio_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": S3_ENDPOINT_URL,
            "region_name": env_str("S3_REGION", "") or None,
            # Blank keys: boto3's own chain (AWS_* variables, shared config, an instance or task role).
            "access_key": env_str("S3_ACCESS_KEY_ID", "") or None,
            "secret_key": env_str("S3_SECRET_ACCESS_KEY", "") or None,
            "location": env_str("S3_PREFIX", "").strip("/"),
            "addressing_style": None if S3_ADDRESSING_STYLE == "auto" else S3_ADDRESSING_STYLE,
            "default_acl": None,  # objects stay private: only the audio endpoint reads them
            "querystring_auth": True,
            "file_overwrite": True,  # names are message ids; a re-save replaces the same reply's audio
            "client_config": _BotoConfig(
                connect_timeout=S3_TIMEOUT,
                read_timeout=S3_TIMEOUT,
                retries={"max_attempts": env_int("S3_MAX_ATTEMPTS", 3, minimum=1), "mode": "standard"},
            ),
        },
    }
else:
    raise ImproperlyConfigured(f"AUDIO_STORAGE={AUDIO_STORAGE!r} is unknown; use local or s3.")
STORAGES = {
    "default": _audio_storage,
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

# --- Content-Security-Policy: everything from this origin only. The page is one module script, a JSON
# config (json_script, never executed), stylesheets, the AudioWorklet module (script-src) and the
# WebSocket ('self' covers ws:/wss: of the same host since Chrome 71, Firefox and Safari 16); the admin
# uses its own static files. No inline script or style, no eval, no blob:/data: beyond admin icons.
CSP_REPORT_URI = env_str("CSP_REPORT_URI", "")
_CSP: dict[str, Any] = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "media-src": ["'self'"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "worker-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        **({"report-uri": [CSP_REPORT_URI]} if CSP_REPORT_URI else {}),
    }
}
# Report-only first is how a changed deployment (a CDN, an analytics script) finds what the policy would block.
if env_bool("CSP_REPORT_ONLY", False):
    CONTENT_SECURITY_POLICY_REPORT_ONLY = _CSP
else:
    CONTENT_SECURITY_POLICY = _CSP
# Powerful browser features the page never uses are off for it and anything it could embed. The
# player needs none: Web Audio output after a click is not gated by `autoplay`, which stays 'self'.
PERMISSIONS_POLICY: dict[str, list[str]] = {
    "accelerometer": [],
    "autoplay": ["self"],
    "browsing-topics": [],
    "camera": [],
    "display-capture": [],
    "geolocation": [],
    "gyroscope": [],
    "hid": [],
    "magnetometer": [],
    "microphone": [],  # replies are typed; voice input would turn this to ["self"]
    "midi": [],
    "payment": [],
    "publickey-credentials-get": [],
    "screen-wake-lock": [],
    "serial": [],
    "usb": [],
    "xr-spatial-tracking": [],
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 30,
    "DEFAULT_THROTTLE_CLASSES": ["chat.throttles.ApiUserThrottle", "chat.throttles.ApiWriteThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "user": env_rate("API_THROTTLE_RATE", "300/min"),
        "write": env_rate("API_WRITE_THROTTLE_RATE", "30/min"),
        "signup": env_rate("SIGNUP_THROTTLE_RATE", "10/hour"),
    },
    "EXCEPTION_HANDLER": "chat.throttles.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "voicechat API",
    "DESCRIPTION": "Conversations, messages and stored reply audio of the logged-in user.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "chat.voice_views.schema_with_previews",  # the async voice preview route
    ],
    # The vendor-shaped API (chat/convai_api.py) reuses these choice sets; one name each.
    "ENUM_NAME_OVERRIDES": {
        "ConvaiConversationStatusEnum": "chat.convai_api.STATUSES",
        "FeedbackScoreEnum": "chat.models.Message.Feedback",
    },
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
# /stream/with-timestamps (word timing for the page) or plain /stream (audio only).
ELEVENLABS_TIMESTAMPS = env_bool("ELEVENLABS_TIMESTAMPS", True)
# The HTTP stack under the official SDK's client: aiohttp (httpx-aiohttp's transport; its C parser
# reads the vendor's stream; 0.0098 against 0.0112 CPU s per audio s at 100 streams) or httpx's own
# (httpcore + h11 over anyio).
ELEVENLABS_HTTP_CLIENT = env_str("ELEVENLABS_HTTP_CLIENT", "aiohttp")
if ELEVENLABS_HTTP_CLIENT not in ("aiohttp", "httpx"):
    raise ImproperlyConfigured(f"ELEVENLABS_HTTP_CLIENT={ELEVENLABS_HTTP_CLIENT!r} is unknown; use aiohttp or httpx.")

# The voice library (admin choices, the page's voice picker): how long the provider's voice and model
# lists are cached, how many voices are read at most, where previews may be fetched from, how large.
VOICE_LIBRARY_CACHE_SECONDS = env_int("VOICE_LIBRARY_CACHE_SECONDS", 300)
VOICE_LIBRARY_MAX_VOICES = env_int("VOICE_LIBRARY_MAX_VOICES", 1000, minimum=1)
VOICE_PREVIEW_ORIGINS = env_list("VOICE_PREVIEW_ORIGINS", ["https://storage.googleapis.com"])
VOICE_PREVIEW_MAX_BYTES = env_int("VOICE_PREVIEW_MAX_BYTES", 2 * 1024 * 1024, minimum=1024)
AGENT_USER_VOICES_MAX = env_int("AGENT_USER_VOICES_MAX", 50, minimum=1)
# The vendor's TTS WebSocket (agents whose TTS transport is `websocket`): multi-stream-input carries a
# context per reply on one socket per process; stream-input opens a socket per reply.
ELEVENLABS_WS_MULTI_CONTEXT = env_bool("ELEVENLABS_WS_MULTI_CONTEXT", True)
ELEVENLABS_WS_CONTEXTS_PER_SOCKET = env_int("ELEVENLABS_WS_CONTEXTS_PER_SOCKET", 5, minimum=1)
if ELEVENLABS_WS_CONTEXTS_PER_SOCKET > 5:
    raise ImproperlyConfigured("ELEVENLABS_WS_CONTEXTS_PER_SOCKET is at most 5 (the vendor closes the socket beyond).")
ELEVENLABS_WS_INACTIVITY_TIMEOUT = env_int("ELEVENLABS_WS_INACTIVITY_TIMEOUT", 20, minimum=1)
if ELEVENLABS_WS_INACTIVITY_TIMEOUT > 180:
    raise ImproperlyConfigured("ELEVENLABS_WS_INACTIVITY_TIMEOUT is at most 180 seconds (the vendor's maximum).")
ELEVENLABS_WS_IDLE_SECONDS = env_float("ELEVENLABS_WS_IDLE_SECONDS", 10.0)

# --- ElevenLabs-compatible client API (docs/sdk.md) ---------------------------------------------
# Seconds a signed WebSocket URL from /v1/convai/conversation/get-signed-url may wait before it is used
# (once); the vendor's are valid for 15 minutes. The conversation itself may then last longer.
SIGNED_URL_MAX_AGE = env_int("SIGNED_URL_MAX_AGE", 900, minimum=10)
# Most API keys (xi-api-key) one user may hold at a time.
MAX_API_KEYS_PER_USER = env_int("MAX_API_KEYS_PER_USER", 10, minimum=1)
# ElevenLabs Agents as a reply backend (an agent whose backend is elevenlabs_agent; docs/agents.md).
ELEVENLABS_AGENT_OVERRIDES = env_list("ELEVENLABS_AGENT_OVERRIDES", [])
_AGENT_OVERRIDES = ("agent.language", "agent.first_message", "agent.prompt.prompt", "tts.voice_id")
if unknown_overrides := sorted(set(ELEVENLABS_AGENT_OVERRIDES) - set(_AGENT_OVERRIDES)):
    raise ImproperlyConfigured(
        f"ELEVENLABS_AGENT_OVERRIDES names unknown overrides {unknown_overrides}; use {', '.join(_AGENT_OVERRIDES)}."
    )
ELEVENLABS_AGENT_IDLE_SECONDS = env_float("ELEVENLABS_AGENT_IDLE_SECONDS", 120.0, minimum=1.0)
ELEVENLABS_AGENT_KEEPALIVE_SECONDS = env_float("ELEVENLABS_AGENT_KEEPALIVE_SECONDS", 25.0, minimum=1.0)
if ELEVENLABS_AGENT_KEEPALIVE_SECONDS >= 60:
    raise ImproperlyConfigured(
        f"ELEVENLABS_AGENT_KEEPALIVE_SECONDS={ELEVENLABS_AGENT_KEEPALIVE_SECONDS:g} must be under 60: "
        "ElevenLabs ends a call after 60 s without user activity."
    )
ELEVENLABS_AGENT_RESPONSE_TIMEOUT = env_float("ELEVENLABS_AGENT_RESPONSE_TIMEOUT", 20.0, minimum=0.1)
ELEVENLABS_AGENT_STALL_SECONDS = env_float("ELEVENLABS_AGENT_STALL_SECONDS", 10.0, minimum=0.1)
ELEVENLABS_AGENT_AUDIO_SETTLE_SECONDS = env_float("ELEVENLABS_AGENT_AUDIO_SETTLE_SECONDS", 1.0, minimum=0.05)
ELEVENLABS_AGENT_INTERRUPT_GRACE_SECONDS = env_float("ELEVENLABS_AGENT_INTERRUPT_GRACE_SECONDS", 1.0, minimum=0.0)
ELEVENLABS_AGENT_HISTORY_CHARS = env_int("ELEVENLABS_AGENT_HISTORY_CHARS", 4000, minimum=0)

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
            "timeout": ELEVENLABS_TIMEOUT,
            "max_retries": ELEVENLABS_MAX_RETRIES,
            "timestamps": ELEVENLABS_TIMESTAMPS,
            "keepalive": min(ELEVENLABS_MAX_CONCURRENCY, 1000),
            "http_client": ELEVENLABS_HTTP_CLIENT,
        },
    },
    "elevenlabs_ws": {
        "BACKEND": "chat.providers.elevenlabs_ws.ElevenLabsWebSocketTTS",
        "OPTIONS": {
            "api_key": ELEVENLABS_API_KEY,
            "base_url": ELEVENLABS_BASE_URL,
            "voice_id": ELEVENLABS_VOICE_ID,
            "model_id": ELEVENLABS_MODEL_ID,
            "output_format": ELEVENLABS_OUTPUT_FORMAT,
            "multi_context": ELEVENLABS_WS_MULTI_CONTEXT,
            "contexts_per_socket": ELEVENLABS_WS_CONTEXTS_PER_SOCKET,
            "inactivity_timeout": ELEVENLABS_WS_INACTIVITY_TIMEOUT,
            "idle_seconds": ELEVENLABS_WS_IDLE_SECONDS,
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

# Whole-reply backends, by the alias an Agent's `backend` names. The per-conversation values (the
# vendor agent id, overrides, user, history) are added to OPTIONS by chat.providers.reply_session().
REPLY_PROVIDERS: dict[str, dict[str, Any]] = {
    "elevenlabs_agent": {
        "BACKEND": "chat.providers.elevenlabs_agent.ElevenLabsAgentSession",
        "OPTIONS": {
            "api_key": ELEVENLABS_API_KEY,
            "base_url": ELEVENLABS_BASE_URL,
            "sample_rate": int(ELEVENLABS_OUTPUT_FORMAT[4:]),
            "allowed_overrides": ELEVENLABS_AGENT_OVERRIDES,
            "idle_seconds": ELEVENLABS_AGENT_IDLE_SECONDS,
            "keepalive_seconds": ELEVENLABS_AGENT_KEEPALIVE_SECONDS,
            "connect_timeout": ELEVENLABS_TIMEOUT,
            "response_timeout": ELEVENLABS_AGENT_RESPONSE_TIMEOUT,
            "stall_seconds": ELEVENLABS_AGENT_STALL_SECONDS,
            "audio_settle_seconds": ELEVENLABS_AGENT_AUDIO_SETTLE_SECONDS,
            "interrupt_grace_seconds": ELEVENLABS_AGENT_INTERRUPT_GRACE_SECONDS,
            "history_chars": ELEVENLABS_AGENT_HISTORY_CHARS,
            "max_retries": ELEVENLABS_MAX_RETRIES,
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
# What agents on the `websocket` TTS transport speak with; without a key, the same as everyone else.
TTS_WEBSOCKET_BACKEND = _backend(
    "TTS_WEBSOCKET_BACKEND", "elevenlabs_ws" if ELEVENLABS_API_KEY else TTS_BACKEND, TTS_PROVIDERS
)
LLM_BACKEND = _backend("LLM_BACKEND", "demo", LLM_PROVIDERS)

# --- Limits (chat/limits, chat/throttles.py; README "Limits") -------------------------------------
# Speech budgets in characters, the unit ElevenLabs bills; 0 turns a limit off. Days and months begin
# at midnight in TIME_ZONE. Operators override a user's allowance in the admin (Speech allowances).
SPEECH_DAILY_CHARS = env_int("SPEECH_DAILY_CHARS", 20_000)
SPEECH_MONTHLY_CHARS = env_int("SPEECH_MONTHLY_CHARS", 200_000)
SPEECH_SITE_DAILY_CHARS = env_int("SPEECH_SITE_DAILY_CHARS", 500_000)
# Fair TTS slots: the most vendor requests one user may hold at once (a turn needs 2 for look-ahead).
TTS_SLOTS_PER_USER = env_int("TTS_SLOTS_PER_USER", 2, minimum=1)
# Seconds a Redis-held TTS slot or socket entry outlives a process that died without releasing it.
LIMITS_LEASE_SECONDS = env_int("LIMITS_LEASE_SECONDS", 60, minimum=1)
MAX_SOCKETS_PER_USER = env_int("MAX_SOCKETS_PER_USER", 8, minimum=1)
WS_MAX_FRAME_BYTES = env_int("WS_MAX_FRAME_BYTES", 64 * 1024, minimum=1024)
WS_FRAMES_PER_SECOND = env_float("WS_FRAMES_PER_SECOND", 20.0, minimum=0.1)
WS_FRAME_BURST = env_int("WS_FRAME_BURST", 60, minimum=1)
# Proxies in front whose X-Forwarded-For entries are trusted for the client's address (sign-up throttle,
# log-in lockout). Defaults to one whenever X-Forwarded-Proto is trusted: the same TLS proxy adds both.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 1 if env_bool("USE_X_FORWARDED_PROTO", not DEBUG) else 0)

# Log-in lockout (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for one user name from one
# address, that pair is refused for LOGIN_LOCKOUT_MINUTES; a successful log-in resets the count.
AXES_ENABLED = env_bool("LOGIN_LOCKOUT", True)
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
# Per user name and address: by address alone, one office behind NAT (or a misconfigured proxy) would
# lock everyone out; by name alone, anyone could lock any account.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "chat.throttles.client_ip"
AXES_LOCKOUT_CALLABLE = "chat.throttles.login_locked_out"
AXES_VERBOSE = False

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
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        # Frame-by-frame chatter of the ElevenLabs agent socket (signatures are redacted there anyway).
        "chat.providers.elevenlabs_agent.socket": {"level": "WARNING"},
        # The TTS WebSocket's frame log (every audio message) too; its key is redacted regardless.
        "chat.providers.elevenlabs_ws.wire": {"level": "WARNING"},
    },
}
