"""The speech side of a turn over a streaming TTS (the vendor's WebSocket): one stream for the whole reply.

`StreamingSpeechRelay` has the surface of `SpeechRelay` and calls the same `SpeechSink` and `SpeechGate`,
but sends each chunk into one open stream as the speech filter releases it, and relays the stream's
audio as it comes. Policy is asked about every chunk before it is sent (`admit`), and one vendor slot
is held while the stream is open. Which chunk a piece of audio belongs to is read from the vendor's
per-message alignment: its characters are counted against each chunk's, and a message that spans
two chunks is cut where the next one's first character starts; without alignment, chunks end with the
stream. Nothing of the stream outlives `run()`: cancelling it closes the vendor's context at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
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
    received: int = 0  # bytes of its audio relayed so far
    relayed_all: bool = False


@dataclass
class _Piece:
    spoken: _Spoken
    pcm: bytes
    alignment: Alignment | None  # relative to this piece's start
    heard_whole: bool = False  # the chunk's last character is in this piece
    ends: bool = False  # the next chunk's audio starts right after it


class StreamingSpeechRelay:
    """Speak the chunks added to it, in order, over one stream, until closed; cancel `run()` to stop at once."""

    def __init__(self, tts: StreamingTTSProvider, sink: SpeechSink, *, gate: SpeechGate | None = None) -> None:
        self.tts = tts
        self.sink = sink
        self.gate = gate or SpeechGate()
        self.pending: deque[SpeechChunk] = deque()
        self.syntheses: list[_Spoken] = []  # every chunk sent, in order (the name SpeechRelay's users read)
        self.closed = False
        self.stopped = False  # a failure or refusal ended speech for this turn
        self.relayed_bytes = 0
        self.first_byte_at: float | None = None
        self.stream: SpeechStream | None = None
        self.receipt = SpeechReceipt()  # the stream's: characters sent, first byte
        self._wakeup = asyncio.Event()
        self._unfinished: deque[_Spoken] = deque()  # sent, their audio not known to have ended
        self._carry = b""
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
        if first is None or not await self._admit(first):
            return
        try:
            async with self.gate.slot(self.sink.speech_queued):
                request = self.sink.speech_request(first, [], self.pending[0] if self.pending else None)
                self.stream = stream = await self.tts.open_stream(request, self.receipt)
                try:
                    await self._speak(first)
                    feeder = asyncio.create_task(self._feed(stream))
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
            await self.sink.speech_refused(refusal)
            return False
        return True

    async def _feed(self, stream: SpeechStream) -> None:
        """Send every further chunk as it is added, then end the stream (audio of what was sent still comes)."""
        try:
            while not self.stopped:
                chunk = await self._next_chunk()
                if chunk is None or not await self._admit(chunk):
                    break
                await self._speak(chunk)
            await stream.end()
        except ProviderError as error:  # the stream broke: its reader says so too; make sure it ends
            self._feed_error = error
            await stream.close()

    async def _speak(self, chunk: SpeechChunk) -> None:
        assert self.stream is not None
        spoken = _Spoken(chunk, need=_timed_characters(chunk.text))
        self.syntheses.append(spoken)
        self._unfinished.append(spoken)
        before = self.receipt.characters
        await self.stream.send(chunk.text)
        spoken.receipt.characters = self.receipt.characters - before
        if spoken.receipt.characters:
            await asyncio.shield(self.gate.billed(spoken.receipt, chunk.text))

    async def _relay(self, stream: SpeechStream) -> None:
        async for part in stream:
            for piece in self._pieces(part):
                await self._relay_piece(piece)
        if self._feed_error is not None:
            raise self._feed_error
        # The stream ended whole: chunks whose end the alignment did not show end here.
        end = self.relayed_bytes + len(self._carry)
        while self._unfinished:
            spoken = self._unfinished.popleft()
            spoken.relayed_all = True
            await self.sink.speech_chunk_end(spoken.chunk, end if spoken.start is None else spoken.start, end)

    async def _relay_piece(self, piece: _Piece) -> None:
        spoken = piece.spoken
        if spoken.start is None:
            spoken.start = self.relayed_bytes + len(self._carry)
        if piece.alignment is not None:
            # The vendor times each message from its own start; the sink wants times from the chunk's.
            shifted = _shifted(piece.alignment, _ms(spoken.received, self.tts.sample_rate))
            await self.sink.speech_alignment(spoken.chunk, shifted, spoken.start)
        spoken.received += len(piece.pcm)
        await self._send(piece.pcm, spoken.chunk)
        if piece.heard_whole:
            spoken.relayed_all = True  # all its words are out, whatever pause may follow
        if piece.ends:
            await self.sink.speech_chunk_end(spoken.chunk, spoken.start, self.relayed_bytes + len(self._carry))

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

    async def _send(self, pcm: bytes, chunk: SpeechChunk) -> None:
        data = self._carry + pcm if self._carry else pcm
        whole = len(data) & ~1
        self._carry = data[whole:]
        if not whole:
            return
        if self.first_byte_at is None:
            self.first_byte_at = self.receipt.first_byte_at or time.monotonic()
        offset = self.relayed_bytes
        self.relayed_bytes += whole
        await self.sink.speech_audio(data[:whole] if self._carry else data, chunk, offset)

    async def _fail(self, error: ProviderError) -> None:
        """Audio stops for the rest of the turn; the text goes on and the failure is recorded."""
        self.stopped = True
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
