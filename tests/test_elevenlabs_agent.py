"""The ElevenLabs agent backend against the loopback agents platform, through the official SDK's signed URL."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import aclosing
from typing import Any

import pytest

from chat.providers.base import AudioPart, ChatMessage, Correction, ProviderError, ReplyEvent, TextDelta
from chat.providers.elevenlabs_agent import ElevenLabsAgentSession
from chat.providers.pcm import Resampler, ulaw_to_pcm
from tests.fakes.elevenlabs_agent import FakeAgent, FakeElevenLabsAgents, default_reply
from tests.fakes.elevenlabs_contract import pcm_for

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
    agent = session(fake_agents)
    old = agent.reply("Old")
    first = await anext(old)
    assert isinstance(first, TextDelta)
    second = await events_of(agent, "New")
    rest = [event async for event in old]
    await agent.aclose()
    assert text_of(second) == default_reply("New", fake_agents.conversations[0])
    assert audio_of(second) == sentences_pcm(text_of(second), 16000)
    assert not any(isinstance(e, AudioPart) for e in rest)


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
