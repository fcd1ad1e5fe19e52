"""Shared fixtures: users, agents, conversations, and the loopback vendor fakes."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile

from chat.models import Agent, Conversation, Message

pytest_plugins = ["tests.fakes.fixtures"]

# Before any test module imports voicechat.asgi: no sweeper thread in the test process, whose rows the
# tests own. The sweeper is tested directly and in real server processes (tests/test_multiprocess.py).
settings.TURN_SWEEP_SECONDS = 0

User = get_user_model()
PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(autouse=True)
def _own_cache(settings, request):
    """A cache of the test's own: throttle counters must not carry from one test into the next."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": request.node.nodeid}
    }


@pytest.fixture(autouse=True)
def _no_background_sweeper(settings):
    """In-process tests own their database rows; the sweeper is tested directly and in real processes."""
    settings.TURN_SWEEP_SECONDS = 0


@pytest.fixture
def user(db):
    return User.objects.create_user(username="alice", password=PASSWORD)


@pytest.fixture
def other_user(db):
    return User.objects.create_user(username="mallory", password=PASSWORD)


@pytest.fixture
def agent(db) -> Agent:
    # Transactional tests flush the data migration's agent, so make sure one exists.
    agent, _ = Agent.objects.get_or_create(
        is_default=True, defaults={"name": "Assistant", "language_code": "en", "system_prompt": "Be brief."}
    )
    return agent


@pytest.fixture
def conversation(user, agent) -> Conversation:
    return Conversation.objects.create(owner=user, agent=agent, title="First")


@pytest.fixture
def client_alice(client, user):
    client.force_login(user)
    return client


def wav_bytes(samples: int = 2400) -> bytes:
    """A small mono 24 kHz WAV whose bytes all differ from their neighbours, so a wrong range shows."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(24000)
        wav.writeframes((bytes(range(256)) * (samples // 128 + 1))[: samples * 2])
    return out.getvalue()


@pytest.fixture
def media_root(settings, tmp_path) -> Path:
    """Stored audio goes to a temporary MEDIA_ROOT, so tests can look for (and miss) the files."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def spoken_reply(conversation, media_root) -> Message:
    """An assistant reply with stored audio, in alice's conversation."""
    reply = Message.objects.create(conversation=conversation, role="assistant", text="Hi.", status="complete")
    reply.audio.save(f"{reply.id}.wav", ContentFile(wav_bytes()))
    return reply


# --- limits: the in-process and the Redis-backed variants ------------------------------------------
LIMITS_REDIS_URL = "redis://127.0.0.1:6379/5"  # limits' own db on the shared machine (contracts.md)


@pytest.fixture
def local_limits(settings):
    """Limits kept in this process (REDIS_URL unset), starting empty."""
    from chat.limits.presence import presence_clear

    settings.REDIS_URL = ""
    presence_clear()
    yield "local"
    presence_clear()


@pytest.fixture
async def redis_limits(settings):
    """Limits kept in the real Redis at LIMITS_REDIS_URL, its limits keys cleared; skipped when Redis is absent."""
    import redis as sync_redis

    from chat.limits.shared import KEY_PREFIX, aclose_redis_clients

    client = sync_redis.Redis.from_url(LIMITS_REDIS_URL, socket_connect_timeout=0.5)
    try:
        client.ping()
    except sync_redis.RedisError:
        pytest.skip(f"no Redis at {LIMITS_REDIS_URL}")

    def clear() -> None:
        keys = list(client.scan_iter(f"{KEY_PREFIX}*"))
        if keys:
            client.delete(*keys)

    clear()
    settings.REDIS_URL = LIMITS_REDIS_URL
    yield "redis"
    await aclose_redis_clients()
    clear()
    client.close()


@pytest.fixture(params=["local", "redis"])
def limits_backend(request):
    """Runs a test once with limits in this process and once in Redis."""
    return request.getfixturevalue(f"{request.param}_limits")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Django deletes the SQLite test database; its WAL side files are left to us."""
    name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if name and settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        for suffix in ("-wal", "-shm"):
            Path(f"{name}{suffix}").unlink(missing_ok=True)
