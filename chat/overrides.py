"""What a client's `conversation_initiation_client_data` may change for its socket, decided per agent.

Like the vendor's Security tab: an operator allows a voice, first-message or language override on the
agent; any other override a client sends is refused (the consumer answers `override_not_allowed` and
closes 1008 with the vendor's reason `override_error`). `text_only` is always honoured: it only saves
work. Fields sent empty (`null`, or left out as the JS SDK does for unset options) are no override.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from chat.limits import Refusal
from chat.models import Agent

OVERRIDE_REFUSED = "override_not_allowed"
CLOSE_REASON = "override_error"  # the vendor's close reason for the same refusal (code 1008)
_VOICE_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
_LANGUAGE = re.compile(r"[a-z]{2,3}")
# Override fields the vendor knows that voicechat has no switch for; sending one is refused, not ignored.
_UNSUPPORTED = {
    "agent": ("prompt",),
    "tts": ("stability", "speed", "similarity_boost"),
}


@dataclass(frozen=True)
class SessionOverrides:
    """The overrides in force for one socket; None keeps the agent's own setting."""

    text_only: bool = False
    voice_id: str | None = None
    first_message: str | None = None
    language: str | None = None


def session_overrides(*, agent: Agent, client_data: Mapping[str, Any]) -> SessionOverrides:
    """The overrides of a `conversation_initiation_client_data` frame, or a Refusal naming the first one refused."""
    override = _section(client_data, "conversation_config_override")
    agent_part, tts_part = _section(override, "agent"), _section(override, "tts")
    for section, part in (("agent", agent_part), ("tts", tts_part)):
        for name in _UNSUPPORTED[section]:
            if part.get(name) is not None:
                raise Refusal(OVERRIDE_REFUSED, f"The {section}.{name} override is not supported by voicechat.")
    # The Python SDK puts text_only at the top of the override when it has no audio interface.
    text_only = _flag(_section(override, "conversation").get("text_only")) or _flag(override.get("text_only"))
    return SessionOverrides(
        text_only=text_only,
        voice_id=_allowed(tts_part, "voice_id", agent.allow_voice_override, _VOICE_ID, "a voice id"),
        first_message=_first_message(agent_part, agent),
        language=_allowed(agent_part, "language", agent.allow_language_override, _LANGUAGE, "an ISO 639-1 code"),
    )


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise Refusal("invalid_message", f"{key} must be an object.")
    return value


def _flag(value: Any) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise Refusal("invalid_message", "text_only must be true or false.")
    return value


def _allowed(part: Mapping[str, Any], name: str, allowed: bool, pattern: re.Pattern[str], what: str) -> str | None:
    value = part.get(name)
    if value is None:
        return None
    if not allowed:
        raise _refused(name)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise Refusal("invalid_message", f"The {name} override must be {what}.")
    return value


def _first_message(part: Mapping[str, Any], agent: Agent) -> str | None:
    value = part.get("first_message")
    if value is None:
        return None
    if not agent.allow_first_message_override:
        raise _refused("first_message")
    if not isinstance(value, str) or len(value) > settings.MAX_MESSAGE_CHARS:
        raise Refusal(
            "invalid_message",
            f"The first_message override must be text of at most {settings.MAX_MESSAGE_CHARS} characters.",
        )
    return value


def _refused(field: str) -> Refusal:
    return Refusal(OVERRIDE_REFUSED, f"This agent does not allow a {field} override; an operator can allow it.")
