"""Provider loading, like Django's STORAGES: an alias maps to a dotted BACKEND and keyword OPTIONS."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from chat.providers.base import LLMProvider, ProviderError, ReplySession, TTSProvider

__all__ = [
    "LLMProvider",
    "ProviderError",
    "ReplySession",
    "TTSProvider",
    "llm_provider",
    "reply_session",
    "tts_provider",
]


def _load(kind: str, aliases: dict[str, dict[str, Any]], alias: str, base: type, **context: Any) -> Any:
    try:
        config = aliases[alias]
    except KeyError:
        raise ImproperlyConfigured(
            f"{kind} provider {alias!r} is not configured; known: {', '.join(aliases)}."
        ) from None
    try:
        cls = import_string(config["BACKEND"])
    except ImportError as exc:
        raise ImproperlyConfigured(f"{kind} provider {alias!r}: cannot import {config['BACKEND']!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ImproperlyConfigured(f"{kind} provider {alias!r}: {config['BACKEND']} is not a {base.__name__}.")
    try:
        return cls(**(config.get("OPTIONS", {}) | context))
    except TypeError as exc:
        raise ImproperlyConfigured(f"{kind} provider {alias!r}: bad OPTIONS: {exc}") from exc


def llm_provider(alias: str = "") -> LLMProvider:
    """A fresh LLM provider for `alias` (blank: LLM_BACKEND)."""
    return _load("LLM", settings.LLM_PROVIDERS, alias or settings.LLM_BACKEND, LLMProvider)


def reply_session(alias: str, **context: Any) -> ReplySession:
    """A new reply session for the whole-reply backend `alias` (an Agent's `backend`) in REPLY_PROVIDERS.

    `context` is the conversation's part of the options (for elevenlabs_agent: agent_id, language,
    first_message, prompt, voice_id, dynamic_variables, user_id, history, sample_rate), laid over OPTIONS.
    """
    return _load("Reply", settings.REPLY_PROVIDERS, alias, ReplySession, **context)


def tts_provider(alias: str = "", *, output_format: str = "") -> TTSProvider:
    """A fresh TTS provider for `alias` (blank: TTS_BACKEND), in `output_format` when it takes one.

    Providers that choose their own rate (eSpeak NG) ignore the format: the page plays whatever the
    metadata announces.
    """
    alias = alias or settings.TTS_BACKEND
    takes_format = "output_format" in settings.TTS_PROVIDERS.get(alias, {}).get("OPTIONS", {})
    context = {"output_format": output_format} if output_format and takes_format else {}
    return _load("TTS", settings.TTS_PROVIDERS, alias, TTSProvider, **context)
