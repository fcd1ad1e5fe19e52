"""A whole turn through a real server process (Daphne, and the Uvicorn option), a real socket and the real
ElevenLabs SDK (against the fake)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests import servers
from tests.fakes.elevenlabs import FakeElevenLabs

pytestmark = pytest.mark.daphne


@pytest.fixture(params=["daphne", "uvicorn"])
def daphne_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, FakeElevenLabs]]:
    """The app under each server, TTS through the fake; yields (base url, session cookie, fake)."""
    fake = FakeElevenLabs.start_in_thread()
    overrides = {"TTS_BACKEND": "elevenlabs", "ELEVENLABS_API_KEY": fake.api_key, "ELEVENLABS_BASE_URL": fake.url}
    overrides["ASGI_SERVER"] = request.param
    try:
        with servers.daphne_app(tmp_path, DEMO_LLM_TOKENS_PER_SECOND="400", **overrides) as app:
            yield app.url, app.session_cookie("dora"), fake
    finally:
        fake.stop()


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
