"""Speech that is not a new reply: the agent's greeting, Play on demand, and turning speech off."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from chat.models import Conversation, Greeting, Message
from tests.wsclient import connect, receive_until, send

pytestmark = pytest.mark.django_db(transaction=True)
GREETING = "Hello! I am the assistant, and I speak every reply out loud."


@pytest.fixture(autouse=True)
def _fast_and_local(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.LLM_PROVIDERS = {**settings.LLM_PROVIDERS, "demo": {**settings.LLM_PROVIDERS["demo"]}}
    settings.LLM_PROVIDERS["demo"]["OPTIONS"] = {"tokens_per_second": 0}
    settings.LLM_BACKEND = "demo"


@pytest.fixture
def greeting_agent(agent):
    agent.first_message = GREETING
    agent.save()
    return agent


async def open_new(user, first_frame=None):
    communicator, connected = await connect(user)
    assert connected
    meta = await communicator.receive_json_from()
    if first_frame is not None:
        await send(communicator, first_frame)
    return communicator, meta["conversation_initiation_metadata_event"]


async def test_it_speaks_the_greeting_once_and_replays_it_from_storage(user, greeting_agent, elevenlabs_settings):
    first, _ = await open_new(user)
    log = await receive_until(first)
    await first.disconnect()
    assert log.types[0] == "agent_response"
    assert log.of("agent_response")[0] == {
        "agent_response": GREETING,
        "message_id": None,
        "greeting": True,
        "event_id": log.of("agent_response")[0]["event_id"],
    }
    complete = log.of("agent_response_complete")[0]
    assert complete["greeting"] is True and complete["audio_url"].startswith("/api/greetings/")
    assert log.audio and log.audio == b"".join(elevenlabs_settings.sent_pcm())
    billed = len(elevenlabs_settings.tts_requests())

    second, _ = await open_new(user)
    again = await receive_until(second)
    await second.disconnect()
    assert again.audio == log.audio  # the stored recording, byte for byte
    assert again.of("audio")[0]["words"] == [list(w) for w in (await Greeting.objects.aget()).words]
    assert len(elevenlabs_settings.tts_requests()) == billed  # never billed twice
    assert await Greeting.objects.acount() == 1


async def test_it_shows_the_greeting_without_speech_to_a_text_only_client(user, greeting_agent, elevenlabs_settings):
    text_only = {
        "type": "conversation_initiation_client_data",
        "conversation_config_override": {"conversation": {"text_only": True}},
    }
    communicator, _ = await open_new(user, text_only)
    log = await receive_until(communicator)
    await communicator.disconnect()
    assert log.of("agent_response")[0]["agent_response"] == GREETING
    assert log.of("audio") == [] and elevenlabs_settings.tts_requests() == []


async def test_it_saves_the_greeting_as_the_first_message_of_the_new_conversation(
    user, greeting_agent, elevenlabs_settings, client
):
    communicator, meta = await open_new(user)
    await receive_until(communicator)  # the greeting
    await send(communicator, {"type": "user_message", "text": "Hi!"})
    await receive_until(communicator)
    await communicator.disconnect()
    rows = [m async for m in Message.objects.filter(conversation_id=meta["conversation_id"]).order_by("created_at")]
    assert [(m.role, m.text) for m in rows[:2]] == [("assistant", GREETING), ("user", "Hi!")]
    await sync_to_async(client.force_login)(user)
    listed = await sync_to_async(client.get)(f"/api/conversations/{meta['conversation_id']}/messages/")
    first = listed.json()["results"][0]
    assert first["audio_url"].startswith("/api/greetings/")
    audio = await sync_to_async(client.get)(first["audio_url"])
    assert audio.status_code == 200 and audio["Content-Type"] == "audio/wav"


async def test_it_plays_a_reply_on_demand_once_and_then_from_storage(user, conversation, elevenlabs_settings):
    communicator, connected = await connect(user, query=f"conversation_id={conversation.id}")
    assert connected
    await communicator.receive_json_from()
    await send(communicator, {"type": "settings", "speak": False})  # auto-play off: nothing is synthesised
    await send(communicator, {"type": "user_message", "text": "Tell me something."})
    turn = await receive_until(communicator)
    assert turn.of("audio") == [] and elevenlabs_settings.tts_requests() == []
    reply_id = turn.of("agent_response_complete")[0]["message_id"]

    await send(communicator, {"type": "speak", "message_id": reply_id})
    played = await receive_until(communicator)
    requests = len(elevenlabs_settings.tts_requests())
    assert played.audio and requests > 0
    done = played.of("agent_response_complete")[0]
    assert done["message_id"] == reply_id and done["audio_url"] == f"/api/messages/{reply_id}/audio/"

    await send(communicator, {"type": "speak", "message_id": reply_id})
    again = await receive_until(communicator)
    await communicator.disconnect()
    assert again.of("audio") == [] and again.of("agent_response_complete")[0]["audio_url"] == done["audio_url"]
    assert len(elevenlabs_settings.tts_requests()) == requests
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.audio_status == "complete" and reply.tts_characters > 0


async def test_it_refuses_to_play_what_is_not_a_reply_of_this_conversation(user, conversation, elevenlabs_settings):
    mine = await Message.objects.acreate(conversation=conversation, role="user", text="Mine", status="complete")
    communicator, connected = await connect(user, query=f"conversation_id={conversation.id}")
    assert connected
    await communicator.receive_json_from()
    for message_id in (str(mine.id), "not-a-uuid"):
        await send(communicator, {"type": "speak", "message_id": message_id})
        error = await receive_until(communicator, "error")
        assert error.of("error")[0]["code"] == "invalid_message"
    await communicator.disconnect()
    assert elevenlabs_settings.tts_requests() == []


async def test_it_speaks_in_the_voice_picked_for_the_conversation(user, conversation, elevenlabs_settings) -> None:
    agent = conversation.agent
    agent.user_voice_ids = ["picked-voice"]
    await agent.asave()
    communicator, connected = await connect(user, query=f"conversation_id={conversation.id}")
    assert connected
    await communicator.receive_json_from()
    conversation.voice_id = "picked-voice"  # as PATCH /api/conversations/{id}/ does while the socket is open
    await conversation.asave(update_fields=["voice_id"])
    await send(communicator, {"type": "user_message", "text": "Hello?"})
    await receive_until(communicator)
    await communicator.disconnect()
    assert {r.voice_id for r in elevenlabs_settings.tts_requests()} == {"picked-voice"}


async def test_it_keeps_an_offered_voice_chosen_before_the_first_message(user, agent, elevenlabs_settings) -> None:
    agent.user_voice_ids = ["picked-voice"]
    await agent.asave()
    choose = {
        "type": "conversation_initiation_client_data",
        "conversation_config_override": {"tts": {"voice_id": "picked-voice"}},
    }
    communicator, meta = await open_new(user, choose)
    await send(communicator, {"type": "user_message", "text": "Hello?"})
    await receive_until(communicator)
    await communicator.disconnect()
    conversation = await Conversation.objects.aget(pk=meta["conversation_id"])
    assert conversation.voice_id == "picked-voice"
    assert {r.voice_id for r in elevenlabs_settings.tts_requests()} == {"picked-voice"}


async def test_it_lets_ssml_pauses_through_only_when_the_agent_allows_them(
    user, conversation, elevenlabs_settings, openai_settings
) -> None:
    openai_settings.reply = (
        'Let me think about that one for a moment. <break time="1.2s"/> Here is my considered answer.'
    )
    spoken = {}
    for allowed in (False, True):
        conversation.agent.allow_breaks = allowed
        await conversation.agent.asave()
        elevenlabs_settings.reset()
        communicator, connected = await connect(user, query=f"conversation_id={conversation.id}")
        assert connected
        await communicator.receive_json_from()
        await send(communicator, {"type": "user_message", "text": "Hard question."})
        log = await receive_until(communicator)
        await communicator.disconnect()
        assert "<break" in log.text  # the displayed text is the model's; the page hides the tag
        spoken[allowed] = " ".join(r.body["text"] for r in elevenlabs_settings.tts_requests())
    assert "break" not in spoken[False]
    assert '<break time="1.2s" />' in spoken[True]
