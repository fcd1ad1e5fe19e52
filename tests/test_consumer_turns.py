"""Whole reply turns over the WebSocket: the demo or fake OpenAI LLM, the real ElevenLabs SDK, the fake vendor."""

from __future__ import annotations

import asyncio
import wave

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from chat.models import Conversation, Message
from chat.providers.demo import DemoLLM
from chat.speech import SpeechChunker, speakable_text
from tests.fakes.elevenlabs import FakeElevenLabs, pcm_for
from tests.wsclient import WS_PATH, connect, receive_until, send, session_cookie_for
from voicechat.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)
QUESTION = "Tell me about streaming speech."


def expected_audio(reply: str) -> bytes:
    """The fake vendor's PCM for each speakable chunk of `reply`, in speaking order."""
    chunker = SpeechChunker()
    chunks = chunker.feed(reply) + chunker.flush()
    return b"".join(pcm_for(chunk.text, 24000) for chunk in chunks)


@pytest.fixture(autouse=True)
def _fast_and_local(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.LLM_PROVIDERS = {**settings.LLM_PROVIDERS, "demo": {**settings.LLM_PROVIDERS["demo"]}}
    settings.LLM_PROVIDERS["demo"]["OPTIONS"] = {"tokens_per_second": 0}
    settings.LLM_BACKEND = "demo"


async def open_conversation(user, conversation):
    communicator, connected = await connect(user, query=f"conversation_id={conversation.id}")
    assert connected
    await communicator.receive_json_from()
    return communicator


async def test_it_streams_text_and_speech_in_protocol_order(user, conversation, elevenlabs_settings, settings) -> None:
    settings.LLM_PROVIDERS["demo"]["OPTIONS"] = {"tokens_per_second": 200}  # slow enough to overlap speech
    communicator = await open_conversation(user, conversation)
    await send(communicator, {"type": "user_message", "text": QUESTION})
    log = await receive_until(communicator)
    await communicator.disconnect()

    types = log.types
    assert types[0] == "user_transcript"
    assert types[1] == "agent_chat_response_part" and log.of("agent_chat_response_part")[0]["type"] == "start"
    assert types.index("audio") < types.index("agent_response")  # speech starts while the LLM still writes
    assert types[-1] == "agent_response_complete"
    assert max(i for i, t in enumerate(types) if t == "audio") < len(types) - 1
    ids = [next(iter(f.values())) for f in log.frames]
    event_ids = [p["event_id"] for f in log.frames for k, p in f.items() if k != "type"]
    assert event_ids == sorted(event_ids) and len(set(event_ids)) == len(ids)

    reply = DemoLLM.reply_for(QUESTION)
    assert log.text == reply
    assert log.of("agent_response")[0]["agent_response"] == reply
    assert all(len(p["audio_base_64"]) % 4 == 0 for p in log.of("audio"))
    assert log.audio == expected_audio(reply)
    assert log.audio == b"".join(elevenlabs_settings.sent_pcm())
    spoken = " ".join(r.body["text"] for r in elevenlabs_settings.tts_requests())
    assert spoken == speakable_text(reply)
    assert "```" not in spoken and "](" not in spoken and "**" not in spoken


async def test_it_saves_text_audio_timings_and_cost(user, conversation, elevenlabs_settings) -> None:
    communicator = await open_conversation(user, conversation)
    await send(communicator, {"type": "user_message", "text": QUESTION})
    log = await receive_until(communicator)
    await communicator.disconnect()

    complete = log.of("agent_response_complete")[0]
    reply = await Message.objects.aget(pk=complete["message_id"])
    assert reply.status == "complete" and reply.audio_status == "complete"
    assert reply.text == DemoLLM.reply_for(QUESTION)
    requests = elevenlabs_settings.tts_requests()
    assert reply.tts_characters == sum(len(r.body["text"]) for r in requests)
    assert reply.tts_request_ids == [r.request_id for r in requests]
    for name in ("llm_first_token_ms", "first_chunk_ms", "tts_first_byte_ms", "first_audio_sent_ms"):
        assert isinstance(getattr(reply, name), int), name
    assert reply.first_chunk_ms is not None and reply.first_audio_sent_ms is not None
    assert reply.first_chunk_ms <= reply.first_audio_sent_ms
    with reply.audio.open("rb") as stored, wave.open(stored) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (24000, 1, 2)
        assert wav.readframes(wav.getnframes()) == log.audio
    assert complete["audio_url"] == f"/api/messages/{reply.id}/audio/"
    assert complete["metrics"]["tts_characters"] == reply.tts_characters
    user_message = await Message.objects.aget(conversation=conversation, role="user")
    assert user_message.text == QUESTION
    await conversation.arefresh_from_db()
    assert conversation.title == "First"  # an existing title is kept


async def test_it_titles_a_new_conversation_from_the_first_message(user, agent, elevenlabs_settings) -> None:
    communicator, _ = await connect(user)
    meta = await communicator.receive_json_from()
    await send(communicator, {"type": "user_message", "text": "How do  whales\nsleep?"})
    await receive_until(communicator)
    await communicator.disconnect()
    conversation = await Conversation.objects.aget(pk=meta["conversation_initiation_metadata_event"]["conversation_id"])
    assert conversation.title == "How do whales"


async def test_it_sends_prosody_context_with_each_chunk(user, conversation, elevenlabs_settings) -> None:
    communicator = await open_conversation(user, conversation)
    await send(communicator, {"type": "user_message", "text": QUESTION})
    await receive_until(communicator)
    await communicator.disconnect()
    requests = elevenlabs_settings.tts_requests()
    assert len(requests) >= 3
    assert "previous_text" not in requests[0].body and "previous_request_ids" not in requests[0].body
    for request in requests[1:]:
        assert request.body.get("previous_request_ids") or request.body.get("previous_text")
    assert all(r.query["output_format"] == "pcm_24000" for r in requests)
    assert all(r.key_ok for r in requests)


async def test_it_keeps_two_speech_requests_in_flight_at_most(user, conversation, elevenlabs_settings) -> None:
    elevenlabs_settings.realtime = True
    elevenlabs_settings.ms_per_char = 2
    communicator = await open_conversation(user, conversation)
    await send(communicator, {"type": "user_message", "text": QUESTION})
    await receive_until(communicator)
    await communicator.disconnect()
    assert elevenlabs_settings.peak_streams == 2


async def test_it_interrupts_within_100_ms_and_keeps_the_partial_text(user, conversation, elevenlabs_settings) -> None:
    elevenlabs_settings.realtime = True  # long enough replies that the interrupt lands mid-speech
    communicator = await open_conversation(user, conversation)
    await send(communicator, {"type": "user_message", "text": QUESTION})
    await receive_until(communicator, "audio")
    loop = asyncio.get_running_loop()
    sent_at = loop.time()
    await send(communicator, {"type": "interrupt"})
    log = await receive_until(communicator)
    while elevenlabs_settings.open_streams and loop.time() - sent_at < 1:  # noqa: ASYNC110 - polling a counter of the fake
        await asyncio.sleep(0.005)
    closed_after = loop.time() - sent_at
    await communicator.disconnect()

    assert elevenlabs_settings.open_streams == 0
    assert closed_after < 0.1
    types = log.types
    assert "interruption" in types
    assert "audio" not in types[types.index("interruption") :]
    assert types[-3:] == ["interruption", "agent_response_correction", "agent_response_complete"]
    complete = log.of("agent_response_complete")[0]
    assert complete["status"] == "interrupted"
    reply = await Message.objects.aget(pk=complete["message_id"])
    assert reply.status == "interrupted"
    correction = log.of("agent_response_correction")[0]
    assert correction["original_agent_response"] == reply.text
    assert len(correction["corrected_agent_response"]) < len(reply.text)  # only what was spoken whole
    assert any(r.disconnected_early for r in elevenlabs_settings.tts_requests())


async def test_it_sends_the_text_so_far_as_agent_response_before_the_interruption(user, conversation, settings):
    settings.LLM_PROVIDERS["demo"]["OPTIONS"] = {"tokens_per_second": 20}  # still writing when interrupted
    communicator = await open_conversation(user, conversation)
    await send(communicator, {"type": "user_message", "text": QUESTION})
    await receive_until(communicator, "agent_chat_response_part")  # start
    await receive_until(communicator, "agent_chat_response_part")  # first delta
    await send(communicator, {"type": "interrupt"})
    log = await receive_until(communicator)
    await communicator.disconnect()
    types = log.types
    assert types.index("agent_response") < types.index("interruption")
    reply = await Message.objects.aget(role="assistant")
    assert log.of("agent_response")[0]["agent_response"] == reply.text
    assert reply.text and len(reply.text) < len(DemoLLM.reply_for(QUESTION))


async def test_it_interrupts_the_running_turn_when_a_new_message_arrives(user, conversation, elevenlabs_settings):
    elevenlabs_settings.realtime = True
    communicator = await open_conversation(user, conversation)
    await send(communicator, {"type": "user_message", "text": QUESTION})
    await receive_until(communicator, "audio")
    elevenlabs_settings.realtime = False  # the second reply need not take real time
    await send(communicator, {"type": "user_message", "text": "Something else, please."})
    first = await receive_until(communicator)
    second = await receive_until(communicator, timeout=30)
    await communicator.disconnect()
    assert first.of("agent_response_complete")[0]["status"] == "interrupted"
    assert second.types[0] == "user_transcript"
    assert second.of("agent_response_complete")[0]["status"] == "complete"
    statuses = [m async for m in Message.objects.filter(conversation=conversation).values_list("role", "status")]
    assert statuses == [
        ("user", "complete"),
        ("assistant", "interrupted"),
        ("user", "complete"),
        ("assistant", "complete"),
    ]


async def test_it_closes_everything_when_the_client_disconnects(user, conversation, elevenlabs_settings) -> None:
    elevenlabs_settings.realtime = True
    communicator = await open_conversation(user, conversation)
    await send(communicator, {"type": "user_message", "text": QUESTION})
    await receive_until(communicator, "audio")
    await communicator.disconnect()
    await asyncio.sleep(0.1)
    assert elevenlabs_settings.open_streams == 0
    leftovers = [t for t in asyncio.all_tasks() if t.get_name().startswith(("turn-", "speak-")) and not t.done()]
    assert leftovers == []
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert reply.status == "interrupted"


async def test_it_records_an_interruption_when_sends_fail_before_the_disconnect_arrives(
    user, conversation, elevenlabs_settings
) -> None:
    """Uvicorn raises `ClientDisconnected` (an OSError) on a send to a client that has gone; the turn goes on
    unharmed until the disconnect (or a server stop) cancels it, and is saved `interrupted`, not failed."""
    from uvicorn.protocols.utils import ClientDisconnected

    elevenlabs_settings.realtime = True
    gone = asyncio.Event()

    async def server(scope, receive, send):
        async def send_or_fail(message):
            if gone.is_set() and message["type"] == "websocket.send":
                raise ClientDisconnected
            await send(message)

        await application(scope, receive, send_or_fail)

    headers = [(b"origin", b"http://localhost:8000"), (b"host", b"localhost:8000")]
    headers.append((b"cookie", (await sync_to_async(session_cookie_for)(user)).encode()))
    communicator = WebsocketCommunicator(server, f"{WS_PATH}?conversation_id={conversation.id}", headers=headers)
    assert (await communicator.connect())[0]
    await communicator.receive_json_from()
    await send(communicator, {"type": "user_message", "text": QUESTION})
    await receive_until(communicator, "audio")
    gone.set()
    await asyncio.sleep(0.5)  # frames keep failing meanwhile
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert reply.status == "streaming"  # still running, not recorded as failed
    await communicator.disconnect()
    await reply.arefresh_from_db()
    assert (reply.status, reply.error_code) == ("interrupted", "")


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("invalid_api_key", "tts_unavailable"),
        ("quota_exceeded", "tts_quota_exceeded"),
        ("unprocessable", "tts_invalid_request"),
        ("voice_not_found", "tts_voice_not_found"),
    ],
)
async def test_it_keeps_the_text_when_speech_is_refused(user, conversation, elevenlabs_settings, fault, code):
    elevenlabs_settings.fail_next(fault)
    communicator = await open_conversation(user, conversation)
    await send(communicator, {"type": "user_message", "text": QUESTION})
    log = await receive_until(communicator)
    await communicator.disconnect()
    errors = log.of("error")
    assert [e["code"] for e in errors] == [code]
    assert "test-elevenlabs-key" not in errors[0]["message"]
    assert log.text == DemoLLM.reply_for(QUESTION)
    assert log.of("audio") == []
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert (reply.status, reply.audio_status, reply.error_code) == ("complete", "failed", code)
    assert reply.text == DemoLLM.reply_for(QUESTION)
    # Only the request already prefetched may follow; no later chunk goes to a vendor that refused.
    assert len(elevenlabs_settings.tts_requests()) <= 2


async def test_it_retries_rate_limits_then_speaks(user, conversation, elevenlabs_settings) -> None:
    elevenlabs_settings.fail_next("rate_limited", times=2)
    communicator = await open_conversation(user, conversation)
    await send(communicator, {"type": "user_message", "text": QUESTION})
    log = await receive_until(communicator)
    await communicator.disconnect()
    assert log.of("error") == []
    assert log.of("agent_response_complete")[0]["audio_status"] == "complete"
    assert [r.status for r in elevenlabs_settings.tts_requests()[:3]] == [429, 429, 200]


async def test_it_reports_rate_limited_when_retries_run_out(user, conversation, elevenlabs_settings) -> None:
    elevenlabs_settings.fail_next("rate_limited", times=20)
    communicator = await open_conversation(user, conversation)
    await send(communicator, {"type": "user_message", "text": QUESTION})
    log = await receive_until(communicator)
    await communicator.disconnect()
    assert [e["code"] for e in log.of("error")] == ["rate_limited"]
    assert log.of("agent_response_complete")[0]["audio_status"] == "failed"


@pytest.mark.parametrize(("fault", "code"), [("reset", "tts_stream_failed"), ("stall", "tts_timeout")])
async def test_it_keeps_the_audio_sent_before_a_broken_stream(user, conversation, elevenlabs_settings, fault, code):
    elevenlabs_settings.fail_next(fault)
    communicator = await open_conversation(user, conversation)
    await send(communicator, {"type": "user_message", "text": QUESTION})
    log = await receive_until(communicator)
    await communicator.disconnect()
    assert [e["code"] for e in log.of("error")] == [code]
    assert log.audio  # what arrived before the break was relayed
    assert log.audio == elevenlabs_settings.tts_requests()[0].pcm[: len(log.audio)]
    complete = log.of("agent_response_complete")[0]
    assert (complete["status"], complete["audio_status"]) == ("complete", "partial")
    reply = await Message.objects.aget(pk=complete["message_id"])
    assert reply.audio and reply.error_code == code


async def test_it_retries_a_server_error_before_the_first_byte(user, conversation, elevenlabs_settings) -> None:
    elevenlabs_settings.fail_next("server_error")
    communicator = await open_conversation(user, conversation)
    await send(communicator, {"type": "user_message", "text": QUESTION})
    log = await receive_until(communicator)
    await communicator.disconnect()
    assert log.of("error") == []
    assert log.audio == expected_audio(DemoLLM.reply_for(QUESTION))


async def test_it_uses_the_agents_voice_settings(user, conversation, elevenlabs_settings) -> None:
    agent = conversation.agent
    agent.voice_id, agent.stability, agent.speed, agent.language_code = "21m00Tcm4TlvDq8ikWAM", 0.3, 1.1, "de"
    await agent.asave()
    communicator = await open_conversation(user, conversation)
    await send(communicator, {"type": "user_message", "text": QUESTION})
    await receive_until(communicator)
    await communicator.disconnect()
    request = elevenlabs_settings.tts_requests()[0]
    assert request.voice_id == "21m00Tcm4TlvDq8ikWAM"
    assert request.body["voice_settings"]["stability"] == 0.3
    assert request.body["voice_settings"]["speed"] == 1.1
    assert request.body["language_code"] == "de"
    assert request.body["model_id"] == "eleven_flash_v2_5"


async def test_it_sends_history_to_the_llm_and_reports_llm_failures(
    user, conversation, openai_settings, elevenlabs_settings
) -> None:
    communicator = await open_conversation(user, conversation)
    await send(communicator, {"type": "user_message", "text": "First question?"})
    first = await receive_until(communicator)
    assert first.text == openai_settings.reply
    openai_settings.fail_next("server_error", times=2)
    await send(communicator, {"type": "user_message", "text": "Second question?"})
    second = await receive_until(communicator)
    await communicator.disconnect()

    sent = openai_settings.requests[0]["messages"]
    assert sent[0]["role"] == "system" and sent[-1] == {"role": "user", "content": "First question?"}
    assert [e["code"] for e in second.of("error")] == ["llm_unavailable"]
    assert second.of("agent_response_complete")[0]["status"] == "failed"
    history = openai_settings.requests[-1]["messages"]
    assert [m["content"] for m in history[1:]] == ["First question?", openai_settings.reply, "Second question?"]
    rows = [m async for m in Message.objects.filter(conversation=conversation).values_list("role", "status")]
    assert rows[-2:] == [("user", "complete"), ("assistant", "failed")]


async def test_it_speaks_offline_with_espeak(user, conversation, settings) -> None:
    settings.TTS_BACKEND = "espeak"
    communicator, _ = await connect(user, query=f"conversation_id={conversation.id}")
    meta = await communicator.receive_json_from()
    assert meta["conversation_initiation_metadata_event"]["agent_output_audio_format"] == "pcm_22050"
    await send(communicator, {"type": "user_message", "text": "Hello there"})
    log = await receive_until(communicator, timeout=60)
    await communicator.disconnect()
    assert len(log.audio) > 22050  # more than half a second of speech
    assert any(abs(int.from_bytes(log.audio[i : i + 2], "little", signed=True)) > 1000 for i in range(0, 20000, 2))
    assert log.of("agent_response_complete")[0]["audio_status"] == "complete"


def test_the_fake_is_deterministic() -> None:
    assert pcm_for("Hello.", 24000) == pcm_for("Hello.", 24000)
    assert len(pcm_for("Hello.", 24000)) == 2 * (6 * 60 * 24)
    assert isinstance(FakeElevenLabs().url, str)


async def test_it_speaks_in_the_agents_own_output_format(user, conversation, elevenlabs_settings) -> None:
    agent = conversation.agent
    agent.output_format = "pcm_16000"  # what the Python SDK's default audio interface plays
    await agent.asave()
    communicator, connected = await connect(user, query=f"conversation_id={conversation.id}")
    assert connected
    meta = (await communicator.receive_json_from())["conversation_initiation_metadata_event"]
    await send(communicator, {"type": "user_message", "text": QUESTION})
    log = await receive_until(communicator)
    await communicator.disconnect()
    assert meta["agent_output_audio_format"] == "pcm_16000"
    assert {r.query["output_format"] for r in elevenlabs_settings.tts_requests()} == {"pcm_16000"}
    reply = await Message.objects.aget(pk=log.of("agent_response_complete")[0]["message_id"])
    assert reply.audio_format == "pcm_16000"
    with reply.audio.open("rb") as stored, wave.open(stored, "rb") as wav:
        assert wav.getframerate() == 16000
