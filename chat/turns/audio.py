"""Stored reply audio: the relayed PCM of a turn, kept off the hot path and saved once as WAV."""

from __future__ import annotations

import io
import tempfile
import wave

from django.urls import reverse

from chat.models import Message

# A turn's PCM stays in memory up to this size (≈ 20 s at 24 kHz), then spills to a temp file.
SPOOL_BYTES = 1024 * 1024


class PcmBuffer:
    """Append-only PCM s16le mono store for one turn; writing is a memory copy, never a DB call."""

    def __init__(self) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - closed in wav()
        self.size = 0

    def write(self, pcm: bytes) -> None:
        self._file.write(pcm)
        self.size += len(pcm)

    def wav(self, sample_rate: int) -> bytes:
        """The whole buffer as a WAV file; closes the buffer."""
        out = io.BytesIO()
        with wave.open(out, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(sample_rate)
            self._file.seek(0)
            while block := self._file.read(256 * 1024):
                wav.writeframes(block)
        self.close()
        return out.getvalue()

    def close(self) -> None:
        self._file.close()


def duration_ms(size: int, sample_rate: int) -> int:
    return round(size / 2 / sample_rate * 1000) if sample_rate else 0


def audio_url(message: Message) -> str | None:
    """Where the browser fetches a message's stored audio, or None when it has none."""
    if message.audio:
        return reverse("api-message-audio", kwargs={"pk": message.pk})
    if message.greeting_id:  # a conversation's first message plays its agent's shared greeting
        return reverse("api-greeting-audio", kwargs={"pk": message.greeting_id})
    return None
