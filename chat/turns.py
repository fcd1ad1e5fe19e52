"""One reply turn, end to end and without a socket: LLM → speech text → TTS → protocol events.

The consumer runs `Turn.run()` as a background task and cancels it on interrupt, on a new message
and on disconnect; everything the turn holds upstream (the LLM stream, up to two TTS requests) is
closed by that cancellation, and the turn still records its status and emits its closing frames.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from chat import audio as audio_store
from chat.models import Agent, Conversation, Message
from chat.protocol import TurnMetrics
from chat.providers import LLMProvider, ProviderError, TTSProvider
from chat.providers.base import SpeechReceipt, SpeechRequest, VoiceSettings
from chat.speech import SpeechChunker, speakable_text
from chat.turn_store import TurnRecord, turn_begin, turn_finish

logger = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any]], Awaitable[object]]

# At most this many TTS requests of one turn are open at once: the one being relayed and the next.
MAX_SYNTHESES_IN_FLIGHT = 2
# Merge queued PCM into one audio event up to this size, so a burst costs one frame, not many.
MAX_AUDIO_EVENT_BYTES = 32 * 1024
PREVIOUS_TEXT_CHARS = 300


@dataclass
class _Synthesis:
    """One chunk's TTS request: a producer task pumping PCM into a queue the relay drains in order."""

    request: SpeechRequest
    receipt: SpeechReceipt = field(default_factory=SpeechReceipt)
    queue: asyncio.Queue[bytes | ProviderError | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


@dataclass
class TurnSpec:
    conversation: Conversation
    agent: Agent
    text: str
    started_at: float  # time.monotonic() when the user pressed Send, as near as the server knows
    whole_reply: bool = False  # speak only once the whole reply is written (the benchmark's baseline)


class Turn:
    """A single reply: create it, `await run()`, cancel the task to interrupt."""

    def __init__(self, spec: TurnSpec, *, emit: Emit, llm: LLMProvider, tts: TTSProvider | None) -> None:
        self.spec = spec
        self.emit = emit
        self.llm = llm
        self.tts = tts
        self.record = TurnRecord(sample_rate=tts.sample_rate if tts else 0, tts_backend=tts.name if tts else "")
        self.reply_parts: list[str] = []
        self.chunks: asyncio.Queue[str | None] = asyncio.Queue()
        self.spoken: list[str] = []
        self.syntheses: list[_Synthesis] = []
        self.tts_failed = False
        self._carry = b""
        self.audio = audio_store.PcmBuffer()

    def ms_since_start(self) -> int:
        return max(0, round((time.monotonic() - self.spec.started_at) * 1000))

    async def run(self) -> Message:
        """Run the turn to its end and return the assistant message; re-raises cancellation."""
        spec = self.spec
        begin = asyncio.ensure_future(turn_begin(conversation=spec.conversation, agent=spec.agent, text=spec.text))
        try:
            await asyncio.shield(begin)
        except asyncio.CancelledError:
            await begin  # the messages are being written: finish that so nothing is half-saved
            self.user_message, self.message, self.history = begin.result()
            await self._interrupted(None)
            raise
        self.user_message, self.message, self.history = begin.result()
        await self.emit(
            "user_transcript",
            {"user_transcript": self.user_message.text, "message_id": str(self.user_message.id)},
        )
        speaker = asyncio.create_task(self._speak(), name=f"speak-{self.message.id}")
        try:
            await self._generate()
            await speaker
        except asyncio.CancelledError:
            await self._interrupted(speaker)
            raise
        except ProviderError as exc:  # the LLM failed; the user's message and any partial text stay
            await self._stop(speaker)
            await self.emit("error", {"code": exc.code, "message": exc.message})
            self.record.error(exc.code, exc.message)
            await self._finish(Message.Status.FAILED)
            await self._emit_complete()
            return self.message
        except BaseException:
            await self._stop(speaker)
            self.record.error("internal_error", "The reply failed unexpectedly.")
            await asyncio.shield(self._finish(Message.Status.FAILED))
            raise
        await self._finish(Message.Status.COMPLETE)
        await self._emit_complete()
        return self.message

    async def _interrupted(self, speaker: asyncio.Task[None] | None) -> None:
        """Close everything upstream first, so no audio of this turn can follow `interruption`."""
        if speaker is not None:
            await self._stop(speaker)
        await self._finish(Message.Status.INTERRUPTED)
        message_id = str(self.message.id)
        await self.emit("interruption", {"message_id": message_id})
        await self.emit(
            "agent_response_correction",
            {"original_agent_response": self.text, "corrected_agent_response": self.text, "message_id": message_id},
        )
        await self._emit_complete()

    @property
    def text(self) -> str:
        return "".join(self.reply_parts)

    # --- text -------------------------------------------------------------------------------
    async def _generate(self) -> None:
        message_id = str(self.message.id)
        chunker = SpeechChunker() if not self.spec.whole_reply else _WholeReply()
        await self.emit("agent_chat_response_part", {"text": "", "type": "start", "message_id": message_id})
        try:
            async with aclosing(self.llm.stream(self.history)) as deltas:
                async for delta in deltas:
                    if not delta:
                        continue
                    if self.record.llm_first_token_ms is None:
                        self.record.llm_first_token_ms = self.ms_since_start()
                    self.reply_parts.append(delta)
                    await self.emit(
                        "agent_chat_response_part", {"text": delta, "type": "delta", "message_id": message_id}
                    )
                    self._queue_chunks(chunker.feed(delta))
            self._queue_chunks(chunker.flush())
        finally:
            self.chunks.put_nowait(None)
        await self.emit("agent_chat_response_part", {"text": "", "type": "stop", "message_id": message_id})
        await self.emit("agent_response", {"agent_response": self.text, "message_id": message_id})

    def _queue_chunks(self, chunks: list[str]) -> None:
        for chunk in chunks:
            if self.record.first_chunk_ms is None:
                self.record.first_chunk_ms = self.ms_since_start()
            self.chunks.put_nowait(chunk)

    # --- speech -----------------------------------------------------------------------------
    async def _speak(self) -> None:
        """Start a TTS request per chunk (two in flight at most) and relay their audio strictly in order."""
        if self.tts is None:
            while await self.chunks.get() is not None:
                pass
            return
        order: asyncio.Queue[_Synthesis | None] = asyncio.Queue()
        slots = asyncio.Semaphore(MAX_SYNTHESES_IN_FLIGHT)
        starter = asyncio.create_task(self._start_syntheses(order, slots))
        try:
            await self._relay(order)
        finally:
            starter.cancel()
            await asyncio.gather(starter, return_exceptions=True)

    async def _start_syntheses(self, order: asyncio.Queue[_Synthesis | None], slots: asyncio.Semaphore) -> None:
        try:
            while (chunk := await self.chunks.get()) is not None:
                await slots.acquire()
                if self.tts_failed:
                    slots.release()
                    continue
                synthesis = _Synthesis(request=self._speech_request(chunk))
                synthesis.task = asyncio.create_task(self._produce(synthesis, slots))
                self.syntheses.append(synthesis)
                self.spoken.append(chunk)
                order.put_nowait(synthesis)
        finally:
            order.put_nowait(None)

    def _speech_request(self, chunk: str) -> SpeechRequest:
        agent = self.spec.agent
        previous_ids = tuple(s.receipt.request_id for s in self.syntheses if s.receipt.request_id)[-3:]
        upcoming = self.chunks._queue[0] if self.chunks.qsize() else None  # type: ignore[attr-defined]
        return SpeechRequest(
            text=chunk,
            voice_id=agent.voice_id,
            model_id=agent.tts_model_id,
            voice_settings=VoiceSettings(
                stability=agent.stability,
                similarity_boost=agent.similarity_boost,
                style=agent.style,
                speed=agent.speed,
                use_speaker_boost=agent.use_speaker_boost,
            ),
            language_code=agent.language_code,
            previous_text=" ".join(self.spoken)[-PREVIOUS_TEXT_CHARS:],
            next_text=upcoming or "",
            previous_request_ids=previous_ids,
        )

    async def _produce(self, synthesis: _Synthesis, slots: asyncio.Semaphore) -> None:
        assert self.tts is not None
        try:
            async with aclosing(self.tts.synthesize(synthesis.request, synthesis.receipt)) as pcm:
                async for data in pcm:
                    if data:
                        synthesis.queue.put_nowait(data)
        except ProviderError as exc:
            synthesis.queue.put_nowait(exc)
        except Exception as exc:  # a provider bug must not hang the relay
            logger.exception("TTS provider %s failed", self.record.tts_backend)
            synthesis.queue.put_nowait(ProviderError("tts_unavailable", f"Speech synthesis failed: {exc}"))
        finally:
            synthesis.queue.put_nowait(None)
            slots.release()

    async def _relay(self, order: asyncio.Queue[_Synthesis | None]) -> None:
        while (synthesis := await order.get()) is not None:
            while (item := await synthesis.queue.get()) is not None:
                if isinstance(item, ProviderError):
                    await self._speech_failed(item)
                    return
                await self._send_audio(self._coalesce(item, synthesis.queue))

    def _coalesce(self, first: bytes, queue: asyncio.Queue[bytes | ProviderError | None]) -> bytes:
        """Join PCM already waiting behind `first` (up to a frame's worth) and keep whole samples only."""
        parts = [self._carry, first]
        size = len(self._carry) + len(first)
        while size < MAX_AUDIO_EVENT_BYTES and queue.qsize():
            head = queue._queue[0]  # type: ignore[attr-defined]
            if not isinstance(head, bytes):
                break
            parts.append(queue.get_nowait())  # type: ignore[arg-type]
            size += len(parts[-1])
        data = b"".join(parts)
        whole = len(data) & ~1
        self._carry = data[whole:]
        return data[:whole]

    async def _send_audio(self, pcm: bytes) -> None:
        if not pcm:
            return
        if self.record.first_audio_sent_ms is None:
            self.record.first_audio_sent_ms = self.ms_since_start()
            first = self.syntheses[0].receipt.first_byte_at
            if first is not None:
                self.record.tts_first_byte_ms = max(0, round((first - self.spec.started_at) * 1000))
        self.audio.write(pcm)
        await self.emit("audio", {"audio_base_64": base64.b64encode(pcm).decode("ascii")})

    async def _speech_failed(self, exc: ProviderError) -> None:
        """Audio stops for the rest of the turn; the text goes on and the failure is recorded."""
        self.tts_failed = True
        self.record.audio_error(exc.code, exc.message)
        for synthesis in self.syntheses:
            if synthesis.task is not None:
                synthesis.task.cancel()
        await self.emit("error", {"code": exc.code, "message": exc.message})

    async def _stop(self, speaker: asyncio.Task[None]) -> None:
        """Cancel the speech side and every upstream request it holds, and wait until they are closed."""
        speaker.cancel()
        tasks = [s.task for s in self.syntheses if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(speaker, *tasks, return_exceptions=True)

    # --- closing ----------------------------------------------------------------------------
    async def _finish(self, status: str) -> None:
        for synthesis in self.syntheses:  # every request started is billed, even if cut short
            self.record.tts_characters += synthesis.receipt.characters
            if synthesis.receipt.request_id:
                self.record.tts_request_ids.append(synthesis.receipt.request_id)
        await turn_finish(message=self.message, text=self.text, status=status, record=self.record, audio=self.audio)

    async def _emit_complete(self) -> None:
        record = self.record
        metrics: TurnMetrics = {
            "llm_first_token_ms": record.llm_first_token_ms,
            "first_chunk_ms": record.first_chunk_ms,
            "tts_first_byte_ms": record.tts_first_byte_ms,
            "first_audio_sent_ms": record.first_audio_sent_ms,
            "audio_duration_ms": self.message.audio_duration_ms,
            "tts_characters": record.tts_characters,
        }
        await self.emit(
            "agent_response_complete",
            {
                "message_id": str(self.message.id),
                "status": self.message.status,
                "audio_status": self.message.audio_status,
                "audio_url": audio_store.audio_url(self.message),
                "metrics": metrics,
            },
        )


class _WholeReply:
    """A chunker that holds everything back and speaks the whole reply in one request at the end."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def feed(self, delta: str) -> list[str]:
        self.parts.append(delta)
        return []

    def flush(self) -> list[str]:
        text = speakable_text("".join(self.parts))
        return [text] if text else []


async def run_turn(spec: TurnSpec, *, emit: Emit, llm: LLMProvider, tts: TTSProvider | None) -> Message:
    """Convenience wrapper: run one turn with the given providers."""
    return await Turn(spec, emit=emit, llm=llm, tts=tts).run()
