"""Providers through the real SDKs against the loopback fakes: audio, receipts, retries, faults, limits."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess
import sys
import time
from contextlib import aclosing
from itertools import pairwise
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from chat.providers import llm_provider, tts_provider
from chat.providers.base import (
    Alignment,
    ChatMessage,
    ProviderError,
    SpeechReceipt,
    SpeechRequest,
    TTSProvider,
    VoiceSettings,
)
from chat.providers.demo import DemoLLM
from chat.providers.elevenlabs import ElevenLabsTTS, _seconds_to_ms, aclose_shared_clients
from chat.providers.espeak import EspeakTTS, WordTimer
from chat.providers.openai import OpenAILLM
from tests.fakes.elevenlabs import FakeElevenLabs, pcm_for
from tests.fakes.openai import FakeOpenAI

VOICE = "JBFqnCBsd6RMkjVDRZzb"
TEXT = "Hello from the fake vendor."
# The HTTP stack under the SDK (ELEVENLABS_HTTP_CLIENT): every ElevenLabs test runs on both.
HTTP_CLIENTS = ("aiohttp", "httpx")
http_client_in_use = HTTP_CLIENTS[0]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fake_elevenlabs" in metafunc.fixturenames or metafunc.function.__name__.endswith("unreachable_server"):
        metafunc.parametrize("http_client", HTTP_CLIENTS)


@pytest.fixture
def http_client() -> str:
    return HTTP_CLIENTS[0]


@pytest.fixture(autouse=True)
def _use_http_client(http_client: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "http_client_in_use", http_client)


def elevenlabs(fake: FakeElevenLabs, **options: Any) -> ElevenLabsTTS:
    settings: dict[str, Any] = {
        "api_key": fake.api_key,
        "base_url": fake.url,
        "voice_id": VOICE,
        "timeout": 1.0,
        "max_retries": 2,
        "retry_base_delay": 0.01,
        "http_client": http_client_in_use,
    }
    return ElevenLabsTTS(**(settings | options))


async def synthesis(
    tts: TTSProvider, request: SpeechRequest, receipt: SpeechReceipt | None = None
) -> list[bytes | Alignment]:
    return [item async for item in tts.synthesize(request, receipt or SpeechReceipt())]


async def speak(tts: TTSProvider, request: SpeechRequest, receipt: SpeechReceipt | None = None) -> bytes:
    return b"".join(item for item in await synthesis(tts, request, receipt) if isinstance(item, bytes))


async def failure(tts: TTSProvider, request: SpeechRequest, received: list[bytes] | None = None) -> ProviderError:
    """The ProviderError a synthesis ends with; PCM yielded before it goes to `received`."""
    with pytest.raises(ProviderError) as caught:
        async for item in tts.synthesize(request, SpeechReceipt()):
            if isinstance(item, bytes):
                (received if received is not None else []).append(item)
    return caught.value


async def until(condition: Any, seconds: float = 1.0) -> bool:
    """Poll a condition on the fake (its counters change on the same loop, between our awaits)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # noqa: ASYNC110 - polling the fake's counters
        await asyncio.sleep(0.005)
    return bool(condition())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- ElevenLabs: the happy path -------------------------------------------------------------------


@pytest.mark.parametrize("timestamps", [True, False])
async def test_it_streams_the_vendors_pcm_and_records_the_receipt(
    fake_elevenlabs: FakeElevenLabs, timestamps: bool
) -> None:
    receipt = SpeechReceipt()
    before = time.monotonic()
    audio = await speak(elevenlabs(fake_elevenlabs, timestamps=timestamps), SpeechRequest(text=TEXT), receipt)
    assert audio == pcm_for(TEXT, 24000)
    (request,) = fake_elevenlabs.tts_requests()
    assert receipt.request_id == request.request_id != ""
    assert receipt.characters == len(TEXT)
    assert receipt.first_byte_at is not None and before <= receipt.first_byte_at <= time.monotonic()


async def test_it_yields_the_vendors_timing_in_ms_before_the_audio_it_times(fake_elevenlabs: FakeElevenLabs) -> None:
    items = await synthesis(elevenlabs(fake_elevenlabs), SpeechRequest(text=TEXT))
    (request,) = fake_elevenlabs.tts_requests()
    assert request.path.endswith("/stream/with-timestamps")
    assert b"".join(i for i in items if isinstance(i, bytes)) == pcm_for(TEXT, 24000) == request.pcm
    alignments = [i for i in items if isinstance(i, Alignment)]
    assert len(alignments) > 1  # streamed line by line, not saved up for the end
    assert "".join(c for a in alignments for c in a.chars) == TEXT
    starts = [t for a in alignments for t in a.char_start_times_ms]
    assert starts == [60 * i for i in range(len(TEXT))]  # the fake's 60 ms per character, from the request start
    assert {d for a in alignments for d in a.char_durations_ms} == {60}
    audio_ms = 0.0  # each alignment comes before the audio of the characters it times
    for item in items:
        if isinstance(item, Alignment):
            assert audio_ms <= item.char_start_times_ms[0] + 1
        else:
            audio_ms += len(item) / 2 / 24000 * 1000
    assert isinstance(items[0], Alignment) and isinstance(items[-1], bytes)


async def test_it_keeps_every_character_when_lines_have_no_alignment(fake_elevenlabs: FakeElevenLabs) -> None:
    fake_elevenlabs.chunk_ms = 20  # a third of a character per line: most lines carry audio but null alignment
    items = await synthesis(elevenlabs(fake_elevenlabs), SpeechRequest(text=TEXT))
    assert sum(isinstance(i, bytes) for i in items) > 2 * sum(isinstance(i, Alignment) for i in items)
    assert "".join(c for i in items if isinstance(i, Alignment) for c in i.chars) == TEXT
    assert b"".join(i for i in items if isinstance(i, bytes)) == pcm_for(TEXT, 24000)


def test_it_reads_the_vendors_alignment_in_milliseconds_with_durations() -> None:
    alignment = _seconds_to_ms(
        {
            "characters": ["H", "i", "!"],
            "character_start_times_seconds": [0.0, 0.1204, 0.25],
            "character_end_times_seconds": [0.12, 0.25, 0.2],  # an end before its start lasts 0 ms
        }
    )
    assert alignment == Alignment(("H", "i", "!"), (0, 120, 250), (120, 130, 0))


@pytest.mark.parametrize(
    "vendor",
    [
        None,
        ["H"],
        {"characters": "Hi", "character_start_times_seconds": [0, 1], "character_end_times_seconds": [1, 2]},
        {"characters": [], "character_start_times_seconds": [], "character_end_times_seconds": []},
        {"characters": ["H", "i"], "character_start_times_seconds": [0], "character_end_times_seconds": [1, 2]},
        {"characters": ["H"], "character_start_times_seconds": ["0.1"], "character_end_times_seconds": [0.2]},
        {"characters": ["H"], "character_start_times_seconds": [None], "character_end_times_seconds": [0.2]},
        {"characters": ["H"], "character_start_times_seconds": [float("nan")], "character_end_times_seconds": [1]},
        {"characters": ["H"], "character_start_times_seconds": [0], "character_end_times_seconds": [float("inf")]},
    ],
    ids=["null", "list", "chars-string", "empty", "lengths", "string-time", "null-time", "nan", "infinity"],
)
def test_it_drops_an_alignment_that_is_not_the_vendors_shape(vendor: Any) -> None:
    assert _seconds_to_ms(vendor) is None


async def test_it_uses_plain_stream_without_timestamps(fake_elevenlabs: FakeElevenLabs) -> None:
    items = await synthesis(elevenlabs(fake_elevenlabs, timestamps=False), SpeechRequest(text=TEXT))
    assert fake_elevenlabs.tts_requests()[0].path.endswith(f"/{VOICE}/stream")
    assert all(isinstance(i, bytes) for i in items) and b"".join(items) == pcm_for(TEXT, 24000)  # type: ignore[arg-type]


async def test_it_fails_on_a_garbled_line_instead_of_dropping_its_audio(fake_elevenlabs: FakeElevenLabs) -> None:
    fake_elevenlabs.fail_next("garbled")
    received: list[bytes] = []
    error = await failure(elevenlabs(fake_elevenlabs), SpeechRequest(text=TEXT), received)
    assert error.code == "tts_stream_failed" and not error.retryable
    assert len(fake_elevenlabs.tts_requests()) == 1
    assert b"".join(received) == pcm_for(TEXT, 24000)[: len(b"".join(received))] != b""
    assert len(received) == 2  # the two good lines before it, nothing after


@pytest.mark.parametrize(
    ("model_id", "honoured"),
    [
        ("eleven_flash_v2_5", True),
        ("eleven_turbo_v2", True),
        ("eleven_multilingual_v2", True),
        ("eleven_v3", False),
        ("some_future_model", False),
    ],
)
def test_it_knows_which_models_turn_break_tags_into_pauses(model_id: str, honoured: bool) -> None:
    assert ElevenLabsTTS(api_key="k", voice_id=VOICE, model_id=model_id).supports_breaks() is honoured
    assert ElevenLabsTTS(api_key="k", voice_id=VOICE, model_id="eleven_v3").supports_breaks(model_id) is honoured
    assert not EspeakTTS().supports_breaks(model_id)


async def test_it_sends_the_key_format_settings_and_prosody_context(fake_elevenlabs: FakeElevenLabs) -> None:
    request = SpeechRequest(
        text=TEXT,
        model_id="eleven_multilingual_v2",
        voice_settings=VoiceSettings(stability=0.3, similarity_boost=0.6, style=0.1, speed=1.1),
        language_code="de",
        previous_text="Before.",
        next_text="After.",
    )
    await speak(elevenlabs(fake_elevenlabs, output_format="pcm_16000"), request)
    (sent,) = fake_elevenlabs.tts_requests()
    assert sent.key_ok and "xi-api-key" not in sent.headers
    assert sent.query["output_format"] == "pcm_16000"
    assert sent.voice_id == VOICE
    assert (sent.body["text"], sent.body["model_id"], sent.body["language_code"]) == (
        TEXT,
        "eleven_multilingual_v2",
        "de",
    )
    assert (sent.body["previous_text"], sent.body["next_text"]) == ("Before.", "After.")
    assert sent.body["voice_settings"]["speed"] == 1.1 and sent.body["voice_settings"]["stability"] == 0.3
    assert sent.pcm == pcm_for(TEXT, 16000)


@pytest.mark.parametrize("timestamps", [True, False])
async def test_it_sends_no_cookie_a_response_set(fake_elevenlabs: FakeElevenLabs, timestamps: bool) -> None:
    # One pool carries every user's requests: a cookie kept from one response would go with all of them.
    fake_elevenlabs.set_cookie = "__cf_bm=one-users-token; Path=/; HttpOnly"
    tts = elevenlabs(fake_elevenlabs, timestamps=timestamps)
    await speak(tts, SpeechRequest(text=TEXT))
    await speak(tts, SpeechRequest(text=TEXT))
    first, second = fake_elevenlabs.tts_requests()
    assert "cookie" not in first.headers and "cookie" not in second.headers


async def test_it_sends_request_ids_instead_of_previous_text(fake_elevenlabs: FakeElevenLabs) -> None:
    ids = ("req_a", "req_b", "req_c", "req_d")
    await speak(
        elevenlabs(fake_elevenlabs), SpeechRequest(text=TEXT, previous_text="Before.", previous_request_ids=ids)
    )
    body = fake_elevenlabs.tts_requests()[0].body
    assert body["previous_request_ids"] == ["req_b", "req_c", "req_d"]
    assert "previous_text" not in body


async def test_it_omits_a_blank_language_code_and_uses_its_defaults(fake_elevenlabs: FakeElevenLabs) -> None:
    await speak(elevenlabs(fake_elevenlabs, model_id="eleven_flash_v2_5"), SpeechRequest(text=TEXT))
    sent = fake_elevenlabs.tts_requests()[0]
    assert "language_code" not in sent.body and "next_text" not in sent.body
    assert sent.body["model_id"] == "eleven_flash_v2_5" and sent.voice_id == VOICE


async def test_it_prefers_the_requests_voice(fake_elevenlabs: FakeElevenLabs) -> None:
    await speak(elevenlabs(fake_elevenlabs), SpeechRequest(text=TEXT, voice_id="21m00Tcm4TlvDq8ikWAM"))
    assert fake_elevenlabs.tts_requests()[0].voice_id == "21m00Tcm4TlvDq8ikWAM"


def test_it_takes_the_sample_rate_from_the_output_format() -> None:
    tts = ElevenLabsTTS(api_key="k", voice_id=VOICE, output_format="pcm_16000")
    assert (tts.sample_rate, tts.output_format) == (16000, "pcm_16000")
    with pytest.raises(ValueError, match="pcm"):
        ElevenLabsTTS(api_key="k", voice_id=VOICE, output_format="mp3_44100_128")


def test_it_never_shows_the_key() -> None:
    tts = ElevenLabsTTS(api_key="sk-secret-123", voice_id=VOICE)
    assert "sk-secret-123" not in repr(tts)
    assert "sk-secret-123" not in repr(OpenAILLM(base_url="http://x", api_key="sk-secret-123", model="m"))


# --- ElevenLabs: refusals are mapped, not retried --------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("invalid_api_key", "tts_unavailable"),
        ("quota_exceeded", "tts_quota_exceeded"),
        ("unprocessable", "tts_invalid_request"),
        ("voice_not_found", "tts_voice_not_found"),
        ("text_too_long", "tts_invalid_request"),
        ("forbidden", "tts_forbidden"),
    ],
)
async def test_it_maps_each_refusal_to_its_error_code(fake_elevenlabs: FakeElevenLabs, fault: str, code: str) -> None:
    fake_elevenlabs.fail_next(fault)
    error = await failure(elevenlabs(fake_elevenlabs), SpeechRequest(text=TEXT))
    assert error.code == code and not error.retryable
    assert fake_elevenlabs.api_key not in error.message
    assert len(fake_elevenlabs.tts_requests()) == 1


async def test_it_explains_a_rejected_key(fake_elevenlabs: FakeElevenLabs) -> None:
    error = await failure(elevenlabs(fake_elevenlabs, api_key="wrong-key"), SpeechRequest(text=TEXT))
    assert (error.code, error.status) == ("tts_unavailable", 401)
    assert "API key was rejected" in error.message and "wrong-key" not in error.message


async def test_it_reports_an_unknown_voice(fake_elevenlabs: FakeElevenLabs) -> None:
    error = await failure(elevenlabs(fake_elevenlabs, voice_id="nope"), SpeechRequest(text=TEXT))
    assert (error.code, error.status) == ("tts_voice_not_found", 404)


async def test_it_passes_on_the_validation_message(fake_elevenlabs: FakeElevenLabs) -> None:
    error = await failure(elevenlabs(fake_elevenlabs), SpeechRequest(text=TEXT, voice_settings=VoiceSettings(speed=2)))
    assert error.code == "tts_invalid_request"
    assert "speed" in error.message


# --- ElevenLabs: retries before the first byte, never after -----------------------------------------


@pytest.mark.parametrize("timestamps", [True, False])
async def test_it_retries_rate_limits_then_speaks(fake_elevenlabs: FakeElevenLabs, timestamps: bool) -> None:
    fake_elevenlabs.fail_next("rate_limited", times=2)
    receipt = SpeechReceipt()
    assert await speak(
        elevenlabs(fake_elevenlabs, timestamps=timestamps), SpeechRequest(text=TEXT), receipt
    ) == pcm_for(TEXT, 24000)
    assert [r.status for r in fake_elevenlabs.tts_requests()] == [429, 429, 200]
    assert receipt.request_id == fake_elevenlabs.tts_requests()[-1].request_id


async def test_it_gives_up_on_rate_limits_after_its_retries(fake_elevenlabs: FakeElevenLabs) -> None:
    fake_elevenlabs.fail_always("rate_limited")
    error = await failure(elevenlabs(fake_elevenlabs, max_retries=3), SpeechRequest(text=TEXT))
    assert (error.code, error.status) == ("rate_limited", 429)
    assert len(fake_elevenlabs.tts_requests()) == 4


async def test_it_waits_as_long_as_retry_after_asks(fake_elevenlabs: FakeElevenLabs) -> None:
    fake_elevenlabs.fail_next("rate_limited", retry_after=0.2)
    await speak(elevenlabs(fake_elevenlabs, retry_base_delay=0.0), SpeechRequest(text=TEXT))
    first, second = fake_elevenlabs.tts_requests()
    assert second.received_at - first.received_at >= 0.19


async def test_it_backs_off_exponentially(fake_elevenlabs: FakeElevenLabs) -> None:
    fake_elevenlabs.fail_always("server_error")
    await failure(elevenlabs(fake_elevenlabs, retry_base_delay=0.05, max_retries=2), SpeechRequest(text=TEXT))
    times = [r.received_at for r in fake_elevenlabs.tts_requests()]
    assert times[1] - times[0] >= 0.05 * 0.8 and times[2] - times[1] >= 0.1 * 0.8


async def test_it_retries_a_server_error(fake_elevenlabs: FakeElevenLabs) -> None:
    fake_elevenlabs.fail_next("server_error")
    assert await speak(elevenlabs(fake_elevenlabs), SpeechRequest(text=TEXT)) == pcm_for(TEXT, 24000)
    assert [r.status for r in fake_elevenlabs.tts_requests()] == [500, 200]


async def test_it_reports_a_server_that_keeps_failing(fake_elevenlabs: FakeElevenLabs) -> None:
    fake_elevenlabs.fail_always("server_error")
    error = await failure(elevenlabs(fake_elevenlabs, max_retries=1), SpeechRequest(text=TEXT))
    assert (error.code, error.status) == ("tts_unavailable", 500)
    assert len(fake_elevenlabs.tts_requests()) == 2


async def test_it_reports_an_unreachable_server(http_client: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    tts = ElevenLabsTTS(api_key="k", base_url=url, voice_id=VOICE, retry_base_delay=0.01, http_client=http_client)
    try:
        error = await failure(tts, SpeechRequest(text=TEXT))
    finally:
        await aclose_shared_clients()
    assert error.code == "tts_unavailable" and "cannot be reached" in error.message


def test_it_closes_the_pool_of_a_loop_that_stopped_without_closing_it() -> None:
    """Daphne's loop stops without closing our pool; at exit it is closed, not reported as leaked."""
    script = (
        "import asyncio, django; django.setup()\n"
        "from chat.providers.elevenlabs import _shared_client\n"
        "async def use():\n"
        "    _shared_client('http://127.0.0.1:9', http_client='aiohttp')\n"
        "asyncio.new_event_loop().run_until_complete(use())\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "voicechat.settings", "DEBUG": "true"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Unclosed" not in done.stderr


def test_it_refuses_an_unknown_http_client() -> None:
    with pytest.raises(ValueError, match="aiohttp or httpx"):
        ElevenLabsTTS(api_key="k", voice_id=VOICE, http_client="requests")


@pytest.mark.parametrize("timestamps", [True, False])
async def test_it_fails_a_stream_reset_after_the_first_bytes_without_retrying(
    fake_elevenlabs: FakeElevenLabs, timestamps: bool
) -> None:
    fake_elevenlabs.fail_next("reset")
    received: list[bytes] = []
    error = await failure(elevenlabs(fake_elevenlabs, timestamps=timestamps), SpeechRequest(text=TEXT), received)
    assert error.code == "tts_stream_failed"
    (request,) = fake_elevenlabs.tts_requests()
    assert received and b"".join(received) == request.pcm


@pytest.mark.parametrize("timestamps", [True, False])
async def test_it_times_out_a_stalled_stream(fake_elevenlabs: FakeElevenLabs, timestamps: bool) -> None:
    fake_elevenlabs.fail_next("stall")
    received: list[bytes] = []
    started = time.monotonic()
    error = await failure(
        elevenlabs(fake_elevenlabs, timestamps=timestamps, timeout=0.3), SpeechRequest(text=TEXT), received
    )
    assert error.code == "tts_timeout"
    assert 0.25 <= time.monotonic() - started < 1.5
    assert received and len(fake_elevenlabs.tts_requests()) == 1
    assert await until(lambda: fake_elevenlabs.open_streams == 0)


@pytest.mark.parametrize("timestamps", [True, False])
async def test_it_retries_a_first_byte_that_never_comes(fake_elevenlabs: FakeElevenLabs, timestamps: bool) -> None:
    fake_elevenlabs.first_byte_ms = 1000
    error = await failure(
        elevenlabs(fake_elevenlabs, timestamps=timestamps, timeout=0.2, max_retries=1), SpeechRequest(text=TEXT)
    )
    assert error.code == "tts_timeout"
    assert len(fake_elevenlabs.tts_requests()) == 2


# --- ElevenLabs: nothing outlives its caller ---------------------------------------------------------


@pytest.mark.parametrize("timestamps", [True, False])
async def test_it_closes_the_upstream_stream_when_closed_early(
    fake_elevenlabs: FakeElevenLabs, timestamps: bool
) -> None:
    fake_elevenlabs.realtime = True
    async with aclosing(
        elevenlabs(fake_elevenlabs, timestamps=timestamps).synthesize(SpeechRequest(text=TEXT * 5), SpeechReceipt())
    ) as pcm:
        await anext(pcm)
        assert fake_elevenlabs.open_streams == 1
    assert await until(lambda: fake_elevenlabs.open_streams == 0, 0.2)
    assert fake_elevenlabs.tts_requests()[0].disconnected_early


@pytest.mark.parametrize("timestamps", [True, False])
async def test_it_closes_the_upstream_stream_when_cancelled(fake_elevenlabs: FakeElevenLabs, timestamps: bool) -> None:
    fake_elevenlabs.realtime = True
    first = asyncio.Event()

    async def listen() -> None:
        async for _ in elevenlabs(fake_elevenlabs, timestamps=timestamps).synthesize(
            SpeechRequest(text=TEXT * 5), SpeechReceipt()
        ):
            first.set()

    task = asyncio.create_task(listen())
    await asyncio.wait_for(first.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await until(lambda: fake_elevenlabs.open_streams == 0, 0.2)


# --- eSpeak NG ------------------------------------------------------------------------------------


def audible(pcm: bytes) -> bool:
    samples = memoryview(pcm).cast("h")
    return max(abs(s) for s in samples) > 1000


async def test_it_speaks_offline_with_espeak() -> None:
    tts = EspeakTTS()
    receipt = SpeechReceipt()
    short = await speak(tts, SpeechRequest(text="Hello world."), receipt)
    long = await speak(tts, SpeechRequest(text="Hello world. " * 4))
    assert tts.sample_rate == 22050 and tts.output_format == "pcm_22050"
    assert len(short) % 2 == 0 and audible(short)
    assert 0.4 < len(short) / 2 / 22050 < 3
    assert 2.5 < len(long) / len(short) < 5.5  # duration follows the text
    assert (receipt.request_id, receipt.characters) == ("", 0) and receipt.first_byte_at is not None


async def test_it_speaks_faster_when_asked_and_in_the_requested_language() -> None:
    text = "This sentence is read at two different speeds."
    normal = await speak(EspeakTTS(), SpeechRequest(text=text))
    fast = await speak(EspeakTTS(), SpeechRequest(text=text, voice_settings=VoiceSettings(speed=1.5)))
    assert len(fast) < 0.85 * len(normal)
    assert audible(await speak(EspeakTTS(), SpeechRequest(text="Guten Tag.", language_code="de")))
    assert audible(await speak(EspeakTTS(voice="no-such-voice"), SpeechRequest(text="Still speaks.")))


async def test_it_speaks_with_the_espeak_voice_a_request_names() -> None:
    text = "Guten Tag, wie geht es Ihnen heute?"
    german = await speak(EspeakTTS(), SpeechRequest(text=text, voice_id="de"))
    unknown = await speak(EspeakTTS(), SpeechRequest(text=text, voice_id=VOICE))  # another vendor's id
    default = await speak(EspeakTTS(), SpeechRequest(text=text))
    # eSpeak's output varies by a few samples from run to run; a different voice changes the length by ~10 %.
    assert audible(german) and abs(len(german) - len(default)) > 0.05 * len(default)
    assert abs(len(unknown) - len(default)) < 0.01 * len(default)


async def test_it_keeps_the_event_loop_free_while_espeak_works() -> None:
    ticks: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        while not done.is_set():
            ticks.append(time.monotonic())
            await asyncio.sleep(0.005)

    # eSpeak runs ~100x faster than real time: this is ~0.1 s of work, long enough to see the loop tick.
    text = "A longer sentence to say. " * 100
    ticker = asyncio.create_task(tick())
    chunks = [chunk async for chunk in EspeakTTS().synthesize(SpeechRequest(text=text), SpeechReceipt())]
    done.set()
    await ticker
    assert len(chunks) > 3  # streamed as produced, not in one piece
    assert len(ticks) > 5 and max(b - a for a, b in pairwise(ticks)) < 0.2


async def test_it_stops_espeak_early_when_closed() -> None:
    tts = EspeakTTS()
    text = "This is a very long text that would take a while to synthesise completely. " * 1500  # ~2 s of work
    started = time.monotonic()
    async with aclosing(tts.synthesize(SpeechRequest(text=text), SpeechReceipt())) as pcm:
        await anext(pcm)
    assert time.monotonic() - started < 1.0
    assert audible(await speak(tts, SpeechRequest(text="Ready again.")))  # the library lock was released


async def test_it_stops_espeak_when_the_task_is_cancelled() -> None:
    first = asyncio.Event()

    async def listen() -> None:
        async for _ in EspeakTTS().synthesize(SpeechRequest(text="Cancel me soon, please. " * 3000), SpeechReceipt()):
            first.set()

    task = asyncio.create_task(listen())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 0.5


def pieces(items: list[bytes | Alignment], rate: int) -> list[tuple[Alignment, float, float]]:
    """Each alignment with the ms of audio yielded before it and the ms its own audio lasts."""
    out: list[tuple[Alignment, float, float]] = []
    heard = 0.0
    for item in items:
        if isinstance(item, Alignment):
            out.append((item, heard, 0.0))
        else:
            ms = len(item) / 2 / rate * 1000
            heard += ms
            if out:
                out[-1] = (out[-1][0], out[-1][1], out[-1][2] + ms)
    return out


async def test_it_times_each_espeak_word_before_its_audio() -> None:
    text = "Hello world. It costs $29.99, naïve café!  Done"
    items = await synthesis(EspeakTTS(), SpeechRequest(text=text))
    timed = pieces(items, 22050)
    assert "".join(c for a, _, _ in timed for c in a.chars) == text  # every character once, in order
    assert ["".join(a.chars) for a, _, _ in timed if a.chars[0] in "nc"] == ["costs ", "naïve ", "café!  "]
    for alignment, before, own in timed:  # a word's time starts with its own audio, which follows it
        assert abs(alignment.char_start_times_ms[0] - before) <= 1
        assert alignment.char_start_times_ms[-1] + alignment.char_durations_ms[-1] <= before + own + 1
    starts = [t for a, _, _ in timed for t in a.char_start_times_ms]
    assert starts == sorted(starts) and starts[-1] > 4000


async def test_it_ends_an_espeak_word_where_its_sound_ends_not_at_the_pause() -> None:
    items = await synthesis(EspeakTTS(), SpeechRequest(text="Look here. Then there."))
    by_text = {"".join(a.chars): a for a, _, _ in pieces(items, 22050)}
    here, then = by_text["here. "], by_text["Then "]
    word_end = here.char_start_times_ms[3] + here.char_durations_ms[3]
    assert then.char_start_times_ms[0] - word_end > 150  # the sentence pause is not part of "here"
    assert here.char_durations_ms[4:] == (0, 0) and here.char_start_times_ms[4] == word_end  # ". " take no time


def test_it_cuts_pcm_at_word_events_and_trims_the_silence_after_each_word() -> None:
    rate = 1000  # 1 sample per ms keeps the arithmetic visible
    tone, hush = struct.pack("<4h", 3000, -3000, 3000, -3000) * 25, bytes(2 * 100)  # 100 ms each
    timer = WordTimer("“Hi, you.", rate)
    timer.audio(hush[:40] + tone + hush)  # 20 ms lead-in, "Hi" sounds 100 ms, then 100 ms pause
    first = timer.word(1, 20)  # “ before the first word: no time of its own
    second = timer.word(5, 220)
    timer.audio(tone)
    last = timer.finish()
    assert [type(i) for i in first + second + last] == [Alignment, bytes, Alignment, bytes, Alignment, bytes]
    opening, hi, you = (i for i in first + second + last if isinstance(i, Alignment))
    assert (opening.chars, opening.char_start_times_ms, opening.char_durations_ms) == (("“",), (0,), (0,))
    assert hi.chars == ("H", "i", ",", " ") and hi.char_start_times_ms == (20, 70, 120, 120)
    assert hi.char_durations_ms == (50, 50, 0, 0)
    assert you.char_start_times_ms == (220, 253, 286, 320) and you.char_durations_ms == (33, 33, 34, 0)
    assert b"".join(i for i in first + second + last if isinstance(i, bytes)) == hush[:40] + tone + hush + tone


# --- demo LLM ------------------------------------------------------------------------------------


async def reply(llm: Any, *messages: ChatMessage) -> list[str]:
    return [token async for token in llm.stream(list(messages))]


@pytest.mark.parametrize("question", ["Hello", "Tell me about streaming speech.", "Wie geht's?", "x", ""])
async def test_it_streams_the_same_markdown_reply_for_the_same_question(question: str) -> None:
    tokens = await reply(DemoLLM(tokens_per_second=0), ChatMessage("user", question))
    text = "".join(tokens)
    assert (
        text
        == DemoLLM.reply_for(question)
        == "".join(await reply(DemoLLM(tokens_per_second=0), ChatMessage("user", question)))
    )
    assert text.lstrip().startswith("#")
    assert "**" in text and "](https://" in text
    assert "\n- " in text or "\n1. " in text
    assert "```" in text or "~~~" in text
    assert 60 <= len(text.split()) <= 130
    assert any(t in ("``", "**") for t in tokens)  # markdown syntax split across tokens


async def test_it_answers_the_last_user_message_and_echoes_it() -> None:
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", "old"), ChatMessage("assistant", "hi")]
    text = "".join(await reply(DemoLLM(tokens_per_second=0), *messages, ChatMessage("user", "Bananas please")))
    assert text == DemoLLM.reply_for("Bananas please") and "Bananas please" in text
    assert len({DemoLLM.reply_for(q).splitlines()[0] for q in ("a", "b", "c", "d", "e", "f")}) > 1


async def test_it_paces_the_demo_tokens() -> None:
    question = ChatMessage("user", "Pace me")
    count = len(DemoLLM.tokens(DemoLLM.reply_for("Pace me")))
    started = time.monotonic()
    await reply(DemoLLM(tokens_per_second=1000), question)
    assert time.monotonic() - started >= 0.9 * count / 1000
    started = time.monotonic()
    await reply(DemoLLM(tokens_per_second=0), question)
    assert time.monotonic() - started < 0.05


# --- OpenAI-compatible LLM ---------------------------------------------------------------------------


def openai_llm(fake: FakeOpenAI, **options: Any) -> OpenAILLM:
    settings: dict[str, Any] = {
        "base_url": fake.url + "/v1",
        "api_key": fake.api_key,
        "model": "fake-1",
        "timeout": 2.0,
    }
    return OpenAILLM(**(settings | {"max_retries": 0} | options))


async def test_it_streams_from_an_openai_compatible_server(fake_openai: FakeOpenAI) -> None:
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")]
    tokens = await reply(openai_llm(fake_openai), *messages)
    assert tokens == fake_openai.tokens() and "".join(tokens) == fake_openai.reply
    (sent,) = fake_openai.requests
    assert sent["model"] == "fake-1" and sent["stream"] is True
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


@pytest.mark.parametrize("fault", ["unauthorized", "server_error", "rate_limited"])
async def test_it_maps_llm_refusals_to_llm_unavailable(fake_openai: FakeOpenAI, fault: str) -> None:
    fake_openai.fail_next(fault)
    with pytest.raises(ProviderError) as caught:
        await reply(openai_llm(fake_openai), ChatMessage("user", "Hi"))
    assert caught.value.code == "llm_unavailable" and fake_openai.api_key not in caught.value.message


async def test_it_explains_a_rejected_llm_key(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(ProviderError) as caught:
        await reply(openai_llm(fake_openai, api_key="sk-wrong"), ChatMessage("user", "Hi"))
    assert (caught.value.code, caught.value.status) == ("llm_unavailable", 401)
    assert "OPENAI_API_KEY" in caught.value.message and "sk-wrong" not in caught.value.message


async def test_it_reports_an_llm_stream_that_breaks_off(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next("disconnect")
    received: list[str] = []
    with pytest.raises(ProviderError) as caught:
        async for token in openai_llm(fake_openai).stream([ChatMessage("user", "Hi")]):
            received.append(token)
    assert caught.value.code == "llm_unavailable"
    assert received == fake_openai.tokens()[:2]


async def test_it_reports_an_unreachable_llm() -> None:
    llm = OpenAILLM(base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="", model="m", timeout=2, max_retries=0)
    with pytest.raises(ProviderError) as caught:
        await reply(llm, ChatMessage("user", "Hi"))
    assert caught.value.code == "llm_unavailable" and "OPENAI_BASE_URL" in caught.value.message


async def test_it_closes_the_llm_stream_when_closed_early(fake_openai: FakeOpenAI) -> None:
    fake_openai.token_delay = 0.05
    async with aclosing(openai_llm(fake_openai).stream([ChatMessage("user", "Hi")])) as tokens:
        await anext(tokens)
    assert await until(lambda: fake_openai.open_streams == 0, 0.3)


# --- the loader ------------------------------------------------------------------------------------


def test_it_loads_providers_by_alias(settings) -> None:
    settings.LLM_PROVIDERS = {"demo": {"BACKEND": "chat.providers.demo.DemoLLM", "OPTIONS": {"tokens_per_second": 5}}}
    llm = llm_provider("demo")
    assert isinstance(llm, DemoLLM) and llm is not llm_provider("demo")
    assert isinstance(tts_provider("espeak"), EspeakTTS)


async def test_it_loads_elevenlabs_from_the_settings(elevenlabs_settings: FakeElevenLabs) -> None:
    tts = tts_provider()
    assert isinstance(tts, ElevenLabsTTS) and tts.sample_rate == 24000
    assert await speak(tts, SpeechRequest(text=TEXT)) == pcm_for(TEXT, 24000)


def test_it_loads_the_openai_provider_from_the_settings(settings) -> None:
    assert isinstance(llm_provider("openai"), OpenAILLM)


@pytest.mark.parametrize(
    "backend",
    [
        {"BACKEND": "chat.providers.nowhere.Nothing"},
        {"BACKEND": "chat.providers.base.ChatMessage"},
        {"BACKEND": "chat.providers.demo.DemoLLM", "OPTIONS": {"no_such_option": 1}},
    ],
)
def test_it_refuses_a_broken_provider_configuration(settings, backend: dict[str, Any]) -> None:
    settings.LLM_PROVIDERS = {"broken": backend}
    with pytest.raises(ImproperlyConfigured, match="broken"):
        llm_provider("broken")
    with pytest.raises(ImproperlyConfigured, match="not configured"):
        tts_provider("missing")
