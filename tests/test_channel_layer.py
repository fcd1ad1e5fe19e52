"""The Redis channel layer holds idle and busy sockets indefinitely (issue #9: one close 1011 every 5 s).

Cause: channels_redis waits for messages with a BZPOPMIN that blocks 5 s on the server, and redis-py's
default socket_timeout is also 5 s, so the read raced its own timeout and raised TimeoutError into a
consumer. settings.py gives the layer a read timeout well past the blocking read.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from tests import servers
from tests.fakes.elevenlabs import FakeElevenLabs

# Longer than every timeout on the path: the layer's blocking read (5 s), TCP keepalive (15 s + 3 × 5 s),
# the health-check interval (30 s), Daphne's ping interval (20 s) and ping timeout (30 s).
HOLD_SECONDS = 35.0


@pytest.fixture(scope="module")
def redis() -> Iterator[str]:
    """A Redis that closes connections idle for 10 s, as managed services and proxies do; else REDIS_URL."""
    try:
        with servers.redis_server(idle_timeout=10) as url:
            yield url
            return
    except FileNotFoundError:
        pass
    running = servers.redis_url()
    if running is None:
        pytest.skip("needs redis-server installed or REDIS_URL pointing at a running Redis")
    yield running


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=servers.ROOT,
        env={**os.environ, "DEBUG": "true", "DJANGO_SETTINGS_MODULE": "voicechat.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_it_reads_without_a_timeout_and_keeps_probing_the_connection() -> None:
    blocking = RedisChannelLayer.brpop_timeout
    assert blocking == settings.CHANNEL_LAYER_BLOCKING_READ_SECONDS, "channels_redis changed its blocking read"
    show = (
        "import django; django.setup(); from django.conf import settings as s; "
        "h = s.CHANNEL_LAYERS['default']['CONFIG']['hosts'][0]; "
        "print(h['socket_timeout'], h['socket_connect_timeout'], h['socket_keepalive'], "
        "sorted(h['socket_keepalive_options'].values()), h['health_check_interval'], h['retry'].get_retries())"
    )
    done = run_python(show, REDIS_URL="redis://127.0.0.1:6379/0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "5.0", "True", "[3,", "5,", "15]", "30", "3"]
    done = run_python(show, REDIS_URL="redis://127.0.0.1:6379/0", REDIS_SOCKET_TIMEOUT="45")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "45.0"


def test_it_refuses_a_read_timeout_within_the_blocking_read() -> None:
    done = run_python("import django; django.setup()", REDIS_URL="redis://127.0.0.1:6379/0", REDIS_SOCKET_TIMEOUT="5")
    assert done.returncode != 0
    assert "REDIS_SOCKET_TIMEOUT=5.0 must be 0 (no read timeout, the default) or at least 10" in done.stderr


def test_it_ends_a_receive_cancelled_at_any_point_of_its_first_read(redis: str) -> None:
    """A consumer whose socket closes at once cancels its channel's receive while redis-py is connecting.

    With a socket timeout, redis-py writes through asyncio.wait_for, which on Python 3.11 can swallow
    that cancellation: the receive then loops on BZPOPMIN forever (a leaked task and Redis connection
    per such socket, and a test run that never ends). Cancel after 0..39 loop steps; every one must end.
    """
    code = """
import asyncio, django
django.setup()
from channels.layers import get_channel_layer

async def main():
    layer = get_channel_layer()
    stuck = []
    for steps in range(40):
        channel = await layer.new_channel()
        waiting = asyncio.ensure_future(layer.receive(channel))
        for _ in range(steps):
            await asyncio.sleep(0)
        waiting.cancel()
        done, _ = await asyncio.wait([waiting], timeout=7)
        if not done:
            stuck.append(steps)
    print("stuck", stuck)

asyncio.run(main())
"""
    done = run_python(code, REDIS_URL=redis)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stuck []"


def test_it_keeps_an_idle_receive_waiting_past_the_blocking_read(redis: str) -> None:
    """The layer settings.py builds: an idle receive waits through 3 blocking reads, then gets its message."""
    code = """
import asyncio, django
django.setup()
from channels.layers import get_channel_layer

async def main():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    waiting = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(16)
    assert not waiting.done(), waiting
    await layer.send(channel, {"type": "hello"})
    print((await asyncio.wait_for(waiting, 5))["type"])

asyncio.run(main())
"""
    done = run_python(code, REDIS_URL=redis)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hello"


def test_it_waits_for_a_free_connection_when_a_burst_passes_the_pool(redis: str) -> None:
    """channels_redis's own pool fails the command that finds every connection busy (MaxConnectionsError);
    the layer settings.py builds waits for one. 200 sockets join, are sent to and leave a group at once
    through a pool of 10."""
    code = """
import asyncio, django
django.setup()
from channels.layers import get_channel_layer

async def main():
    layer = get_channel_layer()
    channels = [await layer.new_channel() for _ in range(200)]
    await asyncio.gather(*(layer.group_add("burst", c) for c in channels))
    await asyncio.gather(*(layer.send(c, {"type": "hello"}) for c in channels))
    received = await asyncio.gather(*(layer.receive(c) for c in channels))
    await asyncio.gather(*(layer.group_discard("burst", c) for c in channels))
    pool = layer.connection(0).connection_pool
    print(len(received), type(pool).__name__, pool.max_connections)

asyncio.run(main())
"""
    done = run_python(code, REDIS_URL=redis, REDIS_MAX_CONNECTIONS="10")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["200", "BlockingConnectionPool", "10"]


@pytest.mark.daphne
async def test_it_holds_idle_and_busy_sockets_past_every_timeout(redis: str, tmp_path: Path) -> None:
    """One Daphne on Redis: idle sockets and one taking turns stay open for HOLD_SECONDS; every turn completes."""
    fake = FakeElevenLabs.start_in_thread()
    overrides = {"TTS_BACKEND": "elevenlabs", "ELEVENLABS_API_KEY": fake.api_key, "ELEVENLABS_BASE_URL": fake.url}
    try:
        with servers.daphne_app(tmp_path, REDIS_URL=redis, DEMO_LLM_TOKENS_PER_SECOND="200", **overrides) as app:
            cookies = app.session_cookies([f"idle{i}" for i in range(4)] + ["busy"])
            async with aiohttp.ClientSession() as http:
                idle = [servers.open_socket(http, app.url, cookie) for cookie in cookies[:4]]
                sockets = [await stack.__aenter__() for stack in idle]
                async with servers.open_socket(http, app.url, cookies[4]) as busy:
                    statuses: list[str] = []
                    deadline = time.monotonic() + HOLD_SECONDS
                    while time.monotonic() < deadline:
                        frames = await busy.turn(f"Turn {len(statuses)}: tell me something.")
                        statuses.append(frames[-1]["agent_response_complete_event"]["status"])
                        await asyncio.sleep(2)
                    assert not busy.closed.is_set(), (busy.close_code, (tmp_path / "daphne.log").read_text())
                    closed = [(i, s.close_code) for i, s in enumerate(sockets) if s.closed.is_set()]
                    assert closed == [], (tmp_path / "daphne.log").read_text()
                    assert len(statuses) >= 5 and set(statuses) == {"complete"}
                    # Every idle socket still answers, after the wait.
                    for sock in sockets:
                        await sock.send({"type": "user_activity"})
                        await sock.send({"type": "bogus"})
                        assert (await sock.next("error", timeout=10))["error_event"]["code"] == "invalid_message"
                for stack in idle:
                    await stack.__aexit__(None, None, None)
            assert "TimeoutError" not in (tmp_path / "daphne.log").read_text()
    finally:
        fake.stop()
