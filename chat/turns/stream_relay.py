"""The speech side of a turn over a streaming TTS (the vendor's WebSocket): one stream for the whole reply.

`StreamingSpeechRelay` has the surface of `SpeechRelay` and calls the same `SpeechSink` and `SpeechGate`,
but sends each chunk into one open stream as the speech filter releases it, and relays the stream's
audio as it comes. Policy is asked about every chunk before it is sent (`admit`); a vendor slot is held
while the vendor owes audio (from a chunk's send until the audio of everything sent has come), which is
what the vendor counts against the plan's concurrency on its WebSocket. Which chunk a piece of audio
belongs to is read from the vendor's per-message alignment: its characters are counted against each
chunk's, and a message that spans two chunks is cut where the next one's first character starts;
without alignment, chunks end with the stream. Audio is paced into frames as `SpeechRelay` does it (the
first at once, then about `frame_ms` each unless the listener would run short), and a frame never spans
two chunks, so each frame carries one alignment. Nothing of the stream outlives `run()`: cancelling it
closes the vendor's context at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from chat.limits import Refusal
from chat.providers import ProviderError, TTSProvider
from chat.providers.base import Alignment, AudioPart, SpeechReceipt, SpeechStream, StreamingTTSProvider
from chat.speech import SpeechChunk
from chat.turns.relay import SpeechGate, SpeechRelay, SpeechSink

logger = logging.getLogger(__name__)


def speech_relay_for(
    tts: TTSProvider, sink: SpeechSink, *, gate: SpeechGate | None = None
) -> SpeechRelay | StreamingSpeechRelay:
    """The relay that suits `tts`: a stream per reply when it can keep one open, else a request per chunk."""
    if isinstance(tts, StreamingTTSProvider):
        return StreamingSpeechRelay(tts, sink, gate=gate)
    return SpeechRelay(tts, sink, gate=gate)


@dataclass(eq=False)
class _Spoken:
    """One chunk sent into the stream, and how much of its audio has come back."""

    chunk: SpeechChunk
    receipt: SpeechReceipt = field(default_factory=SpeechReceipt)
    need: int = 0  # non-space characters the vendor's alignment times for it
    timed: int = 0  # ... and those it has timed so far
    start: int | None = None  # where its audio starts in the reply's audio (bytes)
    received: int = 0  # bytes of its audio taken in so far
    relayed_all: bool = False


@dataclass
class _Piece:
    spoken: _Spoken
    pcm: bytes
    alignment: Alignment | None  # relative to this piece's start
    heard_whole: bool = False  # the chunk's last character is in this piece
    ends: bool = False  # the next chunk's audio starts right after it


class _Slot:
    """The gate's vendor slot, held from a chunk's send until the vendor has delivered what it owes.

    The gate's slot is a context manager that may only be left by the task that entered it, so each
    holding lives in a task of its own, told when to let go.
    """

    def __init__(self, gate: SpeechGate, on_queued: Callable[[int | None], Awaitable[None]]) -> None:
        self.gate, self.on_queued = gate, on_queued
        self._holder: asyncio.Task[None] | None = None
        self._held = asyncio.Event()
        self._release = asyncio.Event()
        self._leaving: set[asyncio.Task[None]] = set()

    async def acquire(self) -> None:
        if self._holder is None:
            self._held, self._release = asyncio.Event(), asyncio.Event()
            self._holder = asyncio.create_task(self._hold(self._held, self._release), name="tts-slot")
        holder, held = self._holder, asyncio.ensure_future(self._held.wait())
        try:
            await asyncio.wait([holder, held], return_when=asyncio.FIRST_COMPLETED)
        finally:
            held.cancel()
        if not self._held.is_set():  # the gate failed to give one
            self._holder = None
            holder.result()

    def release(self) -> None:
        if self._holder is not None:
            self._release.set()
            self._leaving.add(self._holder)
            self._holder.add_done_callback(self._leaving.discard)
            self._holder = None

    async def aclose(self) -> None:
        self.release()
        await asyncio.gather(*self._leaving, return_exceptions=True)

    async def _hold(self, held: asyncio.Event, release: asyncio.Event) -> None:
        async with self.gate.slot(self.on_queued):
            held.set()
            await release.wait()


class StreamingSpeechRelay:
    """Speak the chunks added to it, in order, over one stream, until closed; cancel `run()` to stop at once."""

    def __init__(
        self,
        tts: StreamingTTSProvider,
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
        self.frame_bytes = max(2, tts.sample_rate * 2 * frame_ms // 1000) & ~1
        self.low_ms, self.prebuffer_ms = low_ms, prebuffer_ms
        self.pending: deque[SpeechChunk] = deque()
        self.syntheses: list[_Spoken] = []  # every chunk sent, in order (the name SpeechRelay's users read)
        self.closed = False
        self.stopped = False  # a failure or refusal ended speech for this turn
        self.relayed_bytes = 0  # sent to the sink
        self.first_byte_at: float | None = None
        self.stream: SpeechStream | None = None
        self.receipt = SpeechReceipt()  # the stream's: characters sent, first byte
        self._wakeup = asyncio.Event()
        self._slot = _Slot(self.gate, sink.speech_queued)
        self._unfinished: deque[_Spoken] = deque()  # sent, their audio not known to have ended
        self._owed = 0  # chunks sent whose last character the vendor has not sent back yet
        self._held = bytearray()  # taken in, not sent yet (all of one chunk)
        self._held_spoken: _Spoken | None = None
        self._held_timing: list[Alignment] = []  # of the held audio, relative to its chunk's start
        self._held_heard = False  # the held audio ends its chunk's words
        self._first_sent_at: float | None = None
        self._refusal: Refusal | None = None  # policy stopped speech: reported after what was admitted
        self._feed_error: ProviderError | None = None

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
        first = await self._next_chunk()
        if first is None:
            return
        if not await self._admit(first):
            assert self._refusal is not None
            await self.sink.speech_refused(self._refusal)  # nothing was spoken: say so at once
            return
        try:
            await self._slot.acquire()
            request = self.sink.speech_request(first, [], self.pending[0] if self.pending else None)
            self.stream = stream = await self.tts.open_stream(request, self.receipt)
            try:
                await self._speak(first)
                feeder = asyncio.create_task(self._feed(stream), name="tts-stream-feed")
                try:
                    await self._relay(stream)
                finally:
                    feeder.cancel()
                    await asyncio.gather(feeder, return_exceptions=True)
            finally:
                # However the turn ends, the vendor's context is closed before run() returns.
                await asyncio.shield(stream.close())
        except ProviderError as error:
            await self._fail(error)
        except Exception as exc:  # a provider bug must not hang the turn
            logger.exception("Streaming TTS provider %s failed", self.tts.name)
            await self._fail(ProviderError("tts_unavailable", f"Speech synthesis failed: {exc}"))
        finally:
            await asyncio.shield(self._slot.aclose())

    async def _next_chunk(self) -> SpeechChunk | None:
        while not self.pending:
            if self.closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        return self.pending.popleft()

    async def _admit(self, chunk: SpeechChunk) -> bool:
        try:
            await self.gate.admit(chunk.text)
        except Refusal as refusal:
            self.stopped = True
            self._refusal = refusal
            return False
        return True

    async def _feed(self, stream: SpeechStream) -> None:
        """Send every further chunk as it is added, then end the stream (audio of what was sent still comes)."""
        try:
            while not self.stopped:
                chunk = await self._next_chunk()
                if chunk is None or not await self._admit(chunk):
                    break
                await self._slot.acquire()
                await self._speak(chunk)
            await stream.end()
        except ProviderError as error:  # the stream broke: make sure it ends, with this error
            self._feed_error = error
            await stream.close()
        except Exception as exc:
            logger.exception("Sending text to the streaming TTS failed")
            self._feed_error = ProviderError("tts_unavailable", f"Speech synthesis failed: {exc}")
            await stream.close()

    async def _speak(self, chunk: SpeechChunk) -> None:
        assert self.stream is not None
        spoken = _Spoken(chunk, need=_timed_characters(chunk.text))
        if not self.syntheses:  # the stream's id names the reply's speech once, like a request id
            spoken.receipt.request_id = self.receipt.request_id
        self.syntheses.append(spoken)
        self._unfinished.append(spoken)
        self._owed += 1
        before = self.receipt.characters
        await self.stream.send(chunk.text)
        spoken.receipt.characters = self.receipt.characters - before
        if spoken.receipt.characters:
            await asyncio.shield(self.gate.billed(spoken.receipt, chunk.text))

    # --- relaying -------------------------------------------------------------------------------
    async def _relay(self, stream: SpeechStream) -> None:
        parts = aiter(stream)
        while True:
            try:
                part = await self._next_part(parts)
            except StopAsyncIteration:
                break
            for piece in self._pieces(part):
                await self._take(piece)
        await self._flush()
        if self._feed_error is not None:
            raise self._feed_error
        self._slot.release()
        # The stream ended whole: chunks whose end the alignment did not show end here.
        end = self._taken
        while self._unfinished:
            spoken = self._unfinished.popleft()
            spoken.relayed_all = True
            await self.sink.speech_chunk_end(spoken.chunk, end if spoken.start is None else spoken.start, end)
        if self._refusal is not None:  # spoken up to here: the refused chunk starts no audio
            await self.sink.speech_refused(self._refusal)

    async def _next_part(self, parts: AsyncIterator[AudioPart]) -> AudioPart:
        """The stream's next part; held audio goes out meanwhile before the listener would run short."""
        while True:
            if len(self._held) < 2:  # nothing sendable held (at most half a sample)
                return await anext(parts)
            delay = max(0.0, self._lead_ms() - self.low_ms) / 1000
            try:
                async with asyncio.timeout(delay):
                    return await anext(parts)  # a SpeechStream's wait may be cut short without loss
            except TimeoutError:
                await self._flush()

    async def _take(self, piece: _Piece) -> None:
        spoken = piece.spoken
        if self._held_spoken is not spoken:
            await self._flush()  # a frame never spans two chunks: each carries its own chunk's timing
        if spoken.start is None:
            spoken.start = self._taken
        if piece.alignment is not None:
            # The vendor times each message from its own start; the sink wants times from the chunk's.
            self._held_timing.append(_shifted(piece.alignment, _ms(spoken.received, self.tts.sample_rate)))
        spoken.received += len(piece.pcm)
        self._held += piece.pcm
        self._held_spoken = spoken
        if piece.heard_whole:
            self._held_heard = True
            self._owed -= 1
            if not self._owed:
                self._slot.release()  # the vendor has delivered all it was asked for
        # The first audio goes at once; then a frame's worth, or sooner if the listener would run short.
        due = self._first_sent_at is None or len(self._held) >= self.frame_bytes or self._lead_ms() < self.low_ms
        if piece.ends or due:
            await self._flush()
        if piece.ends:
            await self.sink.speech_chunk_end(spoken.chunk, spoken.start, self._taken)

    @property
    def _taken(self) -> int:
        return self.relayed_bytes + len(self._held)

    def _lead_ms(self) -> float:
        """How far the listener's buffer is ahead of playback, from what was sent so far."""
        if self._first_sent_at is None:
            return 0.0
        played = max(0.0, (time.monotonic() - self._first_sent_at) * 1000 - self.prebuffer_ms)
        return self.relayed_bytes / 2 / self.tts.sample_rate * 1000 - played

    async def _flush(self) -> None:
        spoken = self._held_spoken
        whole = len(self._held) & ~1
        if spoken is None or not whole:
            return
        pcm = bytes(self._held[:whole])
        del self._held[:whole]
        if self._held_timing:
            assert spoken.start is not None
            await self.sink.speech_alignment(spoken.chunk, _joined(self._held_timing), spoken.start)
            self._held_timing = []
        if self.first_byte_at is None:
            self.first_byte_at = self.receipt.first_byte_at or time.monotonic()
        if self._first_sent_at is None:
            self._first_sent_at = time.monotonic()
        offset = self.relayed_bytes
        self.relayed_bytes += len(pcm)
        await self.sink.speech_audio(pcm, spoken.chunk, offset)
        if self._held_heard:
            spoken.relayed_all = True
            self._held_heard = False

    def _pieces(self, part: AudioPart) -> list[_Piece]:
        """`part` cut where one chunk's audio ends and the next one's begins, as its alignment shows.

        A chunk's audio runs until the next chunk's first character: the pause and breath after its
        last word stay with it. Its characters are counted, not matched: the vendor's `alignment` is
        of the text as sent, so a drift can only come from a vendor that drops or adds characters,
        and then chunks end later (at worst together, at the stream's end) but audio is never lost.
        """
        owner = self._unfinished[0] if self._unfinished else self.syntheses[-1]
        alignment = part.alignment
        if alignment is None:
            return [_Piece(owner, part.pcm, None)]
        pieces: list[_Piece] = []
        chars, starts = alignment.chars, alignment.char_start_times_ms
        count = min(len(chars), len(starts), len(alignment.char_durations_ms))
        first = 0  # the first alignment character of the piece being built
        cut_ms = cut_byte = 0  # where that piece starts in the part
        heard = False
        for j in range(count):
            if not chars[j].strip():
                continue
            if owner.timed >= owner.need and len(self._unfinished) > 1 and self._unfinished[0] is owner:
                byte = min(len(part.pcm), max(cut_byte, _bytes(starts[j], self.tts.sample_rate)))
                pieces.append(
                    _Piece(owner, part.pcm[cut_byte:byte], _slice(alignment, first, j, cut_ms), heard, ends=True)
                )
                self._unfinished.popleft()
                owner, heard = self._unfinished[0], False
                first, cut_ms, cut_byte = j, starts[j], byte
            if owner.timed < owner.need:
                owner.timed += 1
                heard = heard or owner.timed == owner.need
        return [*pieces, _Piece(owner, part.pcm[cut_byte:], _slice(alignment, first, count, cut_ms), heard)]

    async def _fail(self, error: ProviderError) -> None:
        """Audio stops for the rest of the turn; the text goes on and the failure is recorded."""
        self.stopped = True
        await self._flush()  # what arrived before the failure is kept and heard
        await self.sink.speech_failed(error)


def _timed_characters(text: str) -> int:
    return sum(1 for char in text if not char.isspace())


def _ms(size: int, sample_rate: int) -> int:
    return round(size / 2 / sample_rate * 1000) if sample_rate else 0


def _bytes(ms: int, sample_rate: int) -> int:
    return round(ms * sample_rate / 1000) * 2


def _shifted(alignment: Alignment, ms: int) -> Alignment:
    if not ms:
        return alignment
    return Alignment(alignment.chars, tuple(t + ms for t in alignment.char_start_times_ms), alignment.char_durations_ms)


def _slice(alignment: Alignment, start: int, end: int, origin_ms: int) -> Alignment:
    """Characters [start, end) of `alignment`, timed from `origin_ms`."""
    if start == 0 and end >= len(alignment.chars) and not origin_ms:
        return alignment
    return Alignment(
        alignment.chars[start:end],
        tuple(t - origin_ms for t in alignment.char_start_times_ms[start:end]),
        alignment.char_durations_ms[start:end],
    )


def _joined(alignments: list[Alignment]) -> Alignment:
    if len(alignments) == 1:
        return alignments[0]
    return Alignment(
        tuple(c for a in alignments for c in a.chars),
        tuple(t for a in alignments for t in a.char_start_times_ms),
        tuple(d for a in alignments for d in a.char_durations_ms),
    )
