"""Two real Daphne processes on one PostgreSQL database and one Redis, as the README runs them.

Skipped unless DATABASE_URL names a PostgreSQL server and REDIS_URL a Redis that answer (CI's second
pass). Each cluster gets a fresh database and its own channel layer prefix, so nothing else on those
servers is touched. Stored audio lives in an S3-compatible bucket (moto's server on loopback), since
processes on different machines share no disk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests import servers
from tests.fakes.elevenlabs import FakeElevenLabs

pytestmark = [pytest.mark.multiprocess, pytest.mark.daphne]

# Longer than any timeout on the path: the layer's 5 s blocking read, the 30 s Redis read timeout and
# health check, Daphne's 20 s ping interval and 30 s ping timeout.
HOLD_SECONDS = 35.0
# The bound for a reply left by a dead process to be closed.
SWEEP_SECONDS = 90.0
PASSWORD = "a-long-passphrase-1"


@pytest.fixture(scope="module")
def services() -> tuple[str, str]:
    admin_url, redis = servers.postgres_admin_url(), servers.redis_url()
    if admin_url is None or redis is None:
        pytest.skip("needs DATABASE_URL=postgres://… and REDIS_URL=redis://… naming running servers")
    return admin_url, redis


@pytest.fixture(scope="module")
def vendor() -> Iterator[FakeElevenLabs]:
    fake = FakeElevenLabs.start_in_thread()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def s3() -> Iterator[servers.S3]:
    with servers.s3_server() as running:
        yield running


def vendor_env(fake: FakeElevenLabs) -> dict[str, str]:
    return {"TTS_BACKEND": "elevenlabs", "ELEVENLABS_API_KEY": fake.api_key, "ELEVENLABS_BASE_URL": fake.url}


@pytest.fixture(scope="module")
def cluster(
    services: tuple[str, str], vendor: FakeElevenLabs, s3: servers.S3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[servers.Cluster]:
    admin_url, redis = services
    tmp = tmp_path_factory.mktemp("cluster")
    env = {**vendor_env(vendor), **s3.env, "DEMO_LLM_TOKENS_PER_SECOND": "200"}
    with servers.daphne_cluster(tmp, processes=2, admin_url=admin_url, redis=redis, **env) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # Cookies are sent by hand: each "browser" here is one session cookie, whichever process it talks to.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def csrf_post(http: aiohttp.ClientSession, base: str, cookie: str, path: str, form: dict[str, str]) -> int:
    """POST a form as the page would: the CSRF cookie from a page load, sent back with the token."""
    async with http.get(base + "/", headers={"Cookie": cookie}) as page:
        token = page.cookies["csrftoken"].value
    headers = {"Cookie": f"{cookie}; csrftoken={token}", "X-CSRFToken": token, "Origin": base}
    async with http.post(base + path, data=form, headers=headers, allow_redirects=False) as response:
        return response.status


def server_log(cluster: servers.Cluster) -> str:
    return cluster.log()[-4000:]


async def test_it_holds_sockets_and_runs_turns_on_both_processes_past_every_timeout(
    cluster: servers.Cluster, http: aiohttp.ClientSession
) -> None:
    a, b = cluster.apps
    cookies = a.session_cookies([f"hold{i}" for i in range(6)])
    async with AsyncExitStack() as stack:
        # Per process: two idle sockets and one taking turns; busy users alternate processes too.
        idle = [
            await stack.enter_async_context(servers.open_socket(http, app.url, c))
            for app, c in zip((a, b, a, b), cookies[:4], strict=True)
        ]
        busy = [
            await stack.enter_async_context(servers.open_socket(http, a.url, cookies[4])),
            await stack.enter_async_context(servers.open_socket(http, b.url, cookies[5])),
        ]
        sent: list[str] = []

        async def take_turns(sock: servers.Socket, name: str) -> list[dict[str, Any]]:
            done: list[dict[str, Any]] = []
            deadline = time.monotonic() + HOLD_SECONDS
            while time.monotonic() < deadline:
                text = f"{name} turn {len(done)}: tell me about streaming speech."
                sent.append(text)
                frames = await sock.turn(text)
                done.append(frames[-1]["agent_response_complete_event"])
                await asyncio.sleep(1)
            return done

        results = await asyncio.gather(take_turns(busy[0], "on-a"), take_turns(busy[1], "on-b"))
        for sock in idle + busy:
            assert not sock.closed.is_set(), (sock.close_code, server_log(cluster))
        completes = [c for turns in results for c in turns]
        assert len(completes) >= 10 and {c["status"] for c in completes} == {"complete"}, completes
        # Audio one process stored is served by the other: the bucket, not a local folder.
        for complete, other in ((results[0][0], b), (results[1][0], a)):
            headers = {"Cookie": cookies[4] if other is b else cookies[5], "Range": "bytes=0-43"}
            async with http.get(other.url + complete["audio_url"], headers=headers) as response:
                assert response.status == 206 and (await response.read())[:4] == b"RIFF"

    stored = cluster.query(
        "import json; from chat.models import Message\n"
        "rows = Message.objects.filter(conversation__owner__username__startswith='hold')\n"
        "print(json.dumps([[m.role, m.text, m.status, str(m.id)] for m in rows.order_by('created_at')]))"
    )
    users = [text for role, text, _, _ in stored if role == "user"]
    assert sorted(users) == sorted(sent)
    replies = {message_id: (text, status) for role, text, status, message_id in stored if role == "assistant"}
    assert {c["message_id"] for c in completes} <= set(replies)
    assert all(status == "complete" and text for text, status in replies.values())


async def test_it_closes_the_logged_out_session_in_the_other_process(
    cluster: servers.Cluster, http: aiohttp.ClientSession
) -> None:
    a, b = cluster.apps
    laptop = a.session_cookie("lena")
    phone = second_session(cluster, "lena")
    async with (
        servers.open_socket(http, b.url, laptop) as laptop_on_b,
        servers.open_socket(http, b.url, phone) as phone_on_b,
    ):
        assert await csrf_post(http, a.url, laptop, "/accounts/logout/", {}) == 302
        error = await laptop_on_b.next("error", timeout=10)
        assert error["error_event"]["code"] == "session_ended"
        await asyncio.wait_for(laptop_on_b.closed.wait(), 10)
        assert laptop_on_b.close_code == 4001
        await asyncio.sleep(1)
        assert not phone_on_b.closed.is_set()  # the phone's session did not end


async def test_it_closes_every_session_in_every_process_on_a_password_change(
    cluster: servers.Cluster, http: aiohttp.ClientSession
) -> None:
    a, b = cluster.apps
    first = a.session_cookie("pavel", PASSWORD)
    second = second_session(cluster, "pavel")
    async with (
        servers.open_socket(http, a.url, second) as on_a,
        servers.open_socket(http, b.url, second) as on_b,
    ):
        new = "another-long-passphrase-2"
        form = {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
        assert await csrf_post(http, a.url, first, "/accounts/password_change/", form) == 302
        for sock in (on_a, on_b):
            await asyncio.wait_for(sock.closed.wait(), 10)
            assert sock.close_code == 4001


async def test_it_shows_a_message_sent_in_a_tab_on_one_process_in_a_tab_on_the_other(
    cluster: servers.Cluster, http: aiohttp.ClientSession
) -> None:
    a, b = cluster.apps
    cookie = a.session_cookie("tara")
    async with servers.open_socket(http, a.url, cookie) as tab_on_a:
        conversation = tab_on_a.metadata["conversation_id"]
        await tab_on_a.turn("The first message creates the conversation.")
        async with servers.open_socket(http, b.url, cookie, query=f"conversation_id={conversation}") as tab_on_b:
            frames = await tab_on_a.turn("Hello from the first tab.")
            reply = frames[-1]["agent_response_complete_event"]
            shown = await tab_on_b.next("user_transcript", timeout=10)
            assert shown["user_transcription_event"]["user_transcript"] == "Hello from the first tab."
            await tab_on_b.next("agent_response_complete", timeout=10)
            kinds = {f["type"] for f in tab_on_b.seen}
            assert "agent_chat_response_part" in kinds and "audio" not in kinds
            assert streamed_text(tab_on_b) and reply["message_id"]
            # The tab that sent it does not get its own turn twice.
            assert [f["type"] for f in frames].count("user_transcript") == 1
            await asyncio.sleep(0.5)
            assert [f["type"] for f in tab_on_a.seen].count("user_transcript") == 2  # one per turn it sent


async def test_it_closes_a_reply_left_by_a_killed_process_keeping_its_text(
    services: tuple[str, str], vendor: FakeElevenLabs, s3: servers.S3, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    admin_url, redis = services
    # A slow LLM, so the reply is mid-stream when its process dies.
    env = {**vendor_env(vendor), **s3.env, "DEMO_LLM_TOKENS_PER_SECOND": "10"}
    with servers.daphne_cluster(tmp_path, processes=2, admin_url=admin_url, redis=redis, **env) as cluster:
        a = cluster.apps[0]
        cookie = a.session_cookie("kim")
        async with servers.open_socket(http, a.url, cookie) as sock:
            await sock.send({"type": "user_message", "text": "Tell me a long story."})
            deadline = time.monotonic() + 20
            while len(streamed_text(sock)) < 40:
                assert time.monotonic() < deadline, "the reply did not stream"
                await asyncio.sleep(0.1)
            # What the page had shown this long before the crash must survive it.
            shown_before = len(streamed_text(sock))
            await asyncio.sleep(2)
            killed_at = time.monotonic()
            cluster.kill(0)
            await asyncio.wait_for(sock.closed.wait(), 10)
            received = streamed_text(sock)
        cluster.start(0)  # as a supervisor would; the survivor's periodic sweep counts as much as this one's
        script = (
            "import json; from chat.models import Message\n"
            "m = Message.objects.filter(role='assistant', conversation__owner__username='kim').get()\n"
            "print(json.dumps([m.status, m.error_code, m.text]))"
        )
        status, error_code, text = cluster.query(script)
        while status == "streaming" and time.monotonic() - killed_at < SWEEP_SECONDS:
            await asyncio.sleep(3)
            status, error_code, text = cluster.query(script)
        assert (status, error_code) == ("interrupted", "server_restarted"), server_log(cluster)
        assert len(text) >= shown_before and (received.startswith(text) or text.startswith(received))


def streamed_text(sock: servers.Socket) -> str:
    return "".join(f["text_response_part"]["text"] for f in sock.seen if f["type"] == "agent_chat_response_part")


def second_session(cluster: servers.Cluster, username: str) -> str:
    """Another logged-in session (another browser) of an existing user."""
    script = (
        "from django.contrib.auth import get_user_model; from tests.wsclient import session_cookie_for\n"
        f"print(session_cookie_for(get_user_model().objects.get(username={username!r})))"
    )
    return cluster.manage("shell", "-c", script).strip().splitlines()[-1]
