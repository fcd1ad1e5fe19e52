"""A whole turn through a real Daphne process, a real socket and the real ElevenLabs SDK (against the fake)."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.elevenlabs import FakeElevenLabs

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.daphne


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


@pytest.fixture
def daphne_app(tmp_path: Path) -> Iterator[tuple[str, str, FakeElevenLabs]]:
    """Daphne serving the app on a temp SQLite file, TTS through the fake; yields (base url, cookie, fake)."""
    fake = FakeElevenLabs.start_in_thread()
    port = free_port()
    env = {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "MEDIA_ROOT": str(tmp_path / "media"),
        "REDIS_URL": "",
        "LLM_BACKEND": "demo",
        "DEMO_LLM_TOKENS_PER_SECOND": "400",
        "TTS_BACKEND": "elevenlabs",
        "ELEVENLABS_API_KEY": fake.api_key,
        "ELEVENLABS_BASE_URL": fake.url,
    }
    manage(env, "migrate", "--noinput", "-v0")
    script = (
        "from django.contrib.auth import get_user_model; from tests.wsclient import session_cookie_for;"
        "print(session_cookie_for(get_user_model().objects.create_user('dora', password='x-long-password-1')))"
    )
    cookie = manage(env, "shell", "-c", script).strip().splitlines()[-1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1", "-p", str(port), "voicechat.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}", cookie, fake
    finally:
        server.terminate()
        server.wait(timeout=10)
        fake.stop()


def wait_for_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"Daphne did not listen on {port}")


async def test_it_speaks_a_whole_turn_over_a_real_socket(daphne_app: tuple[str, str, FakeElevenLabs]) -> None:
    base, cookie, fake = daphne_app
    headers = {"Cookie": cookie, "Origin": base}
    frames = []
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{base.replace('http', 'ws')}/v1/convai/conversation", headers=headers) as ws,
    ):
        first = await ws.receive_json(timeout=10)
        assert first["type"] == "conversation_initiation_metadata"
        await ws.send_json({"type": "user_message", "text": "Tell me about streaming speech."})
        while True:
            frame = await ws.receive_json(timeout=20)
            frames.append(frame)
            if frame["type"] == "agent_response_complete":
                break
        types = [f["type"] for f in frames]
        assert types[0] == "user_transcript"
        assert types.index("audio") < types.index("agent_response")
        audio = b"".join(base64.b64decode(f["audio_event"]["audio_base_64"]) for f in frames if f["type"] == "audio")
        assert audio == b"".join(fake.sent_pcm())
        complete = frames[-1]["agent_response_complete_event"]
        assert complete["status"] == "complete" and complete["audio_status"] == "complete"
        async with http.get(base + complete["audio_url"], headers={"Cookie": cookie, "Range": "bytes=0-43"}) as resp:
            assert resp.status == 206
            header = await resp.read()
        assert header[:4] == b"RIFF" and header[8:12] == b"WAVE"
        assert json.loads(json.dumps(complete["metrics"]))["tts_characters"] > 0
