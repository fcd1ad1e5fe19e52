"""Stored reply audio: the relayed PCM of a turn, kept off the hot path and saved once as WAV."""

from __future__ import annotations

import io
import tempfile
import wave
from collections.abc import Iterator
from typing import BinaryIO

from django.urls import reverse

from chat.models import Message

# A turn's PCM stays in memory up to this size (≈ 20 s at 24 kHz), then spills to a temp file...
SPOOL_BYTES = 1024 * 1024
# ...in writes of at least this much, so a long reply costs a file write every few seconds, not per frame.
SPILL_BYTES = 256 * 1024


class PcmBuffer:
    """Append-only PCM s16le mono store for one turn; writing keeps a reference, never a copy or a DB call.

    The frames are kept as the bytes objects they arrived in (a growing in-memory file copied the whole
    buffer again each time it had to grow; with a hundred turns interleaved that was most of its cost).
    """

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._held = 0  # bytes in `_parts`
        self._file: BinaryIO | None = None  # the spill file, once the buffer has outgrown SPOOL_BYTES
        self.size = 0

    def write(self, pcm: bytes) -> None:
        self._parts.append(pcm)
        self._held += len(pcm)
        self.size += len(pcm)
        if self.size > SPOOL_BYTES and self._held >= SPILL_BYTES:
            self._spill()

    def _spill(self) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115 - closed in close()
        self._file.write(b"".join(self._parts))
        self._parts.clear()
        self._held = 0

    @property
    def in_memory(self) -> int:
        """Bytes held in memory (the rest, if any, is in the spill file)."""
        return self._held

    def blocks(self) -> Iterator[bytes]:
        """The PCM so far, in order: what was spilled, then what is held."""
        if self._file is not None:
            self._file.seek(0)
            while block := self._file.read(256 * 1024):
                yield block
            self._file.seek(0, io.SEEK_END)
        yield from self._parts

    def wav(self, sample_rate: int) -> bytes:
        """The whole buffer as a WAV file; closes the buffer."""
        out = io.BytesIO()
        with wave.open(out, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(sample_rate)
            for block in self.blocks():
                wav.writeframes(block)
        self.close()
        return out.getvalue()

    def close(self) -> None:
        self._parts.clear()
        self._held = 0
        if self._file is not None:
            self._file.close()
            self._file = None


def duration_ms(size: int, sample_rate: int) -> int:
    return round(size / 2 / sample_rate * 1000) if sample_rate else 0


def audio_url(message: Message) -> str | None:
    """Where the browser fetches a message's stored audio, or None when it has none."""
    if message.audio:
        return reverse("api-message-audio", kwargs={"pk": message.pk})
    if message.greeting_id:  # a conversation's first message plays its agent's shared greeting
        return reverse("api-greeting-audio", kwargs={"pk": message.greeting_id})
    return None
