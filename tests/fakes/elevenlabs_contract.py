"""What the fake ElevenLabs answers, as pure functions: its audio, validation, alignment and catalogue."""

from __future__ import annotations

import base64
import functools
import io
import math
import struct
import wave
import zlib
from typing import Any

PCM_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)


@functools.lru_cache(maxsize=512)  # the benchmark asks for the same sentences hundreds of times
def pcm_for(text: str, sample_rate: int, ms_per_char: float = 60.0) -> bytes:
    """Deterministic PCM s16le mono for `text`: a tone pitched by the text's hash, `ms_per_char` long per
    character, faded in and out over 10 ms so both ends are clean but the audio is never silent."""
    samples = max(1, round(len(text) * ms_per_char * sample_rate / 1000))
    period = 20 + zlib.crc32(text.encode()) % 60
    cycle = [round(8000 * math.sin(2 * math.pi * i / period)) for i in range(period)]
    values = (cycle * (samples // period + 1))[:samples]  # repeating one cycle keeps long texts cheap
    fade = max(1, min(samples // 4, sample_rate // 100))
    for i in range(fade):
        gain = (i + 1) / fade
        values[i] = round(values[i] * gain)
        values[-1 - i] = round(values[-1 - i] * gain)
    return struct.pack(f"<{samples}h", *values)


def rate_and_type(output_format: str) -> tuple[int, str]:
    """Sample rate and content type; mp3_* answers the same PCM labelled as MP3 (the fake encodes nothing)."""
    kind, rate = output_format.split("_")[:2]
    return int(rate), "audio/mpeg" if kind == "mp3" else "application/octet-stream"


def validation_problems(query: dict[str, str], body: dict[str, Any]) -> list[tuple[str, ...]]:
    """FastAPI-style validation problems as (loc..., msg) tuples."""
    problems: list[tuple[str, ...]] = []
    fmt = query.get("output_format", "mp3_44100_128")
    parts = fmt.split("_")
    pcm_ok = len(parts) == 2 and parts[0] == "pcm" and parts[1].isdigit() and int(parts[1]) in PCM_RATES
    mp3_ok = len(parts) == 3 and parts[0] == "mp3" and parts[1] in ("22050", "24000", "44100") and parts[2].isdigit()
    if not (pcm_ok or mp3_ok):
        problems.append(("query", "output_format", f"unsupported output format {fmt}"))
    if not isinstance(body.get("text"), str) or not body["text"].strip():
        problems.append(("body", "text", "field required"))
    settings = body.get("voice_settings") or {}
    for name in ("stability", "similarity_boost", "style"):
        if settings.get(name) is not None and not 0 <= settings[name] <= 1:
            problems.append(("body", "voice_settings", name, "must be between 0 and 1"))
    if settings.get("speed") is not None and not 0.7 <= settings["speed"] <= 1.2:
        problems.append(("body", "voice_settings", "speed", "must be between 0.7 and 1.2"))
    if len(body.get("previous_request_ids") or []) > 3:
        problems.append(("body", "previous_request_ids", "at most 3 ids"))
    return problems


def timestamped_lines(
    text: str, pcm: bytes, rate: int, ms_per_char: float, chunk_ms: float
) -> list[tuple[dict[str, Any], bytes]]:
    """NDJSON lines of /stream/with-timestamps, each with the PCM it carries.

    Like the vendor's: every line holds `chunk_ms` of audio and the alignment of the characters whose sound
    starts in it, null when none does; times are seconds from the start of the request's audio, not of the
    line, and `alignment` and `normalized_alignment` cover the text exactly once across the lines.
    """
    per_char = ms_per_char / 1000
    chunk_bytes = max(2, round(rate * chunk_ms / 1000) * 2)
    lines: list[tuple[dict[str, Any], bytes]] = []
    first = 0
    for offset in range(0, len(pcm), chunk_bytes):
        piece = pcm[offset : offset + chunk_bytes]
        ends_at = (offset + len(piece)) / 2 / rate
        last = len(text) if offset + chunk_bytes >= len(pcm) else min(len(text), math.ceil(ends_at / per_char - 1e-9))
        alignment = _alignment(text, first, last, per_char) if last > first else None
        first = max(first, last)
        line = {
            "audio_base64": base64.b64encode(piece).decode(),
            "alignment": alignment,
            "normalized_alignment": alignment,
        }
        lines.append((line, piece))
    return lines


def _alignment(text: str, first: int, last: int, per_char: float) -> dict[str, list[Any]]:
    indices = range(first, last)
    return {
        "characters": [text[i] for i in indices],
        "character_start_times_seconds": [round(i * per_char, 3) for i in indices],
        "character_end_times_seconds": [round((i + 1) * per_char, 3) for i in indices],
    }


VOICE_NAMES = {
    "JBFqnCBsd6RMkjVDRZzb": ("George", "premade"),
    "21m00Tcm4TlvDq8ikWAM": ("Rachel", "premade"),
    "EXAVITQu4vr4xnxnyYXq": ("Sarah", "premade"),
    "pNInz6obpgDQGcFmaJgB": ("Adam", "premade"),
}


def voice_json(voice_id: str, preview_base: str = "") -> dict[str, Any]:
    """A voice as /v2/voices lists it; the preview lives on a public file host, like the vendor's bucket."""
    name, category = VOICE_NAMES.get(voice_id, (f"Voice {voice_id[:4]}", "cloned"))
    return {
        "voice_id": voice_id,
        "name": name,
        "category": category,
        "description": f"{name}, a test voice.",
        "labels": {"accent": "american", "language": "en"},
        "preview_url": f"{preview_base}/eleven-public-prod/premade/voices/{voice_id}/preview.mp3"
        if preview_base
        else None,
    }


@functools.lru_cache(maxsize=16)
def preview_for(voice_id: str) -> bytes:
    """A voice's sample on the file host: a second of its tone as WAV. The vendor's are MP3; the fake
    encodes nothing, and browsers sniff the container, so it still plays under the vendor's audio/mpeg."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(22050)
        wav.writeframes(pcm_for(f"Preview of {voice_id}", 22050, ms_per_char=1000 / 35))
    return out.getvalue()


LANGUAGES = [{"language_id": "en", "name": "English"}, {"language_id": "de", "name": "German"}]
MODELS = [
    {"model_id": "eleven_flash_v2_5", "name": "Eleven Flash v2.5", "can_do_text_to_speech": True,
     "can_be_finetuned": False, "maximum_text_length_per_request": 40000, "languages": LANGUAGES},
    {"model_id": "eleven_multilingual_v2", "name": "Eleven Multilingual v2", "can_do_text_to_speech": True,
     "can_be_finetuned": True, "maximum_text_length_per_request": 10000, "languages": LANGUAGES},
    {"model_id": "eleven_v3", "name": "Eleven v3", "can_do_text_to_speech": True,
     "can_be_finetuned": False, "maximum_text_length_per_request": 5000, "languages": LANGUAGES},
    {"model_id": "eleven_multilingual_sts_v2", "name": "Eleven Multilingual v2 (speech to speech)",
     "can_do_text_to_speech": False, "can_do_voice_conversion": True, "languages": LANGUAGES},
]  # fmt: skip
