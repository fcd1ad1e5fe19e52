"""ElevenLabs text-to-speech through the official SDK (`AsyncElevenLabs`): `/stream/with-timestamps` for
PCM with per-character timing, or plain `/stream`."""

from __future__ import annotations

import asyncio
import atexit
import binascii
import contextlib
import itertools
import json
import logging
import random
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from contextlib import aclosing
from typing import Any, cast

import aiohttp
import httpx
from elevenlabs import AsyncElevenLabs, ElevenLabs
from elevenlabs.core import ApiError, RequestOptions
from elevenlabs.core.parse_error import ParsingError
from httpx_aiohttp import AiohttpTransport

from chat.providers.base import (
    Alignment,
    ProviderError,
    SpeechReceipt,
    SpeechRequest,
    TTSModel,
    TTSProvider,
    Voice,
)

logger = logging.getLogger(__name__)

# Process-wide state, one entry per event loop (asyncio objects cannot cross loops): one keep-alive
# connection pool per base URL lets later chunks skip the TCP and TLS handshakes. Idle pooled
# connections are kept on purpose; every request and response stream is closed as soon as its
# generator is closed or its task cancelled (`async with` around the SDK's stream). The plan's
# concurrency limit is not kept here: it is per account, so the turn holds a slot of chat/limits.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Pool]] = weakref.WeakKeyDictionary()
# httpcore scans every connection of a pool on each request and each response's close, so one pool of a
# few hundred connections cost a fifth of the server's CPU at a hundred streams: keep its pools this
# small and spread requests over as many as the concurrency needs (aiohttp's pool is keyed: one will do).
_CONNECTIONS_PER_POOL = 16
# Seconds an idle pooled connection is kept for the next request (httpx's default).
_KEEPALIVE_EXPIRY = 5.0

_MAX_RETRY_AFTER = 10.0
_CONNECT_TIMEOUT = 5.0

# Models that turn an SSML `<break time="1.5s"/>` (up to 3 s) into a pause. ElevenLabs' help centre
# ("Do pauses and SSML phoneme tags work with the API?"): every model except Eleven v3 honours break
# tags; v3 has its own `[pause]` audio tags instead. Listed rather than "all but v3" so a new model
# family is opted in only once someone has checked it.
BREAK_MODELS = frozenset(
    {
        "eleven_flash_v2_5",
        "eleven_flash_v2",
        "eleven_turbo_v2_5",
        "eleven_turbo_v2",
        "eleven_multilingual_v2",
        "eleven_multilingual_v1",
        "eleven_monolingual_v1",
    }
)


def breaks_supported(model_id: str) -> bool:
    """Whether the ElevenLabs model `model_id` honours SSML `<break time="…"/>` tags (v3 does not)."""
    return model_id in BREAK_MODELS


class _NoCookies(httpx.Cookies):
    """A cookie store that keeps nothing (see _VendorClient)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        pass


_NO_COOKIES = _NoCookies()


class _VendorClient(httpx.AsyncClient):
    """An httpx client that keeps no cookies between requests.

    The pool is shared by every user's requests, so a cookie the vendor set on one response (a CDN's
    bot-management cookie, say) would be sent with every later request of every user. The API is
    authenticated by its key alone and needs none. httpx cannot be told not to keep cookies, and reading
    them from each response cost a sixth of what a TTS request took to set up (~50 of 310 µs, against an
    in-process transport)."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        pass


class _Pool:
    """Keep-alive connections of this loop to one vendor, handed out as SDK-ready httpx clients.

    With `aiohttp` (the default) one httpx client whose transport is aiohttp's (httpx-aiohttp): its
    C parser reads the body from asyncio's own protocol callbacks, where httpcore + h11 + anyio parse
    in Python and re-register the socket with the selector on every read. With `httpx`, httpx's own
    transport over small pools handed out in turn (see _CONNECTIONS_PER_POOL).
    """

    def __init__(self, keepalive: int, http_client: str) -> None:
        if http_client == "aiohttp":
            # Unlimited connections (the account's slots bound them), idle ones kept _KEEPALIVE_EXPIRY,
            # and the certificates httpx trusts (certifi, or SSL_CERT_FILE / SSL_CERT_DIR when set).
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=0, keepalive_timeout=_KEEPALIVE_EXPIRY, ssl=httpx.create_ssl_context()
            )
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                cookie_jar=aiohttp.DummyCookieJar(),  # no cookies kept, as in _VendorClient
            )
            self.clients = [_VendorClient(transport=AiohttpTransport(client=session))]
        else:
            limits = httpx.Limits(
                max_connections=None,
                max_keepalive_connections=_CONNECTIONS_PER_POOL,
                keepalive_expiry=_KEEPALIVE_EXPIRY,
            )
            shards = max(1, -(-keepalive // _CONNECTIONS_PER_POOL))
            self.clients = [_VendorClient(limits=limits) for _ in range(shards)]
        self._next = itertools.cycle(self.clients)

    def next(self) -> httpx.AsyncClient:
        return next(self._next)


def _shared_client(base_url: str, keepalive: int = 32, http_client: str = "aiohttp") -> httpx.AsyncClient:
    """A keep-alive pool of this loop for `base_url`; later chunks skip the TCP and TLS handshakes."""
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    key = f"{http_client} {base_url}"
    if key not in per_loop:
        per_loop[key] = _Pool(keepalive, http_client)
    return per_loop[key].next()


async def aclose_shared_clients() -> None:
    """Close the pooled connections of the running loop (tests and shutdown; the next use reopens)."""
    await _aclose(_clients.pop(asyncio.get_running_loop(), {}))


async def _aclose(pools: dict[str, _Pool]) -> None:
    for pool in pools.values():
        for client in pool.clients:
            await client.aclose()


@atexit.register
def _close_at_exit() -> None:
    """Close the pools of loops that stopped without doing it (Daphne's, when the process is stopped):
    an aiohttp session left open logs "Unclosed client session" as an error when it is collected."""
    for loop, pools in list(_clients.items()):
        if loop.is_closed() or loop.is_running():
            continue
        with contextlib.suppress(Exception):
            loop.run_until_complete(_aclose(pools))
        _clients.pop(loop, None)


def _detail(body: Any) -> tuple[str, str]:
    """The vendor's error code and message from any of its body shapes."""
    if isinstance(body, dict):
        detail = body.get("detail", body)
        if isinstance(detail, dict):
            return str(detail.get("code") or detail.get("status") or ""), str(detail.get("message") or "")
        if isinstance(detail, list):
            problems = [
                f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail if isinstance(d, dict)
            ]
            return "validation_error", "; ".join(problems)
    return "", str(body)[:200]


def translate_api_error(exc: ApiError) -> ProviderError:
    """Map a vendor error to a protocol error code with a message an operator can act on."""
    status = exc.status_code or 0
    code, message = _detail(exc.body)
    if code == "quota_exceeded":  # a 401, but not a bad key
        return ProviderError("tts_quota_exceeded", "The ElevenLabs account is out of credits.", status=status)
    if status == 401:
        return ProviderError(
            "tts_unavailable", "The ElevenLabs API key was rejected; check ELEVENLABS_API_KEY.", status=401
        )
    if code == "voice_not_found" or status == 404:
        return ProviderError("tts_voice_not_found", "The agent's ElevenLabs voice does not exist.", status=status)
    if status in (400, 422):
        return ProviderError("tts_invalid_request", f"ElevenLabs rejected the request: {message}", status=status)
    if status == 403:
        return ProviderError("tts_forbidden", f"ElevenLabs refused this voice or output format: {message}", status=403)
    if status == 429:
        message = "ElevenLabs is rate limiting us (too many requests at once); please try again shortly."
        return ProviderError("rate_limited", message, retryable=True, status=429)
    retryable = status >= 500 or status == 408
    return ProviderError(
        "tts_unavailable", f"ElevenLabs is unavailable (HTTP {status}).", retryable=retryable, status=status
    )


def _retry_delay(attempt: int, base: float, headers: Mapping[str, str] | None = None) -> float:
    """Exponential backoff with jitter, or what the vendor asked for in retry-after(-ms)."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            return min(float(headers[name]) * scale, _MAX_RETRY_AFTER)
        except (KeyError, ValueError):
            continue
    return base * (2**attempt) * random.uniform(0.8, 1.2)


def _network_error(exc: httpx.TransportError, *, started: bool, timeout: float) -> ProviderError:
    """An httpx failure as a protocol error; retryable only while no audio has been yielded."""
    if isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout):
        message = f"ElevenLabs stopped sending audio for over {timeout:g} s."
        return ProviderError("tts_timeout", message, retryable=not started)
    if started:
        return ProviderError("tts_stream_failed", "The ElevenLabs audio stream broke off.")
    return ProviderError("tts_unavailable", "ElevenLabs cannot be reached.", retryable=True)


def translate_library_error(exc: ApiError | ParsingError | httpx.TransportError) -> ProviderError:
    """A failure to list voices or models, in words an operator can act on."""
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError("tts_timeout", "ElevenLabs did not answer in time; voices and models are unavailable.")
    if isinstance(exc, httpx.TransportError):
        return ProviderError("tts_unavailable", "ElevenLabs cannot be reached; voices and models are unavailable.")
    status = 0 if isinstance(exc, ParsingError) else exc.status_code or 0
    if isinstance(exc, ParsingError) or 200 <= status < 300:  # a success whose body is not the vendor's JSON
        return ProviderError("tts_unavailable", "ElevenLabs answered with a voice or model list we cannot read.")
    code, message = _detail(exc.body)
    if code == "invalid_api_key":
        return ProviderError(
            "tts_unavailable", "The ElevenLabs API key was rejected; check ELEVENLABS_API_KEY.", status=status
        )
    if status in (401, 403):  # e.g. a scoped key without the voices_read or models_read permission
        return ProviderError("tts_forbidden", f"ElevenLabs refused to list voices or models: {message}", status=status)
    if status == 429:
        return ProviderError("rate_limited", "ElevenLabs is rate limiting us; try again shortly.", status=429)
    return ProviderError(
        "tts_unavailable", f"ElevenLabs could not list voices or models (HTTP {status}).", status=status
    )


# An admin page waits for these calls: fail fast and show the fallback rather than back off for a minute.
_NO_RETRIES = cast(RequestOptions, {"max_retries": 0})


def _voice(voice: Any) -> Voice:
    labels = voice.labels or {}
    return Voice(
        voice_id=voice.voice_id,
        name=voice.name or voice.voice_id,
        category=str(voice.category or ""),
        description=voice.description or "",
        language=str(labels.get("language") or ""),
        preview_url=voice.preview_url or "",
    )


def _model(model: Any) -> TTSModel:
    return TTSModel(
        model_id=model.model_id,
        name=model.name or model.model_id,
        description=model.description or "",
        languages=tuple(language.language_id for language in model.languages or ()),
        max_characters=model.maximum_text_length_per_request,
    )


class _BrokenLine(Exception):
    """A /stream/with-timestamps line that is not the vendor's JSON: its audio would be lost silently."""


def _seconds_to_ms(alignment: Any) -> Alignment | None:
    """The vendor's alignment object (seconds, start and end) as ours (ms, start and duration), if well formed.

    Run for every line of every stream, so it makes one pass per list: a time that is not a number
    (a string, null, NaN, infinity) drops the line's alignment, and its words are spread over the audio.
    """
    if type(alignment) is not dict:
        return None
    chars = alignment.get("characters")
    starts = alignment.get("character_start_times_seconds")
    ends = alignment.get("character_end_times_seconds")
    if type(chars) is not list or type(starts) is not list or type(ends) is not list:
        return None
    count = len(chars)
    if not count or len(starts) != count or len(ends) != count:
        return None
    try:
        start_ms = [round(t * 1000.0) for t in starts]
        end_ms = [round(t * 1000.0) for t in ends]
    except (TypeError, ValueError, OverflowError):
        return None
    durations = tuple([end - start if end > start else 0 for start, end in zip(start_ms, end_ms, strict=True)])
    return Alignment(tuple(map(str, chars)), tuple(start_ms), durations)


def _joined(first: Alignment | None, second: Alignment) -> Alignment:
    if first is None:
        return second
    return Alignment(
        chars=first.chars + second.chars,
        char_start_times_ms=first.char_start_times_ms + second.char_start_times_ms,
        char_durations_ms=first.char_durations_ms + second.char_durations_ms,
    )


def _timestamped_line(line: bytes) -> tuple[bytes, Alignment | None]:
    """The PCM and alignment of one NDJSON line; raises _BrokenLine for anything but the vendor's shape."""
    try:
        data = json.loads(line)
        audio = data.get("audio_base64") or ""
        pcm = binascii.a2b_base64(audio, strict_mode=True) if audio else b""
    except (ValueError, TypeError, AttributeError, binascii.Error) as exc:
        raise _BrokenLine(str(exc)) from None
    return pcm, _seconds_to_ms(data.get("alignment"))


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    """Non-blank lines of a byte stream, as bytes: json.loads takes them as they are, with no text
    decoding or httpx line decoder per line (the cheapest read of the vendor's NDJSON)."""
    rest = b""
    async for chunk in chunks:
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if line.strip():
                yield line
    if rest.strip():
        yield rest


class ElevenLabsTTS(TTSProvider):
    """PCM from ElevenLabs' streaming endpoints, retried before the first byte, never after.

    With `timestamps` (the default) it asks `/stream/with-timestamps` and yields an Alignment before the
    audio of each line that has one; without, plain `/stream` and audio only.
    """

    name = "elevenlabs"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = "https://api.elevenlabs.io",
        voice_id: str,
        model_id: str = "eleven_flash_v2_5",
        output_format: str = "pcm_24000",
        timeout: float = 10.0,
        max_retries: int = 2,
        retry_base_delay: float = 0.2,
        timestamps: bool = True,
        keepalive: int = 32,
        http_client: str = "aiohttp",
    ) -> None:
        if not output_format.startswith("pcm_") or not output_format[4:].isdigit():
            raise ValueError(f"ElevenLabsTTS streams raw PCM only; {output_format!r} is not pcm_<rate>.")
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.voice_id = voice_id
        self.model_id = model_id
        self._output_format = output_format
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.retry_base_delay = retry_base_delay
        self.timestamps = timestamps
        # Idle connections kept for the next request: as many as may be in flight, so none is reopened.
        self.keepalive = max(1, keepalive)
        if http_client not in ("aiohttp", "httpx"):
            raise ValueError(f"http_client is aiohttp or httpx, not {http_client!r}.")
        self.http_client = http_client

    def __repr__(self) -> str:  # never show the key
        return f"ElevenLabsTTS(base_url={self.base_url!r}, voice_id={self.voice_id!r}, model_id={self.model_id!r})"

    @property
    def sample_rate(self) -> int:
        return int(self._output_format.removeprefix("pcm_"))

    @property
    def output_format(self) -> str:
        return self._output_format

    @property
    def default_voice_id(self) -> str:
        return self.voice_id

    @property
    def default_model_id(self) -> str:
        return self.model_id

    def supports_breaks(self, model_id: str = "") -> bool:
        return breaks_supported(model_id or self.model_id)

    def list_voices(self, *, limit: int) -> list[Voice]:
        """The account's voices through `voices.search` (GET /v2/voices), page by page up to `limit`."""
        voices: list[Voice] = []
        token: str | None = None
        with self._library() as client:
            while len(voices) < limit:
                page = client.voices.search(
                    next_page_token=token, page_size=min(100, limit - len(voices)), request_options=_NO_RETRIES
                )
                voices.extend(_voice(v) for v in page.voices)
                token = page.next_page_token
                if not page.has_more or not token:
                    break
        return voices[:limit]

    def list_models(self) -> list[TTSModel]:
        """The account's models that can do text to speech (`models.list`, GET /v1/models)."""
        with self._library() as client:
            models = client.models.list(request_options=_NO_RETRIES)
        return [_model(m) for m in models if m.can_do_text_to_speech]

    @contextlib.contextmanager
    def _library(self) -> Iterator[ElevenLabs]:
        """A blocking SDK client on its own connection, closed after use; vendor failures as ProviderError."""
        with httpx.Client(timeout=self.timeout) as http:
            try:
                yield ElevenLabs(api_key=self.api_key, base_url=self.base_url, timeout=self.timeout, httpx_client=http)
            except (ApiError, ParsingError, httpx.TransportError) as exc:
                raise translate_library_error(exc) from None

    def client(self) -> AsyncElevenLabs:
        """An SDK client on the process's shared connection pool (the voice library uses it too)."""
        # The SDK hands its `timeout` to httpx with every request, overriding the pool's (None would
        # mean no timeout at all). It passes the value through untouched, so an httpx.Timeout works and
        # bounds connecting apart from each gap between chunks (the read timeout catches stalls).
        timeout = httpx.Timeout(
            connect=min(_CONNECT_TIMEOUT, self.timeout), read=self.timeout, write=self.timeout, pool=self.timeout
        )
        return AsyncElevenLabs(
            api_key=self.api_key,
            base_url=self.base_url,
            timeout=cast(float, timeout),
            httpx_client=_shared_client(self.base_url, self.keepalive, self.http_client),
        )

    def _arguments(self, request: SpeechRequest) -> dict[str, Any]:
        settings = request.voice_settings
        # The voice settings go in as the request body's own field, through the SDK's documented
        # `additional_body_parameters`, rather than as its `VoiceSettings` model: serialising the model
        # resolves its type hints on every request, a third of what the SDK spent building one.
        voice_settings = {
            "stability": settings.stability,
            "similarity_boost": settings.similarity_boost,
            "style": settings.style,
            "speed": settings.speed,
            "use_speaker_boost": settings.use_speaker_boost,
        }
        arguments: dict[str, Any] = {
            "text": request.text,
            "model_id": request.model_id or self.model_id,
            "output_format": self._output_format,
            "request_options": {"additional_body_parameters": {"voice_settings": voice_settings}},
        }
        if request.language_code:
            arguments["language_code"] = request.language_code
        if request.previous_request_ids:  # the vendor ignores previous_text when ids are sent
            arguments["previous_request_ids"] = list(request.previous_request_ids[-3:])
        elif request.previous_text:
            arguments["previous_text"] = request.previous_text
        if request.next_text:
            arguments["next_text"] = request.next_text
        return arguments

    async def synthesize(
        self, request: SpeechRequest, receipt: SpeechReceipt
    ) -> AsyncGenerator[bytes | Alignment, None]:
        client = self.client()
        arguments = self._arguments(request)
        voice_id = request.voice_id or self.voice_id
        attempt_once = self._attempt_with_timestamps if self.timestamps else self._attempt
        for attempt in range(self.max_retries + 1):
            started = False
            try:
                # aclosing: an early close of ours must close the HTTP response now, not at GC.
                async with aclosing(attempt_once(client, voice_id, arguments, receipt)) as items:
                    async for item in items:
                        started = True
                        yield item
                return
            except ApiError as exc:
                error, headers = translate_api_error(exc), exc.headers
            except httpx.TransportError as exc:
                error, headers = _network_error(exc, started=started, timeout=self.timeout), None
            except _BrokenLine as exc:
                logger.warning("ElevenLabs request %s sent a broken timestamp line: %s", receipt.request_id, exc)
                message = "ElevenLabs sent audio that could not be read."
                error, headers = ProviderError("tts_stream_failed", message, retryable=not started), None
            if not error.retryable or attempt == self.max_retries:
                raise error
            logger.warning("ElevenLabs attempt %d failed (%s); retrying", attempt + 1, error.code)
            await asyncio.sleep(_retry_delay(attempt, self.retry_base_delay, headers))

    @staticmethod
    def _read_receipt(headers: Mapping[str, str], text: str, receipt: SpeechReceipt) -> None:
        receipt.request_id = headers.get("request-id", "")
        cost = headers.get("character-cost", "")
        receipt.characters = int(cost) if cost.isdigit() else len(text)

    async def _attempt(
        self, client: AsyncElevenLabs, voice_id: str, arguments: dict[str, Any], receipt: SpeechReceipt
    ) -> AsyncGenerator[bytes, None]:
        """One `/stream` request; the response is closed when this generator is closed, however that happens."""
        # chunk_size None hands bytes on as they arrive; the SDK's default re-buffers to 1 KiB.
        options = cast(RequestOptions, {**arguments["request_options"], "chunk_size": None})
        async with client.text_to_speech.with_raw_response.stream(
            voice_id, **{**arguments, "request_options": options}
        ) as response:
            self._read_receipt(response.headers, arguments["text"], receipt)
            async for data in response.data:
                if data:
                    if receipt.first_byte_at is None:
                        receipt.first_byte_at = time.monotonic()
                    yield data

    async def _attempt_with_timestamps(
        self, client: AsyncElevenLabs, voice_id: str, arguments: dict[str, Any], receipt: SpeechReceipt
    ) -> AsyncGenerator[bytes | Alignment, None]:
        """One `/stream/with-timestamps` request: per NDJSON line, its alignment (if any) then its PCM.

        The SDK sends the request, reads the headers and raises the vendor's errors, but its parsed lines
        are not used: it drops a line it cannot parse without a word, which would cut a hole in the audio
        and shift every later word. The lines are read here instead, and a broken one fails the stream.
        An alignment whose line carries no audio waits for the next line's, so each one still comes
        before the audio it times; the vendor's times already count from the request's start.
        """
        async with client.text_to_speech.with_raw_response.stream_with_timestamps(voice_id, **arguments) as response:
            self._read_receipt(response.headers, arguments["text"], receipt)
            waiting: Alignment | None = None
            async for line in _lines(response._response.aiter_raw()):
                pcm, alignment = _timestamped_line(line)
                if alignment is not None:
                    waiting = _joined(waiting, alignment)
                if not pcm:
                    continue
                if receipt.first_byte_at is None:
                    receipt.first_byte_at = time.monotonic()
                if waiting is not None:
                    yield waiting
                    waiting = None
                yield pcm
            if waiting is not None:
                yield waiting
