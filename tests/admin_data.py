"""A conversation as a reviewer meets one in the admin: markdown, code, a hostile message, every outcome."""

from __future__ import annotations

import datetime as dt
import io
import math
import wave
from typing import Any

from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.utils import timezone

from chat.models import Agent, Conversation, Message

SAMPLE_RATE = 24000
MARKDOWN_REPLY = (
    "### Streaming speech\n\n"
    "Good question about **streaming**. The reply is spoken *while* it is written:\n\n"
    "1. The LLM streams tokens.\n"
    "2. A filter drops markdown and code.\n"
    "3. Each sentence goes to the TTS `/stream` endpoint.\n\n"
    '```python\nTTS_BACKEND = "elevenlabs"\nif chunk < limit:\n    speak(chunk)\n```\n\n'
    "Anything else?"
)
HOSTILE_QUESTION = "What does <script>alert('x')</script> do? <img src=x onerror=alert(1)> [link](javascript:alert(2))"


def tone_wav(seconds: float) -> bytes:
    """A quiet 440 Hz tone, so a player in a screenshot has a real duration to show."""
    frames = bytearray()
    for n in range(round(seconds * SAMPLE_RATE)):
        sample = round(3000 * math.sin(2 * math.pi * 440 * n / SAMPLE_RATE))
        frames += sample.to_bytes(2, "little", signed=True)
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(bytes(frames))
    return out.getvalue()


def review_conversation(*, owner: User, agent: Agent) -> Conversation:
    """Six messages a minute apart: a spoken markdown reply, an interrupted one, a failed turn."""
    conversation = Conversation.objects.create(owner=owner, agent=agent, title="How streaming speech works")
    start = timezone.now() - dt.timedelta(minutes=10)
    rows: list[dict[str, Any]] = [
        dict(role="user", text="How does streaming speech work? Show me the setting, please."),
        dict(
            role="assistant",
            text=MARKDOWN_REPLY,
            audio_status="complete",
            tts_backend="elevenlabs",
            tts_characters=187,
            llm_first_token_ms=212,
            first_chunk_ms=268,
            tts_first_byte_ms=391,
            first_audio_sent_ms=402,
            client_first_audible_ms=483,
            client_underruns=0,
            seconds=2.4,
        ),
        dict(role="user", text=HOSTILE_QUESTION),
        dict(
            role="assistant",
            text="It would run a script in the page, which is why text from users is always escaped before",
            status="interrupted",
            audio_status="partial",
            tts_backend="elevenlabs",
            tts_characters=64,
            llm_first_token_ms=198,
            first_chunk_ms=251,
            tts_first_byte_ms=377,
            first_audio_sent_ms=389,
            client_first_audible_ms=455,
            client_underruns=1,
            seconds=1.1,
        ),
        dict(role="user", text="Thanks! One more thing…"),
        dict(
            role="assistant",
            status="failed",
            error_code="llm_unavailable",
            error_message="The language model did not answer within 30 seconds.",
        ),
    ]
    for minute, row in enumerate(rows):
        seconds = row.pop("seconds", None)
        row.setdefault("status", "complete")
        message = Message.objects.create(conversation=conversation, **row)
        if seconds:
            message.audio_format = "pcm_24000"
            message.audio_duration_ms = round(seconds * 1000)
            message.audio.save(f"{message.id}.wav", ContentFile(tone_wav(seconds)))
        at = start + dt.timedelta(minutes=minute, seconds=3 * (minute % 2))
        Message.objects.filter(pk=message.pk).update(created_at=at, completed_at=at + dt.timedelta(seconds=2))
    Conversation.objects.filter(pk=conversation.pk).update(created_at=start, updated_at=at + dt.timedelta(seconds=2))
    conversation.refresh_from_db()
    return conversation
