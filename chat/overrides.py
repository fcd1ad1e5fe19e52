"""What a client's `conversation_initiation_client_data` may change for its socket, decided per agent.

Like the vendor's Security tab: an operator allows a voice, first-message or language override on the
agent; any other override a client sends is refused (the consumer answers `override_not_allowed` and
closes 4003 with the vendor's reason `override_error`; the vendor's 1008 is a code Daphne cannot send).
`text_only` is always honoured: it only saves work. Fields sent empty (`null`, or left out as the JS
SDK does for unset options) are no override.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from chat.limits import Refusal
from chat.models import Agent
from chat.protocol import ClientData
from chat.voices import voice_allowed

OVERRIDE_REFUSED = "override_not_allowed"
CLOSE_REASON = "override_error"  # the vendor's close reason for the same refusal
_VOICE_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
_LANGUAGE = re.compile(r"[a-z]{2,3}")


@dataclass(frozen=True)
class SessionOverrides:
    """The overrides in force for one socket; None keeps the agent's own setting."""

    voice_id: str | None = None
    first_message: str | None = None
    language: str | None = None


def session_overrides(*, agent: Agent, data: ClientData) -> SessionOverrides:
    """The overrides `agent` allows from a client's initiation data, or a Refusal naming the first one refused."""
    if data.unsupported_overrides:
        raise Refusal(OVERRIDE_REFUSED, f"The {data.unsupported_overrides[0]} override is not supported by voicechat.")
    return SessionOverrides(
        voice_id=_checked(
            "tts.voice_id",
            data.voice_id,
            agent.allow_voice_override or voice_allowed(agent, data.voice_id or ""),  # any, or one it offers
            _VOICE_ID.fullmatch,
        ),
        first_message=_checked(
            "agent.first_message", data.first_message, agent.allow_first_message_override, _short_enough
        ),
        language=_checked("agent.language", data.language, agent.allow_language_override, _LANGUAGE.fullmatch),
    )


def _checked(name: str, value: str | None, allowed: bool, valid: Callable[[str], object]) -> str | None:
    if value is None:
        return None
    if not allowed:
        raise Refusal(OVERRIDE_REFUSED, f"This agent does not allow a {name} override; an operator can allow it.")
    if not valid(value):
        raise Refusal("invalid_message", f"That {name} override is not valid: {_EXPECTED[name]}.")
    return value


def _short_enough(text: str) -> bool:
    return len(text) <= settings.MAX_MESSAGE_CHARS


_EXPECTED = {
    "tts.voice_id": "use a voice id of letters, digits, - and _",
    "agent.language": "use a lower-case ISO 639-1 code such as en or de",
    "agent.first_message": "keep it within MAX_MESSAGE_CHARS",
}
