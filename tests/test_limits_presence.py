"""One running turn per user and a cap on each user's sockets, in this process and across processes (Redis)."""

from __future__ import annotations

import asyncio

from chat.limits import (
    CLOSE_TOO_MANY_CONNECTIONS,
    socket_close,
    socket_open,
    socket_touch,
    too_many_connections,
    turn_claim,
    turn_release,
    turn_replaced,
)
from chat.limits.presence import _sockets_key
from chat.limits.shared import redis_client

ALICE, BOB = 1, 2


async def test_it_names_the_socket_whose_turn_a_new_message_replaces(limits_backend) -> None:
    assert await turn_claim(ALICE, "tab-1") is None
    assert await turn_claim(ALICE, "tab-2") == "tab-1"
    assert await turn_claim(ALICE, "tab-2") is None  # a second message on the same tab: its own turn, no one else's
    assert await turn_claim(BOB, "bob-tab") is None  # users do not replace each other


async def test_it_forgets_a_finished_turn_but_not_a_newer_one(limits_backend) -> None:
    await turn_claim(ALICE, "tab-1")
    await turn_release(ALICE, "tab-1")
    assert await turn_claim(ALICE, "tab-2") is None  # tab-1's turn had ended: nothing to interrupt
    await turn_release(ALICE, "tab-1")  # a late release of an older turn leaves tab-2's claim alone
    assert await turn_claim(ALICE, "tab-3") == "tab-2"


async def test_it_lets_exactly_one_of_two_simultaneous_messages_replace_the_other(limits_backend) -> None:
    results = await asyncio.gather(turn_claim(ALICE, "tab-1"), turn_claim(ALICE, "tab-2"))
    assert sorted(results, key=str) == [None, "tab-1"] or sorted(results, key=str) == [None, "tab-2"]


async def test_it_closes_the_oldest_sockets_past_the_cap(limits_backend, settings) -> None:
    settings.MAX_SOCKETS_PER_USER = 3
    for name in ("s1", "s2", "s3"):
        assert await socket_open(ALICE, name) == []
    assert await socket_open(BOB, "b1") == []
    assert await socket_open(ALICE, "s4") == ["s1"]
    assert await socket_open(ALICE, "s5") == ["s2"]
    await socket_close(ALICE, "s3")
    assert await socket_open(ALICE, "s6") == []
    assert await socket_touch(ALICE, "s4") and not await socket_touch(ALICE, "s1")


async def test_it_ignores_closing_a_socket_it_does_not_know(limits_backend) -> None:
    await socket_close(ALICE, "never-opened")
    assert await socket_open(ALICE, "s1") == []


async def test_it_forgets_the_sockets_of_a_process_that_died(redis_limits, settings) -> None:
    settings.MAX_SOCKETS_PER_USER = 2
    settings.LIMITS_LEASE_SECONDS = 1
    await socket_open(ALICE, "dead-process-1")
    await socket_open(ALICE, "dead-process-2")
    await asyncio.sleep(1.2)  # no touch: their process is gone
    assert await socket_open(ALICE, "alive") == []
    client = redis_client()
    assert client is not None
    assert await client.zrange(_sockets_key(ALICE), 0, -1) == ["alive"]


async def test_it_keeps_touched_sockets_alive(redis_limits, settings) -> None:
    settings.MAX_SOCKETS_PER_USER = 1
    settings.LIMITS_LEASE_SECONDS = 1
    await socket_open(ALICE, "s1")
    for _ in range(3):
        await asyncio.sleep(0.5)
        assert await socket_touch(ALICE, "s1")
    assert await socket_open(ALICE, "s2") == ["s1"]


def test_it_words_the_refusals_for_the_other_tab(settings) -> None:
    settings.MAX_SOCKETS_PER_USER = 4
    evicted = too_many_connections()
    assert (evicted.code, evicted.close_code) == ("too_many_connections", CLOSE_TOO_MANY_CONNECTIONS)
    assert CLOSE_TOO_MANY_CONNECTIONS == 4008
    assert "more than 4 tabs" in evicted.message and "Reload" in evicted.message
    replaced = turn_replaced()
    assert (replaced.code, replaced.close_code) == ("turn_replaced", None)
    assert "another tab" in replaced.message
