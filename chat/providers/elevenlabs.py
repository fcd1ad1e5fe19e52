"""ElevenLabs text-to-speech over the `/stream` endpoint through the official SDK (`AsyncElevenLabs`)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections.abc import AsyncGenerator
from typing import Any

import httpx
from elevenlabs import AsyncElevenLabs
from elevenlabs import VoiceSettings as ElevenLabsVoiceSettings
from elevenlabs.core import ApiError, RequestOptions

from chat.providers.base import ProviderError, SpeechReceipt, SpeechRequest, TTSProvider

logger = logging.getLogger(__name__)

# One semaphore and one connection pool per event loop, shared by every turn of the process: the
# semaphore keeps us inside the plan's concurrency limit, the pool lets later chunks skip the TCP and
# TLS handshakes. Idle keep-alive connections are kept on purpose; every request and response stream
# is closed when its generator is closed or its task cancelled.
_semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, httpx.AsyncClient]] = weakref.WeakKeyDictionary()

_RETRYABLE_NETWORK = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.RemoteProtocolError)


def _semaphore(limit: int) -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    if loop not in _semaphores:
        _semaphores[loop] = asyncio.Semaphore(limit)
    return _semaphores[loop]


def _pool(base_url: str, timeout: float) -> httpx.AsyncClient:
    pools = _pools.setdefault(asyncio.get_running_loop(), {})
    if base_url not in pools:
        pools[base_url] = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )
    return pools[base_url]


def _detail(body: Any) -> tuple[str, str]:
    """The vendor's error code and message from any of its body shapes."""
    if isinstance(body, dict):
        detail = body.get("detail", body)
        if isinstance(detail, dict):
            code = str(detail.get("code") or detail.get("status") or "")
            return code, str(detail.get("message") or "")
        if isinstance(detail, list):
            messages = [
                f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail if isinstance(d, dict)
            ]
            return "validation_error", "; ".join(messages)
    return "", str(body)[:200]


def translate_api_error(exc: ApiError) -> ProviderError:
    """Map a vendor error to a protocol error code with a message an operator can act on."""
    status = exc.status_code or 0
    code, message = _detail(exc.body)
    if code == "quota_exceeded":
        return ProviderError("tts_quota_exceeded", "The ElevenLabs account is out of credits.", status=status)
    if status == 401:
        return ProviderError(
            "tts_unavailable", "The ElevenLabs API key was rejected; check ELEVENLABS_API_KEY.", status=401
        )
    if code == "voice_not_found" or status == 404:
        return ProviderError("tts_voice_not_found", "The agent's ElevenLabs voice does not exist.", status=status)
    if status == 422 or status == 400:
        return ProviderError("tts_invalid_request", f"ElevenLabs rejected the request: {message}", status=status)
    if status == 403:
        return ProviderError("tts_forbidden", f"ElevenLabs refused this voice or format: {message}", status=403)
    if status == 429:
        return ProviderError(
            "rate_limited", "ElevenLabs is rate limiting us; please try again shortly.", retryable=True, status=429
        )
    return ProviderError(
        "tts_unavailable", f"ElevenLabs is unavailable (HTTP {status}).", retryable=status >= 500, status=status
    )


def _retry_delay(attempt: int, base: float, error: ApiError | None) -> float:
    if error is not None and error.headers:
        retry_after = error.headers.get("retry-after")
        if retry_after and retry_after.replace(".", "", 1).isdigit():
            return min(float(retry_after), 10.0)
    return base * (2**attempt) * random.uniform(0.8, 1.2)


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
        max_concurrency: int = 4,
        timeout: float = 10.0,
        max_retries: int = 2,
        retry_base_delay: float = 0.25,
    ) -> None:
        if not output_format.startswith("pcm_"):
            raise ValueError("ElevenLabsTTS streams raw PCM only; use a pcm_<rate> output format.")
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.voice_id = voice_id
        self.model_id = model_id
        self._output_format = output_format
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.max_retries = max_retries
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
        # The SDK passes its own timeout with every request, overriding the pool's; timeout=None there
        # means "no timeout at all" to httpx, so give it ours: on a stream it bounds each gap between chunks.
        return AsyncElevenLabs(
            api_key=self.api_key,
            base_url=self.base_url,
            timeout=self.timeout,
            httpx_client=_pool(self.base_url, self.timeout),
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
        if request.previous_request_ids:  # request ids win over text when both are sent; send one
            arguments["previous_request_ids"] = list(request.previous_request_ids[-3:])
        elif request.previous_text:
            arguments["previous_text"] = request.previous_text
        if request.next_text:
            arguments["next_text"] = request.next_text
        return arguments

    async def synthesize(self, request: SpeechRequest, receipt: SpeechReceipt) -> AsyncGenerator[bytes, None]:
        client = self._client()
        arguments = self._arguments(request)
        # chunk_size None: hand on bytes as they arrive instead of re-buffering them to a fixed size.
        options: RequestOptions = {"chunk_size": None}  # type: ignore[typeddict-item]
        voice_id = request.voice_id or self.voice_id
        async with _semaphore(self.max_concurrency):
            for attempt in range(self.max_retries + 1):
                started = False
                try:
                    async with client.text_to_speech.with_raw_response.stream(
                        voice_id, **arguments, request_options=options
                    ) as response:
                        receipt.request_id = response.headers.get("request-id", "")
                        cost = response.headers.get("character-cost", "")
                        receipt.characters = int(cost) if cost.isdigit() else len(request.text)
                        async for data in response.data:
                            if not started:
                                started = True
                                receipt.first_byte_at = time.monotonic()
                            yield data
                    return
                except ApiError as exc:
                    error = translate_api_error(exc)
                    if not error.retryable or attempt == self.max_retries:
                        raise error from None
                    await asyncio.sleep(_retry_delay(attempt, self.retry_base_delay, exc))
                except httpx.TimeoutException as exc:
                    if started or attempt == self.max_retries:
                        raise ProviderError(
                            "tts_timeout", f"ElevenLabs stopped sending audio for over {self.timeout:g} s."
                        ) from exc
                    await asyncio.sleep(_retry_delay(attempt, self.retry_base_delay, None))
                except (httpx.TransportError, *_RETRYABLE_NETWORK) as exc:
                    if started:
                        raise ProviderError("tts_stream_failed", "The ElevenLabs audio stream broke off.") from exc
                    if attempt == self.max_retries:
                        raise ProviderError("tts_unavailable", "ElevenLabs cannot be reached.") from exc
                    await asyncio.sleep(_retry_delay(attempt, self.retry_base_delay, None))
