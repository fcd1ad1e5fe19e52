"""The vendor's TTS WebSocket as a second transport: the provider, the streaming relay and the turn, against
the loopback fake that speaks `stream-input` and `multi-stream-input` (tests/fakes/elevenlabs_ws.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from chat.limits import Refusal
from chat.models import Agent, Message
from chat.providers.base import (
    Alignment,
    AudioPart,
    ChatMessage,
    LLMProvider,
    ProviderError,
    SpeechReceipt,
    SpeechRequest,
    SpeechStream,
    StreamingTTSProvider,
)
from chat.providers.elevenlabs import ElevenLabsTTS
from chat.providers.elevenlabs_ws import ElevenLabsWebSocketTTS, open_sockets
from chat.speech import SpeechChunk
from chat.turns import Turn
from chat.turns.backends import reply_providers
from chat.turns.relay import ReplyTiming, SpeechGate
from chat.turns.stream_relay import StreamingSpeechRelay
from tests.fakes.elevenlabs import KNOWN_VOICES
from tests.fakes.elevenlabs_contract import pcm_for
from tests.fakes.elevenlabs_ws import INACTIVITY_REASON, MAX_CONTEXTS_REASON, FakeElevenLabsWS
from tests.test_turns import REPLY, BudgetGate, Recorder, ScriptedLLM, spec_for
from tests.wsclient import TurnLog, connect, receive_until, send

pytestmark = pytest.mark.django_db(transaction=True)

RATE = 24000
VOICE = KNOWN_VOICES[0]


@pytest.fixture(autouse=True)
def _quick_demo_llm(settings):
    """Turns through the consumer use the demo LLM, written at once."""
    settings.LLM_PROVIDERS = {**settings.LLM_PROVIDERS, "demo": {**settings.LLM_PROVIDERS["demo"]}}
    settings.LLM_PROVIDERS["demo"]["OPTIONS"] = {"tokens_per_second": 0}
    settings.LLM_BACKEND = "demo"


def ws_tts(fake: FakeElevenLabsWS, **options: Any) -> ElevenLabsWebSocketTTS:
    settings: dict[str, Any] = {"timeout": 2.0, "idle_seconds": 0.5, "retry_base_delay": 0.01}
    return ElevenLabsWebSocketTTS(api_key=fake.api_key, base_url=fake.url, voice_id=VOICE, **(settings | options))


def spoken_pcm(fake: FakeElevenLabsWS, context_index: int = -1) -> bytes:
    """What the vendor says for everything that context generated: the bytes a listener must get."""
    context = fake.contexts[context_index]
    return b"".join(pcm_for(text, RATE, fake.ms_per_char) for text in context.generations)


class PausingLLM(LLMProvider):
    """Writes its parts with a pause between them (a model thinking, or a tool call mid-reply)."""

    def __init__(self, parts: Sequence[str], pause: float) -> None:
        self.parts, self.pause = parts, pause

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncGenerator[str, None]:
        for index, part in enumerate(self.parts):
            if index:
                await asyncio.sleep(self.pause)
            yield part


class ChunkEnds(Turn):
    """A turn that notes, at each chunk end, what had been relayed by then."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ends: list[tuple[str, int, int, int]] = []  # (chunk text, start, end, relayed bytes at the call)

    async def speech_chunk_end(self, chunk: SpeechChunk, audio_start: int, audio_end: int) -> None:
        assert self.relay is not None
        self.ends.append((chunk.text, audio_start, audio_end, self.relay.relayed_bytes))
        await super().speech_chunk_end(chunk, audio_start, audio_end)


class TimingSink:
    """A SpeechSink that keeps the audio, the chunk ends and the word timings, as the turn would."""

    def __init__(self, sample_rate: int) -> None:
        self.pcm = bytearray()
        self.ends: list[tuple[str, int, int]] = []
        self.timing = ReplyTiming(sample_rate)
        self.failed: list[str] = []

    async def speech_audio(self, pcm: bytes, chunk: SpeechChunk, audio_offset: int) -> None:
        assert audio_offset == len(self.pcm)
        self.pcm += pcm

    async def speech_alignment(self, chunk: SpeechChunk, alignment: Alignment, chunk_offset_bytes: int) -> None:
        self.timing.alignment(chunk, alignment, chunk_offset_bytes)

    async def speech_chunk_end(self, chunk: SpeechChunk, audio_start: int, audio_end: int) -> None:
        self.ends.append((chunk.text, audio_start, audio_end))
        self.timing.chunk_end(chunk, audio_start, audio_end)

    async def speech_failed(self, error: ProviderError) -> None:
        self.failed.append(error.code)

    async def speech_refused(self, refusal: Refusal) -> None:
        self.failed.append(refusal.code)

    async def speech_queued(self, position: int | None) -> None:
        pass

    def speech_request(
        self, chunk: SpeechChunk, previous: list[SpeechReceipt], upcoming: SpeechChunk | None
    ) -> SpeechRequest:
        return SpeechRequest(text=chunk.text)


async def speak(tts: StreamingTTSProvider, texts: Sequence[str]) -> TimingSink:
    """One reply's speech through the streaming relay, into a sink that keeps what it was given."""
    sink = TimingSink(tts.sample_rate)
    relay = StreamingSpeechRelay(tts, sink)
    for text in texts:
        relay.add(SpeechChunk(text.strip(), tuple(range(len(text.strip())))))
    relay.close()
    await relay.run()
    return sink


# --- a whole reply ------------------------------------------------------------------------------------
async def test_it_speaks_a_whole_reply_over_one_context_byte_for_byte(conversation, fake_elevenlabs_ws) -> None:
    fake, out = fake_elevenlabs_ws, Recorder()
    turn = ChunkEnds(spec_for(conversation), output=out, llm=ScriptedLLM(), tts=ws_tts(fake))
    message = await turn.run()

    assert len(fake.sockets) == 1 and len(fake.contexts) == 1
    context = fake.contexts[0]
    assert context.generations == [part.strip() for part in REPLY]  # a flush per chunk, nothing merged
    assert all(text.endswith(" ") for text in context.texts) and fake.problems == []
    assert out.pcm == spoken_pcm(fake) == bytes(context.pcm)
    assert context.closed_by_client and context.final_sent and fake.left_open() == []
    sizes = [len(pcm_for(text, RATE, fake.ms_per_char)) for text in context.generations]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    # Each chunk ends where its audio does, as soon as it has been relayed (not all at the stream's end).
    assert [(s, e, r) for _, s, e, r in turn.ends] == [(a, a + n, a + n) for a, n in zip(starts, sizes, strict=True)]
    # Frames of about 150 ms (the vendor's messages are 50 ms), none across a chunk's end, and each with
    # the vendor's timing of exactly the characters it says.
    frames = out.of("audio")
    assert len(frames) <= sum(sizes) // (RATE * 2 * 150 // 1000) + 2 * len(sizes)
    said = "".join(c for _, timing in frames if timing for c in timing["chars"])
    assert said == "".join(context.generations)
    await message.arefresh_from_db()
    assert message.status == "complete" and message.audio_status == "complete"
    assert message.tts_backend == "elevenlabs_ws" and message.tts_characters == sum(len(t) for t in context.generations)
    assert message.tts_request_ids == [context.context_id]  # the stream's name, once, to find its records
    # Word timings come from the vendor's alignment: the second sentence starts where its audio does.
    second = next(word for word in message.words if word[0] >= len(REPLY[0]))
    assert second[2] == round(sizes[0] / 2 / RATE * 1000)


async def test_it_relays_the_same_bytes_as_the_http_transport(conversation, fake_elevenlabs_ws) -> None:
    fake = fake_elevenlabs_ws
    over_ws, over_http = Recorder(), Recorder()
    await Turn(spec_for(conversation), output=over_ws, llm=ScriptedLLM(), tts=ws_tts(fake)).run()
    http = ElevenLabsTTS(api_key=fake.api_key, base_url=fake.url, voice_id=VOICE, timeout=2.0)
    await Turn(spec_for(conversation), output=over_http, llm=ScriptedLLM(), tts=http).run()
    assert over_ws.pcm and over_ws.pcm == over_http.pcm == b"".join(fake.sent_pcm())


async def test_it_sends_each_chunk_as_the_filter_releases_it(conversation, fake_elevenlabs_ws) -> None:
    fake = fake_elevenlabs_ws
    out = Recorder()
    await Turn(spec_for(conversation), output=out, llm=PausingLLM(REPLY, 0.3), tts=ws_tts(fake)).run()

    sent = [t for t, message in fake.sockets[0].received if str(message.get("text", "")).strip()]
    # The filter lets a sentence go once it sees what follows it: each one leaves as the next is written.
    assert len(sent) == 3 and sent[1] - sent[0] >= 0.25
    first_audio = fake.contexts[0].first_audio_at
    assert first_audio is not None and first_audio < sent[1]  # speaking began while the reply was written
    assert out.pcm == spoken_pcm(fake)


async def test_it_sends_the_voice_model_and_settings_once_per_context(conversation, fake_elevenlabs_ws) -> None:
    agent = conversation.agent
    agent.tts_model_id, agent.language_code, agent.stability, agent.speed = "eleven_multilingual_v2", "de", 0.3, 1.1
    await agent.asave()
    await Turn(
        spec_for(conversation, voice_id=KNOWN_VOICES[1]),
        output=Recorder(),
        llm=ScriptedLLM(),
        tts=ws_tts(fake_elevenlabs_ws),
    ).run()

    socket = fake_elevenlabs_ws.sockets[0]
    assert socket.endpoint == "multi-stream-input" and socket.voice_id == KNOWN_VOICES[1]
    assert socket.key_ok and "xi-api-key" not in json.dumps(socket.received)
    assert socket.query["model_id"] == "eleven_multilingual_v2" and socket.query["language_code"] == "de"
    assert socket.query["output_format"] == "pcm_24000" and socket.query["sync_alignment"] == "true"
    init = socket.received[0][1]
    assert init["text"] == " " and init["voice_settings"]["stability"] == 0.3 and init["voice_settings"]["speed"] == 1.1
    assert all("voice_settings" not in message for _, message in socket.received[1:])


# --- interrupts, pauses and many turns ------------------------------------------------------------------
async def test_it_closes_the_context_on_interrupt_and_relays_no_late_audio(conversation, fake_elevenlabs_ws) -> None:
    fake = fake_elevenlabs_ws
    fake.realtime = True
    out = Recorder()
    turn = Turn(spec_for(conversation), output=out, llm=ScriptedLLM(), tts=ws_tts(fake))
    task = asyncio.create_task(turn.run())
    while len(out.of("audio")) < 3:  # noqa: ASYNC110 - a little of the reply has been heard
        await asyncio.sleep(0.005)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    heard = out.pcm
    fake.realtime = False  # the vendor goes on flushing what it was sent: let it come quickly
    context = fake.contexts[0]
    async with asyncio.timeout(5):
        while not context.final_sent:  # noqa: ASYNC110 - until the vendor's isFinal
            await asyncio.sleep(0.01)

    assert context.closed_by_client and context.audio_after_close > 0  # late audio did arrive ...
    assert out.pcm == heard and out.types[-3:] == [
        "interruption",
        "agent_response_correction",
        "agent_response_complete",
    ]
    assert spoken_pcm(fake).startswith(heard) and len(heard) < len(spoken_pcm(fake))  # ... and none was relayed
    assert fake.left_open() == [] and fake.problems == []
    message = await Message.objects.aget(role="assistant", status="interrupted")
    assert message.text == "".join(REPLY)

    again = Recorder()  # the next turn speaks on the same socket, one context further
    await Turn(spec_for(conversation), output=again, llm=ScriptedLLM(REPLY[:1]), tts=ws_tts(fake)).run()
    assert len(fake.sockets) == 1 and len(fake.contexts) == 2 and again.pcm == spoken_pcm(fake)


@pytest.mark.parametrize("multi_context", [True, False])
async def test_it_keeps_the_context_alive_through_a_long_pause(
    conversation, fake_elevenlabs_ws, multi_context: bool
) -> None:
    fake, out = fake_elevenlabs_ws, Recorder()
    tts = ws_tts(fake, inactivity_timeout=1, multi_context=multi_context)  # a 1 s clock, a 2.5 s pause
    parts = [REPLY[0] + REPLY[1][:5], REPLY[1][5:]]  # the first sentence is released before the pause
    message = await Turn(spec_for(conversation), output=out, llm=PausingLLM(parts, 2.5), tts=tts).run()

    socket, context = fake.sockets[0], fake.contexts[0]
    assert socket.query["inactivity_timeout"] == "1" and socket.close_code in (None, 1000)
    assert context.keep_alives >= 3 and context.generations == [REPLY[0].strip(), REPLY[1].strip()]
    assert out.pcm == spoken_pcm(fake) and out.of("error") == []
    await message.arefresh_from_db()
    assert message.audio_status == "complete"


async def test_it_puts_five_replies_on_a_socket_and_opens_another_for_more(fake_elevenlabs_ws) -> None:
    fake = fake_elevenlabs_ws
    fake.first_byte_ms = 300  # every context is still open when the last reply starts
    tts = ws_tts(fake)
    # Seven replies of one process at once (relays with their sinks: the turns' database is not the point).
    sinks = await asyncio.gather(*(speak(tts, REPLY[:2]) for _ in range(7)))

    assert len(fake.sockets) == 2 and sorted(len(s.contexts) for s in fake.sockets) == [2, 5]
    assert fake.peak_contexts == 7 and fake.problems == [] and fake.left_open() == []
    expected = pcm_for(REPLY[0].strip(), RATE) + pcm_for(REPLY[1].strip(), RATE)
    assert all(sink.pcm == expected and sink.failed == [] for sink in sinks)
    assert all(s.close_code != 1008 for s in fake.sockets)


async def test_it_waits_for_a_closed_contexts_final_before_reusing_its_place(conversation, fake_elevenlabs_ws) -> None:
    fake = fake_elevenlabs_ws
    fake.realtime = True
    tts = ws_tts(fake, contexts_per_socket=1)
    out = Recorder()
    task = asyncio.create_task(Turn(spec_for(conversation), output=out, llm=ScriptedLLM(), tts=tts).run())
    while not out.of("audio"):  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # The interrupted context still generates on the vendor's side: a new turn must not count on its place.
    await Turn(spec_for(conversation), output=Recorder(), llm=ScriptedLLM(REPLY[:1]), tts=tts).run()
    assert len(fake.sockets) == 2 and fake.problems == []


# --- the socket going away, and the vendor's refusals -----------------------------------------------------
async def test_it_fails_every_reply_on_a_dropped_socket_and_reconnects(conversation, fake_elevenlabs_ws) -> None:
    fake = fake_elevenlabs_ws
    fake.realtime, fake.first_byte_ms = True, 100
    fake.fail_ws_next("drop")
    tts = ws_tts(fake)
    sinks = await asyncio.gather(speak(tts, REPLY), speak(tts, REPLY))
    assert [sink.failed for sink in sinks] == [["tts_stream_failed"], ["tts_stream_failed"]]
    assert len(fake.sockets) == 1 and all(len(sink.pcm) < len(spoken_pcm(fake)) for sink in sinks)

    fake.realtime = False
    out = Recorder()  # the next turn connects again
    await Turn(spec_for(conversation), output=out, llm=ScriptedLLM(), tts=tts).run()
    assert len(fake.sockets) == 2 and out.of("error") == [] and out.pcm == spoken_pcm(fake)


@pytest.mark.parametrize(
    ("fault", "code", "words"),
    [
        ("quota_exceeded", "tts_quota_exceeded", "out of credits"),
        ("stall", "tts_timeout", "stopped sending audio"),
        ("drop", "tts_stream_failed", "dropped"),
    ],
)
async def test_it_reports_a_vendor_fault_and_keeps_the_text(
    conversation, fake_elevenlabs_ws, fault: str, code: str, words: str
) -> None:
    fake = fake_elevenlabs_ws
    fake.fail_ws_next(fault)
    out = Recorder()
    message = await Turn(spec_for(conversation), output=out, llm=ScriptedLLM(), tts=ws_tts(fake, timeout=0.5)).run()

    errors = out.of("error")
    assert [e["code"] for e in errors] == [code] and words in errors[0]["message"]
    await message.arefresh_from_db()
    assert message.status == "complete" and message.text == "".join(REPLY) and message.error_code == code
    assert fake.left_open() == []  # a failed context is closed too, not left on the socket


async def test_it_retires_a_socket_the_vendor_leaves_a_closed_context_on(conversation, fake_elevenlabs_ws) -> None:
    fake = fake_elevenlabs_ws
    fake.fail_ws_next("stall")  # the vendor goes quiet on this context, isFinal included, for 5 s
    tts = ws_tts(fake, timeout=0.3)
    stalled = await speak(tts, REPLY[:1])
    assert stalled.failed == ["tts_timeout"] and fake.contexts[0].closed_by_client
    async with asyncio.timeout(3):
        while fake.open_sockets:  # noqa: ASYNC110 - until we have given up on that socket
            await asyncio.sleep(0.02)
    assert fake.sockets[0].received[-1][1] == {"close_socket": True}
    after = await speak(tts, REPLY[:1])  # the next reply gets a socket of its own
    assert after.failed == [] and len(fake.sockets) == 2


async def test_it_explains_a_rejected_key(conversation, fake_elevenlabs_ws) -> None:
    fake = fake_elevenlabs_ws
    tts = ElevenLabsWebSocketTTS(api_key="not-the-key", base_url=fake.url, voice_id=VOICE, timeout=2.0)
    out = Recorder()
    message = await Turn(spec_for(conversation), output=out, llm=ScriptedLLM(), tts=tts).run()
    assert [e["code"] for e in out.of("error")] == ["tts_unavailable"]
    assert "ELEVENLABS_API_KEY" in out.of("error")[0]["message"]
    assert fake.sockets[0].close_code == 1008 and out.pcm == b""
    await message.arefresh_from_db()
    assert message.text == "".join(REPLY) and message.audio_status in ("failed", "none")


async def test_it_waits_for_slow_first_audio_up_to_its_timeout(conversation, fake_elevenlabs_ws) -> None:
    fake = fake_elevenlabs_ws
    fake.fail_ws_next("slow_first_audio", seconds=0.4)
    out = Recorder()
    message = await Turn(spec_for(conversation), output=out, llm=ScriptedLLM(), tts=ws_tts(fake, timeout=2.0)).run()
    assert out.of("error") == [] and out.pcm == spoken_pcm(fake)
    await message.arefresh_from_db()
    assert message.tts_first_byte_ms is not None and message.tts_first_byte_ms >= 400

    fake.fail_ws_next("slow_first_audio", seconds=1.0)
    late = Recorder()
    await Turn(spec_for(conversation), output=late, llm=ScriptedLLM(), tts=ws_tts(fake, timeout=0.3)).run()
    assert [e["code"] for e in late.of("error")] == ["tts_timeout"] and late.pcm == b""


async def test_it_reports_an_unreachable_vendor(conversation) -> None:
    tts = ElevenLabsWebSocketTTS(api_key="k", base_url="http://127.0.0.1:9", voice_id=VOICE, retry_base_delay=0.01)
    out = Recorder()
    await Turn(spec_for(conversation), output=out, llm=ScriptedLLM(), tts=tts).run()
    assert [e["code"] for e in out.of("error")] == ["tts_unavailable"] and open_sockets() == 0


class SlotLog(SpeechGate):
    """Notes when the vendor slot is taken and given back."""

    def __init__(self) -> None:
        self.log: list[tuple[str, float]] = []

    @contextlib.asynccontextmanager
    async def slot(self, on_queued: Callable[[int | None], Awaitable[None]]) -> AsyncIterator[None]:
        self.log.append(("take", time.monotonic()))
        try:
            yield
        finally:
            self.log.append(("give", time.monotonic()))


async def test_it_holds_a_vendor_slot_only_while_the_vendor_owes_audio(conversation, fake_elevenlabs_ws) -> None:
    fake, gate = fake_elevenlabs_ws, SlotLog()
    parts = [REPLY[0] + REPLY[1][:5], REPLY[1][5:]]  # a second sentence after a pause in the writing
    await Turn(spec_for(conversation), output=Recorder(), llm=PausingLLM(parts, 0.5), tts=ws_tts(fake), gate=gate).run()

    # Taken for the first sentence, given back once its audio was in, taken again for the second.
    assert [kind for kind, _ in gate.log] == ["take", "give", "take", "give"]
    assert gate.log[1][1] - gate.log[0][1] < 0.4 and gate.log[2][1] - gate.log[1][1] > 0.3
    assert fake.left_open() == [] and len(fake.contexts) == 1  # one context all along


async def test_it_stops_sending_at_a_refused_chunk_and_ends_the_context(conversation, fake_elevenlabs_ws) -> None:
    fake, out, gate = fake_elevenlabs_ws, Recorder(), BudgetGate(allowed=1)
    await Turn(spec_for(conversation), output=out, llm=ScriptedLLM(), tts=ws_tts(fake), gate=gate).run()

    assert fake.contexts[0].generations == [REPLY[0].strip()] and out.pcm == spoken_pcm(fake)  # the whole first chunk
    assert [e["code"] for e in out.of("error")] == ["budget_exhausted"] and out.of("queued")[0]["position"] == 1
    assert gate.billed_chars == len(REPLY[0].strip()) and fake.left_open() == []


async def test_it_never_logs_or_shows_the_api_key(conversation, fake_elevenlabs_ws, caplog) -> None:
    fake = fake_elevenlabs_ws
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="chat.providers.elevenlabs_ws.wire")
    outs = [Recorder(), Recorder(), Recorder()]
    await Turn(spec_for(conversation), output=outs[0], llm=ScriptedLLM(), tts=ws_tts(fake)).run()
    fake.fail_ws_next("drop")
    await Turn(spec_for(conversation), output=outs[1], llm=ScriptedLLM(), tts=ws_tts(fake)).run()
    fake.fail_ws_next("invalid_api_key")
    await Turn(spec_for(conversation), output=outs[2], llm=ScriptedLLM(), tts=ws_tts(fake)).run()

    assert "xi-api-key: [redacted]" in caplog.text.lower()  # the handshake was logged, without the key
    assert fake.api_key not in caplog.text
    assert all(fake.api_key not in json.dumps(out.frames, default=str) for out in outs)
    assert [e["code"] for out in outs for e in out.of("error")] == ["tts_stream_failed", "tts_unavailable"]
    assert fake.api_key not in repr(ws_tts(fake))


# --- stream-input: a socket per reply ---------------------------------------------------------------------
async def test_it_speaks_over_stream_input_with_a_socket_per_reply(conversation, fake_elevenlabs_ws) -> None:
    fake = fake_elevenlabs_ws
    tts = ws_tts(fake, multi_context=False)
    for _ in range(2):
        out = Recorder()
        await Turn(spec_for(conversation), output=out, llm=ScriptedLLM(), tts=tts).run()
        assert out.pcm == spoken_pcm(fake) and out.of("error") == []
    assert [s.endpoint for s in fake.sockets] == ["stream-input", "stream-input"]
    assert [s.received[-1][1] for s in fake.sockets] == [{"text": ""}, {"text": ""}]
    assert fake.problems == [] and fake.left_open() == []


async def test_it_closes_the_stream_input_socket_on_interrupt(conversation, fake_elevenlabs_ws) -> None:
    fake = fake_elevenlabs_ws
    fake.realtime = True
    out = Recorder()
    task = asyncio.create_task(
        Turn(spec_for(conversation), output=out, llm=ScriptedLLM(), tts=ws_tts(fake, multi_context=False)).run()
    )
    while not out.of("audio"):  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    heard = out.pcm
    await asyncio.sleep(0.2)
    assert fake.sockets[0].closed_by == "client" and fake.open_sockets == 0
    assert out.pcm == heard and spoken_pcm(fake).startswith(heard)


# --- the relay's bookkeeping ------------------------------------------------------------------------------
class _OneStream(SpeechStream):
    def __init__(self, parts: list[AudioPart]) -> None:
        self.receipt = SpeechReceipt()
        self.sent: list[str] = []
        self.script = parts
        self.ended = asyncio.Event()

    async def send(self, text: str) -> None:
        self.sent.append(text)
        self.receipt.characters += len(text)

    async def end(self) -> None:
        self.ended.set()

    async def close(self) -> None:
        self.ended.set()

    def __aiter__(self) -> _OneStream:
        return self

    async def __anext__(self) -> AudioPart:
        await self.ended.wait()
        if not self.script:
            raise StopAsyncIteration
        return self.script.pop(0)


class ScriptedStreamingTTS(StreamingTTSProvider):
    """A streaming provider that answers with the parts it is given, after the last text."""

    name = "scripted-stream"

    def __init__(self, parts: list[AudioPart]) -> None:
        self.stream = _OneStream(parts)

    @property
    def sample_rate(self) -> int:
        return 1000  # two bytes a millisecond: byte offsets read as times

    async def open_stream(self, request: SpeechRequest, receipt: SpeechReceipt | None = None) -> SpeechStream:
        return self.stream


def timed(text: str, start_ms: int = 0, ms: int = 10) -> Alignment:
    return Alignment(tuple(text), tuple(start_ms + i * ms for i in range(len(text))), (ms,) * len(text))


async def test_it_cuts_audio_that_spans_two_chunks_where_the_next_one_starts() -> None:
    # One vendor message says the end of "Hi there." and the start of "Bye now." (10 ms a character).
    parts = [
        AudioPart(b"\x01" * 100, timed("Hi th")),
        AudioPart(b"\x02" * 180, timed("ere. Bye ")),
        AudioPart(b"\x03" * 60, timed("now.")),
    ]
    tts = ScriptedStreamingTTS(parts)
    sink = TimingSink(tts.sample_rate)
    relay = StreamingSpeechRelay(tts, sink)
    for chunk in (SpeechChunk("Hi there.", tuple(range(9))), SpeechChunk("Bye now.", tuple(range(10, 18)))):
        relay.add(chunk)
    relay.close()
    await relay.run()

    # "ere. " is 5 characters (50 ms = 100 bytes at 1 kHz): "Bye now." starts 100 bytes into the second part.
    assert sink.ends == [("Hi there.", 0, 200), ("Bye now.", 200, 340)] and sink.failed == []
    assert relay.fully_relayed() == [s.chunk for s in relay.syntheses] and relay.relayed_bytes == len(sink.pcm) == 340
    assert tts.stream.sent == ["Hi there.", "Bye now."]
    # Hi, there., Bye, now.: each word timed from its own chunk's audio, in the reply's milliseconds.
    assert [w[2] for w in sink.timing.words] == [0, 30, 100, 140]


# --- choosing the transport --------------------------------------------------------------------------------
async def test_it_speaks_with_the_transport_the_agent_names(user, agent, elevenlabs_ws_settings) -> None:
    fake = elevenlabs_ws_settings
    agent.tts_transport = Agent.TtsTransport.WEBSOCKET
    await agent.asave()
    assert isinstance(reply_providers(agent=agent, speak=True).tts, ElevenLabsWebSocketTTS)
    log = await _one_turn(user)
    assert log.audio and log.audio == spoken_pcm(fake) and fake.tts_requests() == []

    agent.tts_transport = Agent.TtsTransport.HTTP
    await agent.asave()
    assert isinstance(reply_providers(agent=agent, speak=True).tts, ElevenLabsTTS)
    again = await _one_turn(user)
    assert again.audio == b"".join(fake.sent_pcm()) and len(fake.contexts) == 1
    rows = [m.tts_backend async for m in Message.objects.filter(role="assistant").order_by("created_at")]
    assert rows == ["elevenlabs_ws", "elevenlabs"]


async def test_it_speaks_the_greeting_over_the_websocket_too(user, agent, elevenlabs_ws_settings) -> None:
    fake = elevenlabs_ws_settings
    agent.tts_transport, agent.first_message = Agent.TtsTransport.WEBSOCKET, "Hello! I speak every reply out loud."
    await agent.asave()
    communicator, connected = await connect(user)
    assert connected
    await communicator.receive_json_from()
    log = await receive_until(communicator)
    await communicator.disconnect()
    assert log.of("agent_response")[0]["greeting"] is True
    assert log.audio == spoken_pcm(fake) and fake.tts_requests() == []


async def test_it_relays_no_late_audio_when_a_new_message_interrupts(user, agent, elevenlabs_ws_settings) -> None:
    fake = elevenlabs_ws_settings
    fake.realtime, fake.ms_per_char = True, 200.0  # the first sentence alone lasts many seconds
    agent.tts_transport = Agent.TtsTransport.WEBSOCKET
    await agent.asave()
    communicator, connected = await connect(user)
    assert connected
    await communicator.receive_json_from()
    await send(communicator, {"type": "user_message", "text": "Tell me something."})
    first = TurnLog()
    while len(first.of("audio")) < 3:
        first.frames.append(json.loads(await communicator.receive_from(timeout=10)))
    await send(communicator, {"type": "user_message", "text": "Something else, please."})
    rest = await receive_until(communicator, timeout=30)  # the first turn's end: interruption, correction, complete
    first_sentence = pcm_for(fake.contexts[0].generations[0], RATE, fake.ms_per_char)
    fake.realtime, fake.ms_per_char = False, 60.0
    second = await receive_until(communicator)
    await communicator.disconnect()

    # Audio already on its way when the second message arrived may come before `interruption`; none after it.
    interrupted_at = rest.types.index("interruption")
    assert "audio" not in rest.types[interrupted_at:]
    assert len(fake.contexts) == 2 and fake.contexts[0].closed_by_client and fake.contexts[0].audio_after_close > 0
    heard = first.audio + rest.audio
    assert first_sentence.startswith(heard) and len(heard) < len(first_sentence)
    assert second.audio == spoken_pcm(fake, 1) and second.of("error") == []
    assert fake.left_open() == [] and fake.problems == [] and len(fake.sockets) == 1


async def _one_turn(user: Any) -> Any:
    communicator, connected = await connect(user)
    assert connected
    await communicator.receive_json_from()
    await send(communicator, {"type": "user_message", "text": "Tell me something."})
    log = await receive_until(communicator)
    await communicator.disconnect()
    return log


# --- the fake keeps the vendor's rules (so the tests above can fail) ---------------------------------------
async def test_it_closes_a_context_left_without_input_like_the_vendor(fake_elevenlabs_ws) -> None:
    fake = fake_elevenlabs_ws
    url = (
        fake.url.replace("http", "ws")
        + f"/v1/text-to-speech/{VOICE}/multi-stream-input?output_format=pcm_24000&inactivity_timeout=1"
    )
    async with ws_connect(url, additional_headers={"xi-api-key": fake.api_key}) as socket:
        await socket.send(json.dumps({"text": " ", "context_id": "a"}))
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(3):
                async for _ in socket:
                    pass
            raise AssertionError("the socket stayed open")
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert closed.value.rcvd.reason == INACTIVITY_REASON.format(1) and fake.left_open() == ["a"]


async def test_it_closes_the_socket_on_a_sixth_context_like_the_vendor(fake_elevenlabs_ws) -> None:
    fake = fake_elevenlabs_ws
    url = fake.url.replace("http", "ws") + f"/v1/text-to-speech/{VOICE}/multi-stream-input?output_format=pcm_24000"
    messages: list[dict[str, Any]] = []
    async with ws_connect(url, additional_headers={"xi-api-key": fake.api_key}) as socket:
        for name in "abcdef":
            await socket.send(json.dumps({"text": " ", "context_id": name}))
        with pytest.raises(ConnectionClosed) as closed:
            async for raw in socket:
                messages.append(json.loads(raw))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert closed.value.rcvd.reason == MAX_CONTEXTS_REASON.format(5)
    assert messages == [{"message": MAX_CONTEXTS_REASON.format(5), "error": "max_active_conversations", "code": 1008}]


async def test_it_lists_each_context_with_the_http_requests_for_a_harness(fake_elevenlabs_ws) -> None:
    fake = fake_elevenlabs_ws
    tts = ws_tts(fake)
    await speak(tts, REPLY[:2])
    http = ElevenLabsTTS(api_key=fake.api_key, base_url=fake.url, voice_id=VOICE)
    async for _ in http.synthesize(SpeechRequest(text=REPLY[0]), SpeechReceipt()):
        pass
    async with aiohttp.ClientSession() as session, session.get(fake.url + "/_fake/requests") as response:
        rows = {row["request_id"]: row for row in await response.json()}
    context = fake.contexts[0]
    row = rows[context.context_id]
    assert row["path"].endswith("/multi-stream-input") and row["finished"] is True
    assert [size for _, size in row["sends"]] == [size for _, size in context.sends]
    assert row["pcm_bytes"] == len(spoken_pcm(fake)) and row["received_at"] <= row["sends"][0][0]
    assert len(rows) == 2  # and the HTTP request, as before


async def test_it_opens_a_socket_per_output_format(agent, elevenlabs_ws_settings) -> None:
    fake = elevenlabs_ws_settings
    agent.tts_transport, agent.output_format = Agent.TtsTransport.WEBSOCKET, "pcm_16000"
    tts = reply_providers(agent=agent, speak=True).tts
    assert isinstance(tts, ElevenLabsWebSocketTTS) and tts.sample_rate == 16000
    narrow = await speak(tts, REPLY[:1])
    wide = await speak(ws_tts(fake), REPLY[:1])
    assert [s.query["output_format"] for s in fake.sockets] == ["pcm_16000", "pcm_24000"]
    assert narrow.pcm == pcm_for(REPLY[0].strip(), 16000) and wide.pcm == pcm_for(REPLY[0].strip(), RATE)
