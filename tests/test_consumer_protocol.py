"""The WebSocket handshake and every client → server row of the protocol, through the real ASGI stack."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from asgiref.sync import sync_to_async

from chat.consumers import ConversationConsumer
from chat.models import Conversation, Message
from tests.wsclient import connect, payload, receive_until, send

pytestmark = pytest.mark.django_db(transaction=True)


async def test_it_refuses_anonymous_users(agent) -> None:
    communicator, connected = await connect(None)
    assert not connected
    await communicator.disconnect()


async def test_it_refuses_a_foreign_origin(user) -> None:
    communicator, connected = await connect(user, origin="https://evil.example")
    assert not connected
    await communicator.disconnect()


async def test_it_refuses_another_users_conversation(user, other_user, agent) -> None:
    theirs = await Conversation.objects.acreate(owner=other_user, agent=agent)
    for query in (f"conversation_id={theirs.id}", f"conversation_id={uuid.uuid4()}", "conversation_id=nonsense"):
        communicator, connected = await connect(user, query=query)
        assert not connected, query
        await communicator.disconnect()


async def test_it_refuses_an_unknown_agent(user, agent) -> None:
    communicator, connected = await connect(user, query=f"agent_id={uuid.uuid4()}")
    assert not connected
    await communicator.disconnect()


async def test_it_announces_the_conversation_and_audio_format_first(user, agent) -> None:
    communicator, connected = await connect(user)
    assert connected
    first = await communicator.receive_json_from()
    await communicator.disconnect()
    assert first["type"] == "conversation_initiation_metadata"
    meta = first["conversation_initiation_metadata_event"]
    assert meta["agent_output_audio_format"].startswith("pcm_")
    assert meta["agent_id"] == str(agent.id)
    assert meta["conversation_exists"] is False
    assert not await Conversation.objects.filter(pk=meta["conversation_id"]).aexists()


async def test_it_creates_the_announced_conversation_on_the_first_message_only(user, agent) -> None:
    sockets = [await connect(user) for _ in range(3)]
    metas = [(await c.receive_json_from())["conversation_initiation_metadata_event"] for c, _ in sockets]
    assert await Conversation.objects.acount() == 0  # sockets and page loads leave no empty rows
    first, _ = sockets[0]
    await send(first, {"type": "user_message", "text": "Hello there."})
    await receive_until(first)
    for communicator, _ in sockets:
        await communicator.disconnect()
    conversation = await Conversation.objects.aget()
    assert str(conversation.id) == metas[0]["conversation_id"]
    assert conversation.owner_id == user.id and conversation.title == "Hello there."


async def test_it_resumes_one_of_my_conversations(user, conversation) -> None:
    communicator, connected = await connect(user, query=f"conversation_id={conversation.id}")
    assert connected
    first = await communicator.receive_json_from()
    await communicator.disconnect()
    assert payload(first)["conversation_id"] == str(conversation.id)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "invalid_message"),
        ('["a list"]', "invalid_message"),
        ('{"type": "dance"}', "invalid_message"),
        ('{"type": "user_message", "text": "   "}', "invalid_message"),
        ('{"type": "user_message"}', "invalid_message"),
        ('{"type": "user_message", "text": 42}', "invalid_message"),
        (json.dumps({"type": "user_message", "text": "x" * 4001}), "message_too_long"),
        ('{"type": "playback_report", "message_id": "nope", "underruns": 0}', "invalid_message"),
    ],
)
async def test_it_answers_bad_frames_with_an_error_and_stays_open(user, conversation, frame, code) -> None:
    communicator, _ = await connect(user, query=f"conversation_id={conversation.id}")
    await communicator.receive_json_from()
    await communicator.send_to(text_data=frame)
    error = await communicator.receive_json_from()
    assert error["type"] == "error"
    assert error["error_event"]["code"] == code
    assert error["error_event"]["message"]
    await send(communicator, {"type": "user_activity"})  # still open, and keep-alives are silent
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()
    assert await Message.objects.filter(conversation=conversation).acount() == 0


async def test_it_refuses_binary_frames(user, conversation) -> None:
    communicator, _ = await connect(user, query=f"conversation_id={conversation.id}")
    await communicator.receive_json_from()
    await communicator.send_to(bytes_data=b"\x00\x01")
    error = await communicator.receive_json_from()
    await communicator.disconnect()
    assert error["error_event"]["code"] == "invalid_message"


async def test_it_pings_and_measures_the_round_trip(user, conversation, monkeypatch) -> None:
    monkeypatch.setattr(ConversationConsumer, "ping_interval", 0.05)
    communicator, _ = await connect(user, query=f"conversation_id={conversation.id}")
    await communicator.receive_json_from()
    ping = (await receive_until(communicator, "ping", timeout=2)).of("ping")[0]
    assert ping["ping_ms"] is None
    await send(communicator, {"type": "pong", "event_id": ping["event_id"]})
    second = (await receive_until(communicator, "ping", timeout=2)).of("ping")[0]
    await communicator.disconnect()
    assert second["event_id"] > ping["event_id"]
    assert isinstance(second["ping_ms"], int) and second["ping_ms"] >= 0


async def test_it_stores_the_playback_report_on_the_assistant_message(user, conversation) -> None:
    reply = await Message.objects.acreate(conversation=conversation, role="assistant", text="Hi.", status="complete")
    communicator, _ = await connect(user, query=f"conversation_id={conversation.id}")
    await communicator.receive_json_from()
    report = {"type": "playback_report", "message_id": str(reply.id), "first_audible_ms": 412, "underruns": 1}
    await send(communicator, report)
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()
    await reply.arefresh_from_db()
    assert (reply.client_first_audible_ms, reply.client_underruns) == (412, 1)


async def test_it_ignores_playback_reports_for_other_conversations(user, other_user, agent) -> None:
    theirs = await Conversation.objects.acreate(owner=other_user, agent=agent)
    reply = await Message.objects.acreate(conversation=theirs, role="assistant", text="Hi.", status="complete")
    mine = await Conversation.objects.acreate(owner=user, agent=agent)
    communicator, _ = await connect(user, query=f"conversation_id={mine.id}")
    await communicator.receive_json_from()
    await send(communicator, {"type": "playback_report", "message_id": str(reply.id), "first_audible_ms": 5})
    error = await communicator.receive_json_from()
    await communicator.disconnect()
    assert error["error_event"]["code"] == "invalid_message"
    await reply.arefresh_from_db()
    assert reply.client_first_audible_ms is None


async def test_it_leaves_no_task_behind_after_disconnect(user, conversation) -> None:
    before = {t for t in asyncio.all_tasks() if t.get_name().startswith(("turn-", "speak-"))}
    communicator, _ = await connect(user, query=f"conversation_id={conversation.id}")
    await communicator.receive_json_from()
    await communicator.disconnect()
    await sync_to_async(lambda: None)()
    after = {t for t in asyncio.all_tasks() if t.get_name().startswith(("turn-", "speak-")) and not t.done()}
    assert after <= before


async def test_it_keeps_a_retired_agents_conversation_readable_but_refuses_new_turns(user, conversation) -> None:
    agent = conversation.agent
    agent.is_active = False
    await agent.asave()
    communicator, connected = await connect(user, query=f"conversation_id={conversation.id}")
    assert connected  # its history stays reachable
    await communicator.receive_json_from()
    await send(communicator, {"type": "user_message", "text": "Are you there?"})
    refused = payload(await communicator.receive_json_from())
    await communicator.disconnect()
    assert refused["code"] == "agent_retired" and "start a new conversation" in refused["message"]
    assert not await Message.objects.filter(conversation=conversation).aexists()
