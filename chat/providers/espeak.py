"""Offline speech with eSpeak NG, loaded from the `espeakng-loader` wheel (no system package, no key)."""

from __future__ import annotations

import asyncio
import ctypes
import threading
import time
from collections.abc import AsyncGenerator
from itertools import pairwise
from typing import Any

import espeakng_loader

from chat.providers.base import Alignment, ProviderError, SpeechReceipt, SpeechRequest, TTSProvider, Voice

_SYNCHRONOUS = 2  # AUDIO_OUTPUT_SYNCHRONOUS: espeak_Synth returns when done, audio via the callback
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_RATE = 1  # espeakRATE, words per minute
_BUFFER_MS = 100
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
# eSpeak's pauses are exact zeros; a 10 ms window whose peak stays under this is silence.
_SILENCE_PEAK = 256


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """espeak_EVENT of speak_lib.h: for a word, its 1-based character position and its first sample."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _VoiceEntry(ctypes.Structure):
    """espeak_VOICE of speak_lib.h; `languages` is (priority byte, NUL-terminated name)* then a 0 byte."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))

# The library keeps global state and is not thread-safe: one synthesis at a time per process.
_lock = threading.Lock()
_library: dict[str, Any] = {}


def _load() -> tuple[ctypes.CDLL, int]:
    """Load and initialise the library once; returns it with its native sample rate."""
    if "lib" not in _library:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        rate = lib.espeak_Initialize(_SYNCHRONOUS, _BUFFER_MS, espeakng_loader.get_data_path().encode(), 0)
        if rate <= 0:
            raise ProviderError("tts_unavailable", "eSpeak NG could not be initialised.")
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_VoiceEntry))
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        _library.update(lib=lib, rate=rate)
    return _library["lib"], _library["rate"]


class WordTimer:
    """Cuts eSpeak's PCM at its word events and times the characters of each piece.

    A piece runs from one word's first character to the next word's; the word's characters share the
    time from its first sample to the end of its sound (the pause after it trimmed off), and the spaces
    and punctuation after it take none. eSpeak's own word lengths are not used: they are often 1 next to
    punctuation. Each piece's Alignment comes before its PCM, and the pieces cover the text exactly once.
    Times are ms from the start of the synthesis.
    """

    def __init__(self, text: str, rate: int) -> None:
        self.text = text
        self.rate = rate
        self.pending = bytearray()  # PCM of the open piece, from its first sample
        self.first_char = 0
        self.first_sample = 0
        self.has_word = False  # the open piece starts with a word (not so the text's leading punctuation)
        self.word_sample = 0

    def audio(self, pcm: bytes) -> None:
        self.pending.extend(pcm)

    def word(self, position: int, sample: int) -> list[bytes | Alignment]:
        """A word starts at 0-based character `position` and `sample`; the piece before it is complete."""
        position = min(position, len(self.text))
        if position <= self.first_char:
            if position == self.first_char and not self.has_word:  # the text opens with this word
                self.has_word, self.word_sample = True, max(sample, self.first_sample)
            return []  # a number read as several words reports the same position again
        items = self._cut(position, sample)
        self.has_word, self.word_sample = True, self.first_sample
        return items

    def finish(self) -> list[bytes | Alignment]:
        """The last piece, up to the end of the text and of the audio."""
        return self._cut(len(self.text), self.first_sample + len(self.pending) // 2)

    def _cut(self, end_char: int, end_sample: int) -> list[bytes | Alignment]:
        size = max(0, min(len(self.pending), (end_sample - self.first_sample) * 2))
        pcm = bytes(self.pending[:size])
        del self.pending[:size]
        chars = self.text[self.first_char : end_char]
        items: list[bytes | Alignment] = []
        if chars:
            items.append(self._alignment(chars, pcm))
        if pcm:
            items.append(pcm)
        self.first_char, self.first_sample = end_char, self.first_sample + size // 2
        return items

    def _alignment(self, chars: str, pcm: bytes) -> Alignment:
        start = self._ms(self.word_sample)
        end = self._ms(self.first_sample + self._sound_end(pcm, self.word_sample - self.first_sample))
        first, last = _word_span(chars) if self.has_word else (0, 0)
        bounds = [start + (end - start) * i // (last - first) for i in range(last - first + 1)] if last else [start]
        after = len(chars) - last
        return Alignment(
            chars=tuple(chars),
            char_start_times_ms=(*[start] * first, *bounds[:-1], *[end] * after),
            char_durations_ms=(*[0] * first, *(b - a for a, b in pairwise(bounds)), *[0] * after),
        )

    def _sound_end(self, pcm: bytes, from_sample: int) -> int:
        """The sample after the last audible 10 ms of `pcm` (at least `from_sample`)."""
        samples = memoryview(pcm).cast("h")
        window = max(1, self.rate // 100)
        end = len(samples)
        while end > from_sample:
            chunk = samples[max(from_sample, end - window) : end]
            if max(chunk) > _SILENCE_PEAK or min(chunk) < -_SILENCE_PEAK:
                return end
            end -= window
        return max(0, from_sample)

    def _ms(self, sample: int) -> int:
        return round(sample * 1000 / self.rate)


def _languages(address: int | None) -> list[str]:
    names: list[str] = []
    while address and ctypes.c_ubyte.from_address(address).value:
        name = ctypes.string_at(address + 1)
        names.append(name.decode("utf-8", "replace"))
        address += len(name) + 2
    return names


def _word_span(piece: str) -> tuple[int, int]:
    """Where the word that opens `piece` lies in it: from its first non-space to its first space after,
    less the punctuation that ends it (a word of punctuation alone, like "$", is kept whole)."""
    lead = len(piece) - len(piece.lstrip())
    run = piece[lead:].split(maxsplit=1)[0] if piece[lead:] else ""
    end = len(run)
    while end > 1 and not run[end - 1].isalnum():
        end -= 1
    return lead, lead + end


def _acquire(stop: threading.Event) -> bool:
    """Wait for the library, giving up when the caller stopped listening meanwhile."""
    while not _lock.acquire(timeout=0.05):
        if stop.is_set():
            return False
    if stop.is_set():
        _lock.release()
        return False
    return True


class EspeakTTS(TTSProvider):
    """eSpeak NG at its native rate (22050 Hz), synthesised in a worker thread and streamed as produced."""

    name = "espeak"
    metered = False  # local and free: no speech budget applies

    def __init__(self, *, voice: str = "en-us", words_per_minute: int = 175) -> None:
        self.voice = voice
        self.words_per_minute = words_per_minute

    @property
    def sample_rate(self) -> int:
        if "rate" in _library:  # read without the lock: a running synthesis must not block the event loop
            return int(_library["rate"])
        with _lock:
            return _load()[1]

    @property
    def default_voice_id(self) -> str:
        return self.voice

    def list_voices(self, *, limit: int) -> list[Voice]:
        """eSpeak NG's voices, each named by its language code (what espeak_SetVoiceByName takes)."""
        with _lock:
            lib, _ = _load()
            entries = lib.espeak_ListVoices(None)
            voices: dict[str, Voice] = {}
            index = 0
            while entries[index] and len(voices) < limit:
                entry = entries[index].contents
                languages = _languages(entry.languages)
                if languages and languages[0] not in voices:
                    name = (entry.name or b"").decode("utf-8", "replace") or languages[0]
                    voices[languages[0]] = Voice(
                        voice_id=languages[0], name=name, category="eSpeak NG", language=languages[0]
                    )
                index += 1
        return sorted(voices.values(), key=lambda v: v.name)

    async def synthesize(
        self, request: SpeechRequest, receipt: SpeechReceipt
    ) -> AsyncGenerator[bytes | Alignment, None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | Alignment | BaseException | None] = asyncio.Queue()
        stop = threading.Event()
        voices = [v for v in (request.voice_id, request.language_code, self.voice) if v]
        rate = round(self.words_per_minute * request.voice_settings.speed)
        receipt.request_id, receipt.characters = "", 0  # local and free
        worker = loop.run_in_executor(None, self._run, request.text, voices, rate, queue, loop, stop)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise ProviderError("tts_unavailable", f"eSpeak NG failed: {item}")
                if receipt.first_byte_at is None and isinstance(item, bytes):
                    receipt.first_byte_at = time.monotonic()
                yield item
        finally:
            stop.set()  # the callback sees it within one buffer (100 ms) and aborts the synthesis
            await asyncio.shield(worker)

    def _run(
        self,
        text: str,
        voices: list[str],
        rate: int,
        queue: asyncio.Queue[Any],
        loop: asyncio.AbstractEventLoop,
        stop: threading.Event,
    ) -> None:
        timer: WordTimer | None = None

        def send(items: list[bytes | Alignment]) -> None:
            for item in items:
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def on_audio(wav: Any, samples: int, events: Any) -> int:
            assert timer is not None
            if samples > 0 and wav:
                timer.audio(ctypes.string_at(wav, samples * 2))
            index = 0
            while events and (event := events[index]).type != _EVENT_LIST_TERMINATED:
                if event.type == _EVENT_WORD:
                    send(timer.word(event.text_position - 1, event.sample))
                index += 1
            return 1 if stop.is_set() else 0

        callback = _CALLBACK(on_audio)
        try:
            if not _acquire(stop):
                return
            try:
                lib, native_rate = _load()
                timer = WordTimer(text, native_rate)
                lib.espeak_SetSynthCallback(callback)
                # The request's voice (an eSpeak voice, or another vendor's id eSpeak does not know), else its
                # language, else ours: the first one eSpeak accepts.
                for candidate in voices:
                    if lib.espeak_SetVoiceByName(candidate.encode()) == 0:
                        break
                lib.espeak_SetParameter(_RATE, max(80, min(rate, 450)), 0)
                data = text.encode("utf-8") + b"\0"
                lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            finally:
                _lock.release()
            if not stop.is_set():
                send(timer.finish())
        except BaseException as exc:  # reported to the event loop, never lost in the thread
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)
