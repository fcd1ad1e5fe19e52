"""`voicechat.serve`, the one launcher of both servers: the flags that keep Uvicorn behaving as Daphne does."""

from __future__ import annotations

import re
import subprocess
import sys
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
