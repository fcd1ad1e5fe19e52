"""The voice library: the TTS provider's voices and models (cached), the voices an agent lets its users
pick, voice previews served through our server, and whether SSML pauses reach the model.

Everything here asks the configured TTS provider (TTS_BACKEND): the ElevenLabs account's library, or
eSpeak NG's voices offline. Vendor failures surface as ProviderError with a message an operator can act on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar, cast
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError

from chat.models import Agent, Conversation
from chat.providers import tts_provider
from chat.providers.base import ProviderError, SpeechReceipt, SpeechRequest, TTSModel, TTSProvider, Voice
from chat.providers.elevenlabs import breaks_supported
from chat.turns.audio import PcmBuffer

__all__ = [
    "Preview",
    "PreviewUnavailable",
    "VoiceChoice",
    "agent_default_voice_id",
    "agent_speaks_breaks",
    "agent_voice_ids",
    "agent_voices",
    "breaks_supported",
    "conversation_voice_set",
    "model_library",
    "preview_open",
    "preview_url_allowed",
    "voice_allowed",
    "voice_find",
    "voice_library",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

# What a provider that bills nothing (eSpeak) says when someone previews one of its voices.
PREVIEW_SENTENCE = "Hello! This is how I sound when I read your replies aloud."


# --- the library, cached -------------------------------------------------------------------------
@dataclass(frozen=True)
class _Failure:
    """A failed library call, remembered briefly so a vendor outage does not stall every admin page."""

    code: str
    message: str


def _cache_key(kind: str) -> str:
    # Per provider configuration, so a new key, base URL or backend never reads another's list. Hashed:
    # the API key is part of it and must never be stored in the clear, even in the cache.
    config = json.dumps(settings.TTS_PROVIDERS.get(settings.TTS_BACKEND, {}), sort_keys=True, default=str)
    digest = hashlib.sha256(f"{settings.TTS_BACKEND}:{config}".encode()).hexdigest()[:24]
    return f"voicechat:library:{kind}:{digest}"


def _library(kind: str, fetch: Callable[[], list[T]], *, refresh: bool) -> list[T]:
    key = _cache_key(kind)
    hit = None if refresh else cache.get(key)
    if isinstance(hit, _Failure):
        raise ProviderError(hit.code, hit.message)
    if hit is not None:
        return cast(list[T], hit)
    seconds = settings.VOICE_LIBRARY_CACHE_SECONDS
    try:
        value = fetch()
    except ProviderError as exc:
        logger.warning("Listing the TTS %s failed: %s", kind, exc.message)
        cache.set(key, _Failure(exc.code, exc.message), max(1, seconds // 10))
        raise
    cache.set(key, value, seconds)
    return value


def voice_library(*, refresh: bool = False) -> list[Voice]:
    """The provider's voices (the ElevenLabs account's, or eSpeak's), cached for VOICE_LIBRARY_CACHE_SECONDS."""
    limit = settings.VOICE_LIBRARY_MAX_VOICES
    return _library("voices", lambda: tts_provider().list_voices(limit=limit), refresh=refresh)


def model_library(*, refresh: bool = False) -> list[TTSModel]:
    """The provider's text-to-speech models, cached like the voices; [] for a provider without models."""
    return _library("models", lambda: tts_provider().list_models(), refresh=refresh)


def voice_find(voice_id: str) -> Voice | None:
    """A voice of the library by id; None when unknown or when the library cannot be read."""
    try:
        return next((v for v in voice_library() if v.voice_id == voice_id), None)
    except ProviderError:
        return None


# --- what an agent lets its users pick -------------------------------------------------------------
@dataclass(frozen=True)
class VoiceChoice:
    """A voice a user may pick for a conversation with an agent."""

    voice_id: str
    name: str
    category: str
    description: str
    language: str
    has_preview: bool
    is_default: bool  # the agent's own voice, used when the conversation names none


def agent_default_voice_id(agent: Agent, tts: TTSProvider | None = None) -> str:
    """The voice an agent speaks with unless a conversation picks another."""
    return agent.voice_id or (tts or tts_provider()).default_voice_id


def agent_voice_ids(agent: Agent) -> list[str]:
    """The agent's own voice, then those its operator allows users to pick, each once."""
    ids = [agent_default_voice_id(agent), *agent.user_voice_ids]
    return list(dict.fromkeys(i for i in ids if i))


def agent_voices(agent: Agent) -> list[VoiceChoice]:
    """The voices a user may pick for `agent`, with names from the library (ids alone when it is unreachable)."""
    try:
        known = {v.voice_id: v for v in voice_library()}
    except ProviderError:
        known = {}
    bills = tts_provider().metered
    default = agent_default_voice_id(agent)
    choices = []
    for voice_id in agent_voice_ids(agent):
        voice = known.get(voice_id) or Voice(voice_id=voice_id, name=voice_id)
        has_preview = bool(voice.preview_url and preview_url_allowed(voice.preview_url)) or (
            not bills and voice_id in known
        )
        choices.append(
            VoiceChoice(
                voice_id=voice_id,
                name=voice.name,
                category=voice.category,
                description=voice.description,
                language=voice.language,
                has_preview=has_preview,
                is_default=voice_id == default,
            )
        )
    return choices


def voice_allowed(agent: Agent, voice_id: str) -> bool:
    """Whether a conversation with `agent` may speak with `voice_id` (blank: the agent's own voice)."""
    return not voice_id or voice_id in agent_voice_ids(agent)


def conversation_voice_set(*, conversation: Conversation, voice_id: str) -> Conversation:
    """Pick the conversation's voice among its agent's allowed ones; blank goes back to the agent's voice."""
    voice_id = voice_id.strip()
    if not voice_allowed(conversation.agent, voice_id):
        raise ValidationError({"voice_id": f"{voice_id!r} is not one of the voices this agent offers."})
    conversation.voice_id = voice_id
    conversation.save(update_fields=["voice_id", "updated_at"])
    return conversation


def agent_speaks_breaks(agent: Agent, tts: TTSProvider | None = None) -> bool:
    """Whether `<break time="…"/>` tags should reach the TTS for this agent: it allows them and its model
    honours them (ElevenLabs except v3; never eSpeak). The chunker's `breaks` option follows this."""
    return agent.allow_breaks and (tts or tts_provider()).supports_breaks(agent.tts_model_id)


# --- previews, served through our server -------------------------------------------------------------
class PreviewUnavailable(Exception):
    """No preview can be served: the voice has none or it lies elsewhere (404), or fetching it failed (502)."""

    def __init__(self, message: str, *, status: int = 404) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Preview:
    """A preview ready to send: its type, its length when known, and its body (closed when exhausted)."""

    content_type: str
    length: int | None
    body: AsyncIterator[bytes]


def preview_url_allowed(url: str) -> bool:
    """Whether `url` lies on an origin of VOICE_PREVIEW_ORIGINS: we fetch previews from the vendor's file host
    only, never wherever a voice record points."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    return origin in {o.lower().rstrip("/") for o in settings.VOICE_PREVIEW_ORIGINS}


async def preview_open(voice: Voice, tts: TTSProvider) -> Preview:
    """The voice's sample: fetched from the vendor's file host (no API key goes there), or, for a provider
    that bills nothing, synthesised on the spot. Raises PreviewUnavailable."""
    if voice.preview_url:
        if not preview_url_allowed(voice.preview_url):
            logger.warning("Not fetching the preview of voice %s from %s", voice.voice_id, voice.preview_url)
            raise PreviewUnavailable("The preview lies on a host that is not in VOICE_PREVIEW_ORIGINS.")
        return await _preview_download(voice.preview_url)
    if tts.metered:  # a vendor's voice without a sample: synthesising one would cost credits
        raise PreviewUnavailable("This voice has no preview.")
    return await _preview_synthesised(voice, tts)


async def _preview_download(url: str) -> Preview:
    client = httpx.AsyncClient(timeout=settings.ELEVENLABS_TIMEOUT, follow_redirects=False)
    try:
        response = await client.send(client.build_request("GET", url), stream=True)
    except httpx.HTTPError as exc:
        await client.aclose()
        raise PreviewUnavailable(f"The preview could not be fetched ({type(exc).__name__}).", status=502) from None
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if response.status_code != 200 or not content_type.startswith("audio/"):
        await response.aclose()
        await client.aclose()
        message = f"The preview host answered HTTP {response.status_code} ({content_type or 'no type'})."
        raise PreviewUnavailable(message, status=502)
    limit = settings.VOICE_PREVIEW_MAX_BYTES
    declared = response.headers.get("content-length", "")
    plain = "content-encoding" not in response.headers and declared.isdigit() and int(declared) <= limit
    return Preview(content_type, int(declared) if plain else None, _relay(response, client, limit))


async def _relay(response: httpx.Response, client: httpx.AsyncClient, limit: int) -> AsyncIterator[bytes]:
    """The upstream body as it arrives, cut at `limit` bytes; both connections close however it ends."""
    sent = 0
    try:
        async for data in response.aiter_bytes():
            if sent + len(data) > limit:
                logger.warning("A voice preview is over VOICE_PREVIEW_MAX_BYTES (%d); cut short", limit)
                yield data[: limit - sent]
                return
            sent += len(data)
            yield data
    finally:
        await response.aclose()
        await client.aclose()


async def _preview_synthesised(voice: Voice, tts: TTSProvider) -> Preview:
    audio = PcmBuffer()
    try:
        async for item in tts.synthesize(
            SpeechRequest(text=PREVIEW_SENTENCE, voice_id=voice.voice_id), SpeechReceipt()
        ):
            if isinstance(item, bytes):
                audio.write(item)
    except ProviderError as exc:
        audio.close()
        raise PreviewUnavailable(exc.message, status=502) from None
    wav = audio.wav(tts.sample_rate)

    async def body() -> AsyncIterator[bytes]:
        yield wav

    return Preview("audio/wav", len(wav), body())
