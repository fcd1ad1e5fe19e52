"""Signed WebSocket URLs: short-lived, single-use tokens that stand in for the session cookie and Origin.

The official SDKs open their socket with neither a cookie nor an Origin header, so they first fetch a
signed URL over HTTP (authenticated by session or `xi-api-key`) and connect with its
`conversation_signature`. The token is Django's signing (HMAC with SECRET_KEY, a salt and a timestamp)
over the user, the agent and the optional conversation, plus a random nonce; spending the nonce in the
database makes it single-use across every server process. A handshake that carries a token is judged
by the token alone: its cookie is dropped and its Origin is not checked, so a junk token can never
unlock someone's session from a foreign page.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode

from channels.security.websocket import AllowedHostsOriginValidator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core import signing
from django.db import IntegrityError, transaction
from django.utils import timezone

from chat.models import Agent, Conversation, SignedUrlUse

SALT = "chat.signing.conversation"
TOKEN_PARAM = "conversation_signature"

RefusalReason = Literal["expired", "reused", "tampered", "foreign"]
_REFUSAL_MESSAGES: dict[RefusalReason, str] = {
    "expired": "This signed URL has expired; ask your server for a new one.",
    "reused": "This signed URL has already been used; each one opens a single conversation socket.",
    "tampered": "This signed URL is not valid; use it exactly as get-signed-url returned it.",
    "foreign": "This signed URL was made for another user, agent or conversation.",
}


class TokenRefused(Exception):
    """A signed URL token that does not open a socket; `code` is the stable error code sent to the client."""

    def __init__(self, reason: RefusalReason) -> None:
        super().__init__(_REFUSAL_MESSAGES[reason])
        self.reason: RefusalReason = reason
        self.code = f"signed_url_{reason}"
        self.message = _REFUSAL_MESSAGES[reason]


@dataclass(frozen=True)
class SignedSession:
    """Who a valid token speaks for; `conversation` is None when the socket starts a new one."""

    user: User
    agent: Agent
    conversation: Conversation | None


def signed_url_token(*, user: User, agent: Agent, conversation: Conversation | None = None) -> str:
    """A fresh token for one socket of `user` with `agent` (resuming `conversation` when given)."""
    payload = {
        "u": str(user.pk),
        "a": str(agent.pk),
        "c": str(conversation.pk) if conversation else None,
        "n": secrets.token_urlsafe(16),
    }
    return signing.dumps(payload, salt=SALT)


def signed_url_query(*, user: User, agent: Agent, conversation: Conversation | None = None) -> str:
    """The query string of a signed WebSocket URL, in the vendor's parameter names."""
    params = {"agent_id": str(agent.pk)}
    if conversation is not None:
        params["conversation_id"] = str(conversation.pk)
    params[TOKEN_PARAM] = signed_url_token(user=user, agent=agent, conversation=conversation)
    return urlencode(params)


def signed_url_verify(token: str, *, agent_id: str = "", conversation_id: str = "") -> SignedSession:
    """Check and spend `token` for a handshake that named `agent_id` / `conversation_id` (blank: not named).

    Raises TokenRefused: `tampered` (bad signature or shape), `expired` (older than SIGNED_URL_MAX_AGE),
    `foreign` (the URL names another agent or conversation than the token, or the user, agent or
    conversation is gone or inactive) or `reused` (spent already, by any process).
    """
    payload = _payload(token)
    if (agent_id and agent_id != payload["a"]) or (conversation_id and conversation_id != (payload["c"] or "")):
        raise TokenRefused("foreign")
    _spend(payload["n"])
    return _session(payload)


def _payload(token: str) -> dict[str, Any]:
    try:
        payload = signing.loads(token, salt=SALT, max_age=settings.SIGNED_URL_MAX_AGE)
    except signing.SignatureExpired:
        raise TokenRefused("expired") from None
    except (signing.BadSignature, ValueError):
        raise TokenRefused("tampered") from None
    # Only our own signer makes payloads, but a changed shape after an upgrade must not crash a handshake.
    if not (isinstance(payload, dict) and {"u", "a", "c", "n"} <= payload.keys() and isinstance(payload["n"], str)):
        raise TokenRefused("tampered")
    return payload


def _spend(nonce: str) -> None:
    now = timezone.now()
    try:
        with transaction.atomic():
            SignedUrlUse.objects.create(nonce=nonce, expires_at=now + timedelta(seconds=settings.SIGNED_URL_MAX_AGE))
    except IntegrityError:
        raise TokenRefused("reused") from None
    # A spent nonce only matters while its token could still verify; later the signature's age refuses it.
    SignedUrlUse.objects.filter(expires_at__lt=now).delete()


def _session(payload: dict[str, Any]) -> SignedSession:
    try:
        user = get_user_model().objects.get(pk=payload["u"], is_active=True)
        agent = Agent.objects.get(pk=payload["a"], is_active=True)
        conversation = None
        if payload["c"]:
            conversation = Conversation.objects.select_related("agent").get(pk=payload["c"], owner=user, agent=agent)
    except (ValueError, get_user_model().DoesNotExist, Agent.DoesNotExist, Conversation.DoesNotExist):
        raise TokenRefused("foreign") from None
    return SignedSession(user=user, agent=agent, conversation=conversation)


def token_from_scope(scope: MutableMapping[str, Any]) -> str | None:
    """The signed URL token of a WebSocket handshake, if its query carries one."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = query.get(TOKEN_PARAM)
    return values[0] if values else None


ASGIApp = Callable[[MutableMapping[str, Any], Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Any]


class OriginCheckUnlessSigned:
    """Channels' Origin check for every handshake except one with a signed URL token, whose cookie is dropped.

    The consumer then accepts such a socket only for a valid token, so the signed path cannot ride a
    browser's session (the classic cross-site WebSocket hijack) and the cookie path keeps its Origin check.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.origin_checked = AllowedHostsOriginValidator(app)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and token_from_scope(scope) is not None:
            headers = [(name, value) for name, value in scope.get("headers", []) if name.lower() != b"cookie"]
            return await self.app({**scope, "headers": headers}, receive, send)
        return await self.origin_checked(scope, receive, send)
