"""Limits as a user meets them over the WebSocket: budgets during a reply, one turn per user, fair slots, caps."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.utils import timezone

from chat.limits import Refusal
from chat.limits.gate import LimitsGate
from chat.models import Message, SpeechAllowance, SpeechUsage
from chat.providers.demo import DemoLLM
from chat.providers.elevenlabs import aclose_shared_clients
from chat.speech import SpeechChunker
from tests.fakes.elevenlabs import FakeElevenLabs, pcm_for
from tests.wsclient import connect, receive_until, send

pytestmark = pytest.mark.django_db(transaction=True)
QUESTION = "Tell me about streaming speech."


@pytest.fixture(autouse=True)
def _fast_local_limits(settings, tmp_path, local_limits):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.LLM_PROVIDERS = {**settings.LLM_PROVIDERS, "demo": {**settings.LLM_PROVIDERS["demo"]}}
    settings.LLM_PROVIDERS["demo"]["OPTIONS"] = {"tokens_per_second": 0}
    settings.LLM_BACKEND = "demo"
    settings.SPEECH_DAILY_CHARS, settings.SPEECH_MONTHLY_CHARS, settings.SPEECH_SITE_DAILY_CHARS = 20_000, 0, 0


@pytest.fixture(params=["local", "redis"])
def backend(request, _fast_local_limits):
    """The limits in this process, or in the real Redis as several processes would share them."""
    if request.param == "redis":
        request.getfixturevalue("redis_limits")
    return request.param


def chunks_of(reply: str) -> list[str]:
    chunker = SpeechChunker()
    return [chunk.text for chunk in chunker.feed(reply) + chunker.flush()]


async def opened(user, query: str = ""):
    communicator, connected = await connect(user, query=query)
    assert connected
    metadata = json.loads(await communicator.receive_from())
    return communicator, metadata["conversation_initiation_metadata_event"]


async def closed_with(communicator) -> int:
    """Skip to the close the server sent and return its code."""
    async with asyncio.timeout(5):
        while True:
            output = await communicator.receive_output(timeout=5)
            if output["type"] == "websocket.close":
                return int(output.get("code", 1000))


async def usage_settles_at(user, characters: int) -> SpeechUsage | None:
    """The user's usage of the day once it reads `characters` (a turn settles in the background), or as it
    reads after five seconds of waiting."""
    usage = None
    for _ in range(250):
        usage = await SpeechUsage.objects.filter(user=user, period="day").afirst()
        if usage is not None and usage.characters == characters:
            break
        await asyncio.sleep(0.02)
    return usage


# --- speech budgets -------------------------------------------------------------------------------


async def test_it_announces_the_budget_when_a_socket_opens(user, agent, settings) -> None:
    settings.SPEECH_DAILY_CHARS = 500
    communicator, metadata = await opened(user)
    await communicator.disconnect()
    assert metadata["speech_budget"]["remaining_chars"] == 500
    assert metadata["speech_budget"]["limit_chars"] == 500
    assert metadata["speech_budget"]["site_exhausted"] is False


async def test_it_streams_text_without_audio_when_the_budget_is_spent_before_the_turn(
    user, agent, elevenlabs_settings
) -> None:
    await SpeechAllowance.objects.acreate(user=user, daily_chars=10)
    await SpeechUsage.objects.acreate(user=user, period="day", start=timezone.localdate(), characters=10)
    communicator, _ = await opened(user)
    await send(communicator, {"type": "user_message", "text": QUESTION})
    log = await receive_until(communicator)
    await communicator.disconnect()

    assert log.text == DemoLLM.reply_for(QUESTION)  # the whole reply, as text
    assert "audio" not in log.types and elevenlabs_settings.tts_requests() == []
    [error] = log.of("error")
    assert error["code"] == "budget_exhausted" and "renews at" in error["message"]
    complete = log.of("agent_response_complete")[0]
    assert complete["audio_status"] == "budget"
    reply = await Message.objects.aget(pk=complete["message_id"])
    assert (reply.status, reply.audio_status, reply.text) == ("complete", "budget", DemoLLM.reply_for(QUESTION))


async def test_it_stops_audio_at_a_chunk_boundary_when_the_budget_runs_out_mid_reply(
    user, agent, elevenlabs_settings, settings
) -> None:
    first, second = chunks_of(DemoLLM.reply_for(QUESTION))[:2]
    settings.SPEECH_DAILY_CHARS = len(first) + len(second) - 1  # the first sentence fits, the second does not
    communicator, _ = await opened(user)
    await send(communicator, {"type": "user_message", "text": QUESTION})
    log = await receive_until(communicator)
    await communicator.disconnect()

    assert [r.body["text"] for r in elevenlabs_settings.tts_requests()] == [first]
    assert log.audio == pcm_for(first, 24000)  # all of the first sentence, nothing of the rest
    assert log.text == DemoLLM.reply_for(QUESTION)
    assert [e["code"] for e in log.of("error")] == ["budget_exhausted"]
    [budget] = log.of("budget")
    assert (budget["remaining_chars"], budget["limit_chars"]) == (len(second) - 1, settings.SPEECH_DAILY_CHARS)
    assert log.types.index("budget") < log.types.index("agent_response_complete") == len(log.types) - 1
    reply = await Message.objects.aget(pk=log.of("agent_response_complete")[0]["message_id"])
    assert reply.audio_status == "budget" and reply.error_code == "budget_exhausted"
    assert reply.tts_characters == len(first)
    usage = await SpeechUsage.objects.aget(user=user, period="day")
    assert usage.characters == len(first)  # what the vendor billed (character-cost), the refused chunk not at all


async def test_it_books_what_each_request_billed_and_reports_what_is_left(user, agent, elevenlabs_settings) -> None:
    communicator, _ = await opened(user)
    await send(communicator, {"type": "user_message", "text": QUESTION})
    log = await receive_until(communicator)
    await communicator.disconnect()

    billed = sum(len(r.body["text"]) for r in elevenlabs_settings.tts_requests())
    usage = await SpeechUsage.objects.aget(user=user, period="day")
    assert usage.characters == billed > 0
    assert log.of("budget")[0]["remaining_chars"] == 20_000 - billed
    assert "error" not in log.types


async def test_it_refunds_the_unspoken_chunks_of_an_interrupted_reply(user, agent, elevenlabs_settings) -> None:
    elevenlabs_settings.fail_next("stall")  # the first sentence hangs after two chunks
    communicator, _ = await opened(user)
    await send(communicator, {"type": "user_message", "text": QUESTION})
    await receive_until(communicator, "audio")
    await send(communicator, {"type": "interrupt"})
    log = await receive_until(communicator)
    await communicator.disconnect()

    requests = elevenlabs_settings.tts_requests()
    billed = sum(len(r.body["text"]) for r in requests)
    # The look-ahead request (two are in flight) may have been started without the vendor logging it yet
    # when the stop came: one cut off unanswered counts its text, the operator's side of the doubt.
    look_ahead = len(chunks_of(DemoLLM.reply_for(QUESTION))[len(requests)])
    told = 20_000 - log.of("budget")[0]["remaining_chars"]  # told at once, without waiting for the books
    assert told in (billed, billed + look_ahead)
    # An interruption books in the background: started requests are billed, the rest of the block given back.
    usage = await usage_settles_at(user, told)
    assert usage is not None and usage.characters == told


async def test_it_lets_free_local_speech_past_a_spent_budget() -> None:
    gate = LimitsGate(user_id=1, metered=False)
    await gate.admit("Anything at all.")  # no database, no refusal: eSpeak bills nobody
    await gate.close()
    assert gate.spent is False


async def test_it_reports_an_unlimited_users_budget_without_reading_it_back(user, settings, monkeypatch) -> None:
    """Unlimited on an uncapped site: the end-of-turn figure is known without a read; the bill is still booked."""
    from chat.limits import gate as gate_module
    from chat.providers.base import SpeechReceipt

    settings.SPEECH_DAILY_CHARS = settings.SPEECH_MONTHLY_CHARS = settings.SPEECH_SITE_DAILY_CHARS = 0

    async def no_reads(user_id: int) -> None:
        raise AssertionError("the budget was read back")

    monkeypatch.setattr(gate_module, "speech_budget", no_reads)
    reported = []

    async def on_budget(view) -> None:
        reported.append(view)

    gate = LimitsGate(user_id=user.pk, on_budget=on_budget)
    await gate.admit("Twelve chars")
    await gate.billed(SpeechReceipt(request_id="req-u", characters=12), "Twelve chars")
    await gate.close()
    assert [(v.remaining_chars, v.limit_chars, v.site_exhausted) for v in reported] == [(None, None, False)]
    day = await SpeechUsage.objects.aget(user=user, period=SpeechUsage.Period.DAY)
    assert day.characters == 12


async def test_it_reserves_the_first_block_as_the_turn_starts_so_the_first_chunk_waits_on_nothing(
    user, monkeypatch
) -> None:
    from chat.limits import gate as gate_module

    trips = []
    reserve = gate_module.speech_reserve_block

    async def counted(user_id: int, need: int, block: int):
        trips.append((need, block))
        return await reserve(user_id, need, block)

    monkeypatch.setattr(gate_module, "speech_reserve_block", counted)
    reported = []

    async def on_budget(view) -> None:
        reported.append(view.remaining_chars)

    gate = LimitsGate(user_id=user.pk, on_budget=on_budget)
    gate.prepare()
    await asyncio.wait_for(gate.prepared(), 5)  # reserved as the turn starts, before any chunk asks
    usage = await SpeechUsage.objects.aget(user=user, period="day")
    assert usage.characters == 1000
    await gate.admit("A first sentence.")
    await gate.admit("A second one.")
    assert trips == [(0, 1000)]  # the chunks took their characters from the early block
    await gate.close()
    usage = await SpeechUsage.objects.aget(user=user, period="day")
    assert usage.characters == 0  # nothing was billed: the whole block is given back
    assert reported == [20_000]


@pytest.mark.parametrize("close_at_once", [True, False], ids=["while-reserving", "after"])
async def test_it_gives_back_an_early_block_when_the_reply_never_speaks(user, close_at_once) -> None:
    reported = []

    async def on_budget(view) -> None:
        reported.append(view)

    gate = LimitsGate(user_id=user.pk, on_budget=on_budget)
    gate.prepare()
    if not close_at_once:
        await asyncio.wait_for(gate.prepared(), 5)
    await gate.close()  # the LLM failed, or the reply was only code: no chunk ever asked
    usage = await usage_settles_at(user, 0)
    assert usage is not None and usage.characters == 0
    assert reported == []  # a reply that spent nothing sends no budget figure
    assert gate.spent is False


async def test_it_gives_back_an_early_block_whose_chunk_was_stopped_while_waiting_for_it(user) -> None:
    """A Stop lands while the first chunk waits for the early block: the block, when it comes, is given back."""
    gate = LimitsGate(user_id=user.pk)
    gate.prepare()
    asking = asyncio.ensure_future(gate.admit("A first sentence."))
    await asyncio.sleep(0)  # the chunk now waits on the block
    asking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asking
    await gate.close()
    usage = await usage_settles_at(user, 0)
    assert usage is not None and usage.characters == 0


async def test_it_asks_again_at_the_first_chunk_when_the_early_block_failed(user, monkeypatch, caplog) -> None:
    """A database error in the early trip is logged, not raised into the turn: the chunk asks for itself."""
    from django.db import OperationalError

    from chat.limits import gate as gate_module

    trips = []
    reserve = gate_module.speech_reserve_block

    async def fails_once(user_id: int, need: int, block: int):
        trips.append((need, block))
        if len(trips) == 1:
            raise OperationalError("database is locked")
        return await reserve(user_id, need, block)

    monkeypatch.setattr(gate_module, "speech_reserve_block", fails_once)
    gate = LimitsGate(user_id=user.pk)
    gate.prepare()
    await asyncio.wait_for(gate.prepared(), 5)
    await gate.admit("A first sentence.")
    assert trips == [(0, 1000), (len("A first sentence."), 1000)]
    assert (await SpeechUsage.objects.aget(user=user, period="day")).characters == 1000
    assert "Could not reserve the first speech block" in caplog.text
    await gate.admit("A second one.")  # from the block the chunk reserved
    assert len(trips) == 2
    await gate.close()
    usage = await usage_settles_at(user, 0)
    assert usage is not None and usage.characters == 0
    assert gate.spent is True


async def test_it_speaks_a_chunk_with_less_than_a_block_left_without_calling_it_a_refusal(user, settings) -> None:
    settings.SPEECH_DAILY_CHARS = 500
    gate = LimitsGate(user_id=user.pk)
    gate.prepare()  # a block of 1000 does not fit: nothing is held early
    await gate.admit("Still room for this.")
    usage = await SpeechUsage.objects.aget(user=user, period="day")
    assert usage.characters == len("Still room for this.")  # held for the chunk alone
    assert usage.limited_at is None  # nobody was refused: the admin's "reached its limit" stays clear
    await gate.close()
    gate = LimitsGate(user_id=user.pk)
    gate.prepare()
    with pytest.raises(Refusal):
        await gate.admit("x" * 600)
    await gate.close()
    usage = await SpeechUsage.objects.aget(user=user, period="day")
    assert usage.limited_at is not None


# --- one running turn per user --------------------------------------------------------------------


async def test_it_interrupts_the_older_tab_when_the_user_writes_in_another(user, agent, settings, backend) -> None:
    settings.LLM_PROVIDERS["demo"]["OPTIONS"] = {"tokens_per_second": 20}  # the first reply is still running
    settings.TTS_BACKEND = "espeak"
    older, _ = await opened(user)
    newer, _ = await opened(user)
    await send(older, {"type": "user_message", "text": QUESTION})
    await receive_until(older, "agent_chat_response_part")
    await send(newer, {"type": "user_message", "text": "And in another tab?"})

    old_log = await receive_until(older)
    assert old_log.of("error")[0]["code"] == "turn_replaced"
    assert "another tab" in old_log.of("error")[0]["message"]
    assert old_log.of("agent_response_complete")[0]["status"] == "interrupted"
    settings.LLM_PROVIDERS["demo"]["OPTIONS"] = {"tokens_per_second": 0}
    new_log = await receive_until(newer, timeout=30)
    assert new_log.of("agent_response_complete")[0]["status"] in ("complete", "interrupted")
    assert "turn_replaced" not in [e["code"] for e in new_log.of("error")]
    await older.disconnect()
    await newer.disconnect()


# --- fair TTS slots -------------------------------------------------------------------------------


async def test_it_tells_a_user_waiting_for_a_vendor_slot_and_speaks_when_one_frees(
    user, other_user, agent, elevenlabs_settings, settings, backend
) -> None:
    settings.ELEVENLABS_MAX_CONCURRENCY = 1
    elevenlabs_settings.fail_next("stall")  # alice's first request holds the only slot
    alice, _ = await opened(user)
    await send(alice, {"type": "user_message", "text": QUESTION})
    await receive_until(alice, "audio")
    mallory, _ = await opened(other_user)
    await send(mallory, {"type": "user_message", "text": QUESTION})
    waiting = await receive_until(mallory, "queued")
    assert waiting.of("queued")[0]["reason"] == "tts_slots" and waiting.of("queued")[0]["position"] == 1
    assert "audio" not in waiting.types
    await alice.disconnect()  # her turn is cancelled, and gives the slot back
    log = await receive_until(mallory, timeout=30)
    await mallory.disconnect()
    assert log.audio and log.of("agent_response_complete")[0]["audio_status"] == "complete"


async def test_it_holds_a_vendor_slot_around_every_request(user, agent, settings) -> None:
    settings.ELEVENLABS_MAX_CONCURRENCY = 1
    # Paced like the real vendor, a reply's look-ahead request would overlap the one playing.
    async with FakeElevenLabs(realtime=True, ms_per_char=2, chunk_ms=20) as fake:
        providers = {**settings.TTS_PROVIDERS, "elevenlabs": {**settings.TTS_PROVIDERS["elevenlabs"]}}
        options = {**providers["elevenlabs"]["OPTIONS"], "api_key": fake.api_key, "base_url": fake.url}
        providers["elevenlabs"]["OPTIONS"] = options
        settings.TTS_PROVIDERS, settings.TTS_BACKEND = providers, "elevenlabs"
        communicator, _ = await opened(user)
        await send(communicator, {"type": "user_message", "text": QUESTION})
        log = await receive_until(communicator, timeout=60)
        await communicator.disconnect()
        await aclose_shared_clients()
    assert log.of("agent_response_complete")[0]["audio_status"] == "complete"
    assert len(fake.tts_requests()) > 2 and fake.peak_streams == 1  # the account's limit, not the turn's two


# --- sockets and frames ---------------------------------------------------------------------------


async def test_it_closes_the_users_oldest_socket_past_the_cap(user, other_user, agent, settings, backend) -> None:
    settings.MAX_SOCKETS_PER_USER = 2
    oldest, _ = await opened(user)
    middle, _ = await opened(user)
    theirs, _ = await opened(other_user)
    newest, _ = await opened(user)

    error = json.loads(await oldest.receive_from())
    assert error["error_event"]["code"] == "too_many_connections"
    assert "more than 2 tabs" in error["error_event"]["message"]
    assert await closed_with(oldest) == 4008
    assert await middle.receive_nothing(0.2) and await newest.receive_nothing() and await theirs.receive_nothing()
    for communicator in (middle, theirs, newest):
        await communicator.disconnect()


async def test_it_frees_a_closed_sockets_place(user, agent, settings) -> None:
    settings.MAX_SOCKETS_PER_USER = 1
    first, _ = await opened(user)
    await first.disconnect()
    second, _ = await opened(user)
    assert await second.receive_nothing(0.2)
    await second.disconnect()


async def test_it_refuses_frames_over_the_rate_and_closes_a_client_that_keeps_on(user, agent, settings) -> None:
    settings.WS_FRAMES_PER_SECOND, settings.WS_FRAME_BURST = 0.01, 3
    communicator, _ = await opened(user)
    for _ in range(3):
        await send(communicator, {"type": "user_activity"})
    await send(communicator, {"type": "user_activity"})
    refusal = json.loads(await communicator.receive_from())["error_event"]
    assert refusal["code"] == "rate_limited" and "that one was ignored" in refusal["message"]
    for _ in range(3):
        await send(communicator, {"type": "user_activity"})
    assert await closed_with(communicator) == 4029


async def test_it_closes_on_a_frame_over_the_size_cap(user, agent, settings) -> None:
    settings.WS_MAX_FRAME_BYTES = 1024
    communicator, _ = await opened(user)
    await communicator.send_to(text_data=json.dumps({"type": "user_message", "text": "x" * 2000}))
    refusal = json.loads(await communicator.receive_from())["error_event"]
    assert refusal["code"] == "frame_too_large" and "limited to 1,024" in refusal["message"]
    assert await closed_with(communicator) == 4009
