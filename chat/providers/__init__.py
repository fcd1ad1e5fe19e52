"""Provider loading, like Django's STORAGES: an alias maps to a dotted BACKEND and keyword OPTIONS."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from chat.providers.base import LLMProvider, ProviderError, TTSProvider

__all__ = ["LLMProvider", "ProviderError", "TTSProvider", "llm_provider", "tts_provider"]


def _load(kind: str, aliases: dict[str, dict[str, Any]], alias: str, base: type) -> Any:
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
        return cls(**config.get("OPTIONS", {}))
    except TypeError as exc:
        raise ImproperlyConfigured(f"{kind} provider {alias!r}: bad OPTIONS: {exc}") from exc


def llm_provider(alias: str = "") -> LLMProvider:
    """A fresh LLM provider for `alias` (blank: LLM_BACKEND)."""
    return _load("LLM", settings.LLM_PROVIDERS, alias or settings.LLM_BACKEND, LLMProvider)


def tts_provider(alias: str = "") -> TTSProvider:
    """A fresh TTS provider for `alias` (blank: TTS_BACKEND)."""
    return _load("TTS", settings.TTS_PROVIDERS, alias or settings.TTS_BACKEND, TTSProvider)
