"""The turn lifecycle on its own, through its output seam, with scripted providers (no socket, no vendor)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from chat.limits import Refusal
from chat.models import Conversation, Message
from chat.protocol import AlignmentPayload, ServerFrame, WordTiming, payload_of
from chat.providers.base import (
    Alignment,
    AudioPart,
    ChatMessage,
    Correction,
    LLMProvider,
    ProviderError,
    ReplyEvent,
    ReplySession,
    SpeechReceipt,
    SpeechRequest,
    TextDelta,
    TTSProvider,
)
from chat.turns import Turn, TurnSpec
from chat.turns.relay import FramePacer, SpeechGate
from chat.turns.store import turns_sweep

pytestmark = pytest.mark.django_db(transaction=True)

REPLY = [
    "The first sentence of this reply is long enough to be spoken on its own. ",
    "A second sentence follows it, and it is also long enough to stand alone. ",
    "And the third sentence ends the reply with one more thought for the listener.",
]


class Recorder:
    """A TurnOutput that keeps every frame, in order, with audio as ("audio", pcm, alignment)."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, Any]] = []
        self.event_id = 0

    async def emit(self, frame: ServerFrame) -> int:
        self.event_id += 1
        self.frames.append((frame["type"], payload_of(frame)))
        return self.event_id

    async def audio(
        self, pcm: bytes, *, message_id: str, alignment: AlignmentPayload | None, words: list[WordTiming] | None
    ) -> None:
        self.event_id += 1
        self.frames.append(("audio", (pcm, alignment)))

    @property
    def types(self) -> list[str]:
        return [t for t, _ in self.frames]

    def of(self, kind: str) -> list[Any]:
        return [p for t, p in self.frames if t == kind]

    @property
    def pcm(self) -> bytes:
        return b"".join(pcm for pcm, _ in self.of("audio"))


class ScriptedLLM(LLMProvider):
    def __init__(self, parts: Sequence[str] = REPLY, *, delay: float = 0.0, fail_after: int | None = None) -> None:
        self.parts, self.delay, self.fail_after = parts, delay, fail_after

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncGenerator[str, None]:
        for index, part in enumerate(self.parts):
            if self.fail_after is not None and index == self.fail_after:
                raise ProviderError("llm_unavailable", "The model went away.")
            await asyncio.sleep(self.delay)
            yield part


def pcm_of(text: str) -> bytes:
    return text.encode()[:40].ljust(40, b".") * 3  # distinct, even-sized, three parts per request


class ScriptedTTS(TTSProvider):
    """Yields three 40-byte parts per request; may fail on the Nth request or wait on a gate first."""

    name = "scripted"

    def __init__(self, *, fail_on: int | None = None, hold: asyncio.Event | None = None) -> None:
        self.requests: list[SpeechRequest] = []
        self.closed = 0
        self.fail_on, self.hold = fail_on, hold

    @property
    def sample_rate(self) -> int:
        return 16000

    async def synthesize(self, request: SpeechRequest, receipt: SpeechReceipt) -> AsyncGenerator[bytes, None]:
        self.requests.append(request)
        receipt.request_id, receipt.characters = f"req-{len(self.requests)}", len(request.text)
        try:
            if self.fail_on == len(self.requests):
                raise ProviderError("tts_unavailable", "The voice is down.")
            data = pcm_of(request.text)
            for start in range(0, len(data), 40):
                if self.hold is not None:
                    await self.hold.wait()
                yield data[start : start + 40]
        finally:
            self.closed += 1


def spec_for(conversation: Conversation, **overrides: Any) -> TurnSpec:
    return TurnSpec(
        conversation=conversation,
        agent=conversation.agent,
        text="Hello?",
        started_at=time.monotonic(),
        **overrides,
    )


async def test_it_names_the_users_own_message_in_user_transcript(conversation) -> None:
    out = Recorder()
    reply = await Turn(spec_for(conversation), output=out, llm=ScriptedLLM(), tts=ScriptedTTS()).run()
    user = await Message.objects.filter(conversation=conversation, role=Message.Role.USER).afirst()
    assert user is not None
    # The page shows the two as separate bubbles keyed by these ids: the same id would merge them.
    assert out.of("user_transcript")[0]["message_id"] == str(user.id) != str(reply.id)


async def test_it_streams_text_then_speaks_each_chunk_in_order(conversation) -> None:
    out, tts = Recorder(), ScriptedTTS()
    message = await Turn(spec_for(conversation), output=out, llm=ScriptedLLM(), tts=tts).run()

    assert out.types[0] == "user_transcript" and out.types[-1] == "agent_response_complete"
    assert out.types.index("agent_response") < len(out.types) - 1
    assert "".join(p["text"] for p in out.of("agent_chat_response_part")) == "".join(REPLY)
    assert out.pcm == b"".join(pcm_of(r.text) for r in tts.requests)
    assert [r.text for r in tts.requests] == [part.strip() for part in REPLY]
    assert tts.requests[1].previous_request_ids == ("req-1",)  # stitched to what came before
    assert tts.requests[2].previous_text.endswith(REPLY[1].strip())
    await message.arefresh_from_db()
    assert message.status == "complete" and message.audio_status == "complete"
    assert message.text == "".join(REPLY) and message.tts_characters == sum(len(r.text) for r in tts.requests)
    assert message.tts_request_ids == ["req-1", "req-2", "req-3"]
    assert message.heartbeat_at is None


async def test_it_sends_the_first_token_at_once_then_fewer_longer_deltas(conversation) -> None:
    tokens = [f"word{n} " for n in range(40)]
    out = Recorder()
    await Turn(spec_for(conversation), output=out, llm=ScriptedLLM(tokens, delay=0.005), tts=ScriptedTTS()).run()

    parts = out.of("agent_chat_response_part")
    deltas = [p["text"] for p in parts if p["type"] == "delta"]
    assert [p["type"] for p in parts] == ["start", *["delta"] * len(deltas), "stop"]
    assert deltas[0] == tokens[0] and "".join(deltas) == "".join(tokens)
    assert len(deltas) < len(tokens) / 3  # ~0.2 s of tokens: a frame per 0.1 s, not per token
    text_frames = [i for i, (kind, _) in enumerate(out.frames) if kind == "agent_chat_response_part"]
    assert text_frames[-1] < out.types.index("agent_response")


async def test_it_keeps_the_text_when_speech_fails_mid_reply(conversation) -> None:
    out, tts = Recorder(), ScriptedTTS(fail_on=2)
    message = await Turn(spec_for(conversation), output=out, llm=ScriptedLLM(), tts=tts).run()

    errors = out.of("error")
    assert [e["code"] for e in errors] == ["tts_unavailable"]
    assert out.pcm == pcm_of(tts.requests[0].text)  # the first chunk's audio, nothing after the failure
    await message.arefresh_from_db()
    assert message.status == "complete" and message.audio_status == "partial"
    assert message.text == "".join(REPLY) and message.error_code == "tts_unavailable"


async def test_it_records_a_failed_llm_and_keeps_the_users_message(conversation) -> None:
    out = Recorder()
    message = await Turn(spec_for(conversation), output=out, llm=ScriptedLLM(fail_after=1), tts=ScriptedTTS()).run()

    assert "llm_unavailable" in [e["code"] for e in out.of("error")]
    await message.arefresh_from_db()
    assert message.status == "failed" and message.text == REPLY[0]
    assert await Message.objects.filter(role="user", text="Hello?").aexists()
    assert out.of("agent_response_complete")[0]["status"] == "failed"


class BrokenLLM(ScriptedLLM):
    """Writes two parts, then fails the way a bug would: not a ProviderError."""

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncGenerator[str, None]:
        yield REPLY[0]
        yield REPLY[1]
        raise KeyError("a bug")


async def test_it_records_an_unexpected_failure_and_leaves_no_text_writer_behind(conversation) -> None:
    out = Recorder()
    with pytest.raises(KeyError):
        await Turn(spec_for(conversation), output=out, llm=BrokenLLM(), tts=None).run()

    message = await Message.objects.aget(role="assistant")
    assert message.status == "failed" and message.error_code == "internal_error"
    assert message.text == REPLY[0] + REPLY[1]  # what was written is kept, though not all of it was shown
    await asyncio.sleep(0)  # the cancelled writer finishes on the next loop pass
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "text-frames" and not t.done()]


async def test_it_never_calls_the_tts_when_the_turn_is_not_spoken(conversation) -> None:
    out, tts = Recorder(), ScriptedTTS()
    message = await Turn(spec_for(conversation, speak=False), output=out, llm=ScriptedLLM(), tts=tts).run()
    assert tts.requests == [] and out.of("audio") == []
    await message.arefresh_from_db()
    assert message.audio_status == "none" and message.text == "".join(REPLY)


async def test_it_closes_every_request_and_sends_no_audio_after_an_interruption(conversation) -> None:
    hold = asyncio.Event()
    out, tts = Recorder(), ScriptedTTS(hold=hold)
    turn = Turn(spec_for(conversation), output=out, llm=ScriptedLLM(), tts=tts)
    task = asyncio.create_task(turn.run())
    while len(tts.requests) < 2:  # noqa: ASYNC110 - two requests in flight, both held
        await asyncio.sleep(0.001)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    assert tts.closed == len(tts.requests) == 2  # the third chunk was never requested
    assert out.of("audio") == []
    assert out.types[-3:] == ["interruption", "agent_response_correction", "agent_response_complete"]
    correction = out.of("agent_response_correction")[0]
    assert correction["original_agent_response"] == "".join(REPLY)
    assert correction["corrected_agent_response"] == ""  # nothing was heard
    message = await Message.objects.aget(role="assistant")
    assert message.status == "interrupted" and message.text == "".join(REPLY)


async def test_it_saves_the_text_while_it_streams(conversation) -> None:
    out = Recorder()
    parts = [f"Word {n} " for n in range(40)]
    turn = Turn(spec_for(conversation, speak=False), output=out, llm=ScriptedLLM(parts, delay=0.05))
    task = asyncio.create_task(turn.run())
    await asyncio.sleep(1.6)
    row = await Message.objects.aget(role="assistant")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert row.status == "streaming" and row.text.startswith("Word 0 Word 1")  # saved before the end
    assert row.heartbeat_at is not None


async def test_it_sweeps_replies_left_streaming_by_a_dead_process(conversation) -> None:
    stale = await Message.objects.acreate(
        conversation=conversation,
        role="assistant",
        status="streaming",
        text="Half a repl",
        heartbeat_at=timezone.now() - timedelta(seconds=120),
    )
    live = await Message.objects.acreate(
        conversation=conversation, role="assistant", status="streaming", heartbeat_at=timezone.now()
    )
    assert await sync_to_async(turns_sweep)(stale_after=60) == 1
    await stale.arefresh_from_db()
    await live.arefresh_from_db()
    assert (stale.status, stale.error_code, stale.text) == ("interrupted", "server_restarted", "Half a repl")
    assert live.status == "streaming"


class BudgetGate(SpeechGate):
    """Lets `allowed` chunks through, then refuses like a spent budget; reports a queue wait first."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self.billed_chars = 0

    async def admit(self, text: str) -> None:
        if self.allowed == 0:
            raise Refusal("budget_exhausted", "Your speech allowance is used up until midnight UTC.")
        self.allowed -= 1

    @contextlib.asynccontextmanager
    async def slot(self, on_queued: Callable[[int | None], Awaitable[None]]) -> AsyncIterator[None]:
        await on_queued(1)
        yield

    async def billed(self, receipt: SpeechReceipt, text: str) -> None:
        self.billed_chars += receipt.characters


async def test_it_stops_speech_at_a_chunk_boundary_when_the_gate_refuses(conversation) -> None:
    out, tts, gate = Recorder(), ScriptedTTS(), BudgetGate(allowed=1)
    message = await Turn(spec_for(conversation), output=out, llm=ScriptedLLM(), tts=tts, gate=gate).run()

    assert len(tts.requests) == 1 and out.pcm == pcm_of(tts.requests[0].text)  # the whole first chunk
    assert [e["code"] for e in out.of("error")] == ["budget_exhausted"]
    assert out.of("queued")[0]["position"] == 1
    assert gate.billed_chars == len(tts.requests[0].text)
    await message.arefresh_from_db()
    assert message.text == "".join(REPLY) and message.audio_status == "budget"  # why the audio stopped
    assert message.error_code == "budget_exhausted"


class PreparedGate(SpeechGate):
    """Records when the turn readies it (how many frames were out by then) and when each chunk asks."""

    def __init__(self, out: Recorder) -> None:
        self.out = out
        self.events: list[str] = []

    def prepare(self) -> None:
        self.events.append(f"prepare after {len(self.out.frames)} frames")

    async def admit(self, text: str) -> None:
        self.events.append("admit")


async def test_it_readies_the_gate_once_the_messages_are_saved_before_the_reply_is_written(conversation) -> None:
    """The gate's own start-up (the budget's first block) runs while the LLM writes the first sentence (not
    beside the messages' save, which it would slow), so the first chunk does not wait for it."""
    out = Recorder()
    gate = PreparedGate(out)
    await Turn(spec_for(conversation), output=out, llm=ScriptedLLM(), tts=ScriptedTTS(), gate=gate).run()
    assert gate.events[0] == "prepare after 0 frames" and gate.events.count(gate.events[0]) == 1
    assert gate.events[1:] and set(gate.events[1:]) == {"admit"}


class SlowClosingGate(SpeechGate):
    """Lets everything through; its end-of-turn settlement waits until the test lets it go."""

    def __init__(self) -> None:
        self.closing, self.go = asyncio.Event(), asyncio.Event()

    async def close(self) -> None:
        self.closing.set()
        await self.go.wait()


async def test_it_records_a_whole_reply_when_a_disconnect_lands_as_it_is_saved(conversation) -> None:
    """The socket closes just as the reply ends, while the turn settles and saves it: the record is still
    written (`complete`, all of the text and audio), and only then does the cancellation end the turn."""
    out, tts, gate = Recorder(), ScriptedTTS(), SlowClosingGate()
    task = asyncio.create_task(Turn(spec_for(conversation), output=out, llm=ScriptedLLM(), tts=tts, gate=gate).run())
    await asyncio.wait_for(gate.closing.wait(), 5)
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done()  # still saving
    gate.go.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    message = await Message.objects.aget(role="assistant")
    assert (message.status, message.text) == ("complete", "".join(REPLY))
    assert message.audio_status == "complete" and len(tts.requests) == 3


async def test_it_saves_the_whole_text_as_soon_as_it_ends_while_it_is_still_spoken(conversation) -> None:
    hold = asyncio.Event()
    out, tts = Recorder(), ScriptedTTS(hold=hold)
    task = asyncio.create_task(Turn(spec_for(conversation), output=out, llm=ScriptedLLM(), tts=tts).run())
    while "agent_response" not in out.types:  # noqa: ASYNC110 - the text has ended; no audio has been let out
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.3)  # well within the 1 s between progress saves
    row = await Message.objects.aget(role="assistant")
    hold.set()
    await task
    assert (row.status, row.text) == ("streaming", "".join(REPLY))


class ScriptedSession(ReplySession):
    """A whole-reply backend that writes, speaks and then corrects itself."""

    def __init__(self, events: list[ReplyEvent]) -> None:
        self.events = events
        self.interrupted = False

    @property
    def sample_rate(self) -> int:
        return 16000

    async def reply(self, text: str) -> AsyncGenerator[ReplyEvent, None]:
        for event in self.events:
            await asyncio.sleep(0)
            yield event

    async def interrupt(self) -> None:
        self.interrupted = True

    async def aclose(self) -> None:
        pass


async def test_it_runs_a_reply_session_through_the_same_lifecycle(conversation) -> None:
    alignment = Alignment(chars=("H", "i"), char_start_times_ms=(0, 50), char_durations_ms=(50, 50))
    session = ScriptedSession(
        [TextDelta("Hi there, "), AudioPart(b"\x01\x02" * 800, alignment, "Hi"), TextDelta("friend."), Correction("Hi")]
    )
    out = Recorder()
    message = await Turn(spec_for(conversation), output=out, session=session).run()

    assert out.pcm == b"\x01\x02" * 800
    assert out.of("audio")[0][1]["chars"] == ["H", "i"]
    assert out.of("agent_response")[0]["agent_response"] == "Hi"
    await message.arefresh_from_db()
    assert message.text == "Hi" and message.audio_status == "complete" and message.audio_duration_ms == 50


async def test_it_tells_the_session_when_its_reply_is_interrupted(conversation) -> None:
    class Endless(ScriptedSession):
        async def reply(self, text: str) -> AsyncGenerator[ReplyEvent, None]:
            while True:
                await asyncio.sleep(0.001)
                yield AudioPart(b"\x00\x00" * 100)

    session, out = Endless([]), Recorder()
    task = asyncio.create_task(Turn(spec_for(conversation), output=out, session=session).run())
    while not out.of("audio"):  # noqa: ASYNC110 - until the first audio is relayed
        await asyncio.sleep(0.001)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert session.interrupted
    assert "audio" not in out.types[out.types.index("interruption") :]


async def test_it_creates_the_conversation_with_its_greeting_on_the_first_message(user, agent) -> None:
    conversation = Conversation(owner=user, agent=agent)
    out = Recorder()
    spec = spec_for(conversation, speak=False, greeting="Welcome! Ask me anything.")
    await Turn(spec, output=out, llm=ScriptedLLM()).run()
    rows = [(m.role, m.text) async for m in Message.objects.filter(conversation_id=conversation.id)]
    assert rows[0] == ("assistant", "Welcome! Ask me anything.")
    assert rows[1] == ("user", "Hello?")
    assert await Conversation.objects.filter(pk=conversation.id, title="Hello?").aexists()


def paced_frames(pacer: FramePacer, *, chunk_ms: int, chunks: int, speed: float = 1.0) -> tuple[list[int], float]:
    """Feed audio in `chunk_ms` parts at `speed` × real time, checking `due` as each arrives (the
    relay's timer sends nothing here); returns the frames sent (ms of audio) and the lowest lead."""
    now, held, frames, lowest = [0.0], 0, [], float("inf")
    pacer.clock = lambda: now[0]
    part = pacer.sample_rate * 2 * chunk_ms // 1000
    for _ in range(chunks):
        now[0] += chunk_ms / 1000 / speed
        held += part
        if pacer.due(held):
            if pacer.first_sent_at is not None:
                lowest = min(lowest, pacer.lead_ms())
            pacer.sent(held)
            frames.append(held * 1000 // (pacer.sample_rate * 2))
            held = 0
    if held:  # the relay's last flush
        frames.append(held * 1000 // (pacer.sample_rate * 2))
    return frames, lowest


def test_it_sends_the_first_audio_at_once_then_larger_frames_without_starving_the_listener() -> None:
    frames, lowest = paced_frames(FramePacer(24000), chunk_ms=25, chunks=200, speed=2.0)  # twice real time
    assert frames[0] == 25  # the first audio goes out as it arrives
    assert sum(frames) == 5000 and len(frames) < 60 and max(frames) == 150  # fewer, larger frames after it
    assert lowest > 0  # the listener's buffer never ran dry


def test_it_does_not_hold_a_real_time_vendors_audio_that_could_not_get_ahead() -> None:
    """At real time the listener's lead cannot grow: held audio would only be late (and need a timer)."""
    pacer = FramePacer(24000)
    frames, lowest = paced_frames(pacer, chunk_ms=50, chunks=100)
    assert frames == [50] * 100  # each chunk as it arrives
    assert lowest > 0  # and never short


def test_it_sends_frames_of_the_target_size_to_a_listener_well_ahead() -> None:
    pacer = FramePacer(24000)
    paced_frames(pacer, chunk_ms=10, chunks=10)  # a burst: 100 ms in 100 ms at first
    pacer.sent_bytes += 24000 * 2 * 5  # then say five seconds are queued at the listener
    more, _ = paced_frames(pacer, chunk_ms=10, chunks=60)
    assert all(frame == 150 for frame in more[:-1])
