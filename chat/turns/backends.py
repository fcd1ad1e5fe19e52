"""Which providers answer a turn for an agent: built fresh per turn, misconfiguration as a typed refusal."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured

from chat.limits import Refusal
from chat.models import Agent
from chat.providers import LLMProvider, TTSProvider, llm_provider, tts_provider

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplyProviders:
    llm: LLMProvider
    tts: TTSProvider | None  # None: this turn is not spoken


def reply_providers(*, agent: Agent, speak: bool) -> ReplyProviders:
    """The LLM and (when speaking) TTS provider for one turn of `agent`, or a Refusal naming which is broken."""
    try:
        llm = llm_provider(agent.llm)
    except ImproperlyConfigured as exc:
        logger.error("LLM provider configuration error: %s", exc)
        raise Refusal(
            "llm_unavailable", "The assistant's language model is misconfigured; an operator has to fix it."
        ) from None
    tts: TTSProvider | None = None
    if speak:
        try:
            tts = tts_provider()
        except ImproperlyConfigured as exc:
            logger.error("TTS provider configuration error: %s", exc)
            raise Refusal(
                "tts_unavailable", "The assistant's voice is misconfigured; an operator has to fix it."
            ) from None
    return ReplyProviders(llm=llm, tts=tts)


def output_format() -> str:
    """The PCM format replies are spoken in (what the metadata announces)."""
    try:
        return tts_provider().output_format
    except ImproperlyConfigured:
        return "pcm_24000"
