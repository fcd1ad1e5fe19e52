"""Offline speech with eSpeak NG, loaded from the `espeakng-loader` wheel (no system package, no key)."""

from __future__ import annotations

import asyncio
import ctypes
import threading
import time
from collections.abc import AsyncGenerator
from typing import Any

import espeakng_loader

from chat.providers.base import ProviderError, SpeechReceipt, SpeechRequest, TTSProvider

_SYNCHRONOUS = 2  # AUDIO_OUTPUT_SYNCHRONOUS: espeak_Synth returns when done, audio via the callback
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_RATE = 1  # espeakRATE, words per minute
_BUFFER_MS = 100
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

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
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        _library.update(lib=lib, rate=rate)
    return _library["lib"], _library["rate"]


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

    async def synthesize(self, request: SpeechRequest, receipt: SpeechReceipt) -> AsyncGenerator[bytes, None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        stop = threading.Event()
        voice = request.language_code or self.voice
        rate = round(self.words_per_minute * request.voice_settings.speed)
        receipt.request_id, receipt.characters = "", 0  # local and free
        worker = loop.run_in_executor(None, self._run, request.text, voice, rate, queue, loop, stop)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise ProviderError("tts_unavailable", f"eSpeak NG failed: {item}")
                if receipt.first_byte_at is None:
                    receipt.first_byte_at = time.monotonic()
                yield item
        finally:
            stop.set()  # the callback sees it within one buffer (100 ms) and aborts the synthesis
            await asyncio.shield(worker)

    def _run(
        self,
        text: str,
        voice: str,
        rate: int,
        queue: asyncio.Queue[Any],
        loop: asyncio.AbstractEventLoop,
        stop: threading.Event,
    ) -> None:
        def on_audio(wav: Any, samples: int, _events: Any) -> int:
            if samples > 0 and wav:
                loop.call_soon_threadsafe(queue.put_nowait, ctypes.string_at(wav, samples * 2))
            return 1 if stop.is_set() else 0

        callback = _CALLBACK(on_audio)
        try:
            if not _acquire(stop):
                return
            try:
                lib, _ = _load()
                lib.espeak_SetSynthCallback(callback)
                if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                    lib.espeak_SetVoiceByName(self.voice.encode())
                lib.espeak_SetParameter(_RATE, max(80, min(rate, 450)), 0)
                data = text.encode("utf-8") + b"\0"
                lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            finally:
                _lock.release()
        except BaseException as exc:  # reported to the event loop, never lost in the thread
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)
