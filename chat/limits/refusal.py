"""The one error type of the policy, and the check every user message passes first."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from chat.models import Agent


class Refusal(Exception):
    """A request the policy turns down: a stable error code and a sentence a person can act on.

    `close_code`, when set, tells the transport to close the connection with it after sending the error.
    """

    def __init__(
        self, code: str, message: str, *, retry_after: float | None = None, close_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after  # seconds until asking again can succeed, when known
        self.close_code = close_code

    def __repr__(self) -> str:
        return f"Refusal({self.code!r}, {self.message!r})"


def message_check(text: object) -> str:
    """The user's message, stripped, or a Refusal saying why it cannot be sent."""
    if not isinstance(text, str) or not text.strip():
        raise Refusal("invalid_message", 'A user_message needs a non-empty "text".')
    if "\x00" in text:
        raise Refusal("invalid_message", "Messages cannot contain NUL characters.")
    if len(text) > settings.MAX_MESSAGE_CHARS:
        raise Refusal(
            "message_too_long",
            f"Messages are limited to {settings.MAX_MESSAGE_CHARS} characters; this one has {len(text)}.",
        )
    return text.strip()


def agent_check(agent: Agent) -> None:
    """A resumed conversation whose agent an operator retired is read-only: refuse new turns, say why."""
    if not agent.is_active:
        raise Refusal(
            "agent_retired",
            f"{agent.name} has been retired by an operator, so this conversation is read-only; "
            "start a new conversation to keep talking.",
        )
