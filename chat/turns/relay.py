"""The speech side of a turn: one TTS request per chunk, two in flight, audio relayed strictly in order.

`SpeechRelay` owns the scheduling (the next chunk is requested while the current one plays), the policy
checks made before each request (`SpeechGate`: budgets, fair vendor slots), and the in-order relay of
PCM to its sink. It knows nothing of sockets or the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Protocol

from chat.limits import Refusal
from chat.models import Agent
from chat.providers import ProviderError, TTSProvider
from chat.providers.base import Alignment, SpeechReceipt, SpeechRequest, VoiceSettings
from chat.speech import ChunkTiming, SpeechChunk, WordTiming, estimate_alignment

logger = logging.getLogger(__name__)

# At most this many TTS requests of one turn are open at once: the one being relayed and the next.
MAX_SYNTHESES_IN_FLIGHT = 2
PREVIOUS_TEXT_CHARS = 300


class SpeechGate:
    """What policy says about speech (chat/limits.py subclasses this); the default lets everything through."""

    def prepare(self) -> None:
        """The turn has started and will speak: get ready now, while the reply is written, not at its first chunk."""

    async def admit(self, text: str) -> None:
        """Raise Refusal when this chunk may not be spoken (a budget ran out)."""

    @contextlib.asynccontextmanager
    async def slot(self, on_queued: Callable[[int | None], Awaitable[None]]) -> AsyncIterator[None]:
        """Hold one vendor request slot for the duration of a synthesis; call on_queued while waiting."""
        yield

    async def billed(self, receipt: SpeechReceipt, text: str) -> None:
        """A request ended; `receipt.characters` is what the vendor billed for it. `text` is the request's
        text when the vendor may have billed it without saying (cut off unanswered), "" when it refused."""

    async def close(self) -> None:
        """The turn is ending (after its last request, before its closing frames); may be called again."""


class SpeechSink(Protocol):
    """Where the relay delivers: the turn lifecycle."""

    async def speech_audio(self, pcm: bytes, chunk: SpeechChunk, audio_offset: int) -> None:
        """PCM of `chunk`, whole samples, in order; `audio_offset` = bytes of the reply relayed before it."""

    async def speech_alignment(self, chunk: SpeechChunk, alignment: Alignment, chunk_offset_bytes: int) -> None:
        """Character timing of `chunk`'s speech, relative to its audio start at `chunk_offset_bytes`."""

    async def speech_chunk_end(self, chunk: SpeechChunk, audio_start: int, audio_end: int) -> None:
        """All of `chunk`'s audio was relayed: bytes [audio_start, audio_end) of the reply's audio."""

    async def speech_failed(self, error: ProviderError) -> None:
        """The vendor failed; no more audio follows in this turn."""

    async def speech_refused(self, refusal: Refusal) -> None:
        """Policy stopped speech at a chunk boundary; no more audio follows in this turn."""

    async def speech_queued(self, position: int | None) -> None:
        """A request waits for a vendor slot."""

    def speech_request(
        self, chunk: SpeechChunk, previous: list[SpeechReceipt], upcoming: SpeechChunk | None
    ) -> SpeechRequest:
        """The request for `chunk`, with the context that keeps prosody continuous."""


def speech_request_for(
    agent: Agent,
    chunk: SpeechChunk,
    *,
    voice_id: str,
    spoken: list[str],
    upcoming: SpeechChunk | None,
    previous: list[SpeechReceipt],
) -> SpeechRequest:
    """The TTS request for `chunk` in `agent`'s voice, with the context that keeps prosody continuous."""
    return SpeechRequest(
        text=chunk.text,
        voice_id=voice_id or agent.voice_id,
        model_id=agent.tts_model_id,
        voice_settings=VoiceSettings(
            stability=agent.stability,
            similarity_boost=agent.similarity_boost,
            style=agent.style,
            speed=agent.speed,
            use_speaker_boost=agent.use_speaker_boost,
        ),
        language_code=agent.language_code,
        previous_text=" ".join(spoken)[-PREVIOUS_TEXT_CHARS:],
        next_text=upcoming.text if upcoming else "",
        previous_request_ids=tuple(r.request_id for r in previous if r.request_id)[-3:],
    )


class ReplyTiming:
    """Word timings of a reply's audio: from the vendor's character alignment, else spread over each
    chunk's audio, so every provider gets word highlighting."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.words: list[WordTiming] = []  # all of them, in order
        self._fresh: list[WordTiming] = []  # finished since the last `take`
        self._chunks: dict[int, ChunkTiming] = {}  # by id() of the chunk being relayed

    def alignment(self, chunk: SpeechChunk, alignment: Alignment, chunk_offset_bytes: int) -> None:
        if id(chunk) not in self._chunks:
            self._chunks[id(chunk)] = ChunkTiming(chunk, audio_offset_ms=self._ms(chunk_offset_bytes))
        self._add(self._chunks[id(chunk)].add(alignment))

    def chunk_end(self, chunk: SpeechChunk, audio_start: int, audio_end: int) -> None:
        duration = self._ms(audio_end - audio_start)
        timing = self._chunks.pop(id(chunk), None)
        if timing is None:
            timing = ChunkTiming(chunk, audio_offset_ms=self._ms(audio_start))
            timing.add(estimate_alignment(chunk.text, duration))
        self._add(timing.finish(duration))

    def take(self) -> list[WordTiming]:
        fresh, self._fresh = self._fresh, []
        return fresh

    def _add(self, words: list[WordTiming]) -> None:
        self.words.extend(words)
        self._fresh.extend(words)

    def _ms(self, size: int) -> int:
        return round(size / 2 / self.sample_rate * 1000) if self.sample_rate else 0


@dataclass(eq=False)
class _Synthesis:
    """One chunk's request: a producer task appends PCM to `parts`; the relay drains them in order."""

    chunk: SpeechChunk
    receipt: SpeechReceipt = field(default_factory=SpeechReceipt)
    parts: deque[bytes | Alignment] = field(default_factory=deque)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    done: bool = False
    error: ProviderError | None = None
    task: asyncio.Task[None] | None = None
    relayed_all: bool = False

    def put(self, item: bytes | Alignment) -> None:
        self.parts.append(item)
        self.changed.set()

    def end(self, error: ProviderError | None = None) -> None:
        self.done, self.error = True, error
        self.changed.set()


class FramePacer:
    """When held audio must go out: the first audio of a turn at once, then frames of `frame_ms`, but
    never so late that the listener's buffer falls below `low_ms` (estimated from what was sent and a
    real-time player that starts `prebuffer_ms` after the first frame — the page's start-up buffer).

    A vendor that sends faster than real time gets few large frames. One that paces at real time
    cannot put the listener further ahead, so holding its audio would only delay it: audio that would
    be due within `min_hold_ms` anyway goes out as it arrives, with no timer to wait on. Fewer frames
    and fewer timers are most of the relay's CPU.
    """

    def __init__(
        self,
        sample_rate: int,
        *,
        frame_ms: int = 150,
        low_ms: int = 60,
        prebuffer_ms: int = 80,
        min_hold_ms: int = 50,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sample_rate = sample_rate
        self.clock = clock
        self.frame_bytes = max(2, sample_rate * 2 * frame_ms // 1000) & ~1
        self.low_ms, self.prebuffer_ms, self.min_hold_ms = low_ms, prebuffer_ms, min_hold_ms
        self.sent_bytes = 0
        self.first_sent_at: float | None = None

    def sent(self, size: int) -> None:
        if self.first_sent_at is None:
            self.first_sent_at = self.clock()
        self.sent_bytes += size

    def due(self, held: int) -> bool:
        """Should `held` bytes go out now?"""
        if self.first_sent_at is None or held >= self.frame_bytes:
            return True
        return self.lead_ms() < self.low_ms + self.min_hold_ms

    def hold_seconds(self) -> float:
        """How much longer held audio may wait for more before it must go out."""
        return max(0.0, self.lead_ms() - self.low_ms) / 1000

    def lead_ms(self) -> float:
        """How far the listener's buffer is ahead of playback, from what was sent so far."""
        if self.first_sent_at is None:
            return 0.0
        played = max(0.0, (self.clock() - self.first_sent_at) * 1000 - self.prebuffer_ms)
        return self.sent_bytes / 2 / self.sample_rate * 1000 - played


class SpeechRelay:
    """Speak the chunks added to it, in order, until closed; cancel `run()` to stop at once.

    One TTS request per chunk, two in flight; audio is held and sent in frames as the `FramePacer` says.
    """

    def __init__(
        self,
        tts: TTSProvider,
        sink: SpeechSink,
        *,
        gate: SpeechGate | None = None,
        frame_ms: int = 150,
        low_ms: int = 60,
        prebuffer_ms: int = 80,
    ) -> None:
        self.tts = tts
        self.sink = sink
        self.gate = gate or SpeechGate()
        self.pacer = FramePacer(tts.sample_rate, frame_ms=frame_ms, low_ms=low_ms, prebuffer_ms=prebuffer_ms)
        self.pending: deque[SpeechChunk] = deque()
        self.syntheses: list[_Synthesis] = []
        self.closed = False
        self.stopped = False  # a failure or refusal ended speech for this turn
        self.relayed_bytes = 0  # sent to the sink
        self.first_byte_at: float | None = None
        self._wakeup = asyncio.Event()
        self._room = asyncio.Semaphore(MAX_SYNTHESES_IN_FLIGHT)
        self._held = bytearray()  # received, not sent yet
        self._held_chunk: SpeechChunk | None = None
        self._refusal: Refusal | None = None  # policy stopped speech: reported after what was admitted

    # --- feeding --------------------------------------------------------------------------------
    def add(self, chunk: SpeechChunk) -> None:
        self.pending.append(chunk)
        self._wakeup.set()

    def close(self) -> None:
        """No more chunks will come; `run()` returns once everything added has been relayed."""
        self.closed = True
        self._wakeup.set()

    @property
    def receipts(self) -> list[SpeechReceipt]:
        return [s.receipt for s in self.syntheses]

    def fully_relayed(self) -> list[SpeechChunk]:
        """Chunks whose audio was relayed to the end, in order: what a listener can have heard whole."""
        return [s.chunk for s in self.syntheses if s.relayed_all]

    # --- running --------------------------------------------------------------------------------
    async def run(self) -> None:
        order: deque[_Synthesis] = deque()
        ready = asyncio.Event()
        starter = asyncio.create_task(self._start_syntheses(order, ready))
        try:
            await self._relay(order, ready, starter)
        finally:
            await self._cancel(starter)

    async def _start_syntheses(self, order: deque[_Synthesis], ready: asyncio.Event) -> None:
        try:
            while not self.stopped:
                chunk = await self._next_chunk()
                if chunk is None:
                    return
                await self._room.acquire()
                try:
                    await self.gate.admit(chunk.text)
                except Refusal as refusal:
                    self._room.release()
                    self.stopped = True
                    self._refusal = refusal
                    return
                synthesis = _Synthesis(chunk=chunk)
                request = self.sink.speech_request(chunk, self.receipts, self.pending[0] if self.pending else None)
                self.syntheses.append(synthesis)
                synthesis.task = asyncio.create_task(self._produce(synthesis, request))
                order.append(synthesis)
                ready.set()
        finally:
            self.closed = True  # nothing more will be started: the relay may finish
            ready.set()

    async def _next_chunk(self) -> SpeechChunk | None:
        while not self.pending:
            if self.closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        return self.pending.popleft()

    async def _produce(self, synthesis: _Synthesis, request: SpeechRequest) -> None:
        error: ProviderError | None = None
        try:
            async with (
                self.gate.slot(self.sink.speech_queued),
                aclosing(self.tts.synthesize(request, synthesis.receipt)) as stream,
            ):
                async for item in stream:
                    if item:
                        synthesis.put(item)
        except ProviderError as exc:
            error = exc
        except Exception as exc:  # a provider bug must not hang the relay
            logger.exception("TTS provider %s failed", self.tts.name)
            error = ProviderError("tts_unavailable", f"Speech synthesis failed: {exc}")
        finally:
            synthesis.end(error)
            self._room.release()
            # A refused request bills nothing; one cut off unanswered may have been billed for its text.
            await asyncio.shield(self.gate.billed(synthesis.receipt, request.text if error is None else ""))

    async def _relay(self, order: deque[_Synthesis], ready: asyncio.Event, starter: asyncio.Task[None]) -> None:
        while True:
            while not order:
                if self.closed and starter.done():
                    await self._flush()
                    if self._refusal is not None:  # spoken up to here: the refused chunk starts no audio
                        await self.sink.speech_refused(self._refusal)
                    return
                ready.clear()
                await self._wait(ready)
            synthesis = order.popleft()
            if not await self._relay_one(synthesis):
                return

    async def _relay_one(self, synthesis: _Synthesis) -> bool:
        """Relay one synthesis to its end; False when speech stopped for the turn."""
        start = self._received
        while True:
            while synthesis.parts:
                item = synthesis.parts.popleft()
                if isinstance(item, Alignment):
                    await self.sink.speech_alignment(synthesis.chunk, item, start)
                else:
                    await self._accept(item, synthesis.chunk)
            if synthesis.done:
                break
            synthesis.changed.clear()
            await self._wait(synthesis.changed)
        if synthesis.error is not None:
            await self._flush()  # what arrived before the failure is kept and heard
            await self._fail(synthesis.error)
            return False
        synthesis.relayed_all = True
        await self.sink.speech_chunk_end(synthesis.chunk, start, self._received)
        return True

    @property
    def _received(self) -> int:
        return self.relayed_bytes + len(self._held)

    async def _accept(self, pcm: bytes, chunk: SpeechChunk) -> None:
        self._held += pcm
        self._held_chunk = chunk
        if self.pacer.due(len(self._held)):
            await self._flush()

    async def _wait(self, event: asyncio.Event) -> None:
        """Wait for `event`, sending held audio before the listener would run short of it."""
        while len(self._held) >= 2 and not event.is_set():  # an odd byte alone cannot be sent
            delay = self.pacer.hold_seconds()
            try:
                async with asyncio.timeout(delay):
                    await event.wait()
            except TimeoutError:
                await self._flush()
        await event.wait()

    async def _flush(self) -> None:
        whole = len(self._held) & ~1
        if not whole or self._held_chunk is None:
            return
        pcm = bytes(self._held[:whole])
        del self._held[:whole]
        if self.first_byte_at is None:
            self.first_byte_at = self.syntheses[0].receipt.first_byte_at or time.monotonic()
        offset = self.relayed_bytes
        self.relayed_bytes += len(pcm)
        self.pacer.sent(len(pcm))
        await self.sink.speech_audio(pcm, self._held_chunk, offset)

    async def _fail(self, error: ProviderError) -> None:
        """Audio stops for the rest of the turn; the text goes on and the failure is recorded."""
        self.stopped = True
        for synthesis in self.syntheses:
            if synthesis.task is not None:
                synthesis.task.cancel()
        await self.sink.speech_failed(error)

    async def _cancel(self, starter: asyncio.Task[None]) -> None:
        """Cancel every upstream request this relay holds and wait until they are closed."""
        starter.cancel()
        tasks = [s.task for s in self.syntheses if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(starter, *tasks, return_exceptions=True)
