"""The socket as the official SDKs use it: signed URLs instead of cookie + Origin, the `convai` subprotocol,
initiation overrides, text-only sessions and feedback — through the real ASGI stack."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from chat.models import Agent, Conversation, Message
from chat.signing import signed_url_query
from tests.wsclient import WS_PATH, payload, receive_until, send, session_cookie_for
from voicechat.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


async def signed_query(user: Any, agent: Agent, conversation: Conversation | None = None) -> str:
    return await sync_to_async(signed_url_query)(user=user, agent=agent, conversation=conversation)


async def open_socket(
    query: str, *, headers: list[tuple[bytes, bytes]] | None = None, subprotocols: list[str] | None = None
) -> tuple[WebsocketCommunicator, bool, str | None]:
    """A handshake as the SDKs make it: no cookie, no Origin (unless given), the SDK's own query params."""
    path = f"{WS_PATH}?{query}&source=python_sdk&version=2.78.0"
    communicator = WebsocketCommunicator(application, path, headers=headers or [], subprotocols=subprotocols)
    connected, subprotocol = await communicator.connect(timeout=5)
    return communicator, connected, subprotocol


async def refusal(communicator: WebsocketCommunicator) -> tuple[str, dict[str, Any]]:
    """The error frame and the close of a refused socket, as (error code, close message)."""
    error = await communicator.receive_json_from()
    closed = await communicator.receive_output()
    return payload(error)["code"], closed


async def initiate(communicator: WebsocketCommunicator, override: dict[str, Any]) -> None:
    await send(communicator, {"type": "conversation_initiation_client_data", "conversation_config_override": override})


async def test_it_opens_a_signed_socket_without_cookie_or_origin_and_stores_the_turn_under_the_user(
    user, agent, elevenlabs_settings
) -> None:
    communicator, connected, _ = await open_socket(await signed_query(user, agent))
    assert connected
    meta = payload(await communicator.receive_json_from())
    await send(communicator, {"type": "user_message", "text": "Hello there"})
    log = await receive_until(communicator)
    await communicator.disconnect()
    assert log.of("user_transcript")[0]["user_transcript"] == "Hello there" and log.audio
    conversation = await Conversation.objects.aget(pk=meta["conversation_id"])
    assert conversation.owner_id == user.pk and conversation.agent_id == agent.pk
    assert await Message.objects.filter(conversation=conversation, role="assistant", status="complete").aexists()


async def test_it_resumes_the_conversation_a_url_was_signed_for(user, agent, conversation) -> None:
    communicator, connected, _ = await open_socket(await signed_query(user, agent, conversation))
    assert connected
    meta = payload(await communicator.receive_json_from())
    await communicator.disconnect()
    assert meta["conversation_id"] == str(conversation.pk) and meta["conversation_exists"] is True


async def test_it_echoes_the_convai_subprotocol_when_asked(user, agent) -> None:
    communicator, connected, subprotocol = await open_socket(await signed_query(user, agent), subprotocols=["convai"])
    assert connected and subprotocol == "convai"
    await communicator.disconnect()
    cookie = await sync_to_async(session_cookie_for)(user)
    page_headers = [(b"origin", b"http://localhost:8000"), (b"host", b"localhost:8000"), (b"cookie", cookie.encode())]
    communicator = WebsocketCommunicator(application, WS_PATH, headers=page_headers)
    connected, subprotocol = await communicator.connect()
    assert connected and subprotocol is None  # our page asks for none and gets none
    await communicator.disconnect()


async def test_it_closes_a_reused_signed_url_with_4003_and_says_why(user, agent) -> None:
    query = await signed_query(user, agent)
    first, connected, _ = await open_socket(query)
    assert connected
    await first.disconnect()
    again, connected, _ = await open_socket(query, subprotocols=["convai"])
    assert connected  # accepted only to be told why, as the vendor does
    code, closed = await refusal(again)
    assert code == "signed_url_reused" and closed == {"type": "websocket.close", "code": 4003, "reason": code}


@pytest.mark.parametrize(
    ("mangle", "expected"),
    [
        (lambda q: q[:-3] + "abc", "signed_url_tampered"),
        (lambda q: q.replace("agent_id=", "agent_id=0"), "signed_url_foreign"),
    ],
)
async def test_it_closes_tampered_and_foreign_signed_urls(user, agent, mangle, expected) -> None:
    communicator, connected, _ = await open_socket(mangle(await signed_query(user, agent)))
    assert connected
    code, closed = await refusal(communicator)
    assert code == expected and closed["code"] == 4003
    assert not await Conversation.objects.aexists()


async def test_it_closes_an_expired_signed_url(settings, user, agent) -> None:
    query = await signed_query(user, agent)
    settings.SIGNED_URL_MAX_AGE = -1  # every token is already too old
    communicator, _, _ = await open_socket(query)
    assert (await refusal(communicator))[0] == "signed_url_expired"


async def test_it_never_lets_a_junk_token_ride_a_browser_session_from_a_foreign_page(user, agent) -> None:
    cookie = await sync_to_async(session_cookie_for)(user)
    headers = [(b"origin", b"https://evil.example"), (b"cookie", cookie.encode())]
    communicator, connected, _ = await open_socket("conversation_signature=junk", headers=headers)
    assert connected  # only to be told the token is bad: the cookie was never looked at
    code, _ = await refusal(communicator)
    assert code == "signed_url_tampered"
    assert not await Conversation.objects.aexists()


async def test_it_still_refuses_a_cookieless_handshake_without_a_token(user, agent) -> None:
    communicator, connected, _ = await open_socket(f"agent_id={agent.pk}")
    assert not connected
    await communicator.disconnect()


async def test_it_speaks_no_audio_in_a_text_only_session(user, agent, elevenlabs_settings) -> None:
    communicator, _, _ = await open_socket(await signed_query(user, agent))
    await communicator.receive_json_from()
    await initiate(communicator, {"agent": {}, "tts": {}, "conversation": {"text_only": True}})  # as the JS SDK
    await send(communicator, {"type": "user_message", "text": "Hello"})
    log = await receive_until(communicator)
    await communicator.disconnect()
    assert "audio" not in log.types and log.of("agent_response")[0]["agent_response"]
    assert elevenlabs_settings.tts_requests() == []


async def test_it_closes_with_override_error_when_the_agent_does_not_allow_an_override(user, agent) -> None:
    communicator, _, _ = await open_socket(await signed_query(user, agent))
    await communicator.receive_json_from()
    await initiate(communicator, {"tts": {"voice_id": "21m00Tcm4TlvDq8ikWAM"}})
    code, closed = await refusal(communicator)
    assert code == "override_not_allowed"
    assert closed == {"type": "websocket.close", "code": 4003, "reason": "override_error"}


async def test_it_speaks_in_the_voice_a_client_picked_when_the_agent_allows_it(
    user, agent, elevenlabs_settings
) -> None:
    await Agent.objects.filter(pk=agent.pk).aupdate(allow_voice_override=True, allow_language_override=True)
    communicator, _, _ = await open_socket(await signed_query(user, agent))
    await communicator.receive_json_from()
    await initiate(communicator, {"tts": {"voice_id": "21m00Tcm4TlvDq8ikWAM"}, "agent": {"language": "de"}})
    await send(communicator, {"type": "user_message", "text": "Hallo"})
    await receive_until(communicator)
    await communicator.disconnect()
    requests = elevenlabs_settings.tts_requests()
    assert requests and {r.voice_id for r in requests} == {"21m00Tcm4TlvDq8ikWAM"}
    assert {r.body.get("language_code") for r in requests} == {"de"}
    assert (await Agent.objects.aget(pk=agent.pk)).language_code == "en"  # the override stayed on the socket


async def test_it_stores_feedback_on_the_reply_an_agent_response_event_names(user, agent, elevenlabs_settings) -> None:
    communicator, _, _ = await open_socket(await signed_query(user, agent))
    await communicator.receive_json_from()
    await send(communicator, {"type": "user_message", "text": "Hello"})
    log = await receive_until(communicator)
    response = log.of("agent_response")[0]
    await send(communicator, {"type": "feedback", "score": "like", "event_id": response["event_id"]})
    await send(communicator, {"type": "feedback", "score": "dislike", "event_id": 99999})
    error = payload(await communicator.receive_json_from())
    await communicator.disconnect()
    assert error["code"] == "invalid_message"
    reply = await Message.objects.aget(pk=response["message_id"])
    assert reply.feedback == "like" and reply.feedback_at is not None


async def test_it_ignores_user_audio_chunks_silently(user, agent) -> None:
    communicator, _, _ = await open_socket(await signed_query(user, agent))
    await communicator.receive_json_from()
    for _ in range(5):
        await communicator.send_to(text_data=json.dumps({"user_audio_chunk": "AAAA"}))
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


def test_it_uses_the_vendors_parameter_names_in_signed_queries(user, agent) -> None:
    assert set(parse_qs(signed_url_query(user=user, agent=agent))) == {"agent_id", "conversation_signature"}


async def test_it_adds_a_contextual_update_to_the_next_turns_llm_context(user, agent, openai_settings) -> None:
    communicator, _, _ = await open_socket(await signed_query(user, agent))
    await communicator.receive_json_from()
    await initiate(communicator, {"conversation": {"text_only": True}})
    await send(communicator, {"type": "contextual_update", "text": "The user is looking at the pricing page."})
    await send(communicator, {"type": "user_message", "text": "How much is it?"})
    while not payload((await receive_until(communicator)).frames[-1])["message_id"]:
        pass  # the greeting's turn ends first
    await communicator.disconnect()
    sent = json.dumps(openai_settings.requests[-1]["messages"])
    assert "The user is looking at the pricing page." in sent and "How much is it?" in sent
