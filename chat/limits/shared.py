"""The Redis connection the cross-process limits share: one client per event loop (they cannot cross loops)."""

from __future__ import annotations

import asyncio
import hashlib
import weakref

import redis.asyncio as aioredis
from django.conf import settings

KEY_PREFIX = "vc:limits:"

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, aioredis.Redis]] = weakref.WeakKeyDictionary()


def redis_client() -> aioredis.Redis | None:
    """The client for REDIS_URL, or None when the limits are kept in this process."""
    url = settings.REDIS_URL
    if not url:
        return None
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    if url not in per_loop:
        # Blocking: a burst past REDIS_MAX_CONNECTIONS waits for a free connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=settings.REDIS_MAX_CONNECTIONS,
            timeout=settings.REDIS_CONNECT_TIMEOUT,
            decode_responses=True,
            health_check_interval=30,
        )
        per_loop[url] = aioredis.Redis(connection_pool=pool)
    return per_loop[url]


async def aclose_redis_clients() -> None:
    """Close the running loop's clients (tests and shutdown; the next use reconnects)."""
    for client in _clients.pop(asyncio.get_running_loop(), {}).values():
        await client.aclose()


def account_key() -> str:
    """Names the vendor account without revealing its key, so two deployments on one Redis keep apart."""
    return hashlib.sha256(settings.ELEVENLABS_API_KEY.encode()).hexdigest()[:16]
