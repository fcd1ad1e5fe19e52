"""The ElevenLabs agent backend against the loopback agents platform, through the official SDK's signed URL."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import subprocess
import sys
import time
import wave
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from elevenlabs import AsyncElevenLabs

from chat import elevenlabs_agents
from chat.models import Agent, Conversation, Message, SpeechUsage
from chat.providers import reply_session
from chat.providers.base import AudioPart, ChatMessage, Correction, ProviderError, ReplyEvent, TextDelta
from chat.providers.elevenlabs import aclose_shared_clients
from chat.providers.elevenlabs_agent import ElevenLabsAgentSession
from chat.providers.pcm import Resampler, ulaw_to_pcm
from tests.fakes.elevenlabs_agent import AGENTS, FakeAgent, FakeElevenLabsAgents, default_reply
from tests.fakes.elevenlabs_agent_contract import sentences
from tests.fakes.elevenlabs_contract import pcm_for
from tests.test_admin import AGENT_FORM
from tests.test_settings import python
from tests.wsclient import connect, receive_until, send

SUPPORT = "agent_support"  # pcm_16000, text parts, allows agent.language and agent.first_message
CONCIERGE = "agent_concierge"  # pcm_24000, needs the user_name dynamic variable
PLAIN = "agent_plain"  # pcm_22050, no text parts: the whole text comes in agent_response


def session(fake: FakeElevenLabsAgents, **options: Any) -> ElevenLabsAgentSession:
    settings: dict[str, Any] = {
        "api_key": fake.api_key,
        "base_url": fake.url,
        "agent_id": SUPPORT,
        "sample_rate": 16000,
        "connect_timeout": 2.0,
        "response_timeout": 1.0,
        "stall_seconds": 0.5,
        "audio_settle_seconds": 0.3,
        "interrupt_grace_seconds": 0.5,
        "max_retries": 0,
    }
    return ElevenLabsAgentSession(**(settings | options))


async def events_of(agent: ElevenLabsAgentSession, text: str) -> list[ReplyEvent]:
    return [event async for event in agent.reply(text)]


async def failure(agent: ElevenLabsAgentSession, text: str, received: list[ReplyEvent] | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        async for event in agent.reply(text):
            (received if received is not None else []).append(event)
    return caught.value


def text_of(events: list[ReplyEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def audio_of(events: list[ReplyEvent]) -> bytes:
    return b"".join(e.pcm for e in events if isinstance(e, AudioPart))


def sentences_pcm(text: str, rate: int) -> bytes:
    """What the fake speaks for `text`: each sentence's tone, back to back."""
    first, second = text.split(". ", 1)
    return pcm_for(first + ". ", rate) + pcm_for(second, rate)


def talk_at_length(_user_text: str, _call: Any) -> str:
    """A reply for a fake that is to be interrupted: about 8 s of sending at 60 ms a chunk, so a slow
    machine's interrupt still lands mid-reply (the default's two sentences are over in a few hundred ms)."""
    return " ".join(f"Point {n} of my long answer." for n in range(1, 31))


async def until(condition: Any, seconds: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # noqa: ASYNC110 - polling the fake's records
        await asyncio.sleep(0.01)
    return bool(condition())


# --- a whole reply ------------------------------------------------------------------------------


async def test_it_streams_a_reply_as_text_deltas_and_aligned_audio_in_order(fake_agents: FakeElevenLabsAgents) -> None:
    agent = session(fake_agents)
    events = await events_of(agent, "Hello there")
    await agent.aclose()
    expected = default_reply("Hello there", fake_agents.conversations[0])
    assert text_of(events) == expected
    assert audio_of(events) == sentences_pcm(expected, 16000)
    assert isinstance(events[0], TextDelta)
    parts = [e for e in events if isinstance(e, AudioPart)]
    assert "".join(p.text for p in parts) == expected
    assert all(p.alignment is not None and "".join(p.alignment.chars) == p.text for p in parts)
    assert parts[0].alignment is not None and parts[0].alignment.char_start_times_ms[:2] == (0, 60)
    # The first sentence is spoken before the second is written: text and audio interleave.
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("AudioPart") < max(i for i, k in enumerate(kinds) if k == "TextDelta")
    assert not any(isinstance(e, Correction) for e in events)


async def test_it_records_the_vendor_conversation_format_and_what_a_reply_cost(
    fake_agents: FakeElevenLabsAgents,
) -> None:
    agent = session(fake_agents)
    before = time.monotonic()
    events = await events_of(agent, "Count me")
    await agent.aclose()
    (conversation,) = fake_agents.conversations
    receipt = agent.receipt
    assert agent.conversation_id == receipt.conversation_id == conversation.conversation_id
    assert receipt.vendor_audio_format == agent.vendor_audio_format == "pcm_16000"
    assert receipt.characters == len(text_of(events))
    assert receipt.audio_bytes == len(audio_of(events))
    assert 0 < receipt.call_seconds <= time.monotonic() - before
    assert receipt.first_text_at is not None and receipt.first_audio_at is not None
    assert before < receipt.first_text_at <= receipt.first_audio_at
    assert receipt.reconnected and not receipt.corrected


async def test_it_mints_a_single_use_signed_url_with_the_key_and_opens_the_call_with_client_data(
    fake_agents: FakeElevenLabsAgents,
) -> None:
    agent = session(
        fake_agents,
        agent_id=CONCIERGE,
        sample_rate=24000,
        allowed_overrides=("agent.language", "tts.voice_id"),
        language="de",
        voice_id="21m00Tcm4TlvDq8ikWAM",
        prompt="Not sent: the operator did not allow prompt overrides.",
        dynamic_variables={"user_name": "Ann"},
        user_id="42",
    )
    events = await events_of(agent, "Hi")
    await agent.aclose()
    (request,) = fake_agents.signed_url_requests
    assert request["key_ok"] and request["agent_id"] == CONCIERGE
    assert request["query"]["include_conversation_id"] == "true"
    init = fake_agents.conversations[0].received[0]
    assert init["type"] == "conversation_initiation_client_data"
    overrides = {"agent": {"language": "de"}, "tts": {"voice_id": "21m00Tcm4TlvDq8ikWAM"}}
    assert init["conversation_config_override"] == overrides
    assert init["dynamic_variables"] == {"user_name": "Ann"} and init["user_id"] == "42"
    assert fake_agents.conversations[0].received_types()[1] == "user_message"
    # The vendor's pcm_24000 is already the session's rate: passed through untouched.
    assert audio_of(events) == sentences_pcm(text_of(events), 24000)


async def test_it_answers_every_ping_with_its_event_id_even_between_replies(fake_agents: FakeElevenLabsAgents) -> None:
    agent = session(fake_agents)
    await agent.open()
    conversation = fake_agents.conversations[0]
    assert await until(lambda: len(conversation.pongs) >= 4)
    await agent.aclose()
    assert conversation.pongs == conversation.pings[: len(conversation.pongs)]


async def test_it_resamples_the_vendors_rate_to_the_rate_the_browser_plays(fake_agents: FakeElevenLabsAgents) -> None:
    agent = session(fake_agents, sample_rate=24000)
    events = await events_of(agent, "Resample me")
    await agent.aclose()
    vendor = sentences_pcm(text_of(events), 16000)
    assert agent.sample_rate == 24000 and agent.vendor_audio_format == "pcm_16000"
    assert abs(len(audio_of(events)) // 2 - len(vendor) // 2 * 3 // 2) <= 2


async def test_it_takes_the_text_from_agent_response_when_the_agent_streams_no_parts(
    fake_agents: FakeElevenLabsAgents,
) -> None:
    agent = session(fake_agents, agent_id=PLAIN, sample_rate=22050)
    events = await events_of(agent, "No parts")
    await agent.aclose()
    expected = default_reply("No parts", fake_agents.conversations[0])
    assert [e.text for e in events if isinstance(e, TextDelta)] == [expected]
    assert audio_of(events) == sentences_pcm(expected, 22050)


async def test_it_keeps_one_vendor_conversation_for_consecutive_replies(fake_agents: FakeElevenLabsAgents) -> None:
    agent = session(fake_agents)
    first = await events_of(agent, "One")
    second = await events_of(agent, "Two")
    await agent.aclose()
    assert len(fake_agents.conversations) == 1 and len(fake_agents.signed_url_requests) == 1
    assert text_of(first) == default_reply("One", fake_agents.conversations[0])
    assert text_of(second) == default_reply("Two", fake_agents.conversations[0])
    assert audio_of(second) == sentences_pcm(text_of(second), 16000)
    assert not agent.receipt.reconnected


# --- interruption --------------------------------------------------------------------------------


async def test_it_tells_the_vendor_and_yields_no_late_audio_after_an_interruption(
    fake_agents: FakeElevenLabsAgents,
) -> None:
    fake_agents.chunk_gap_ms = 40
    fake_agents.compose = talk_at_length
    agent = session(fake_agents)
    before: list[ReplyEvent] = []
    after: list[ReplyEvent] = []
    async with aclosing(agent.reply("Talk for a while")) as reply:
        async for event in reply:
            (after if before and isinstance(before[-1], AudioPart) and len(before) > 8 else before).append(event)
            if not after and isinstance(event, AudioPart) and len(before) > 8:
                await agent.interrupt()
    conversation = fake_agents.conversations[0]
    (vendor_reply,) = conversation.replies
    assert [type(e) for e in after] == [Correction]
    assert after[0].text == vendor_reply.spoken.strip() != vendor_reply.text  # the vendor had more to say
    assert "user_activity" in conversation.received_types()
    assert vendor_reply.interrupted and "interruption" in conversation.sent_types
    assert agent.receipt.corrected
    # Only what the vendor sent before it heard of the interruption was yielded, none of the rest.
    assert audio_of(before) == sentences_pcm(vendor_reply.text, 16000)[: len(audio_of(before))]
    await agent.aclose()


async def test_it_starts_the_next_reply_clean_after_an_interruption(fake_agents: FakeElevenLabsAgents) -> None:
    fake_agents.chunk_gap_ms = 20
    agent = session(fake_agents)
    async with aclosing(agent.reply("First")) as reply:
        async for event in reply:
            if isinstance(event, AudioPart):
                await agent.interrupt()
    second = await events_of(agent, "Second")
    await agent.aclose()
    assert text_of(second) == default_reply("Second", fake_agents.conversations[0])
    assert audio_of(second) == sentences_pcm(text_of(second), 16000)
    assert agent.history[-2:] == [
        ChatMessage("user", "Second"),
        ChatMessage("assistant", default_reply("Second", fake_agents.conversations[0])),
    ]
    assert agent.history[1].content == fake_agents.conversations[0].replies[0].spoken.strip()


async def test_it_tells_the_vendor_when_a_reply_is_abandoned_mid_way(fake_agents: FakeElevenLabsAgents) -> None:
    fake_agents.chunk_gap_ms = 20
    agent = session(fake_agents)
    async with aclosing(agent.reply("Abandon me")) as reply:
        async for event in reply:
            if isinstance(event, AudioPart):
                break
    conversation = fake_agents.conversations[0]
    assert await until(lambda: "user_activity" in conversation.received_types())
    second = await events_of(agent, "Again")
    await agent.aclose()
    assert audio_of(second) == sentences_pcm(text_of(second), 16000)


async def test_it_lets_a_new_reply_supersede_one_still_running(fake_agents: FakeElevenLabsAgents) -> None:
    fake_agents.chunk_gap_ms = 20
    agent = session(fake_agents, keepalive_seconds=0.05, idle_seconds=5)
    old = agent.reply("Old")
    first = await anext(old)
    assert isinstance(first, TextDelta)
    new = agent.reply("New")
    second = [await anext(new)]
    rest = [event async for event in old]  # the superseded reply ends while the new one runs...
    second += [event async for event in new]
    await agent.aclose()
    assert text_of(second) == default_reply("New", fake_agents.conversations[0])
    assert audio_of(second) == sentences_pcm(text_of(second), 16000)
    assert not any(isinstance(e, AudioPart) for e in rest)
    # ...and leaves the call to it: no keep-alive (which would cut the new reply short) was armed.
    assert fake_agents.conversations[0].received_types().count("user_activity") == 1


# --- the vendor's greeting -----------------------------------------------------------------------

GREETING = "Welcome to support. How can I help you today?"


@pytest.fixture
async def greeter() -> Any:
    agents = [FakeAgent(SUPPORT, "Support", first_message=GREETING)]
    async with FakeElevenLabsAgents(agents=agents, ping_interval=0.05) as fake:
        yield fake


async def test_it_asks_the_vendor_not_to_greet_when_the_override_is_allowed(greeter: FakeElevenLabsAgents) -> None:
    agent = session(greeter, allowed_overrides=("agent.first_message",), first_message="")
    events = await events_of(agent, "Hi")
    await agent.aclose()
    (conversation,) = greeter.conversations
    assert conversation.init["conversation_config_override"] == {"agent": {"first_message": ""}}
    assert [r.greeting for r in conversation.replies] == [False]
    assert text_of(events) == default_reply("Hi", conversation)


async def test_it_drops_a_greeting_spoken_before_the_first_reply(greeter: FakeElevenLabsAgents) -> None:
    agent = session(greeter)
    await agent.open()
    (conversation,) = greeter.conversations
    assert await until(lambda: conversation.replies and conversation.replies[0].finished)
    events = await events_of(agent, "Hi")
    await agent.aclose()
    assert text_of(events) == default_reply("Hi", conversation)
    assert audio_of(events) == sentences_pcm(text_of(events), 16000)


async def test_it_drops_a_greeting_still_playing_when_the_first_message_goes(greeter: FakeElevenLabsAgents) -> None:
    greeter.chunk_gap_ms = 30
    agent = session(greeter)
    events = await events_of(agent, "Hi")
    await agent.aclose()
    (conversation,) = greeter.conversations
    greeting, answer = conversation.replies
    assert greeting.greeting and greeting.interrupted and not answer.interrupted  # cut short for our message
    assert text_of(events) == default_reply("Hi", conversation)
    assert audio_of(events) == sentences_pcm(text_of(events), 16000)
    assert not any(isinstance(e, Correction) for e in events)


async def test_it_releases_the_first_reply_when_the_vendor_does_not_echo_messages(
    fake_agents: FakeElevenLabsAgents,
) -> None:
    fake_agents.echo_user_transcript = False
    agent = session(fake_agents, audio_settle_seconds=0.2)
    events = await events_of(agent, "Hi")
    second = await events_of(agent, "Again")
    await agent.aclose()
    assert text_of(events) == default_reply("Hi", fake_agents.conversations[0])
    assert audio_of(events) == sentences_pcm(text_of(events), 16000)
    assert text_of(second) == default_reply("Again", fake_agents.conversations[0])


# --- faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "code", "status", "hint"),
    [
        ("invalid_api_key", "agent_unavailable", 401, "ELEVENLABS_API_KEY"),
        ("quota_exceeded", "tts_quota_exceeded", 401, "credits"),
        ("concurrency_limit", "rate_limited", 429, "simultaneous"),
        ("server_error", "agent_unavailable", 500, "unavailable"),
        ("handshake_forbidden", "agent_unavailable", 403, "refused"),
    ],
)
async def test_it_fails_with_a_clear_code_when_the_vendor_refuses_the_call(
    fake_agents: FakeElevenLabsAgents, fault: str, code: str, status: int, hint: str
) -> None:
    fake_agents.fail_next(fault)
    agent = session(fake_agents)
    error = await failure(agent, "Hello")
    assert (error.code, error.status) == (code, status)
    assert hint in error.message
    assert text_of(await events_of(agent, "Hello again"))  # the fault was transient: the next reply works
    await agent.aclose()


async def test_it_names_the_agent_when_the_vendor_has_no_such_agent(fake_agents: FakeElevenLabsAgents) -> None:
    error = await failure(session(fake_agents, agent_id="agent_missing"), "Hello")
    assert (error.code, error.status) == ("agent_not_found", 404)
    assert "agent_missing" in error.message


async def test_it_rejects_a_wrong_key_without_showing_it(fake_agents: FakeElevenLabsAgents) -> None:
    error = await failure(session(fake_agents, api_key="sk-wrong-key-1234"), "Hello")
    assert error.code == "agent_unavailable" and "rejected" in error.message
    assert "sk-wrong-key-1234" not in str(error)


async def test_it_fails_with_agent_refused_when_the_vendor_refuses_an_override(
    fake_agents: FakeElevenLabsAgents,
) -> None:
    agent = session(fake_agents, allowed_overrides=("tts.voice_id",), voice_id="21m00Tcm4TlvDq8ikWAM")
    error = await failure(agent, "Hello")
    assert (error.code, error.status) == ("agent_refused", 1008)
    assert "tts.voice_id" in error.message and "Security tab" in error.message
    assert fake_agents.conversations[0].close_code == 1008


async def test_it_fails_with_agent_refused_when_a_required_dynamic_variable_is_missing(
    fake_agents: FakeElevenLabsAgents,
) -> None:
    error = await failure(session(fake_agents, agent_id=CONCIERGE), "Hello")
    assert error.code == "agent_refused" and "user_name" in error.message


@pytest.mark.parametrize(("fault", "code"), [("close_1008", "agent_refused"), ("close_1011", "agent_unavailable")])
async def test_it_keeps_what_arrived_when_the_vendor_closes_mid_reply(
    fake_agents: FakeElevenLabsAgents, fault: str, code: str
) -> None:
    fake_agents.fail_next(fault)
    agent = session(fake_agents)
    received: list[ReplyEvent] = []
    error = await failure(agent, "Break", received)
    assert error.code == code
    assert text_of(received) and audio_of(received)  # the first sentence and its first audio arrived
    after = await events_of(agent, "Mend")  # a new vendor conversation, transparently
    await agent.aclose()
    assert text_of(after) == default_reply("Mend", fake_agents.conversations[1]) and agent.receipt.reconnected


async def test_it_times_out_a_stalled_reply_and_recovers(fake_agents: FakeElevenLabsAgents) -> None:
    fake_agents.fail_next("stall")
    agent = session(fake_agents)
    received: list[ReplyEvent] = []
    started = time.monotonic()
    error = await failure(agent, "Stall", received)
    assert error.code == "agent_timeout" and "0.5 s" in error.message
    assert 0.5 <= time.monotonic() - started < 2.0 and audio_of(received)
    assert text_of(await events_of(agent, "Recover"))
    await agent.aclose()
    assert len(fake_agents.conversations) == 2 and fake_agents.conversations[0].ended_at is not None


async def test_it_times_out_a_slow_first_response(fake_agents: FakeElevenLabsAgents) -> None:
    fake_agents.fail_next("slow_first_response")
    agent = session(fake_agents)
    received: list[ReplyEvent] = []
    error = await failure(agent, "Slow", received)
    assert error.code == "agent_timeout" and "did not answer within 1 s" in error.message
    assert received == []
    assert text_of(await events_of(agent, "Faster"))
    await agent.aclose()


# --- idle, keep-alive, reconnect -----------------------------------------------------------------


async def test_it_keeps_an_idle_call_alive_then_closes_it_and_reopens_with_the_history(
    fake_agents: FakeElevenLabsAgents,
) -> None:
    agent = session(fake_agents, idle_seconds=0.4, keepalive_seconds=0.1)
    await events_of(agent, "Remember the blue door")
    first = fake_agents.conversations[0]
    assert await until(lambda: first.ended_at is not None)
    assert first.received_types().count("user_activity") >= 2
    assert not agent.connected
    again = await events_of(agent, "Which door?")
    await agent.aclose()
    second = fake_agents.conversations[1]
    assert agent.receipt.reconnected and agent.conversation_ids == [first.conversation_id, second.conversation_id]
    (context,) = second.contextual_updates
    assert "User: Remember the blue door" in context
    assert f"Agent: {default_reply('Remember the blue door', first)}" in context
    assert second.received_types()[:3] == ["conversation_initiation_client_data", "contextual_update", "user_message"]
    assert text_of(again) == default_reply("Which door?", second)


async def test_it_reopens_transparently_after_the_vendor_closed_an_idle_call(
    fake_agents: FakeElevenLabsAgents,
) -> None:
    fake_agents.idle_limit = 0.2
    agent = session(fake_agents, keepalive_seconds=30)
    await events_of(agent, "One")
    first = fake_agents.conversations[0]
    assert await until(lambda: first.close_code == 1002)
    assert first.termination_reason == "transport_receive_timeout"
    again = await events_of(agent, "Two")
    await agent.aclose()
    assert text_of(again) == default_reply("Two", fake_agents.conversations[1])


async def test_it_sends_the_prior_history_when_it_first_connects(fake_agents: FakeElevenLabsAgents) -> None:
    history = [ChatMessage("user", "x" * 50), ChatMessage("assistant", "Old answer."), ChatMessage("user", "Recent.")]
    agent = session(fake_agents, history=history, history_chars=60)
    await events_of(agent, "Now")
    await agent.aclose()
    (context,) = fake_agents.conversations[0].contextual_updates
    assert "Agent: Old answer.\nUser: Recent." in context and "x" * 50 not in context


async def test_it_ends_a_text_only_reply_as_soon_as_its_text_is_done(fake_agents: FakeElevenLabsAgents) -> None:
    agents = [FakeAgent(SUPPORT, "Support", allowed_overrides=frozenset({"conversation.text_only"}))]
    async with FakeElevenLabsAgents(agents=agents) as fake:
        agent = session(fake, text_only=True, audio_settle_seconds=5)
        started = time.monotonic()
        events = await events_of(agent, "Quiet")
        await agent.aclose()
    assert text_of(events) and not audio_of(events)
    assert time.monotonic() - started < 2
    assert fake.conversations[0].init["conversation_config_override"] == {"conversation": {"text_only": True}}


# --- the key stays secret ------------------------------------------------------------------------


async def test_it_keeps_the_api_key_out_of_every_log_line_and_error(
    fake_agents: FakeElevenLabsAgents, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="chat.providers.elevenlabs_agent.socket")
    agent = session(fake_agents)
    await events_of(agent, "Log me")
    fake_agents.fail_next("close_1011")
    error = await failure(agent, "Break")
    await agent.aclose()
    bad = session(fake_agents, api_key=fake_agents.api_key + "-revoked")
    refused = await failure(bad, "Hello")
    logged = "\n".join(
        [r.getMessage() + (r.exc_text or "") for r in caplog.records] + [str(error), str(refused), repr(agent)]
    )
    assert caplog.records  # the socket and the SDK's HTTP client did log
    assert fake_agents.api_key not in logged
    assert fake_agents.issued_signatures
    assert not any(token in logged for token in fake_agents.issued_signatures)  # a signed URL opens a call too


# --- audio conversion ----------------------------------------------------------------------------


def test_it_resamples_in_chunks_exactly_as_in_one_piece() -> None:
    pcm = pcm_for("A sentence long enough to cross many chunks.", 16000)
    whole = Resampler(16000, 24000).convert(pcm)
    chunked = Resampler(16000, 24000)
    pieces = b"".join(chunked.convert(pcm[i : i + 333]) for i in range(0, len(pcm), 333))
    assert pieces == whole
    assert abs(len(whole) - len(pcm) * 3 // 2) <= 4
    assert Resampler(24000, 24000).convert(pcm) == pcm


def test_it_decodes_mu_law_like_g711() -> None:
    samples = memoryview(ulaw_to_pcm(bytes([0xFF, 0x7F, 0x00, 0x80]))).cast("h").tolist()
    assert samples == [0, 0, -32124, 32124]


# --- the vendor's records through the SDK ---------------------------------------------------------


async def test_it_serves_transcripts_and_agents_the_sdk_parses(fake_agents: FakeElevenLabsAgents) -> None:
    fake_agents.chunk_gap_ms = 20
    agent = session(fake_agents)
    await events_of(agent, "Keep this")
    fake_agents.compose = talk_at_length
    async with aclosing(agent.reply("Cut this short")) as reply:
        async for event in reply:
            if isinstance(event, AudioPart):
                await agent.interrupt()
    await agent.aclose()
    async with httpx.AsyncClient() as http:
        sdk = AsyncElevenLabs(api_key=fake_agents.api_key, base_url=fake_agents.url, httpx_client=http)
        record = await sdk.conversational_ai.conversations.get(agent.conversation_id)
        page = await sdk.conversational_ai.agents.list(page_size=2)
        rest = await sdk.conversational_ai.agents.list(page_size=2, cursor=page.next_cursor)
    assert record.conversation_id == agent.conversation_id and record.status == "done"
    assert [(t.role, t.message) for t in record.transcript][:2] == [
        ("user", "Keep this"),
        ("agent", default_reply("Keep this", fake_agents.conversations[0])),
    ]
    last = record.transcript[-1]
    assert last.interrupted and last.original_message == talk_at_length("Cut this short", None)
    assert record.metadata.call_duration_secs >= 0 and record.metadata.cost is not None
    assert page.has_more and not rest.has_more
    assert [a.agent_id for a in page.agents + rest.agents] == [a.agent_id for a in AGENTS]


# --- configuration, model and admin --------------------------------------------------------------


def test_it_loads_the_backend_from_settings_with_the_conversations_part(settings) -> None:
    agent = reply_session("elevenlabs_agent", agent_id=SUPPORT, language="de", dynamic_variables={"user_name": "Ann"})
    assert isinstance(agent, ElevenLabsAgentSession)
    assert agent.agent_id == SUPPORT and agent.dynamic_variables == {"user_name": "Ann"}
    assert agent.sample_rate == int(settings.ELEVENLABS_OUTPUT_FORMAT[4:])
    assert agent.idle_seconds == settings.ELEVENLABS_AGENT_IDLE_SECONDS
    assert agent.overrides == {}  # the operator allowed none (ELEVENLABS_AGENT_OVERRIDES is empty)


def test_it_refuses_an_unknown_reply_backend_or_bad_options() -> None:
    with pytest.raises(ImproperlyConfigured, match="not configured"):
        reply_session("bogus", agent_id=SUPPORT)
    with pytest.raises(ImproperlyConfigured, match="bad OPTIONS"):
        reply_session("elevenlabs_agent", agent_id=SUPPORT, colour="blue")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ELEVENLABS_AGENT_OVERRIDES": "agent.language,tts.stability"}, "ELEVENLABS_AGENT_OVERRIDES"),
        ({"ELEVENLABS_AGENT_KEEPALIVE_SECONDS": "75"}, "ELEVENLABS_AGENT_KEEPALIVE_SECONDS"),
    ],
)
def test_it_refuses_agent_settings_the_vendor_would_not_accept(env: dict[str, str], named: str) -> None:
    done = python("-c", "import django; django.setup()", DEBUG="true", **env)
    assert done.returncode != 0 and "ImproperlyConfigured" in done.stderr and named in done.stderr


@pytest.mark.django_db
def test_it_requires_the_vendor_agent_id_for_the_agent_backend() -> None:
    agent = Agent(name="Vendor", backend=Agent.Backend.ELEVENLABS_AGENT)
    with pytest.raises(ValidationError) as caught:
        agent.full_clean()
    assert "elevenlabs_agent_id" in caught.value.message_dict
    agent.elevenlabs_agent_id = SUPPORT
    agent.full_clean()


@pytest.fixture
def vendor_settings(settings, fake_agents_thread: FakeElevenLabsAgents) -> FakeElevenLabsAgents:
    settings.ELEVENLABS_API_KEY = fake_agents_thread.api_key
    settings.ELEVENLABS_BASE_URL = fake_agents_thread.url
    elevenlabs_agents._choices_cache.clear()
    return fake_agents_thread


def test_it_offers_the_accounts_agents_on_the_agent_form(admin_client, vendor_settings) -> None:
    page = admin_client.get("/admin/chat/agent/add/").content.decode()
    assert 'list="elevenlabs-agents"' in page and f"Pick one of your {len(AGENTS)} ElevenLabs agents" in page
    for vendor_agent in AGENTS:
        assert f'<option value="{vendor_agent.agent_id}">{vendor_agent.name}</option>' in page
    assert vendor_settings.signed_url_requests == []  # listing agents opens no call


def test_it_says_why_it_cannot_offer_the_accounts_agents(admin_client, settings, vendor_settings) -> None:
    settings.ELEVENLABS_API_KEY = ""
    assert "Set ELEVENLABS_API_KEY to pick" in admin_client.get("/admin/chat/agent/add/").content.decode()
    settings.ELEVENLABS_API_KEY = "sk-not-the-key"
    page = admin_client.get("/admin/chat/agent/add/").content.decode()
    assert "Could not list your ElevenLabs agents" in page and "sk-not-the-key" not in page


def test_it_saves_an_agent_with_the_elevenlabs_backend(admin_client, vendor_settings) -> None:
    form = {**AGENT_FORM, "name": "Vendor", "backend": "elevenlabs_agent", "elevenlabs_agent_id": SUPPORT}
    response = admin_client.post("/admin/chat/agent/add/", form)
    assert response.status_code == 302
    saved = Agent.objects.get(name="Vendor")
    assert (saved.backend, saved.elevenlabs_agent_id) == ("elevenlabs_agent", SUPPORT)


def test_it_fetches_the_vendors_transcript_into_the_admin_for_comparison(
    admin_client, vendor_settings, conversation
) -> None:
    async def talk() -> str:
        agent = session(vendor_settings)
        await events_of(agent, "Compare me")
        await agent.aclose()
        await aclose_shared_clients()
        return agent.conversation_id

    vendor_id = asyncio.run(talk())
    conversation.elevenlabs_conversation_id = vendor_id
    conversation.save()
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        text="stored",
        tts_backend="elevenlabs_agent",
        tts_request_ids=[vendor_id],
    )
    response = admin_client.post(
        "/admin/chat/conversation/",
        {"action": "fetch_elevenlabs_record", "_selected_action": [str(conversation.id)]},
        follow=True,
    )
    assert "Fetched 1 ElevenLabs call record(s)." in response.content.decode()
    conversation.refresh_from_db()
    record = conversation.elevenlabs_record[vendor_id]
    assert [t["role"] for t in record["transcript"]] == ["user", "agent"]
    assert record["metadata"]["call_duration_secs"] >= 0
    page = admin_client.get(f"/admin/chat/conversation/{conversation.id}/change/").content.decode()
    assert vendor_id in page and "Compare me" in page


def test_it_reports_a_vendor_record_it_cannot_fetch(admin_client, vendor_settings, conversation) -> None:
    conversation.elevenlabs_conversation_id = "conv_unknown"
    conversation.save()
    response = admin_client.post(
        "/admin/chat/conversation/",
        {"action": "fetch_elevenlabs_record", "_selected_action": [str(conversation.id)]},
        follow=True,
    )
    assert "ElevenLabs has no record of conversation conv_unknown." in response.content.decode()


# --- through the real consumer -------------------------------------------------------------------


@pytest.fixture
def agent_backend(settings, tmp_path, fake_agents: FakeElevenLabsAgents, agent: Agent) -> FakeElevenLabsAgents:
    """The default agent answers through the fake ElevenLabs agent `agent_support` (pcm_16000)."""
    settings.MEDIA_ROOT = tmp_path / "media"
    providers = copy.deepcopy(settings.REPLY_PROVIDERS)
    providers["elevenlabs_agent"]["OPTIONS"].update(
        api_key=fake_agents.api_key,
        base_url=fake_agents.url,
        allowed_overrides=["agent.language", "agent.first_message"],
        connect_timeout=2.0,
        response_timeout=2.0,
        stall_seconds=1.0,
        audio_settle_seconds=0.3,
        interrupt_grace_seconds=0.3,
        max_retries=0,
    )
    settings.REPLY_PROVIDERS = providers
    agent.backend, agent.elevenlabs_agent_id = Agent.Backend.ELEVENLABS_AGENT, SUPPORT
    agent.save()
    return fake_agents


async def open_socket(user: Any, conversation: Conversation) -> Any:
    communicator, connected = await connect(user, query=f"conversation_id={conversation.id}")
    assert connected
    meta = await communicator.receive_json_from()
    communicator.rate = int(meta["conversation_initiation_metadata_event"]["agent_output_audio_format"][4:])
    return communicator


@pytest.mark.django_db(transaction=True)
async def test_it_answers_a_turn_with_the_elevenlabs_agent_through_the_consumer(
    user: Any, conversation: Conversation, agent_backend: FakeElevenLabsAgents
) -> None:
    communicator = await open_socket(user, conversation)
    await send(communicator, {"type": "user_message", "text": "Hello agent"})
    log = await receive_until(communicator)
    await communicator.disconnect()
    (call,) = agent_backend.conversations
    expected = default_reply("Hello agent", call)
    assert (
        log.types[:2] == ["user_transcript", "agent_chat_response_part"] and log.types[-1] == "agent_response_complete"
    )
    assert log.text == expected and log.of("agent_response")[0]["agent_response"] == expected
    # The vendor's 16 kHz, converted to the rate our socket announced (that of its TTS backend).
    rate = communicator.rate
    assert rate != 16000
    assert abs(len(log.audio) // 2 - len(sentences_pcm(expected, 16000)) // 2 * rate / 16000) <= 4
    aligned = [p for p in log.of("audio") if p.get("alignment")]
    assert "".join("".join(p["alignment"]["chars"]) for p in aligned) == expected
    # What the vendor was told: text input, no greeting, the user's name.
    init = call.received[0]
    assert init["conversation_config_override"] == {"agent": {"language": "en", "first_message": ""}}
    assert init["dynamic_variables"] == {"user_name": "alice"} and init["user_id"] == str(user.pk)
    # What was stored and billed.
    reply = await Message.objects.aget(pk=log.of("agent_response_complete")[0]["message_id"])
    assert (reply.status, reply.audio_status, reply.text) == ("complete", "complete", expected)
    assert reply.tts_backend == "elevenlabs_agent" and reply.tts_request_ids == [call.conversation_id]
    assert reply.tts_characters == len(expected) and reply.call_seconds is not None and reply.call_seconds > 0
    assert reply.audio_format == f"pcm_{rate}"
    with reply.audio.open("rb") as stored, wave.open(stored) as wav:
        assert wav.getframerate() == rate and wav.readframes(wav.getnframes()) == log.audio
    await conversation.arefresh_from_db()
    assert conversation.elevenlabs_conversation_id == call.conversation_id
    assert await until(lambda: call.ended_at is not None)  # our socket closed: so did the vendor call


@pytest.mark.django_db(transaction=True)
async def test_it_keeps_one_vendor_call_across_the_turns_of_a_socket(
    user: Any, conversation: Conversation, agent_backend: FakeElevenLabsAgents
) -> None:
    await Message.objects.acreate(conversation=conversation, role="user", text="Earlier question", status="complete")
    communicator = await open_socket(user, conversation)
    for text in ("One", "Two"):
        await send(communicator, {"type": "user_message", "text": text})
        log = await receive_until(communicator)
        assert log.text == default_reply(text, agent_backend.conversations[0])
    await communicator.disconnect()
    (call,) = agent_backend.conversations
    assert call.received_types().count("user_message") == 2
    (context,) = call.contextual_updates  # what this conversation held before the socket opened
    assert "User: Earlier question" in context


@pytest.mark.django_db(transaction=True)
async def test_it_interrupts_an_agent_reply_with_no_audio_after_the_interruption(
    user: Any, conversation: Conversation, agent_backend: FakeElevenLabsAgents
) -> None:
    agent_backend.chunk_gap_ms = 60
    agent_backend.compose = talk_at_length
    communicator = await open_socket(user, conversation)
    await send(communicator, {"type": "user_message", "text": "Talk at length"})
    await receive_until(communicator, last_type="audio")
    await send(communicator, {"type": "interrupt"})
    log = await receive_until(communicator)
    await asyncio.sleep(0.3)  # anything late would arrive now
    assert await communicator.receive_nothing(timeout=0.1)
    await communicator.disconnect()
    assert "audio" not in log.types[log.types.index("interruption") :]
    complete = log.of("agent_response_complete")[0]
    assert complete["status"] == "interrupted"
    (call,) = agent_backend.conversations
    assert "user_activity" in call.received_types()  # the vendor was told
    (vendor_reply,) = call.replies
    assert vendor_reply.interrupted and vendor_reply.spoken != vendor_reply.text


@pytest.mark.django_db(transaction=True)
async def test_it_fails_an_agent_turn_cleanly_and_keeps_the_socket_usable(
    user: Any, conversation: Conversation, agent_backend: FakeElevenLabsAgents
) -> None:
    agent_backend.fail_next("close_1011")
    communicator = await open_socket(user, conversation)
    await send(communicator, {"type": "user_message", "text": "Break"})
    failed = await receive_until(communicator)
    await send(communicator, {"type": "user_message", "text": "Mend"})
    mended = await receive_until(communicator)
    await communicator.disconnect()
    (error,) = failed.of("error")
    assert error["code"] == "agent_unavailable" and "internal error" in error["message"]
    assert agent_backend.api_key not in json.dumps(failed.frames)
    assert failed.of("agent_response_complete")[0]["status"] == "failed" and failed.text  # what arrived is kept
    reply = await Message.objects.aget(pk=failed.of("agent_response_complete")[0]["message_id"])
    assert reply.error_code == "agent_unavailable" and reply.text == failed.text
    assert await Message.objects.filter(conversation=conversation, role="user", text="Break").aexists()
    assert mended.text == default_reply("Mend", agent_backend.conversations[1])


@pytest.mark.django_db(transaction=True)
async def test_it_refuses_a_turn_when_the_agent_backend_is_misconfigured(
    user: Any, conversation: Conversation, agent_backend: FakeElevenLabsAgents, settings
) -> None:
    settings.REPLY_PROVIDERS = {}
    communicator = await open_socket(user, conversation)
    await send(communicator, {"type": "user_message", "text": "Hello"})
    frame = await communicator.receive_json_from()
    await communicator.disconnect()
    assert frame["type"] == "error" and frame["error_event"]["code"] == "agent_unavailable"
    assert agent_backend.signed_url_requests == []


@pytest.mark.django_db(transaction=True)
async def test_it_relays_no_agent_audio_when_the_listener_turned_speech_off(
    user: Any, conversation: Conversation, agent_backend: FakeElevenLabsAgents
) -> None:
    communicator = await open_socket(user, conversation)
    await send(communicator, {"type": "conversation_initiation_client_data", "voicechat": {"speak": False}})
    await send(communicator, {"type": "user_message", "text": "Quietly"})
    log = await receive_until(communicator)
    await communicator.disconnect()
    assert log.text == default_reply("Quietly", agent_backend.conversations[0])
    assert "audio" not in log.types
    reply = await Message.objects.aget(pk=log.of("agent_response_complete")[0]["message_id"])
    assert reply.audio_status == "none" and not reply.audio


@pytest.mark.django_db(transaction=True)
async def test_it_keeps_an_agent_reply_to_the_users_speech_budget(
    user: Any, conversation: Conversation, agent_backend: FakeElevenLabsAgents, settings, local_limits: str
) -> None:
    """The vendor's agent speaks on the operator's bill too: audio stops where the allowance ends, text goes on."""
    first, second = sentences("You said Spend. That is all I have to say about it.")  # the fake's reply
    allowance = len(first) + len(second) // 2
    settings.SPEECH_DAILY_CHARS, settings.SPEECH_MONTHLY_CHARS = allowance, 0
    communicator = await open_socket(user, conversation)
    await send(communicator, {"type": "user_message", "text": "Spend"})
    log = await receive_until(communicator)
    await communicator.disconnect()
    expected = default_reply("Spend", agent_backend.conversations[0])
    assert log.text == expected == first + second  # the whole text, as the vendor wrote it
    assert [e["code"] for e in log.of("error")] == ["budget_exhausted"]
    aligned = "".join("".join(p["alignment"]["chars"]) for p in log.of("audio") if p.get("alignment"))
    # Audio up to the vendor audio part that would overdraw the allowance, none after it.
    assert expected.startswith(aligned) and len(first) <= len(aligned) <= allowance < len(expected)
    assert len(log.of("budget")) == 1
    reply = await Message.objects.aget(pk=log.of("agent_response_complete")[0]["message_id"])
    assert (reply.status, reply.audio_status, reply.error_code) == ("complete", "budget", "budget_exhausted")
    usage = await SpeechUsage.objects.aget(user=user, period="day")
    assert usage.characters == reply.tts_characters >= len(first)  # what the vendor said it spoke is booked


# --- vendor quirks -------------------------------------------------------------------------------


async def test_it_yields_the_vendors_final_text_when_it_differs_from_the_parts(
    fake_agents: FakeElevenLabsAgents,
) -> None:
    fake_agents.final_text = lambda text: text.replace("all I have", "everything I have")
    agent = session(fake_agents, audio_settle_seconds=0.2)
    events = await events_of(agent, "Tidy")
    await agent.aclose()
    corrections = [e for e in events if isinstance(e, Correction)]
    assert [c.text for c in corrections] == [
        fake_agents.final_text(default_reply("Tidy", fake_agents.conversations[0]))
    ]
    assert agent.history[-1].content == corrections[0].text and agent.receipt.corrected


async def test_it_ignores_mere_spacing_differences_in_the_final_text(fake_agents: FakeElevenLabsAgents) -> None:
    fake_agents.final_text = lambda text: "  " + text.replace(" ", "  ") + "\n"
    agent = session(fake_agents)
    events = await events_of(agent, "Space")
    await agent.aclose()
    assert not any(isinstance(e, Correction) for e in events)


async def test_it_declines_client_tool_calls_so_the_agent_does_not_wait(fake_agents: FakeElevenLabsAgents) -> None:
    call = {"tool_name": "open_door", "tool_call_id": "tool_7", "parameters": {}, "event_id": 0}
    fake_agents.inject = [{"type": "client_tool_call", "client_tool_call": call}]
    agent = session(fake_agents)
    events = await events_of(agent, "Use a tool")
    await agent.aclose()
    results = [m for m in fake_agents.conversations[0].received if m.get("type") == "client_tool_result"]
    assert [(r["tool_call_id"], r["is_error"]) for r in results] == [("tool_7", True)]
    assert text_of(events) == default_reply("Use a tool", fake_agents.conversations[0])


async def test_it_ends_a_reply_with_the_vendors_error_event(fake_agents: FakeElevenLabsAgents) -> None:
    fake_agents.inject = [{"type": "error", "error_event": {"code": 1008, "message": "Guardrail triggered"}}]
    agent = session(fake_agents)
    error = await failure(agent, "Trip it")
    assert error.code == "agent_unavailable" and "Guardrail triggered" in error.message
    assert await until(lambda: fake_agents.conversations[0].ended_at is not None)  # that call is over
    assert text_of(await events_of(agent, "Again"))  # on a new one
    await agent.aclose()


def test_it_runs_the_fake_platform_as_a_process() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.elevenlabs_agent", "--port", "0"],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        listed = httpx.get(f"{url}/v1/convai/agents", headers={"xi-api-key": "test-elevenlabs-key"}, timeout=5)
        assert [a["agent_id"] for a in listed.json()["agents"]] == [a.agent_id for a in AGENTS]
    finally:
        process.terminate()
        process.wait(10)
