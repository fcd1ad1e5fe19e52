"""The loopback vendor fakes keep the vendors' contracts, as seen by the real SDKs and by plain HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from elevenlabs import AsyncElevenLabs

from tests.fakes.elevenlabs import API_KEY, FakeElevenLabs, pcm_for
from tests.fakes.openai import FakeOpenAI

VOICE = "JBFqnCBsd6RMkjVDRZzb"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def sdk(fake_elevenlabs: FakeElevenLabs) -> AsyncIterator[AsyncElevenLabs]:
    """The real SDK pointed at the fake, on an HTTP client closed after the test."""
    async with httpx.AsyncClient() as http:
        yield AsyncElevenLabs(api_key=API_KEY, base_url=fake_elevenlabs.url, timeout=5, httpx_client=http)


async def post(
    fake: FakeElevenLabs, body: Any, *, output_format: str = "pcm_24000", key: str = API_KEY
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=fake.url) as http:
        return await http.post(
            f"/v1/text-to-speech/{VOICE}/stream",
            params={"output_format": output_format},
            headers={"xi-api-key": key},
            json=body,
        )


# --- audio ---------------------------------------------------------------------------------------


def test_it_makes_deterministic_audible_pcm_whose_length_follows_the_text() -> None:
    one, again, other = pcm_for("Hello.", 24000), pcm_for("Hello.", 24000), pcm_for("Hello!", 24000)
    assert one == again and one != other
    assert len(one) == 2 * round(6 * 0.060 * 24000)
    assert len(pcm_for("Hello." * 2, 16000)) == 2 * len(pcm_for("Hello.", 16000))
    samples = memoryview(one).cast("h")
    assert max(samples) > 7000 and abs(samples[0]) < 1000 and abs(samples[-1]) < 1000  # faded ends


async def test_it_streams_chunked_pcm_with_the_vendors_headers(fake_elevenlabs: FakeElevenLabs) -> None:
    fake_elevenlabs.chunk_ms = 20
    response = await post(fake_elevenlabs, {"text": "Chunk me."})
    assert response.status_code == 200
    assert response.content == pcm_for("Chunk me.", 24000)
    assert response.headers["character-cost"] == "9" and response.headers["request-id"] == "req_1"
    (request,) = fake_elevenlabs.requests
    assert len(request.sends) == -(-len(response.content) // 960)  # 20 ms of 24 kHz s16le per chunk
    assert request.finished and not request.disconnected_early and fake_elevenlabs.open_streams == 0


async def test_it_answers_mp3_formats_too(fake_elevenlabs: FakeElevenLabs) -> None:
    response = await post(fake_elevenlabs, {"text": "Hi."}, output_format="mp3_44100_128")
    assert response.status_code == 200 and response.headers["content-type"] == "audio/mpeg"


async def test_it_delays_the_first_byte_and_paces_in_real_time(fake_elevenlabs: FakeElevenLabs) -> None:
    fake_elevenlabs.first_byte_ms, fake_elevenlabs.realtime, fake_elevenlabs.ms_per_char = 80, True, 20
    await post(fake_elevenlabs, {"text": "Ten chars."})  # 200 ms of audio in 50 ms chunks
    (request,) = fake_elevenlabs.requests
    times = [t for t, _ in request.sends]
    assert times[0] - request.received_at >= 0.075
    assert times[-1] - times[0] >= 0.14  # the last of four chunks leaves 150 ms after the first


async def test_it_streams_timestamps_as_ndjson_through_the_sdk(sdk: AsyncElevenLabs) -> None:
    text = "Timestamps for every character."
    stream = sdk.text_to_speech.stream_with_timestamps(VOICE, text=text, output_format="pcm_16000")
    chunks = [chunk async for chunk in stream]
    assert b"".join(base64.b64decode(c.audio_base_64 or "") for c in chunks) == pcm_for(text, 16000)
    characters = [ch for c in chunks if c.alignment for ch in c.alignment.characters or []]
    assert "".join(characters) == text


async def timestamped(fake: FakeElevenLabs, text: str) -> tuple[httpx.Response, list[dict[str, Any]]]:
    async with httpx.AsyncClient(base_url=fake.url) as http:
        response = await http.post(
            f"/v1/text-to-speech/{VOICE}/stream/with-timestamps",
            params={"output_format": "pcm_24000"},
            headers={"xi-api-key": API_KEY},
            json={"text": text},
        )
    return response, [json.loads(line) for line in response.text.splitlines()]


async def test_it_spreads_the_alignment_over_lines_like_the_vendor(fake_elevenlabs: FakeElevenLabs) -> None:
    text = "Alignment per line."
    response, lines = await timestamped(fake_elevenlabs, text)
    assert response.headers["request-id"] == "req_1" and response.headers["character-cost"] == str(len(text))
    assert response.headers["content-type"].startswith("application/json")
    assert b"".join(base64.b64decode(line["audio_base64"]) for line in lines) == pcm_for(text, 24000)
    assert {len(base64.b64decode(line["audio_base64"])) for line in lines[:-1]} == {2400}  # 50 ms each
    aligned = [line["alignment"] for line in lines if line["alignment"]]
    assert len(aligned) < len(lines)  # 60 ms characters, 50 ms lines: some lines start no character
    assert all(line["normalized_alignment"] == line["alignment"] for line in lines)
    assert "".join(c for a in aligned for c in a["characters"]) == text
    starts = [t for a in aligned for t in a["character_start_times_seconds"]]
    assert starts == [round(0.06 * i, 3) for i in range(len(text))]  # from the request's start, not the line's
    (request,) = fake_elevenlabs.tts_requests()
    assert [size for _, size in request.sends] == [len(base64.b64decode(line["audio_base64"])) for line in lines]


async def test_it_paces_timestamped_lines_in_real_time(fake_elevenlabs: FakeElevenLabs) -> None:
    fake_elevenlabs.realtime, fake_elevenlabs.ms_per_char = True, 20
    await timestamped(fake_elevenlabs, "Ten chars.")  # 200 ms of audio in four 50 ms lines
    times = [t for t, _ in fake_elevenlabs.tts_requests()[0].sends]
    assert len(times) == 4 and times[-1] - times[0] >= 0.14


async def test_it_garbles_a_line_which_the_sdk_drops_without_a_word(
    fake_elevenlabs: FakeElevenLabs, sdk: AsyncElevenLabs
) -> None:
    fake_elevenlabs.fail_next("garbled")
    text = "A line goes missing here."
    chunks = [c async for c in sdk.text_to_speech.stream_with_timestamps(VOICE, text=text, output_format="pcm_24000")]
    # The pitfall the provider guards against: the SDK yields every good line and silently skips the bad one.
    assert b"".join(base64.b64decode(c.audio_base_64) for c in chunks) == pcm_for(text, 24000)
    assert len(chunks) == len(fake_elevenlabs.tts_requests()[0].sends) - 1  # the garbled line was sent, then lost


# --- catalogue endpoints ---------------------------------------------------------------------------


async def test_it_lists_voices_and_models_for_the_sdk(fake_elevenlabs: FakeElevenLabs, sdk: AsyncElevenLabs) -> None:
    client = sdk
    assert VOICE in [v.voice_id for v in (await client.voices.get_all()).voices]
    page = await client.voices.search(page_size=2)
    assert (len(page.voices), page.has_more, page.total_count) == (2, True, len(fake_elevenlabs.voices))
    rest = await client.voices.search(page_size=10, next_page_token=page.next_page_token)
    assert not rest.has_more and len(page.voices) + len(rest.voices) == len(fake_elevenlabs.voices)
    models = await client.models.list()
    flash = next(m for m in models if m.model_id == "eleven_flash_v2_5")
    assert flash.can_do_text_to_speech and flash.maximum_text_length_per_request == 40000


# --- refusals --------------------------------------------------------------------------------------


async def test_it_refuses_a_wrong_key_like_the_vendor(fake_elevenlabs: FakeElevenLabs) -> None:
    response = await post(fake_elevenlabs, {"text": "Hi."}, key="wrong")
    assert response.status_code == 401
    assert response.json()["detail"]["status"] == "invalid_api_key"
    assert not fake_elevenlabs.requests[0].key_ok


@pytest.mark.parametrize(
    ("body", "output_format", "field"),
    [
        ({}, "pcm_24000", "text"),
        ({"text": "Hi."}, "wav_24000", "output_format"),
        ({"text": "Hi.", "voice_settings": {"stability": 1.5}}, "pcm_24000", "voice_settings"),
        ({"text": "Hi.", "voice_settings": {"speed": 0.2}}, "pcm_24000", "voice_settings"),
        ({"text": "Hi.", "previous_request_ids": ["a", "b", "c", "d"]}, "pcm_24000", "previous_request_ids"),
    ],
)
async def test_it_validates_like_fastapi(
    fake_elevenlabs: FakeElevenLabs, body: Any, output_format: str, field: str
) -> None:
    response = await post(fake_elevenlabs, body, output_format=output_format)
    assert response.status_code == 422
    assert [d["loc"][1] for d in response.json()["detail"]] == [field]


async def test_it_refuses_an_unknown_voice(fake_elevenlabs: FakeElevenLabs) -> None:
    async with httpx.AsyncClient(base_url=fake_elevenlabs.url) as http:
        response = await http.post(
            "/v1/text-to-speech/nobody/stream", headers={"xi-api-key": API_KEY}, json={"text": "x"}
        )
    assert response.status_code == 404 and response.json()["detail"]["status"] == "voice_not_found"


async def test_it_consumes_queued_faults_in_order(fake_elevenlabs: FakeElevenLabs) -> None:
    fake_elevenlabs.fail_next("rate_limited", retry_after=1.5)
    fake_elevenlabs.fail_next("server_error")
    limited, failed, fine = [await post(fake_elevenlabs, {"text": "Hi."}) for _ in range(3)]
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "1.5")
    assert limited.json()["detail"]["status"] == "too_many_concurrent_requests"
    assert failed.status_code == 500 and failed.json()["status"] == "internal_server_error"  # no detail wrapper
    assert fine.status_code == 200
    with pytest.raises(ValueError, match="unknown fault"):
        fake_elevenlabs.fail_next("gremlins")


async def test_it_fails_always_until_cleared(fake_elevenlabs: FakeElevenLabs) -> None:
    fake_elevenlabs.fail_always("quota_exceeded")
    statuses = [(await post(fake_elevenlabs, {"text": "Hi."})).status_code for _ in range(3)]
    fake_elevenlabs.clear_faults()
    assert statuses == [401, 401, 401]
    assert (await post(fake_elevenlabs, {"text": "Hi."})).status_code == 200


async def test_it_cuts_a_stream_after_some_audio(fake_elevenlabs: FakeElevenLabs) -> None:
    fake_elevenlabs.fail_next("reset")
    with pytest.raises(httpx.RemoteProtocolError):
        await post(fake_elevenlabs, {"text": "A sentence long enough for several chunks."})
    (request,) = fake_elevenlabs.requests
    assert len(request.sends) == 2 and not request.finished and fake_elevenlabs.open_streams == 0


async def test_it_stalls_until_the_client_gives_up(fake_elevenlabs: FakeElevenLabs) -> None:
    fake_elevenlabs.fail_next("stall")
    async with httpx.AsyncClient(base_url=fake_elevenlabs.url, timeout=0.2) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(
                f"/v1/text-to-speech/{VOICE}/stream?output_format=pcm_24000",
                headers={"xi-api-key": API_KEY},
                json={"text": "A sentence long enough for several chunks."},
            )
    started = time.monotonic()
    while fake_elevenlabs.open_streams and time.monotonic() - started < 1:  # noqa: ASYNC110 - polling the fake
        await asyncio.sleep(0.01)
    assert fake_elevenlabs.open_streams == 0 and fake_elevenlabs.peak_streams == 1


# --- thread and subprocess modes --------------------------------------------------------------------


def test_it_runs_in_a_thread_with_http_control(fake_elevenlabs_thread: FakeElevenLabs) -> None:
    with httpx.Client(base_url=fake_elevenlabs_thread.url) as http:
        assert http.post("/_fake/faults", json={"kind": "server_error", "times": 1}).json()["queued"] == [
            "server_error"
        ]
        tts = f"/v1/text-to-speech/{VOICE}/stream?output_format=pcm_16000"
        assert http.post(tts, headers={"xi-api-key": API_KEY}, json={"text": "Hi."}).status_code == 500
        audio = http.post(tts, headers={"xi-api-key": API_KEY}, json={"text": "Hi."}).content
        assert audio == pcm_for("Hi.", 16000)
        rows = http.get("/_fake/requests").json()
        assert [r["status"] for r in rows] == [500, 200] and rows[1]["pcm_bytes"] == len(audio)
        assert "xi-api-key" not in json.dumps(rows) and API_KEY not in json.dumps(rows)
        assert http.get("/_fake/sends").json()[1]["sends"]
        assert http.get("/_fake/state").json() == {"open_streams": 0, "peak_streams": 1, "requests": 2}
        assert http.post("/_fake/faults", json={"kind": "gremlins"}).status_code == 400
        http.post("/_fake/reset")
        assert http.get("/_fake/requests").json() == []


def test_it_runs_as_a_process_and_logs_every_send(tmp_path: Path) -> None:
    log = tmp_path / "sends.jsonl"
    command = [
        sys.executable,
        "-m",
        "tests.fakes.elevenlabs",
        "--port",
        "0",
        "--first-byte-ms",
        "0",
        "--log-sends",
        str(log),
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url) as http:
            response = http.post(f"/v1/text-to-speech/{VOICE}/stream?output_format=pcm_24000",
                                 headers={"xi-api-key": API_KEY}, json={"text": "From a process."})  # fmt: skip
            assert response.content == pcm_for("From a process.", 24000)
            sends = http.get("/_fake/sends").json()[0]["sends"]
    finally:
        process.terminate()
        process.communicate(timeout=10)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["bytes"] for line in lines] == [size for _, size in sends]
    assert {line["request_id"] for line in lines} == {"req_1"}


# --- the fake OpenAI --------------------------------------------------------------------------------


async def test_it_streams_sse_chunks_and_done(fake_openai: FakeOpenAI) -> None:
    async with httpx.AsyncClient(base_url=fake_openai.url) as http:
        response = await http.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {fake_openai.api_key}"},
            json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "Hi"}]},
        )
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert response.headers["content-type"].startswith("text/event-stream") and events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == fake_openai.reply
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_it_answers_without_streaming_and_checks_the_key(fake_openai: FakeOpenAI) -> None:
    client = openai.AsyncOpenAI(base_url=fake_openai.url + "/v1", api_key=fake_openai.api_key, max_retries=0)
    completion = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}])
    assert completion.choices[0].message.content == fake_openai.reply
    wrong = openai.AsyncOpenAI(base_url=fake_openai.url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await wrong.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}])
    await client.close()
    await wrong.close()


def test_it_runs_the_fake_openai_in_a_thread(fake_openai_thread: FakeOpenAI) -> None:
    fake_openai_thread.reply = "Threaded reply."
    client = openai.OpenAI(base_url=fake_openai_thread.url + "/v1", api_key=fake_openai_thread.api_key, max_retries=0)
    stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Threaded reply."
    client.close()
