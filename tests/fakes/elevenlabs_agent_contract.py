"""What the fake ElevenLabs agents platform knows and answers, as plain data: agents, calls, JSON shapes."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

CREDITS_PER_MINUTE = 1000  # what the fake bills a call, pro rata


@dataclass(frozen=True)
class FakeAgent:
    agent_id: str
    name: str
    voice_id: str = "JBFqnCBsd6RMkjVDRZzb"
    output_format: str = "pcm_16000"
    # What the agent's Security tab allows clients to override, as dotted paths into the override object.
    allowed_overrides: frozenset[str] = frozenset({"agent.language", "agent.first_message"})
    required_variables: tuple[str, ...] = ()
    chat_parts: bool = True  # agent_chat_response_part is in the agent's client_events
    first_message: str = ""  # spoken as soon as a conversation starts, unless overridden (with "" for none)


AGENTS = (
    FakeAgent("agent_support", "Support"),
    FakeAgent(
        "agent_concierge",
        "Concierge",
        output_format="pcm_24000",
        allowed_overrides=frozenset({"agent.language", "agent.first_message", "agent.prompt.prompt", "tts.voice_id"}),
        required_variables=("user_name",),
    ),
    FakeAgent("agent_plain", "Plain", chat_parts=False, output_format="pcm_22050"),
)


@dataclass
class FakeReply:
    user_text: str
    text: str
    spoken: str = ""  # speech text whose audio was sent
    audio_bytes: int = 0
    interrupted: bool = False
    finished: bool = False
    greeting: bool = False
    entry: dict[str, Any] | None = None  # its transcript entry, once its text is complete


@dataclass
class FakeConversation:
    """One vendor conversation as the fake saw it."""

    conversation_id: str
    agent: FakeAgent
    started_at: float = field(default_factory=time.time)
    init: dict[str, Any] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)  # every client message, in order
    sent_types: list[str] = field(default_factory=list)
    pings: list[int] = field(default_factory=list)
    pongs: list[int] = field(default_factory=list)
    contextual_updates: list[str] = field(default_factory=list)
    replies: list[FakeReply] = field(default_factory=list)
    transcript: list[dict[str, Any]] = field(default_factory=list)
    text_only: bool = False
    ended_at: float | None = None
    close_code: int | None = None
    termination_reason: str = ""
    stalled: bool = False

    def call_seconds(self) -> float:
        return (self.ended_at or time.time()) - self.started_at

    def received_types(self) -> list[str]:
        return [str(m.get("type")) for m in self.received]


def default_reply(user_text: str, conversation: FakeConversation) -> str:
    """Two sentences, so a reply has text deltas and audio interleaved."""
    said = user_text.strip().rstrip(".!?") or "nothing"
    return f"You said {said}. That is all I have to say about it."


def sentences(text: str) -> list[str]:
    """Sentences with their trailing whitespace, so joined they give the text back exactly."""
    return [m.group(0) for m in re.finditer(r"[^.!?]*(?:[.!?]+\s*|$)", text) if m.group(0)]


def override_paths(override: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, value in override.items():
        if isinstance(value, dict):
            paths.extend(override_paths(value, f"{prefix}{key}."))
        elif value is not None:
            paths.append(f"{prefix}{key}")
    return paths


def agent_json(agent: FakeAgent) -> dict[str, Any]:
    """An AgentSummaryResponseModel."""
    return {
        "agent_id": agent.agent_id,
        "name": agent.name,
        "voice_id": agent.voice_id,
        "tags": [],
        "created_at_unix_secs": 1_760_000_000,
        "updated_at_unix_secs": 1_760_000_000,
        "access_info": {
            "is_creator": True,
            "creator_name": "Operator",
            "creator_email": "ops@example.com",
            "role": "admin",
        },
        "last_call_time_unix_secs": None,
        "archived": False,
    }


def conversation_json(conversation: FakeConversation) -> dict[str, Any]:
    """A GetConversationResponseModel."""
    seconds = int(conversation.call_seconds())
    cost = round(conversation.call_seconds() * CREDITS_PER_MINUTE / 60)
    user_turns = sum(1 for t in conversation.transcript if t["role"] == "user")
    return {
        "agent_id": conversation.agent.agent_id,
        "agent_name": conversation.agent.name,
        "conversation_id": conversation.conversation_id,
        "status": "done" if conversation.ended_at else "in-progress",
        "user_id": conversation.init.get("user_id"),
        "has_audio": not conversation.text_only,
        "has_user_audio": False,
        "has_response_audio": not conversation.text_only,
        "has_auxiliary_audio": False,
        "user_message_count": user_turns,
        "agent_message_count": len(conversation.transcript) - user_turns,
        "transcript": conversation.transcript,
        "metadata": {
            "start_time_unix_secs": int(conversation.started_at),
            "call_duration_secs": seconds,
            "cost": cost,
            "charging": {"call_charge": cost, "llm_charge": 0},
            "termination_reason": conversation.termination_reason or None,
            "text_only": conversation.text_only,
            "main_language": "en",
        },
        "conversation_initiation_client_data": {
            "conversation_config_override": conversation.init.get("conversation_config_override"),
            "dynamic_variables": conversation.init.get("dynamic_variables"),
        },
    }
