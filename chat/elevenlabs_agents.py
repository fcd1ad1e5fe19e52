"""The account's ElevenLabs agents and the vendor's records of their calls, for the admin (official SDK)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from elevenlabs import ElevenLabs
from elevenlabs.core import ApiError

from chat.models import Agent, Conversation
from chat.providers.base import ProviderError
from chat.providers.elevenlabs_agent import signed_url_error

logger = logging.getLogger(__name__)

LIST_PAGES = 5  # 500 agents: more than any admin drop-down should offer
CHOICES_TTL = 60.0  # seconds the admin reuses the list, so each form view does not call the vendor
TRANSCRIPT_FIELDS = ("role", "message", "time_in_call_secs", "interrupted", "original_message")
METADATA_FIELDS = (
    "start_time_unix_secs",
    "call_duration_secs",
    "cost",
    "termination_reason",
    "text_only",
    "main_language",
    "charging",
)


@dataclass(frozen=True)
class VendorAgent:
    agent_id: str
    name: str


_choices_cache: dict[tuple[str, str], tuple[float, list[VendorAgent]]] = {}


def _client(api_key: str, base_url: str, timeout: float) -> ElevenLabs:
    return ElevenLabs(api_key=api_key, base_url=base_url, timeout=timeout)


def _vendor_error(exc: Exception, what: str) -> ProviderError:
    if isinstance(exc, ApiError):
        error = signed_url_error(exc, what)
        if error.code == "agent_not_found":  # the 404 is about the conversation here, not an agent
            return ProviderError("agent_not_found", f"ElevenLabs has no record of {what}.", status=404)
        return error
    logger.warning("ElevenLabs agents API failed: %s", type(exc).__name__)
    return ProviderError("agent_unavailable", "ElevenLabs cannot be reached.", retryable=True)


def vendor_agent_list(*, api_key: str, base_url: str, timeout: float = 5.0) -> list[VendorAgent]:
    """Every agent of the account, by name; raises ProviderError."""
    client = _client(api_key, base_url, timeout)
    agents: list[VendorAgent] = []
    cursor: str | None = None
    try:
        for _ in range(LIST_PAGES):
            page = client.conversational_ai.agents.list(page_size=100, cursor=cursor)
            agents.extend(VendorAgent(a.agent_id, a.name) for a in page.agents if not a.archived)
            if not page.has_more or not page.next_cursor:
                break
            cursor = page.next_cursor
    except (ApiError, httpx.TransportError) as exc:
        raise _vendor_error(exc, "the agent list") from None
    return sorted(agents, key=lambda a: a.name.lower())


def agent_choices() -> tuple[list[VendorAgent], str]:
    """The account's agents for the Agent form, or an explanation of why there are none to offer."""
    api_key, base_url = settings.ELEVENLABS_API_KEY, settings.ELEVENLABS_BASE_URL
    if not api_key:
        return [], "Set ELEVENLABS_API_KEY to pick from your ElevenLabs agents."
    cached = _choices_cache.get((api_key, base_url))
    if cached is not None and time.monotonic() - cached[0] < CHOICES_TTL:
        return cached[1], ""
    try:
        agents = vendor_agent_list(api_key=api_key, base_url=base_url, timeout=min(settings.ELEVENLABS_TIMEOUT, 5.0))
    except ProviderError as exc:
        return [], f"Could not list your ElevenLabs agents: {exc.message}"
    _choices_cache[(api_key, base_url)] = (time.monotonic(), agents)
    return agents, ""


def vendor_conversation_get(
    *, api_key: str, base_url: str, conversation_id: str, timeout: float = 10.0
) -> dict[str, Any]:
    """The vendor's transcript and metadata of one call, trimmed to what the admin compares."""
    client = _client(api_key, base_url, timeout)
    try:
        record = client.conversational_ai.conversations.get(conversation_id)
    except (ApiError, httpx.TransportError) as exc:
        raise _vendor_error(exc, f"conversation {conversation_id}") from None
    data = record.dict()
    metadata = data.get("metadata") or {}
    return {
        "agent_id": data.get("agent_id"),
        "status": data.get("status"),
        "metadata": {name: metadata.get(name) for name in METADATA_FIELDS if metadata.get(name) is not None},
        "transcript": [
            {name: turn.get(name) for name in TRANSCRIPT_FIELDS if turn.get(name) is not None}
            for turn in data.get("transcript") or []
        ],
        "fetched_at": timezone.now().isoformat(),
    }


def vendor_conversation_ids(conversation: Conversation) -> list[str]:
    """Every vendor call behind a conversation, oldest first: one per reconnect."""
    replies = conversation.messages.filter(tts_backend=Agent.Backend.ELEVENLABS_AGENT).order_by("created_at")
    ids: list[str] = []
    for request_ids in replies.values_list("tts_request_ids", flat=True):
        ids.extend(str(i) for i in request_ids or [] if str(i) not in ids)
    if conversation.elevenlabs_conversation_id and conversation.elevenlabs_conversation_id not in ids:
        ids.append(conversation.elevenlabs_conversation_id)
    return ids


def conversation_vendor_fetch(*, conversation: Conversation) -> list[str]:
    """Fetch and keep the vendor's records of a conversation's calls; the ids fetched. Raises ProviderError."""
    fetched = {
        vendor_id: vendor_conversation_get(
            api_key=settings.ELEVENLABS_API_KEY,
            base_url=settings.ELEVENLABS_BASE_URL,
            conversation_id=vendor_id,
            timeout=settings.ELEVENLABS_TIMEOUT,
        )
        for vendor_id in vendor_conversation_ids(conversation)
    }
    if fetched:
        conversation.elevenlabs_record = {**conversation.elevenlabs_record, **fetched}
        conversation.save(update_fields=["elevenlabs_record"])
    return list(fetched)


def vendor_record_html(record: dict[str, Any]) -> SafeString | str:
    """The fetched vendor records as the admin shows them: per call, its figures and its transcript."""
    if not record:
        return "— (use the action “Fetch the ElevenLabs agent transcripts” to load it)"
    return format_html_join("", "{}", ((_call_html(vendor_id, call),) for vendor_id, call in record.items()))


def _call_html(vendor_id: str, call: dict[str, Any]) -> SafeString:
    metadata = call.get("metadata") or {}
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                turn.get("role", ""),
                turn.get("time_in_call_secs", ""),
                turn.get("message") or "",
                f"interrupted; was: {turn.get('original_message', '')}" if turn.get("interrupted") else "",
            )
            for turn in call.get("transcript") or []
        ),
    )
    return format_html(
        "<p><strong>{}</strong> · {} · {} s · cost {} · ended: {} · fetched {}</p>"
        "<table><tr><th>role</th><th>s</th><th>message</th><th></th></tr>{}</table>",
        vendor_id,
        call.get("status", "?"),
        metadata.get("call_duration_secs", "?"),
        metadata.get("cost", "?"),
        metadata.get("termination_reason") or "—",
        call.get("fetched_at", "?"),
        rows,
    )


__all__ = [
    "VendorAgent",
    "agent_choices",
    "conversation_vendor_fetch",
    "vendor_agent_list",
    "vendor_conversation_get",
    "vendor_conversation_ids",
    "vendor_record_html",
]
