"""Policy: whether a turn may start and whether it may keep speaking. The one place that says yes or no.

Transports call these and translate a `Refusal` into a frame or a status; nothing here knows about sockets.
"""

from __future__ import annotations

from django.conf import settings


class Refusal(Exception):
    """A request the policy turns down: a stable error code and a sentence a person can act on."""

    def __init__(self, code: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after  # seconds until asking again can succeed, when known


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
