"""Which providers answer a turn for an agent: built fresh per turn, misconfiguration as a typed refusal."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from chat.limits import Refusal
from chat.models import Agent, Conversation, Message
from chat.providers import LLMProvider, ReplySession, TTSProvider, llm_provider, reply_session, tts_provider
from chat.providers.base import ChatMessage

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
        # An agent on the WebSocket transport speaks through its own alias (a streaming provider).
        alias = settings.TTS_WEBSOCKET_BACKEND if agent.tts_transport == Agent.TtsTransport.WEBSOCKET else ""
        try:
            tts = tts_provider(alias, output_format=agent.output_format)
        except ImproperlyConfigured as exc:
            logger.error("TTS provider configuration error: %s", exc)
            raise Refusal(
                "tts_unavailable", "The assistant's voice is misconfigured; an operator has to fix it."
            ) from None
    return ReplyProviders(llm=llm, tts=tts)


def agent_session(
    *, agent: Agent, user_name: str, user_id: str, history: list[ChatMessage], sample_rate: int
) -> ReplySession | None:
    """The whole-reply session of an agent whose backend writes and speaks by itself, or None (LLM + TTS).

    One per socket: it keeps the vendor's call open between turns. Misconfiguration is a Refusal.
    """
    if agent.backend == Agent.Backend.LLM_TTS:
        return None
    try:
        return reply_session(
            agent.backend,
            agent_id=agent.elevenlabs_agent_id,
            sample_rate=sample_rate,
            language=agent.language_code,
            first_message="",  # voicechat greets (or not); the vendor must not greet on every call
            prompt=agent.system_prompt,
            voice_id=agent.voice_id,
            dynamic_variables={"user_name": user_name},
            user_id=user_id,
            history=history,
        )
    except (ImproperlyConfigured, ValueError) as exc:
        logger.error("Reply backend configuration error for agent %s: %s", agent.pk, exc)
        raise Refusal(
            "agent_unavailable", "The assistant's ElevenLabs agent is misconfigured; an operator has to fix it."
        ) from None


def conversation_history(conversation: Conversation) -> list[ChatMessage]:
    """What was said so far (no system prompt), for a backend that keeps its own conversation state."""
    if conversation._state.adding:
        return []
    rows = (
        Message.objects.filter(
            conversation=conversation, status__in=(Message.Status.COMPLETE, Message.Status.INTERRUPTED)
        )
        .exclude(text="")
        .order_by("created_at")
        .values_list("role", "text")
    )
    return [ChatMessage(role=role, content=text) for role, text in rows]


def output_format(agent: Agent) -> str:
    """The PCM format `agent`'s replies are spoken in (what the metadata announces, what is stored).

    An ElevenLabs agent backend is resampled to it; the LLM + TTS backend asks the TTS for it.
    """
    try:
        return tts_provider(output_format=agent.output_format).output_format
    except ImproperlyConfigured:
        return agent.reply_output_format
