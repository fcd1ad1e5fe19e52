"""Speaking text that is already written: a stored reply on demand (Play), and an agent's greeting.

Both run the same `Recital` — the speech chunker over the finished text, the ordered `SpeechRelay`, the
policy gate — and store what they made, so the vendor is billed once: a reply's audio lands on its
message, a greeting's on a `Greeting` row shared by every conversation of that agent and voice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
import wave
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError
from django.urls import reverse
from django.utils import timezone

from chat.limits import Refusal
from chat.models import Agent, Greeting, Message
from chat.protocol import TurnMetrics, WordTiming
from chat.providers import ProviderError, TTSProvider
from chat.providers.base import Alignment, SpeechReceipt, SpeechRequest
from chat.speech import SpeechChunk, SpeechChunker
from chat.turns import audio as audio_store
from chat.turns.relay import ReplyTiming, SpeechGate, SpeechRelay, speech_request_for
from chat.turns.store import turn_database_call
from chat.turns.stream_relay import StreamingSpeechRelay, speech_relay_for
from chat.turns.turn import TurnOutput
from chat.voices import agent_speaks_breaks

logger = logging.getLogger(__name__)

# Stored audio is sent in frames of about this size (≈ 0.7 s at 24 kHz): the page has it all at once.
STORED_FRAME_BYTES = 32 * 1024


@dataclass
class Recital:
    """Speak `text` with `agent`'s voice, relaying audio to `output` and keeping the PCM."""

    text: str
    agent: Agent
    tts: TTSProvider
    output: TurnOutput
    message_id: str  # what `queued` frames and audio belong to ("greeting" for a greeting)
    voice_id: str = ""
    gate: SpeechGate | None = None
    audio: audio_store.PcmBuffer = field(default_factory=audio_store.PcmBuffer)
    error: ProviderError | Refusal | None = None
    relay: SpeechRelay | StreamingSpeechRelay | None = None
    finished: bool = False  # ran to its end (not cancelled): only then is its audio worth keeping
    timing: ReplyTiming = field(default_factory=lambda: ReplyTiming(0))

    @property
    def whole(self) -> bool:
        return self.finished and self.error is None and self.audio.size > 0

    async def run(self) -> None:
        self.timing = ReplyTiming(self.tts.sample_rate)
        self.relay = speech_relay_for(self.tts, self, gate=self.gate)
        chunker = SpeechChunker(breaks=agent_speaks_breaks(self.agent, self.tts))
        for chunk in [*chunker.feed(self.text), *chunker.flush()]:
            self.relay.add(chunk)
        self.relay.close()
        await self.relay.run()
        self.finished = True

    @property
    def characters(self) -> int:
        return sum(r.characters for r in self.relay.receipts) if self.relay else 0

    @property
    def request_ids(self) -> list[str]:
        return [r.request_id for r in self.relay.receipts if r.request_id] if self.relay else []

    # --- SpeechSink --------------------------------------------------------------------------
    def speech_request(
        self, chunk: SpeechChunk, previous: list[SpeechReceipt], upcoming: SpeechChunk | None
    ) -> SpeechRequest:
        done = [s.chunk.text for s in (self.relay.syntheses if self.relay else []) if s.chunk is not chunk]
        return speech_request_for(
            self.agent, chunk, voice_id=self.voice_id, spoken=done, upcoming=upcoming, previous=previous
        )

    async def speech_audio(self, pcm: bytes, chunk: SpeechChunk, audio_offset: int) -> None:
        self.audio.write(pcm)
        await self.output.audio(pcm, message_id=self.message_id, alignment=None, words=self.timing.take() or None)

    async def speech_alignment(self, chunk: SpeechChunk, alignment: Alignment, chunk_offset_bytes: int) -> None:
        self.timing.alignment(chunk, alignment, chunk_offset_bytes)

    async def speech_chunk_end(self, chunk: SpeechChunk, audio_start: int, audio_end: int) -> None:
        self.timing.chunk_end(chunk, audio_start, audio_end)

    async def speech_failed(self, error: ProviderError) -> None:
        self.error = error
        await self.output.emit({"type": "error", "error_event": {"code": error.code, "message": error.message}})

    async def speech_refused(self, refusal: Refusal) -> None:
        self.error = refusal
        await self.output.emit({"type": "error", "error_event": {"code": refusal.code, "message": refusal.message}})

    async def speech_queued(self, position: int | None) -> None:
        await self.output.emit(
            {
                "type": "queued",
                "queued_event": {"message_id": self.message_id, "reason": "tts_slots", "position": position},
            }
        )


def _metrics(duration_ms: int | None, characters: int) -> TurnMetrics:
    return {
        "llm_first_token_ms": None,
        "first_chunk_ms": None,
        "tts_first_byte_ms": None,
        "first_audio_sent_ms": None,
        "audio_duration_ms": duration_ms,
        "tts_characters": characters,
    }


# --- a stored reply, on demand ----------------------------------------------------------------
class SpeakRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@turn_database_call
def _claim_message(*, conversation_id: uuid.UUID, message_id: str) -> tuple[Message, bool]:
    """The reply to speak, and whether this caller must synthesise it (False: it has audio already).

    The claim is one conditional UPDATE, so two tabs (or processes) pressing Play bill the vendor once.
    """
    try:
        message = Message.objects.get(pk=message_id, conversation_id=conversation_id, role=Message.Role.ASSISTANT)
    except (ValueError, ValidationError, Message.DoesNotExist) as exc:
        raise SpeakRefused("There is no such reply in this conversation.") from exc
    if message.audio:
        return message, False
    if message.status in (Message.Status.PENDING, Message.Status.STREAMING) or not message.text.strip():
        raise SpeakRefused("That reply is still being written or has no text to speak.")
    claimed = Message.objects.filter(
        pk=message.pk, audio="", audio_status__in=[Message.AudioStatus.NONE, Message.AudioStatus.FAILED]
    ).update(audio_status=Message.AudioStatus.PENDING, heartbeat_at=timezone.now())
    if not claimed:
        raise SpeakRefused("That reply is being spoken already; it will play from storage in a moment.")
    return message, True


@turn_database_call
def _store_message_audio(*, message: Message, recital: Recital, sample_rate: int) -> None:
    size = recital.audio.size
    complete = recital.whole
    message.tts_characters += recital.characters
    message.tts_request_ids = [*message.tts_request_ids, *recital.request_ids]
    message.heartbeat_at = None
    if complete:
        message.audio_status = Message.AudioStatus.COMPLETE
        message.audio_format = f"pcm_{sample_rate}"
        message.audio_duration_ms = audio_store.duration_ms(size, sample_rate)
        message.tts_backend = recital.tts.name
        message.words = [list(word) for word in recital.timing.words]
        message.audio.save(f"{message.id}.wav", ContentFile(recital.audio.wav(sample_rate)), save=False)
    else:  # a cut-short or failed Play stores nothing: the next Play tries again
        recital.audio.close()
        message.audio_status = Message.AudioStatus.FAILED if recital.error else Message.AudioStatus.NONE
    message.save()


async def speak_message(
    *,
    conversation_id: uuid.UUID,
    message_id: str,
    agent: Agent,
    tts: TTSProvider,
    output: TurnOutput,
    voice_id: str = "",
    gate: SpeechGate | None = None,
) -> None:
    """Speak a stored reply that has no audio yet (else just point at its audio), then store it."""
    try:
        message, synthesise = await _claim_message(conversation_id=conversation_id, message_id=message_id)
    except SpeakRefused as refused:
        await output.emit({"type": "error", "error_event": {"code": "invalid_message", "message": refused.message}})
        return
    recital: Recital | None = None
    if synthesise:
        recital = Recital(
            text=message.text,
            agent=agent,
            tts=tts,
            output=output,
            message_id=str(message.id),
            voice_id=voice_id,
            gate=gate,
        )
        try:
            await recital.run()
        finally:
            await asyncio.shield(_store_message_audio(message=message, recital=recital, sample_rate=tts.sample_rate))
    await output.emit(
        {
            "type": "agent_response_complete",
            "agent_response_complete_event": {
                "message_id": str(message.id),
                "status": message.status,
                "audio_status": message.audio_status,
                "audio_url": audio_store.audio_url(message),
                "metrics": _metrics(message.audio_duration_ms, recital.characters if recital else 0),
                "words": [(w[0], w[1], w[2], w[3]) for w in message.words],
            },
        }
    )


# --- an agent's greeting ----------------------------------------------------------------------
def greeting_key(agent: Agent, *, text: str, voice_id: str, output_format: str) -> str:
    """What makes two greetings sound the same; a change to any of it is a new recording."""
    spoken = {
        "text": text,
        "voice": voice_id or agent.voice_id,
        "model": agent.tts_model_id,
        "settings": [agent.stability, agent.similarity_boost, agent.style, agent.speed, agent.use_speaker_boost],
        "language": agent.language_code,
        "format": output_format,
    }
    return hashlib.sha256(json.dumps(spoken, sort_keys=True).encode()).hexdigest()


@turn_database_call
def _claim_greeting(*, agent: Agent, key: str, text: str) -> tuple[Greeting, bool, bytes]:
    """The greeting row, whether this caller must synthesise it, and its PCM when already stored."""
    try:
        greeting, created = Greeting.objects.get_or_create(agent=agent, key=key, defaults={"text": text})
    except IntegrityError:  # another process created it between our read and write
        greeting, created = Greeting.objects.get(agent=agent, key=key), False
    if created:
        return greeting, True, b""
    if greeting.status == Greeting.Status.COMPLETE and greeting.audio:
        with greeting.audio.open("rb") as stored, wave.open(stored, "rb") as wav:
            return greeting, False, wav.readframes(wav.getnframes())
    if greeting.status == Greeting.Status.FAILED:  # retry a failed recording, once per claim
        claimed = Greeting.objects.filter(pk=greeting.pk, status=Greeting.Status.FAILED).update(
            status=Greeting.Status.PENDING
        )
        return greeting, bool(claimed), b""
    return greeting, False, b""  # being recorded elsewhere right now: this time it is shown, not spoken


@turn_database_call
def _store_greeting(*, greeting: Greeting, recital: Recital, sample_rate: int) -> None:
    size = recital.audio.size
    greeting.tts_characters += recital.characters
    if recital.whole:
        greeting.status = Greeting.Status.COMPLETE
        greeting.audio_format = f"pcm_{sample_rate}"
        greeting.audio_duration_ms = audio_store.duration_ms(size, sample_rate)
        greeting.words = [list(word) for word in recital.timing.words]
        greeting.audio.save(f"{greeting.key[:16]}.wav", ContentFile(recital.audio.wav(sample_rate)), save=False)
    else:
        recital.audio.close()
        greeting.status = Greeting.Status.FAILED
    greeting.save()


async def greeting_play(
    *,
    agent: Agent,
    text: str,
    tts: TTSProvider | None,
    output: TurnOutput,
    voice_id: str = "",
    gate: SpeechGate | None = None,
) -> Greeting | None:
    """Show (and, with a TTS, speak) an agent's first message; returns the stored greeting row."""
    await output.emit(
        {
            "type": "agent_response",
            "agent_response_event": {"agent_response": text, "message_id": None, "greeting": True},
        }
    )
    greeting: Greeting | None = None
    if tts is not None:
        key = greeting_key(agent, text=text, voice_id=voice_id, output_format=tts.output_format)
        greeting, synthesise, stored = await _claim_greeting(agent=agent, key=key, text=text)
        if stored:
            # The recording's word timings go with its first frame: they are times into the whole audio.
            words: list[WordTiming] | None = [(w[0], w[1], w[2], w[3]) for w in greeting.words] or None
            for start in range(0, len(stored), STORED_FRAME_BYTES):
                frame = stored[start : start + STORED_FRAME_BYTES]
                await output.audio(frame, message_id="greeting", alignment=None, words=words)
                words = None
        elif synthesise:
            recital = Recital(
                text=text, agent=agent, tts=tts, output=output, message_id="greeting", voice_id=voice_id, gate=gate
            )
            try:
                await recital.run()
            finally:
                await asyncio.shield(_store_greeting(greeting=greeting, recital=recital, sample_rate=tts.sample_rate))
    complete = greeting is not None and greeting.status == Greeting.Status.COMPLETE
    await output.emit(
        {
            "type": "agent_response_complete",
            "agent_response_complete_event": {
                "message_id": None,
                "greeting": True,
                "status": "complete",
                "audio_status": "complete" if complete else "none",
                "audio_url": greeting_audio_url(greeting) if complete and greeting else None,
                "metrics": _metrics(greeting.audio_duration_ms if greeting else None, 0),
            },
        }
    )
    return greeting


def greeting_audio_url(greeting: Greeting) -> str:
    return reverse("api-greeting-audio", kwargs={"pk": greeting.pk})


def greeting_text(agent: Agent, override: str | None) -> str:
    return (override if override is not None else agent.first_message).strip()
