"""ElevenLabs text-to-speech over the vendor's WebSocket: one connection per process, a context per reply.

`multi-stream-input` (the default) lets one socket carry up to five synthesis contexts, so a process
keeps one socket per event loop, voice, model, language and format and gives each reply its own
context; beyond five replies at once it opens another socket. A reply's text goes in chunk by chunk
as the speech filter releases it, each flushed so generation starts at once, and the context keeps the
prosody continuous across chunks (no previous_text stitching needed). `stream-input` (one socket per
reply) is there for comparison and for accounts where multi-context is not available.

The rules the vendor's peers most often get wrong are kept here in one place:
* a context is always closed — at the reply's end, on interrupt, on cancel, on failure — and counts
  against the socket's five until its `isFinal` arrives (a leaked context is a 1008 for every reply on
  that socket);
* audio of a context closed by us is dropped on arrival, however late it comes;
* every open context gets a keep-alive well within the inactivity timeout, and a socket without
  contexts is closed by us before the vendor's timeout would;
* when a socket drops, every reply on it fails with a clear ProviderError and the next reply connects
  again; the API key travels in a header only and is kept out of logs and errors.

Messages to the vendor are built from the official SDK's message types; the vendor's messages, many per
second per reply, are read as plain JSON (a pydantic model per audio message would cost CPU for nothing).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import random
import time
import uuid
import weakref
from collections import deque
from typing import Any
from urllib.parse import urlencode

from elevenlabs.types import (
    CloseConnection,
    CloseContext,
    CloseSocket,
    GenerationConfig,
    InitialiseContext,
    InitializeConnection,
    KeepContextAlive,
    RealtimeVoiceSettings,
    SendText,
    SendTextMulti,
)
from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from chat.providers.base import (
    Alignment,
    AudioPart,
    ProviderError,
    SpeechReceipt,
    SpeechRequest,
    SpeechStream,
    StreamingTTSProvider,
)

logger = logging.getLogger(__name__)
# The websockets library logs the handshake's headers (the API key among them) and every frame at DEBUG:
# it gets a logger of its own that never shows the key (and that LOGGING keeps quiet by default).
wire_logger = logging.getLogger(f"{__name__}.wire")

VENDOR_CONTEXT_LIMIT = 5  # simultaneous contexts per multi-stream-input socket; more is a 1008 close
_MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # one audio message can hold seconds of base64 PCM
_MAX_RETRY_DELAY = 5.0


class _RedactKey(logging.Filter):
    """Blanks the API key header in the websockets library's handshake log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() in ("xi-api-key", "authorization"):
            record.args = (args[0], "[redacted]")
        return True


wire_logger.addFilter(_RedactKey())


def _wire(message: BaseModel) -> str:
    return message.json(exclude_none=True)


class ElevenLabsWebSocketTTS(StreamingTTSProvider):
    """PCM from ElevenLabs' TTS WebSocket, one stream per reply, sockets shared per process."""

    name = "elevenlabs_ws"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = "https://api.elevenlabs.io",
        voice_id: str,
        model_id: str = "eleven_flash_v2_5",
        output_format: str = "pcm_24000",
        multi_context: bool = True,
        contexts_per_socket: int = VENDOR_CONTEXT_LIMIT,
        inactivity_timeout: int = 20,
        idle_seconds: float = 10.0,
        timeout: float = 10.0,
        max_retries: int = 2,
        retry_base_delay: float = 0.2,
        auto_mode: bool = False,
        chunk_length_schedule: list[int] | None = None,
    ) -> None:
        if not output_format.startswith("pcm_") or not output_format[4:].isdigit():
            raise ValueError(f"ElevenLabsWebSocketTTS streams raw PCM only; {output_format!r} is not pcm_<rate>.")
        if not base_url.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError(f"base_url {base_url!r} must be an http(s) or ws(s) URL.")
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.voice_id = voice_id
        self.model_id = model_id
        self._output_format = output_format
        self.multi_context = multi_context
        self.contexts_per_socket = min(VENDOR_CONTEXT_LIMIT, max(1, contexts_per_socket)) if multi_context else 1
        self.inactivity_timeout = min(180, max(1, int(inactivity_timeout)))
        # Keep-alives go out at a third of the vendor's timeout: two may be late before it closes.
        self.keepalive_seconds = self.inactivity_timeout / 3
        self.idle_seconds = min(max(0.0, idle_seconds), self.inactivity_timeout * 0.75)
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.retry_base_delay = retry_base_delay
        self.auto_mode = auto_mode
        self.chunk_length_schedule = list(chunk_length_schedule) if chunk_length_schedule else None

    def __repr__(self) -> str:  # never show the key
        endpoint = "multi-stream-input" if self.multi_context else "stream-input"
        return f"ElevenLabsWebSocketTTS(base_url={self.base_url!r}, voice_id={self.voice_id!r}, endpoint={endpoint})"

    @property
    def sample_rate(self) -> int:
        return int(self._output_format.removeprefix("pcm_"))

    @property
    def output_format(self) -> str:
        return self._output_format

    def url(self, voice_id: str, model_id: str, language_code: str = "") -> str:
        """The socket's address: everything a socket is opened with, and nothing secret."""
        root = self.base_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        endpoint = "multi-stream-input" if self.multi_context else "stream-input"
        query: dict[str, str] = {
            "model_id": model_id,
            "output_format": self._output_format,
            "inactivity_timeout": str(self.inactivity_timeout),
            "sync_alignment": "true",  # timing on every audio message: chunk ends and word timing need it
        }
        if language_code:
            query["language_code"] = language_code
        if self.auto_mode:
            query["auto_mode"] = "true"
        return f"{root}/v1/text-to-speech/{voice_id}/{endpoint}?{urlencode(query)}"

    # --- streams -------------------------------------------------------------------------------
    async def open_stream(self, request: SpeechRequest, receipt: SpeechReceipt | None = None) -> SpeechStream:
        url = self.url(request.voice_id or self.voice_id, request.model_id or self.model_id, request.language_code)
        receipt = receipt or SpeechReceipt()
        for attempt in range(self.max_retries + 1):
            # A fresh id per context, never reused: late audio of an old one cannot be taken for a new one's.
            context_id = uuid.uuid4().hex if self.multi_context else ""
            stream = _Stream(self, context_id, receipt)
            receipt.request_id = context_id  # the vendor's name for this stream, for correlating records
            socket = _pool(self, url).reserve(stream)
            try:
                await socket.wait_connected()
                await stream.start(socket, self._init_message(request, context_id))
                return stream
            except ProviderError as error:
                socket.release(stream)
                # Nothing was spoken on this socket yet, so a socket that went away is worth another try.
                retry = error.retryable or error.code == "tts_stream_failed"
                if not retry or attempt == self.max_retries:
                    raise
                logger.warning("ElevenLabs WebSocket attempt %d failed (%s); retrying", attempt + 1, error.code)
                await asyncio.sleep(
                    min(_MAX_RETRY_DELAY, self.retry_base_delay * 2**attempt * random.uniform(0.8, 1.2))
                )
        raise AssertionError("unreachable")

    def _init_message(self, request: SpeechRequest, context_id: str) -> str:
        settings = request.voice_settings
        voice = RealtimeVoiceSettings(
            stability=settings.stability,
            similarity_boost=settings.similarity_boost,
            style=settings.style,
            use_speaker_boost=settings.use_speaker_boost,
            speed=settings.speed,
        )
        options: dict[str, Any] = {"voice_settings": voice}
        if self.chunk_length_schedule:
            options["generation_config"] = GenerationConfig(
                chunk_length_schedule=[float(n) for n in self.chunk_length_schedule]
            )
        if self.multi_context:
            return _wire(InitialiseContext(text=" ", context_id=context_id, **options))
        return _wire(InitializeConnection(text=" ", **options))

    def text_message(self, context_id: str, text: str) -> str:
        # The vendor wants every text to end with a single space; flush makes it generate this chunk now.
        text = text.strip() + " "
        if self.multi_context:
            return _wire(SendTextMulti(text=text, context_id=context_id, flush=True))
        return _wire(SendText(text=text, flush=True))

    def keepalive_message(self, context_id: str) -> str:
        if self.multi_context:
            return _wire(KeepContextAlive(context_id=context_id))
        return _wire(SendText(text=" "))  # on stream-input an empty text would end the stream

    def close_message(self, context_id: str) -> str:
        """Ends a stream; what was already flushed is still generated and sent, then isFinal."""
        if self.multi_context:
            return _wire(CloseContext(context_id=context_id, close_context=True))
        return _wire(CloseConnection(text=""))

    def scrub(self, text: str) -> str:
        """`text` with the API key blanked, should a vendor message ever echo it."""
        return text.replace(self.api_key, "[redacted]") if self.api_key else text


# --- sockets -------------------------------------------------------------------------------------
class _Pool:
    """The sockets of one event loop for one address and key."""

    def __init__(self, provider: ElevenLabsWebSocketTTS, url: str) -> None:
        self.provider = provider
        self.url = url
        self.sockets: list[_Socket] = []

    def reserve(self, stream: _Stream) -> _Socket:
        """A socket with room for one more context (connecting, if need be), the context counted on it."""
        socket = next((s for s in self.sockets if s.has_room()), None)
        if socket is None:
            socket = _Socket(self, self.provider)
            self.sockets.append(socket)
            socket.start_connecting()
        socket.contexts[stream.context_id] = stream
        socket.idle_since = None
        return socket

    def forget(self, socket: _Socket) -> None:
        with contextlib.suppress(ValueError):
            self.sockets.remove(socket)


# Per event loop (asyncio objects cannot cross loops), per address and API key (hashed: a key is never a
# dictionary key in the clear) — all the sockets this process has open to the vendor.
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], _Pool]] = weakref.WeakKeyDictionary()


# Tasks nobody awaits (a close sent from a callback) are kept here until done, so none is collected early.
_background: set[asyncio.Task[None]] = set()


def _pool(provider: ElevenLabsWebSocketTTS, url: str) -> _Pool:
    """The pool for `url`; on stream-input every socket holds one context, so none is ever shared."""
    per_loop = _pools.setdefault(asyncio.get_running_loop(), {})
    key = (url, hashlib.sha256(provider.api_key.encode()).hexdigest())
    pool = per_loop.setdefault(key, _Pool(provider, url))
    pool.provider = provider  # the latest settings for sockets opened from now on
    return pool


def _in_background(coroutine: Any, name: str) -> None:
    task = asyncio.create_task(coroutine, name=name)
    _background.add(task)
    task.add_done_callback(_background.discard)


def open_sockets() -> int:
    """Sockets this event loop has open or opening to the vendor (tests and metrics)."""
    return sum(len(pool.sockets) for pool in _pools.get(asyncio.get_running_loop(), {}).values())


async def aclose_sockets() -> None:
    """Close every socket of the running loop (tests and shutdown); the next reply connects again."""
    sockets = [s for pool in _pools.pop(asyncio.get_running_loop(), {}).values() for s in pool.sockets]
    await asyncio.gather(*(s.shutdown() for s in sockets), return_exceptions=True)


class _Socket:
    """One WebSocket to the vendor and the contexts it carries (each a `_Stream`)."""

    def __init__(self, pool: _Pool, provider: ElevenLabsWebSocketTTS) -> None:
        self.pool = pool
        self.provider = provider
        self.ws: ClientConnection | None = None
        self.contexts: dict[str, _Stream] = {}  # counted against the vendor's limit until their isFinal
        self.connecting: asyncio.Task[None] | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.closing = False  # no new contexts: being closed by us, or already gone
        self.gone = False
        self.idle_since: float | None = None
        self.vendor_error: dict[str, Any] | None = None  # the error message that came before a close
        self.failure: ProviderError | None = None  # why it is gone

    def has_room(self) -> bool:
        return not self.closing and len(self.contexts) < self.provider.contexts_per_socket

    # --- connecting ------------------------------------------------------------------------------
    def start_connecting(self) -> None:
        # A task of the socket, not of the reply that asked first: other replies wait on it too, and
        # cancelling the first one must not cancel their connection.
        self.connecting = asyncio.create_task(self._connect(), name="elevenlabs-ws-connect")
        # Its error reaches every reply waiting on it; with none left waiting it must not be "never retrieved".
        self.connecting.add_done_callback(lambda task: task.cancelled() or task.exception())

    async def wait_connected(self) -> None:
        assert self.connecting is not None
        await asyncio.shield(self.connecting)

    async def _connect(self) -> None:
        provider = self.provider
        try:
            self.ws = await connect(
                self.pool.url,
                additional_headers={"xi-api-key": provider.api_key},
                compression=None,  # base64 PCM barely compresses; deflating it would only burn CPU
                open_timeout=min(5.0, provider.timeout),
                close_timeout=2.0,
                max_size=_MAX_MESSAGE_BYTES,
                logger=wire_logger,
            )
        except InvalidStatus as exc:
            error = _status_error(exc.response.status_code, bytes(exc.response.body or b""), provider)
            self._gone(error)
            raise error from None
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            logger.warning("ElevenLabs WebSocket connection failed: %s", type(exc).__name__)
            error = ProviderError("tts_unavailable", "ElevenLabs cannot be reached.", retryable=True)
            self._gone(error)
            raise error from None
        self.tasks = [
            asyncio.create_task(self._read(), name="elevenlabs-ws-read"),
            asyncio.create_task(self._tend(), name="elevenlabs-ws-keepalive"),
        ]

    # --- sending -------------------------------------------------------------------------------
    async def send(self, message: str) -> None:
        if self.gone or self.ws is None:
            raise self.failure or _dropped()
        try:
            await self.ws.send(message)
        except ConnectionClosed:
            raise self.failure or _dropped() from None

    def release(self, stream: _Stream) -> None:
        """`stream` no longer counts against this socket (its isFinal came, or it never started)."""
        if self.contexts.get(stream.context_id) is stream:
            del self.contexts[stream.context_id]
        if not self.contexts:
            self.idle_since = time.monotonic()
            if not self.provider.multi_context and not self.gone:
                self.closing = True  # stream-input: the socket was this reply's alone
                _in_background(self.shutdown(), "elevenlabs-ws-close")

    # --- receiving -----------------------------------------------------------------------------
    async def _read(self) -> None:
        assert self.ws is not None
        error: ProviderError | None = None
        try:
            async for raw in self.ws:
                self._dispatch(raw)
        except ConnectionClosed:
            pass
        except Exception:  # a bug here must fail the replies on this socket, not hang them
            logger.exception("ElevenLabs WebSocket reader failed")
            error = ProviderError("tts_stream_failed", "The ElevenLabs speech stream could not be read.")
        finally:
            if error is None and not self.closing:
                error = _close_error(self.ws.close_code, self.ws.close_reason or "", self.vendor_error, self.provider)
            self._gone(error)
            for task in self.tasks:
                if task is not asyncio.current_task():
                    task.cancel()
            if not self.closing:
                with contextlib.suppress(Exception):
                    await self.ws.close()

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            data = json.loads(raw)
        except ValueError:
            logger.warning("ElevenLabs sent a message that is not JSON; ignored")
            return
        if not isinstance(data, dict):
            return
        context_id = data.get("contextId", data.get("context_id"))
        if self.provider.multi_context:
            stream = self.contexts.get(context_id) if isinstance(context_id, str) else None
        else:
            stream = next(iter(self.contexts.values()), None)
        if "error" in data or ("message" in data and "audio" not in data):
            self.vendor_error = data  # the close that follows says which replies it ends
            if stream is not None:
                stream.fail(_vendor_error(data, None, self.provider))
            return
        if stream is None:
            return  # a message for a context we no longer track (its isFinal came already)
        stream.heard()
        audio = data.get("audio")
        if audio:
            try:
                pcm = base64.b64decode(audio)
            except (binascii.Error, ValueError):
                stream.fail(ProviderError("tts_stream_failed", "ElevenLabs sent audio that could not be decoded."))
                return
            stream.deliver(pcm, _alignment(data.get("alignment")))
        if data.get("isFinal") or data.get("is_final"):
            stream.finished()
            self.release(stream)

    # --- housekeeping --------------------------------------------------------------------------
    async def _tend(self) -> None:
        """Keep-alives for quiet contexts, and closing the socket once it has carried nothing for a while."""
        provider = self.provider
        tick = max(0.05, min(provider.keepalive_seconds, provider.idle_seconds or provider.keepalive_seconds) / 2)
        while not self.gone:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if not self.contexts and self.idle_since is not None and now - self.idle_since >= provider.idle_seconds:
                await self.shutdown()
                return
            lost = [s for s in self.contexts.values() if s.unfinished_since(now) > provider.timeout]
            if lost and not self.closing:
                # Contexts we closed that the vendor never finished still count against this socket's
                # five, for good: take no more, and close it once only those are left.
                logger.warning("ElevenLabs never finished %d closed speech contexts; retiring that socket", len(lost))
                self.closing = True
            if lost and len(lost) == len(self.contexts):
                await self.shutdown()
                return
            for stream in list(self.contexts.values()):
                if stream.needs_keepalive(now):
                    await stream.keepalive()

    async def shutdown(self) -> None:
        """Close the socket on purpose: contexts still on it end with an error."""
        self.closing = True
        self.pool.forget(self)
        if self.ws is not None and not self.gone:
            with contextlib.suppress(Exception):
                if self.provider.multi_context:
                    await self.ws.send(_wire(CloseSocket(close_socket=True)))
                await self.ws.close()
        self._gone(ProviderError("tts_stream_failed", "The ElevenLabs speech connection was closed."))
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        await asyncio.gather(*(t for t in self.tasks if t is not current), return_exceptions=True)

    def _gone(self, error: ProviderError | None) -> None:
        """The socket is unusable: fail whatever it still carried, and stop offering it."""
        if self.gone:
            return
        self.gone = self.closing = True
        self.failure = error or _dropped()
        self.pool.forget(self)
        for stream in list(self.contexts.values()):
            if stream.socket is self:  # those still connecting hear of it from wait_connected()
                stream.fail(self.failure)
        self.contexts.clear()


# --- one reply's stream ------------------------------------------------------------------------------
class _Stream(SpeechStream):
    """One context: text out, audio in, in order; always closed upstream however it ends."""

    def __init__(self, provider: ElevenLabsWebSocketTTS, context_id: str, receipt: SpeechReceipt) -> None:
        self.provider = provider
        self.context_id = context_id
        self.receipt = receipt
        self.socket: _Socket | None = None
        self.parts: deque[AudioPart] = deque()
        self.changed = asyncio.Event()
        self.error: ProviderError | None = None
        self.final = False  # the vendor's isFinal came: nothing more will
        self.ended = False  # we sent the close: no more text
        self.closed = False  # stopped by us: audio still arriving is dropped
        self.last_sent = time.monotonic()
        self.last_heard = time.monotonic()  # the vendor's last message for this context, even one dropped
        self.ended_at: float | None = None
        self.waiting_since: float | None = None  # audio is owed to us since then (a stall clock)

    async def start(self, socket: _Socket, init: str) -> None:
        self.socket = socket
        await self._send(init)

    async def _send(self, message: str) -> None:
        assert self.socket is not None
        await self.socket.send(message)
        self.last_sent = time.monotonic()

    # --- the SpeechStream side -----------------------------------------------------------------
    async def send(self, text: str) -> None:
        if self.error is not None:
            raise self.error
        if self.ended or self.closed:
            raise RuntimeError("text sent to a speech stream that was ended or closed")
        spoken = text.strip()
        if not spoken:
            return
        await self._send(self.provider.text_message(self.context_id, spoken))
        self.receipt.characters += len(spoken)
        self._owed()

    async def end(self) -> None:
        if self.ended or self.closed or self.error is not None:
            return
        self.ended, self.ended_at = True, time.monotonic()
        self._owed()
        await self._send(self.provider.close_message(self.context_id))

    def _owed(self) -> None:
        """Audio (or the isFinal) is owed from now: start the stall clock, and wake a reader waiting
        without one so that it waits with one."""
        if self.waiting_since is None:
            self.waiting_since = time.monotonic()
            self.changed.set()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.parts.clear()
        self.changed.set()
        socket = self.socket
        if socket is None or self.final or socket.gone:
            return
        if not self.provider.multi_context:
            socket.closing = True  # stream-input: closing the socket is the only way to stop it at once
            await socket.shutdown()
            return
        if not self.ended:
            self.ended, self.ended_at = True, time.monotonic()
            with contextlib.suppress(ProviderError):
                await self._send(self.provider.close_message(self.context_id))
        # The context still counts against the socket until its isFinal; its audio is dropped meanwhile.

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> AudioPart:
        # A coroutine, not an async generator: a caller may wait on it with a timeout and cancel the
        # wait, and nothing is lost (the parts stay queued here).
        while True:
            if self.closed:
                raise StopAsyncIteration
            if self.parts:
                return self.parts.popleft()
            if self.error is not None:
                raise self.error
            if self.final:
                raise StopAsyncIteration
            self.changed.clear()
            if self.waiting_since is None:
                await self.changed.wait()
                continue
            left = self.waiting_since + self.provider.timeout - time.monotonic()
            try:
                async with asyncio.timeout(max(0.0, left)):
                    await self.changed.wait()
            except TimeoutError:
                if self.waiting_since is not None and not self.parts and not self.final:
                    self.fail(_stalled(self.provider.timeout))

    # --- the socket side -----------------------------------------------------------------------
    def deliver(self, pcm: bytes, alignment: Alignment | None) -> None:
        if self.closed or self.error is not None:
            return  # a context we closed: late audio is never relayed
        now = time.monotonic()
        if self.receipt.first_byte_at is None:
            self.receipt.first_byte_at = now
        # Audio came: the vendor is answering. After our close we still wait for isFinal, so the clock
        # restarts rather than stops.
        self.waiting_since = now if self.ended else None
        self.parts.append(AudioPart(pcm, alignment))
        self.changed.set()

    def finished(self) -> None:
        self.final = True
        self.waiting_since = None
        self.changed.set()

    def fail(self, error: ProviderError) -> None:
        if self.final or self.error is not None:
            return
        self.error = error
        self.changed.set()
        if self.socket is not None and not self.socket.gone and not self.ended:
            # Our side of the context is closed too, so it never lingers on the shared socket.
            self.ended, self.ended_at = True, time.monotonic()
            if self.provider.multi_context:
                message = self.provider.close_message(self.context_id)
                _in_background(_quietly(self.socket.send(message)), "elevenlabs-ws-close")

    def heard(self) -> None:
        self.last_heard = time.monotonic()

    def unfinished_since(self, now: float) -> float:
        """Seconds since we closed this context without the vendor saying a word of it since (0: not so)."""
        if self.final or self.ended_at is None:
            return 0.0
        return now - max(self.ended_at, self.last_heard)

    def needs_keepalive(self, now: float) -> bool:
        return not self.final and not self.ended and now - self.last_sent >= self.provider.keepalive_seconds

    async def keepalive(self) -> None:
        with contextlib.suppress(ProviderError):
            await self._send(self.provider.keepalive_message(self.context_id))


async def _quietly(send: Any) -> None:
    with contextlib.suppress(ProviderError):
        await send


# --- the vendor's messages -----------------------------------------------------------------------
def _alignment(data: Any) -> Alignment | None:
    if not isinstance(data, dict):
        return None
    chars, starts, durations = data.get("chars"), data.get("charStartTimesMs"), data.get("charDurationsMs")
    if not isinstance(chars, list) or not isinstance(starts, list) or not isinstance(durations, list):
        return None
    try:
        return Alignment(tuple(map(str, chars)), tuple(map(int, starts)), tuple(map(int, durations)))
    except (TypeError, ValueError):
        return None


def _dropped() -> ProviderError:
    return ProviderError(
        "tts_stream_failed", "The connection to ElevenLabs dropped in the middle of the reply's speech."
    )


def _stalled(timeout: float) -> ProviderError:
    return ProviderError("tts_timeout", f"ElevenLabs stopped sending audio for over {timeout:g} s.")


def _vendor_error(data: dict[str, Any] | None, reason: str | None, provider: ElevenLabsWebSocketTTS) -> ProviderError:
    """The vendor's error message (or close reason) as a protocol error a person can act on."""
    error = str((data or {}).get("error") or "")
    message = provider.scrub(str((data or {}).get("message") or reason or ""))
    said = f"{error} {message}".lower()
    if "quota" in said:
        return ProviderError("tts_quota_exceeded", "The ElevenLabs account is out of credits.")
    if "api key" in said or "api_key" in said or "unauthorized" in said:
        return ProviderError("tts_unavailable", "The ElevenLabs API key was rejected; check ELEVENLABS_API_KEY.")
    if ("voice" in said and "not found" in said) or "voice_not_found" in said:
        return ProviderError("tts_voice_not_found", "The agent's ElevenLabs voice does not exist.")
    if "maximum simultaneous contexts" in said or "max_active" in said:
        return ProviderError(
            "tts_stream_failed", "ElevenLabs refused one more speech context on a connection (its limit is five)."
        )
    if "have not received a new text input" in said:
        return ProviderError("tts_stream_failed", "ElevenLabs ended the speech stream after a pause without text.")
    if "too many" in said or "rate" in error or "concurren" in said:
        return ProviderError("rate_limited", "ElevenLabs is rate limiting us (too many requests at once).")
    return ProviderError("tts_invalid_request", f"ElevenLabs refused the speech stream: {message[:200]}")


def _close_error(
    code: int | None, reason: str, vendor: dict[str, Any] | None, provider: ElevenLabsWebSocketTTS
) -> ProviderError:
    """Why a socket closed, for the replies it carried."""
    if vendor is not None or code == 1008:
        return _vendor_error(vendor, reason, provider)
    if code in (1000, 1001):
        return ProviderError("tts_stream_failed", "ElevenLabs closed the speech connection before the audio ended.")
    return _dropped()


def _status_error(status: int, body: bytes, provider: ElevenLabsWebSocketTTS) -> ProviderError:
    """A refused WebSocket handshake."""
    text = provider.scrub(body[:500].decode("utf-8", "replace"))
    if "quota" in text:
        return ProviderError("tts_quota_exceeded", "The ElevenLabs account is out of credits.", status=status)
    if status in (401, 403):
        return ProviderError(
            "tts_unavailable", "The ElevenLabs API key was rejected; check ELEVENLABS_API_KEY.", status=status
        )
    if status == 404:
        return ProviderError("tts_voice_not_found", "The agent's ElevenLabs voice does not exist.", status=status)
    if status == 429:
        return ProviderError(
            "rate_limited", "ElevenLabs is rate limiting us (too many requests at once).", retryable=True, status=429
        )
    return ProviderError(
        "tts_unavailable", f"ElevenLabs is unavailable (HTTP {status}).", retryable=status >= 500, status=status
    )
