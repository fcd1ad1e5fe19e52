"""`voicechat.serve`, the one launcher of both servers: the flags that keep Uvicorn behaving as Daphne does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests import servers

pytestmark = pytest.mark.daphne

PASSWORD = "a-long-passphrase-1"


async def _log_in(http: aiohttp.ClientSession, base: str, password: str, forwarded_for: str) -> int:
    async with http.get(f"{base}/accounts/login/") as page:
        form = await page.text()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert token, form[:500]
    data = {"username": "alice", "password": password, "csrfmiddlewaretoken": token.group(1)}
    headers = {"X-Forwarded-For": forwarded_for, "Referer": f"{base}/accounts/login/"}
    async with http.post(f"{base}/accounts/login/", data=data, headers=headers, allow_redirects=False) as answer:
        return answer.status


@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
async def test_a_client_cannot_choose_its_address_with_a_forwarded_header(tmp_path: Path, server: str) -> None:
    # Uvicorn's own default trusts X-Forwarded-For from 127.0.0.1 and would rewrite the client's address;
    # with a new address per try, the lockout by user name + address would never trip.
    with servers.daphne_app(tmp_path, ASGI_SERVER=server, LOGIN_FAILURE_LIMIT="2") as app:
        app.session_cookie("alice", PASSWORD)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            assert await _log_in(http, app.url, "wrong", "203.0.113.1") == 200
            assert await _log_in(http, app.url, "wrong", "203.0.113.2") == 429
            assert await _log_in(http, app.url, PASSWORD, "203.0.113.3") == 429


@pytest.mark.parametrize(
    ("server", "started"), [("daphne", "Listening on TCP address"), ("uvicorn", "Uvicorn running")]
)
async def test_it_logs_no_signed_socket_url(tmp_path: Path, server: str, started: str) -> None:
    with servers.daphne_app(tmp_path, ASGI_SERVER=server) as app:
        cookie = app.session_cookie("dora")
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(
                f"{app.url.replace('http', 'ws')}/v1/convai/conversation?conversation_signature=secret-in-the-url",
                headers={"Cookie": cookie, "Origin": app.url},
            ) as ws,
        ):
            first = await ws.receive_json(timeout=10)
            assert first["type"] in {"conversation_initiation_metadata", "error"}
    log = (tmp_path / "daphne.log").read_text()
    assert started in log  # the log is the server's
    assert "secret-in-the-url" not in log


def test_it_names_the_variable_when_asgi_server_is_wrong() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "voicechat.serve", "--port", "1"],
        cwd=servers.ROOT,
        env={"ASGI_SERVER": "gunicorn", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "ASGI_SERVER must be one of daphne, uvicorn, not 'gunicorn'" in done.stderr


def test_it_documents_the_server_choice() -> None:
    assert "# ASGI_SERVER=daphne" in (servers.ROOT / ".env.example").read_text()
    assert "| `ASGI_SERVER` | `daphne` |" in (servers.ROOT / "README.md").read_text()


@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
async def test_it_saves_replies_cut_off_by_sigterm_and_exits(tmp_path: Path, server: str) -> None:
    """A deploy stops the process with SIGTERM mid-reply: every reply is saved as it ended (`interrupted`,
    `server_restarted`, its text kept) instead of being left `streaming` for the sweeper, and the process
    exits within the shutdown grace. A socket opens just before the signal: Daphne's own shutdown raised
    KeyError on the entry its handshake request leaves for up to a second, and stopped no consumer."""
    names = ["erin", "finn"]
    with servers.daphne_app(tmp_path, ASGI_SERVER=server, DEMO_LLM_TOKENS_PER_SECOND="10") as app:
        cookies = app.session_cookies(names)
        async with contextlib.AsyncExitStack() as stack:
            http = await stack.enter_async_context(aiohttp.ClientSession())
            socks = [await stack.enter_async_context(servers.open_socket(http, app.url, c)) for c in cookies]
            for sock in socks:
                await sock.send({"type": "user_message", "text": "Tell me a long story."})
            for sock in socks:
                await sock.next("audio", timeout=20)
            # One more socket opens just before the signal, as on a server in use.
            socks.append(await stack.enter_async_context(servers.open_socket(http, app.url, cookies[0])))
            assert app.process is not None
            stopped_at = time.monotonic()
            app.process.send_signal(signal.SIGTERM)
            for sock in socks:
                await asyncio.wait_for(sock.closed.wait(), 15)
            shown = [streamed_text(sock) for sock in socks]
            codes = [sock.close_code for sock in socks]
        await asyncio.to_thread(app.process.wait, 30)
        took = time.monotonic() - stopped_at
        script = (
            "import json; from chat.models import Message\n"
            f"m = Message.objects.filter(role='assistant', conversation__owner__username__in={names!r})\n"
            "print(json.dumps([[x.status, x.error_code, x.text] for x in m.order_by('conversation__owner__username')]))"
        )
        saved = json.loads(app.manage("shell", "-c", script).strip().splitlines()[-1])
    log = (tmp_path / "daphne.log").read_text(errors="replace")
    assert [row[:2] for row in saved] == [["interrupted", "server_restarted"]] * 2, log
    for (_, _, text), seen in zip(saved, shown[:2], strict=True):
        assert seen and (seen.startswith(text) or text.startswith(seen)), (seen, text)
    assert took < 12, log  # the shutdown grace (10 s) and the process's exit
    # Uvicorn says why it closes (1012, service restart); Daphne drops the socket (its WebSocket library
    # allows a server only 1000 or 3000-4999, and 1000 would read as a deliberate end).
    assert codes == ([1012] * 3 if server == "uvicorn" else [1006] * 3), codes


def streamed_text(sock: servers.Socket) -> str:
    return "".join(f["text_response_part"]["text"] for f in sock.seen if f["type"] == "agent_chat_response_part")


@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
def test_it_stops_on_ctrl_c_without_a_traceback(tmp_path: Path, server: str) -> None:
    with servers.daphne_app(tmp_path, ASGI_SERVER=server) as app:
        assert app.process is not None
        app.process.send_signal(signal.SIGINT)
        exit_code = app.process.wait(15)
    log = (tmp_path / "daphne.log").read_text(errors="replace")
    assert exit_code in (0, 130) and "Traceback" not in log, log


@pytest.mark.parametrize(
    ("server", "timeout", "served"), [("daphne", "", True), ("uvicorn", "", True), ("daphne", "2", False)]
)
async def test_it_serves_a_socket_whose_handshake_is_answered_late(
    tmp_path: Path, server: str, timeout: str, served: bool
) -> None:
    """Under a burst a saturated event loop answered some handshakes after Daphne's command-line default
    of 5 s, and those conversations were lost (403, or the connection dropped). Here the app's answer is
    held for 12 s: Redis' writes are paused, and the consumer joins its groups there before it accepts.
    By default (WS_CONNECT_TIMEOUT_SECONDS, 20 s) the socket is served; with 2 s Daphne refuses it. (aiohttp
    retries a handshake whose connection drops once, so 12 s outlasts two tries at the old 5 s.)"""
    import redis

    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server installed (the test pauses its writes, so never a shared Redis)")
    overrides = {"ASGI_SERVER": server, "WS_CONNECT_TIMEOUT_SECONDS": timeout}
    with servers.redis_server() as redis_url, servers.daphne_app(tmp_path, REDIS_URL=redis_url, **overrides) as app:
        cookie = app.session_cookie("gail")
        redis.Redis.from_url(redis_url).execute_command("CLIENT", "PAUSE", "12000", "WRITE")
        started = time.monotonic()
        async with aiohttp.ClientSession() as http:
            if not served:
                with pytest.raises(aiohttp.ClientError):  # a 403, or the connection dropped
                    async with servers.open_socket(http, app.url, cookie):
                        pass
                assert time.monotonic() - started < 10
                return
            async with servers.open_socket(http, app.url, cookie) as sock:
                assert time.monotonic() - started > 11.5  # it really waited for Redis
                frames = await sock.turn("Hello after a slow handshake.")
        assert frames[-1]["agent_response_complete_event"]["status"] == "complete"


@pytest.mark.parametrize(("value", "message"), [("0", "must be at least 1"), ("five", "is not an integer")])
def test_it_names_the_variable_when_the_connect_timeout_is_wrong(value: str, message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "voicechat.serve", "--port", "1"],
        cwd=servers.ROOT,
        env={"DEBUG": "true", "WS_CONNECT_TIMEOUT_SECONDS": value, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "ImproperlyConfigured: WS_CONNECT_TIMEOUT_SECONDS=" in done.stderr and message in done.stderr
    assert "Listening on" not in done.stderr
