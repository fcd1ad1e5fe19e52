"""A turn's PCM store: every frame kept in order, memory bounded once the reply outgrows the spool size."""

from __future__ import annotations

import io
import os
import wave

import pytest

from chat.turns import audio as audio_store
from chat.turns.audio import PcmBuffer


def frames_of(wav_bytes: bytes) -> tuple[int, bytes]:
    with wave.open(io.BytesIO(wav_bytes)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return wav.getframerate(), wav.readframes(wav.getnframes())


def test_a_short_reply_stays_in_memory_and_comes_back_whole() -> None:
    parts = [os.urandom(7200) for _ in range(10)]
    buffer = PcmBuffer()
    for part in parts:
        buffer.write(part)
    assert buffer.size == buffer.in_memory == 72000
    assert frames_of(buffer.wav(24000)) == (24000, b"".join(parts))


def test_a_long_reply_spills_in_large_writes_and_keeps_every_byte_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio_store, "SPOOL_BYTES", 64 * 1024)
    monkeypatch.setattr(audio_store, "SPILL_BYTES", 16 * 1024)
    parts = [os.urandom(1000) for _ in range(300)]  # odd-sized frames: joins must not reorder or pad
    buffer = PcmBuffer()
    held = []
    for part in parts:
        buffer.write(part)
        held.append(buffer.in_memory)
    assert buffer.size == 300_000
    assert max(held[100:]) < 16 * 1024 + 1000  # past the spool size, memory holds at most one spill's worth
    assert b"".join(buffer.blocks()) == b"".join(parts)
    buffer.write(b"tail")  # reading does not disturb what follows
    assert frames_of(buffer.wav(16000))[1] == b"".join(parts) + b"tail"


def test_an_empty_buffer_makes_an_empty_wav_and_closes_twice() -> None:
    buffer = PcmBuffer()
    assert frames_of(buffer.wav(24000)) == (24000, b"")
    buffer.close()
