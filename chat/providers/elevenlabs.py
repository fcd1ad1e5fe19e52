"""ElevenLabs text-to-speech over the `/stream` endpoint through the official SDK (`AsyncElevenLabs`)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Any, cast

import httpx
from elevenlabs import AsyncElevenLabs
from elevenlabs import VoiceSettings as ElevenLabsVoiceSettings
from elevenlabs.core import ApiError, RequestOptions

from chat.providers.base import ProviderError, SpeechReceipt, SpeechRequest, TTSProvider

logger = logging.getLogger(__name__)

# Process-wide state, one entry per event loop (asyncio objects cannot cross loops): one keep-alive
# connection pool per base URL lets later chunks skip the TCP and TLS handshakes. Idle pooled
# connections are kept on purpose; every request and response stream is closed as soon as its
# generator is closed or its task cancelled (`async with` around the SDK's stream). The plan's
# concurrency limit is not kept here: it is per account, so the turn holds a slot of chat/limits.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary()
)

_MAX_RETRY_AFTER = 10.0
_CONNECT_TIMEOUT = 5.0


def _shared_client(base_url: str) -> httpx.AsyncClient:
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    if base_url not in per_loop:
        per_loop[base_url] = httpx.AsyncClient(limits=httpx.Limits(max_connections=None, max_keepalive_connections=32))
    return per_loop[base_url]


async def aclose_shared_clients() -> None:
    """Close the pooled connections of the running loop (tests and shutdown; the next use reopens)."""
    for client in _clients.pop(asyncio.get_running_loop(), {}).values():
        await client.aclose()


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


class ElevenLabsTTS(TTSProvider):
    """PCM from ElevenLabs' streaming endpoint, retried before the first byte, never after."""

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

    def __repr__(self) -> str:  # never show the key
        return f"ElevenLabsTTS(base_url={self.base_url!r}, voice_id={self.voice_id!r}, model_id={self.model_id!r})"

    @property
    def sample_rate(self) -> int:
        return int(self._output_format.removeprefix("pcm_"))

    @property
    def output_format(self) -> str:
        return self._output_format

    def _client(self) -> AsyncElevenLabs:
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
            httpx_client=_shared_client(self.base_url),
        )

    def _arguments(self, request: SpeechRequest) -> dict[str, Any]:
        settings = request.voice_settings
        arguments: dict[str, Any] = {
            "text": request.text,
            "model_id": request.model_id or self.model_id,
            "output_format": self._output_format,
            "voice_settings": ElevenLabsVoiceSettings(
                stability=settings.stability,
                similarity_boost=settings.similarity_boost,
                style=settings.style,
                speed=settings.speed,
                use_speaker_boost=settings.use_speaker_boost,
            ),
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

    async def synthesize(self, request: SpeechRequest, receipt: SpeechReceipt) -> AsyncGenerator[bytes, None]:
        client = self._client()
        arguments = self._arguments(request)
        voice_id = request.voice_id or self.voice_id
        for attempt in range(self.max_retries + 1):
            started = False
            try:
                # aclosing: an early close of ours must close the HTTP response now, not at GC.
                async with aclosing(self._attempt(client, voice_id, arguments, receipt)) as pcm:
                    async for data in pcm:
                        started = True
                        yield data
                return
            except ApiError as exc:
                error, headers = translate_api_error(exc), exc.headers
            except httpx.TransportError as exc:
                error, headers = _network_error(exc, started=started, timeout=self.timeout), None
            if not error.retryable or attempt == self.max_retries:
                raise error
            logger.warning("ElevenLabs attempt %d failed (%s); retrying", attempt + 1, error.code)
            await asyncio.sleep(_retry_delay(attempt, self.retry_base_delay, headers))

    async def _attempt(
        self, client: AsyncElevenLabs, voice_id: str, arguments: dict[str, Any], receipt: SpeechReceipt
    ) -> AsyncGenerator[bytes, None]:
        """One request; the response is closed when this generator is closed, however that happens."""
        # chunk_size None hands bytes on as they arrive; the SDK's default re-buffers to 1 KiB.
        options = cast(RequestOptions, {"chunk_size": None})
        async with client.text_to_speech.with_raw_response.stream(
            voice_id, **arguments, request_options=options
        ) as response:
            receipt.request_id = response.headers.get("request-id", "")
            cost = response.headers.get("character-cost", "")
            receipt.characters = int(cost) if cost.isdigit() else len(arguments["text"])
            async for data in response.data:
                if data:
                    if receipt.first_byte_at is None:
                        receipt.first_byte_at = time.monotonic()
                    yield data
