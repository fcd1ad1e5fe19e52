"""The voice a user picks for a conversation in the page: on the socket before the conversation exists
(`conversation_initiation_client_data`, sent again whenever the pick changes), by PATCH after that."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from chat.models import Agent, Conversation
from chat.voices import agent_default_voice_id, conversation_voice_set
from tests.fakes.elevenlabs import KNOWN_VOICES, FakeElevenLabs
from tests.wsclient import connect, receive_until, send

pytestmark = pytest.mark.django_db(transaction=True)
RACHEL, SARAH = KNOWN_VOICES[1], KNOWN_VOICES[2]
GREETING = "Hello! Pick a voice and say something."


@pytest.fixture(autouse=True)
def _fast_and_local(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.LLM_PROVIDERS = {**settings.LLM_PROVIDERS, "demo": {**settings.LLM_PROVIDERS["demo"]}}
    settings.LLM_PROVIDERS["demo"]["OPTIONS"] = {"tokens_per_second": 0}
    settings.LLM_BACKEND = "demo"


@pytest.fixture
def offering(agent: Agent) -> Agent:
    agent.user_voice_ids = [RACHEL, SARAH]
    agent.save()
    return agent


def pick(voice_id: str) -> dict[str, object]:
    """The frame the page sends when the user picks a voice for a conversation not created yet."""
    return {
        "type": "conversation_initiation_client_data",
        "conversation_config_override": {"tts": {"voice_id": voice_id}},
        "voicechat": {"binary_audio": False, "speak": True},
    }


async def voices_of_turn(communicator, fake: FakeElevenLabs, text: str) -> set[str]:
    fake.reset()
    await send(communicator, {"type": "user_message", "text": text})
    await receive_until(communicator)
    return {r.voice_id for r in fake.tts_requests()}


async def test_it_takes_the_last_voice_picked_before_the_first_message(user, offering, elevenlabs_settings) -> None:
    communicator, connected = await connect(user)
    assert connected
    meta = (await communicator.receive_json_from())["conversation_initiation_metadata_event"]
    await send(communicator, pick(RACHEL))
    await send(communicator, pick(SARAH))  # the user changed their mind: a later frame is taken too
    assert await voices_of_turn(communicator, elevenlabs_settings, "Hello?") == {SARAH}
    await communicator.disconnect()
    assert (await Conversation.objects.aget(pk=meta["conversation_id"])).voice_id == SARAH


async def test_it_follows_a_patch_after_a_voice_picked_on_the_socket(user, offering, elevenlabs_settings) -> None:
    communicator, connected = await connect(user)
    assert connected
    meta = (await communicator.receive_json_from())["conversation_initiation_metadata_event"]
    await send(communicator, pick(RACHEL))
    assert await voices_of_turn(communicator, elevenlabs_settings, "First?") == {RACHEL}
    conversation = await Conversation.objects.select_related("agent").aget(pk=meta["conversation_id"])
    await sync_to_async(conversation_voice_set)(conversation=conversation, voice_id=SARAH)  # PATCH, socket open
    assert await voices_of_turn(communicator, elevenlabs_settings, "Second?") == {SARAH}
    await sync_to_async(conversation_voice_set)(conversation=conversation, voice_id="")  # back to the agent's
    assert await voices_of_turn(communicator, elevenlabs_settings, "Third?") == {agent_default_voice_id(offering)}
    await communicator.disconnect()


async def test_it_stores_the_agents_own_voice_as_no_pick(user, offering, elevenlabs_settings) -> None:
    communicator, connected = await connect(user)
    assert connected
    meta = (await communicator.receive_json_from())["conversation_initiation_metadata_event"]
    await send(communicator, pick(RACHEL))
    await send(communicator, pick(agent_default_voice_id(offering)))
    assert await voices_of_turn(communicator, elevenlabs_settings, "Hello?") == {agent_default_voice_id(offering)}
    await communicator.disconnect()
    # Blank follows the agent: an operator who changes the agent's voice changes this conversation's too.
    assert (await Conversation.objects.aget(pk=meta["conversation_id"])).voice_id == ""


async def test_it_greets_in_the_voice_picked_in_the_first_frame(user, offering, elevenlabs_settings) -> None:
    offering.first_message = GREETING
    await offering.asave()
    communicator, connected = await connect(user)
    assert connected
    await communicator.receive_json_from()
    await send(communicator, pick(SARAH))
    log = await receive_until(communicator)
    await communicator.disconnect()
    assert log.of("agent_response_complete")[0]["greeting"] is True
    assert {r.voice_id for r in elevenlabs_settings.tts_requests()} == {SARAH}


async def test_it_speaks_a_stored_reply_on_demand_in_the_voice_picked_since(
    user, conversation, offering, elevenlabs_settings
) -> None:
    communicator, connected = await connect(user, query=f"conversation_id={conversation.id}")
    assert connected
    await communicator.receive_json_from()
    await send(communicator, {"type": "settings", "speak": False})
    await send(communicator, {"type": "user_message", "text": "Quietly, please."})
    reply = (await receive_until(communicator)).of("agent_response_complete")[0]["message_id"]
    await sync_to_async(conversation_voice_set)(conversation=conversation, voice_id=RACHEL)  # PATCH, socket open
    await send(communicator, {"type": "speak", "message_id": reply})
    await receive_until(communicator)
    await communicator.disconnect()
    assert {r.voice_id for r in elevenlabs_settings.tts_requests()} == {RACHEL}
