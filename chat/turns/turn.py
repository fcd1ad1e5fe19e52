"""One reply turn, end to end and without a socket: the lifecycle every reply backend shares.

The consumer runs `Turn.run()` as a background task and cancels it on interrupt, on a new message and
on disconnect; everything the turn holds upstream (the LLM stream, TTS requests, a vendor agent's
reply) is closed by that cancellation, and the turn still records its status and emits its closing
frames. Two backends produce the reply — the LLM + TTS pipeline (`_llm_tts`) and a `ReplySession` that
writes and speaks by itself (`_session`) — and both feed the same handlers (`_text`, `speech_audio`, …).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import aclosing, suppress
from dataclasses import dataclass
from typing import Literal, Protocol

from chat import shutdown
from chat.limits import Refusal
from chat.models import Agent, Conversation, Message
from chat.protocol import AlignmentPayload, ServerFrame, TurnMetrics, WordTiming
from chat.providers import LLMProvider, ProviderError, TTSProvider
from chat.providers.base import (
    Alignment,
    AudioPart,
    ChatMessage,
    Correction,
    ReplySession,
    SpeechReceipt,
    SpeechRequest,
    TextDelta,
)
from chat.speech import Chunker, SpeechChunk, SpeechChunker, WholeReplyChunker
from chat.turns import audio as audio_store
from chat.turns.relay import ReplyTiming, SpeechGate, SpeechRelay, speech_request_for
from chat.turns.store import TurnRecord, turn_begin, turn_finish, turn_progress
from chat.turns.stream_relay import StreamingSpeechRelay, speech_relay_for
from chat.turns.text_frames import TextFrames

logger = logging.getLogger(__name__)

# The reply's text is saved at most this often while it streams (a crash loses about this much)...
PROGRESS_SECONDS = 1.0
# ...and its heartbeat at least this often, so a sweep can tell a live reply from an orphan.
HEARTBEAT_SECONDS = 15.0


class TurnOutput(Protocol):
    """The transport a turn writes to (the consumer; a recorder in tests)."""

    async def emit(self, frame: ServerFrame) -> int:
        """Send one frame; returns the event_id it was given."""

    async def audio(
        self, pcm: bytes, *, message_id: str, alignment: AlignmentPayload | None, words: list[WordTiming] | None
    ) -> None:
        """Send PCM (whole samples) of the reply, with its timing when known."""


@dataclass
class TurnSpec:
    conversation: Conversation  # unsaved until this turn's first message creates it
    agent: Agent
    text: str
    started_at: float  # time.monotonic() when the user pressed Send, as near as the server knows
    speak: bool = True  # False: text only, no TTS at all
    whole_reply: bool = False  # speak only once the whole reply is written (the benchmark's baseline)
    voice_id: str = ""  # this socket's voice override; blank uses the conversation's, else the agent's
    breaks: bool = False  # SSML pauses reach the TTS (the agent allows them and its model honours them)
    greeting: str = ""  # saved as the first message when this turn creates the conversation
    greeting_id: uuid.UUID | None = None  # the stored greeting whose audio that first message plays
    context: tuple[str, ...] = ()  # contextual updates the client sent since the last turn


class Turn:
    """A single reply: create it, `await run()`, cancel the task to interrupt."""

    def __init__(
        self,
        spec: TurnSpec,
        *,
        output: TurnOutput,
        llm: LLMProvider | None = None,
        tts: TTSProvider | None = None,
        session: ReplySession | None = None,
        gate: SpeechGate | None = None,
    ) -> None:
        if (llm is None) == (session is None):
            raise ValueError("A turn needs either an LLM (with an optional TTS) or a reply session.")
        self.spec = spec
        self.output = output
        self.llm = llm
        self.tts = tts if spec.speak else None
        self.session = session
        self.gate = gate
        rate = session.sample_rate if session is not None else (tts.sample_rate if tts else 0)
        self.record = TurnRecord(sample_rate=rate, tts_backend=self._backend_name(tts, session))
        self.reply_parts: list[str] = []
        self.relay: SpeechRelay | StreamingSpeechRelay | None = None
        self.audio = audio_store.PcmBuffer()
        self.message: Message | None = None
        self.voice_id = spec.voice_id
        self.user_message: Message | None = None
        self._text_ended = False
        self._text_frames = TextFrames(self._emit_delta)  # the deltas, a few a second rather than per token
        self._dirty = asyncio.Event()
        self._text_whole = asyncio.Event()  # set when the text has ended: the progress saver saves it at once
        self._alignment: tuple[Alignment, int] | None = None  # the vendor's, for the next frame
        self._admitted = 0  # reply characters an agent backend's audio has been admitted for
        self._audio_refused = False  # the budget stopped an agent backend's audio for the rest of the turn
        self.timing = ReplyTiming(rate)

    @staticmethod
    def _backend_name(tts: TTSProvider | None, session: ReplySession | None) -> str:
        if session is not None:
            return session.name or type(session).__name__
        return tts.name if tts else ""

    @property
    def text(self) -> str:
        return "".join(self.reply_parts)

    @property
    def message_id(self) -> str:
        assert self.message is not None
        return str(self.message.id)

    def ms_since_start(self) -> int:
        return max(0, round((time.monotonic() - self.spec.started_at) * 1000))

    # --- lifecycle ------------------------------------------------------------------------------
    async def run(self) -> Message:
        """Run the turn to its end and return the assistant message; re-raises cancellation."""
        spec = self.spec
        begin = asyncio.ensure_future(
            turn_begin(
                conversation=spec.conversation,
                agent=spec.agent,
                text=spec.text,
                greeting=spec.greeting,
                greeting_id=spec.greeting_id,
                context=spec.context,
            )
        )
        try:
            start = await asyncio.shield(begin)
        except asyncio.CancelledError:
            start = await begin  # the messages are being written: finish that so nothing is half-saved
            self.user_message, self.message = start.user_message, start.reply
            await self._interrupted()
            raise
        self.user_message, self.message = start.user_message, start.reply
        if self.gate is not None:  # while the LLM writes the first sentence, which then goes to the vendor at once
            self.gate.prepare()
        self.voice_id = spec.voice_id or start.voice_id
        await self.output.emit(
            {
                "type": "user_transcript",
                "user_transcription_event": {
                    "user_transcript": start.user_message.text,
                    "message_id": str(start.user_message.id),  # the user's own message; the reply has its own id
                },
            }
        )
        progress = asyncio.create_task(self._save_progress(), name=f"progress-{self.message_id}")
        try:
            await self._produce(start.history)
        except asyncio.CancelledError:
            await self._stop_progress(progress)
            await self._interrupted()
            raise
        except ProviderError as exc:  # the LLM or agent failed; the user's message and any partial text stay
            await self._stop_progress(progress)
            await self._failed(exc.code, exc.message)
            return self.message
        except BaseException:
            await self._stop_progress(progress)
            self._text_frames.discard()
            self.record.error("internal_error", "The reply failed unexpectedly.")
            await self._finish(Message.Status.FAILED)
            raise
        await self._stop_progress(progress)
        await self._finish(Message.Status.COMPLETE)
        await self._emit_complete()
        return self.message

    async def _produce(self, history: list[ChatMessage]) -> None:
        await self._emit_part("start", "")
        if self.session is not None:
            await self._session(self.session)
        else:
            await self._llm_tts(history)
        await self._end_text()

    async def _failed(self, code: str, message: str) -> None:
        await self._end_text()
        await self.output.emit({"type": "error", "error_event": {"code": code, "message": message}})
        self.record.error(code, message)
        await self._finish(Message.Status.FAILED)
        await self._emit_complete()

    async def _interrupted(self) -> None:
        """Everything upstream is closed by now, so no audio of this turn can follow `interruption`."""
        if shutdown.stopping() and not self.record.error_code:
            self.record.error(shutdown.SERVER_RESTARTED, shutdown.SERVER_RESTARTED_MESSAGE)
        await self._end_text()
        kept = self._kept_text()
        self.record.heard_text = kept if kept != self.text else ""
        await self._finish(Message.Status.INTERRUPTED)
        await self.output.emit({"type": "interruption", "interruption_event": {"message_id": self.message_id}})
        await self.output.emit(
            {
                "type": "agent_response_correction",
                "agent_response_correction_event": {
                    "original_agent_response": self.text,
                    "corrected_agent_response": kept,
                    "message_id": self.message_id,
                },
            }
        )
        await self._emit_complete()

    def _kept_text(self) -> str:
        """The reply text whose audio was relayed whole: what a listener can have heard of it."""
        if self.relay is None:
            return self.text  # nothing was spoken; all of it was shown
        heard = self.relay.fully_relayed()
        ends = [max(chunk.offsets) + 1 for chunk in heard if chunk.offsets and max(chunk.offsets) >= 0]
        if ends:
            return self.text[: max(ends)].rstrip()
        return " ".join(chunk.text for chunk in heard)

    # --- text -----------------------------------------------------------------------------------
    async def _emit_part(self, kind: Literal["start", "delta", "stop"], text: str) -> None:
        await self.output.emit(
            {
                "type": "agent_chat_response_part",
                "text_response_part": {"text": text, "type": kind, "message_id": self.message_id},
            }
        )

    async def _emit_delta(self, text: str) -> None:
        await self._emit_part("delta", text)

    async def _text(self, delta: str) -> None:
        if self.record.llm_first_token_ms is None:
            self.record.llm_first_token_ms = self.ms_since_start()
        self.reply_parts.append(delta)
        self._dirty.set()
        await self._text_frames.add(delta)

    async def _end_text(self) -> None:
        if self._text_ended or self.message is None:
            return
        self._text_ended = True
        self._text_whole.set()
        self._dirty.set()
        await self._text_frames.close()
        await self._emit_part("stop", "")
        await self.output.emit(
            {
                "type": "agent_response",
                "agent_response_event": {"agent_response": self.text, "message_id": self.message_id},
            }
        )

    async def _llm_tts(self, history: list[ChatMessage]) -> None:
        assert self.llm is not None
        if self.tts is not None:
            self.relay = speech_relay_for(self.tts, self, gate=self.gate)
        speaker = asyncio.create_task(self.relay.run()) if self.relay else None
        breaks = self.spec.breaks
        chunker: Chunker = WholeReplyChunker(breaks=breaks) if self.spec.whole_reply else SpeechChunker(breaks=breaks)
        try:
            async with aclosing(self.llm.stream(history)) as deltas:
                async for delta in deltas:
                    if delta:
                        await self._text(delta)
                        self._speak(chunker.feed(delta))
            self._speak(chunker.flush())
            if self.relay is not None:
                self.relay.close()
            await self._end_text()
            if speaker is not None:
                await speaker
        finally:
            if speaker is not None and not speaker.done():
                speaker.cancel()
                await asyncio.gather(speaker, return_exceptions=True)

    def _speak(self, chunks: list[SpeechChunk]) -> None:
        for chunk in chunks:
            if self.record.first_chunk_ms is None:
                self.record.first_chunk_ms = self.ms_since_start()
            if self.relay is not None:
                self.relay.add(chunk)

    async def _session(self, session: ReplySession) -> None:
        try:
            async with aclosing(session.reply(self.spec.text)) as events:
                async for event in events:
                    match event:
                        case TextDelta(text=text) if text:
                            await self._text(text)
                        case AudioPart(pcm=pcm, alignment=alignment, text=spoken):
                            await self._session_audio(pcm, alignment, spoken)
                        case Correction(text=text):
                            self.reply_parts = [text]
                            self._dirty.set()
        except asyncio.CancelledError:
            await asyncio.shield(session.interrupt())
            raise

    async def _session_audio(self, pcm: bytes, alignment: Alignment | None, spoken: str) -> None:
        if not self.spec.speak or self._audio_refused:
            return  # the listener turned speech off (or is out of budget); the vendor agent speaks regardless
        if self.gate is not None:
            # The same speech budget as the TTS backend: what this audio says (the vendor's alignment),
            # else the reply text not yet counted, admitted before a byte of it is relayed.
            said = spoken or self.text[self._admitted :]
            try:
                await self.gate.admit(said)
            except Refusal as refusal:
                self._audio_refused = True
                await self.speech_refused(refusal)
                return
            self._admitted += len(said)
        chunk = SpeechChunk(spoken, (-1,) * len(spoken))  # the vendor's own text: no display offsets known
        offset = self.audio.size
        if alignment is not None:
            self._alignment = (alignment, offset)
        await self.speech_audio(pcm[: len(pcm) & ~1], chunk, offset)

    # --- speech (the relay's sink) --------------------------------------------------------------
    def speech_request(
        self, chunk: SpeechChunk, previous: list[SpeechReceipt], upcoming: SpeechChunk | None
    ) -> SpeechRequest:
        spoken = [s.chunk.text for s in (self.relay.syntheses if self.relay else []) if s.chunk is not chunk]
        return speech_request_for(
            self.spec.agent, chunk, voice_id=self.voice_id, spoken=spoken, upcoming=upcoming, previous=previous
        )

    async def speech_audio(self, pcm: bytes, chunk: SpeechChunk, audio_offset: int) -> None:
        if not pcm:
            return
        if self.record.first_audio_sent_ms is None:
            self.record.first_audio_sent_ms = self.ms_since_start()
            first = self.relay.first_byte_at if self.relay else None
            if first is not None:
                self.record.tts_first_byte_ms = max(0, round((first - self.spec.started_at) * 1000))
        alignment, words = self._timing_for_frame(audio_offset)
        self.audio.write(pcm)
        await self.output.audio(pcm, message_id=self.message_id, alignment=alignment, words=words)

    async def speech_alignment(self, chunk: SpeechChunk, alignment: Alignment, chunk_offset_bytes: int) -> None:
        self._alignment = (alignment, chunk_offset_bytes)
        self.timing.alignment(chunk, alignment, chunk_offset_bytes)

    async def speech_chunk_end(self, chunk: SpeechChunk, audio_start: int, audio_end: int) -> None:
        self.timing.chunk_end(chunk, audio_start, audio_end)

    def _timing_for_frame(self, frame_offset: int) -> tuple[AlignmentPayload | None, list[WordTiming] | None]:
        """Timing for this frame: the vendor's characters, shifted to be relative to it, and finished words."""
        words = self.timing.take() or None
        if self._alignment is None:
            return None, words
        alignment, chunk_offset = self._alignment
        self._alignment = None
        shift = self._ms(chunk_offset) - self._ms(frame_offset)
        payload: AlignmentPayload = {
            "chars": list(alignment.chars),
            "char_start_times_ms": [max(0, t + shift) for t in alignment.char_start_times_ms],
            "char_durations_ms": list(alignment.char_durations_ms),
        }
        return payload, words

    def _ms(self, size: int) -> int:
        return audio_store.duration_ms(size, self.record.sample_rate)

    async def speech_failed(self, error: ProviderError) -> None:
        """Audio stops for the rest of the turn; the text goes on and the failure is recorded."""
        self.record.audio_error(error.code, error.message)
        await self.output.emit({"type": "error", "error_event": {"code": error.code, "message": error.message}})

    async def speech_refused(self, refusal: Refusal) -> None:
        self.record.audio_refusal(refusal.code, refusal.message)
        await self.output.emit({"type": "error", "error_event": {"code": refusal.code, "message": refusal.message}})

    async def speech_queued(self, position: int | None) -> None:
        await self.output.emit(
            {
                "type": "queued",
                "queued_event": {"message_id": self.message_id, "reason": "tts_slots", "position": position},
            }
        )

    # --- progress and closing -------------------------------------------------------------------
    async def _save_progress(self) -> None:
        """Save the text at most once a second while it changes, and a heartbeat while it does not."""
        assert self.message is not None
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that lands as the
            # event is set, and the turn's end would then wait for this task forever.
            with suppress(TimeoutError):
                async with asyncio.timeout(HEARTBEAT_SECONDS):
                    await self._dirty.wait()
            self._dirty.clear()
            await turn_progress(message=self.message, text=self.text)
            # The whole text is saved as soon as it has ended, while its last sentences are still spoken,
            # so a client that reads the conversation as the audio ends finds all of it.
            with suppress(TimeoutError):
                async with asyncio.timeout(PROGRESS_SECONDS):
                    await self._text_whole.wait()

    async def _stop_progress(self, progress: asyncio.Task[None]) -> None:
        progress.cancel()
        await asyncio.gather(progress, return_exceptions=True)

    async def _finish(self, status: str) -> None:
        """Settle and save the turn, to the end even when a cancellation lands meanwhile (a disconnect just
        as the reply ends, a second Stop): a reply left half-recorded would stay `streaming` until the
        sweeper called it `server_restarted`. The cancellation is raised once the record is written."""
        writing = asyncio.ensure_future(self._settle_and_save(status))
        cancelled = False
        while not writing.done():
            try:
                await asyncio.shield(writing)
            except asyncio.CancelledError:
                cancelled = True
        writing.result()
        if cancelled:
            raise asyncio.CancelledError

    async def _settle_and_save(self, status: str) -> None:
        assert self.message is not None
        if self.gate is not None and self.session is not None:
            # What the vendor agent spoke this turn (its alignment, else the reply's text) is what it bills.
            await self.gate.billed(SpeechReceipt(characters=self.session.usage().characters), "")
        if self.gate is not None:
            await self.gate.close()  # every request has ended: settle what is left, before the closing frames
        for receipt in self.relay.receipts if self.relay else []:  # every request started is billed
            self.record.tts_characters += receipt.characters
            if receipt.request_id:
                self.record.tts_request_ids.append(receipt.request_id)
        if self.session is not None:
            usage = self.session.usage()
            self.record.tts_characters += usage.characters
            self.record.tts_request_ids.extend(usage.vendor_ids)
            self.record.call_seconds = usage.call_seconds
        self.record.words = self.timing.words
        await turn_finish(message=self.message, text=self.text, status=status, record=self.record, audio=self.audio)

    async def _emit_complete(self) -> None:
        assert self.message is not None
        record = self.record
        metrics: TurnMetrics = {
            "llm_first_token_ms": record.llm_first_token_ms,
            "first_chunk_ms": record.first_chunk_ms,
            "tts_first_byte_ms": record.tts_first_byte_ms,
            "first_audio_sent_ms": record.first_audio_sent_ms,
            "audio_duration_ms": self.message.audio_duration_ms,
            "tts_characters": record.tts_characters,
        }
        await self.output.emit(
            {
                "type": "agent_response_complete",
                "agent_response_complete_event": {
                    "message_id": self.message_id,
                    "status": self.message.status,
                    "audio_status": self.message.audio_status,
                    "audio_url": audio_store.audio_url(self.message),
                    "metrics": metrics,
                    "words": record.words,
                },
            }
        )
