"""Signed WebSocket URL tokens (chat/signing.py): bound, short-lived, single-use, and the handshake middleware."""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
from django.core import signing
from django.utils import timezone

from chat.models import Agent, Conversation, SignedUrlUse
from chat.signing import (
    SALT,
    OriginCheckUnlessSigned,
    TokenRefused,
    signed_url_query,
    signed_url_token,
    signed_url_verify,
    token_from_scope,
)

pytestmark = pytest.mark.django_db


def refusal(token: str, **handshake: str) -> str:
    with pytest.raises(TokenRefused) as info:
        signed_url_verify(token, **handshake)
    return info.value.reason


def test_it_verifies_a_fresh_token_once_for_its_user_and_agent(user, agent) -> None:
    token = signed_url_token(user=user, agent=agent)
    session = signed_url_verify(token, agent_id=str(agent.pk))
    assert (session.user, session.agent, session.conversation) == (user, agent, None)
    assert refusal(token, agent_id=str(agent.pk)) == "reused"


def test_it_binds_a_token_to_the_conversation_it_resumes(user, agent, conversation) -> None:
    token = signed_url_token(user=user, agent=agent, conversation=conversation)
    session = signed_url_verify(token, agent_id=str(agent.pk), conversation_id=str(conversation.pk))
    assert session.conversation == conversation
    # The token alone decides which conversation opens, even when the URL leaves the id out.
    assert signed_url_verify(signed_url_token(user=user, agent=agent, conversation=conversation)).conversation
    other = Conversation.objects.create(owner=user, agent=agent)
    stale = signed_url_token(user=user, agent=agent, conversation=conversation)
    assert refusal(stale, conversation_id=str(other.pk)) == "foreign"
    assert refusal(signed_url_token(user=user, agent=agent), conversation_id=str(conversation.pk)) == "foreign"


def test_it_refuses_a_token_older_than_the_setting(settings, user, agent) -> None:
    class Issued20MinutesAgo(signing.TimestampSigner):
        def timestamp(self) -> str:
            return signing.b62_encode(int(time.time()) - 1200)

    payload = {"u": str(user.pk), "a": str(agent.pk), "c": None, "n": "n" * 22}
    old = Issued20MinutesAgo(salt=SALT).sign_object(payload)
    settings.SIGNED_URL_MAX_AGE = 900
    assert refusal(old) == "expired"
    settings.SIGNED_URL_MAX_AGE = 1500
    assert signed_url_verify(old).user == user  # refusing it as expired did not spend it


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature changed
        lambda t: "x" + t,  # payload changed
        lambda t: "",
        lambda t: "not a token",
        lambda t: signing.dumps({"u": "1"}, salt="django.contrib.sessions"),  # another signer's value
    ],
)
def test_it_refuses_a_tampered_token(user, agent, mangle) -> None:
    assert refusal(mangle(signed_url_token(user=user, agent=agent))) == "tampered"


def test_it_refuses_a_well_signed_payload_of_another_shape(user, agent) -> None:
    assert refusal(signing.dumps({"u": str(user.pk)}, salt=SALT)) == "tampered"


def test_it_refuses_a_token_for_another_agent_or_a_gone_user_agent_or_conversation(
    user, other_user, agent, conversation
) -> None:
    second = Agent.objects.create(name="Second")
    assert refusal(signed_url_token(user=user, agent=agent), agent_id=str(second.pk)) == "foreign"

    token = signed_url_token(user=user, agent=agent, conversation=conversation)
    Conversation.objects.filter(pk=conversation.pk).update(owner=other_user)
    assert refusal(token) == "foreign"

    token = signed_url_token(user=user, agent=second)
    Agent.objects.filter(pk=second.pk).update(is_active=False)
    assert refusal(token) == "foreign"

    token = signed_url_token(user=user, agent=agent)
    user.is_active = False
    user.save()
    assert refusal(token) == "foreign"


def test_it_does_not_spend_a_token_presented_for_the_wrong_agent(user, agent) -> None:
    second = Agent.objects.create(name="Second")
    token = signed_url_token(user=user, agent=agent)
    assert refusal(token, agent_id=str(second.pk)) == "foreign"
    assert signed_url_verify(token, agent_id=str(agent.pk)).agent == agent


def test_it_forgets_spent_tokens_once_they_would_have_expired(user, agent) -> None:
    SignedUrlUse.objects.create(nonce="stale", expires_at=timezone.now() - timedelta(seconds=1))
    SignedUrlUse.objects.create(nonce="live", expires_at=timezone.now() + timedelta(minutes=5))
    signed_url_verify(signed_url_token(user=user, agent=agent))
    nonces = set(SignedUrlUse.objects.values_list("nonce", flat=True))
    assert "stale" not in nonces and "live" in nonces and len(nonces) == 2


def test_it_gives_each_refusal_a_stable_code_and_a_sentence() -> None:
    for reason in ("expired", "reused", "tampered", "foreign"):
        refused = TokenRefused(reason)
        assert refused.code == f"signed_url_{reason}" and refused.message.endswith(".")


def test_it_builds_the_query_of_a_signed_url_in_the_vendors_names(user, agent, conversation) -> None:
    query = parse_qs(signed_url_query(user=user, agent=agent, conversation=conversation))
    assert set(query) == {"agent_id", "conversation_id", "conversation_signature"}
    assert query["agent_id"] == [str(agent.pk)] and query["conversation_id"] == [str(conversation.pk)]
    scope = {"query_string": signed_url_query(user=user, agent=agent).encode() + b"&source=js_sdk&version=1.25.0"}
    token = token_from_scope(scope)
    assert token is not None and signed_url_verify(token).user == user


# --- the handshake middleware -----------------------------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.scopes: list[MutableMapping[str, Any]] = []

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)


async def handshake(app: OriginCheckUnlessSigned, *, query: bytes, origin: bytes | None) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    incoming: list[dict[str, Any]] = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1006}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    headers = [(b"host", b"localhost:8000"), (b"cookie", b"sessionid=abc")]
    if origin is not None:
        headers.append((b"origin", origin))
    await app({"type": "websocket", "query_string": query, "headers": headers, "path": "/"}, receive, send)
    return sent


async def test_it_keeps_the_origin_check_for_handshakes_without_a_token(settings) -> None:
    settings.ALLOWED_HOSTS = ["localhost"]
    inner = Recorder()
    app = OriginCheckUnlessSigned(inner)
    refused = await handshake(app, query=b"agent_id=x", origin=b"https://evil.example")
    assert inner.scopes == [] and refused == [{"type": "websocket.close"}]
    await handshake(app, query=b"agent_id=x", origin=None)  # no Origin is refused too
    assert inner.scopes == []
    await handshake(app, query=b"", origin=b"http://localhost:8000")
    assert (b"cookie", b"sessionid=abc") in inner.scopes[0]["headers"]


async def test_it_passes_a_token_handshake_without_origin_and_drops_its_cookie(settings) -> None:
    settings.ALLOWED_HOSTS = ["localhost"]
    inner = Recorder()
    app = OriginCheckUnlessSigned(inner)
    await handshake(app, query=b"agent_id=x&conversation_signature=anything", origin=None)
    await handshake(app, query=b"conversation_signature=anything", origin=b"https://evil.example")
    assert len(inner.scopes) == 2
    for scope in inner.scopes:
        assert all(name != b"cookie" for name, _ in scope["headers"])
