"""Fair TTS slots: who gets the next slot, per-user caps, cancellation, and the account-wide limit in Redis."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from chat.limits import tts_slot
from chat.limits.shared import redis_client
from chat.limits.slots import FairSlots, LocalPool, RedisPool, tts_slots


async def idle() -> None:
    """Let every ready task run until nothing is left to do (no clocks involved)."""
    for _ in range(50):
        await asyncio.sleep(0)


@dataclass
class Line:
    """Requests that enter a slot, record who got in, and leave when told."""

    order: list[str] = field(default_factory=list)
    queued: dict[str, int] = field(default_factory=dict)
    leave: dict[str, asyncio.Event] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    def request(self, name: str, user_id: int) -> None:
        self.leave[name] = asyncio.Event()
        self.tasks[name] = asyncio.create_task(self._hold(name, user_id))

    async def _hold(self, name: str, user_id: int) -> None:
        async def on_queued(position: int) -> None:
            self.queued[name] = position

        async with tts_slot(user_id, on_queued=on_queued):
            self.order.append(name)
            await self.leave[name].wait()

    async def release(self, name: str) -> None:
        self.leave[name].set()
        await self.tasks[name]
        await idle()

    async def close(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)


@pytest.fixture
async def line(settings, local_limits):
    settings.ELEVENLABS_MAX_CONCURRENCY = 2
    settings.TTS_SLOTS_PER_USER = 2
    waiting = Line()
    yield waiting
    await waiting.close()


HEAVY, LIGHT, THIRD = 1, 2, 3


async def test_it_gives_a_freed_slot_to_the_user_holding_fewest(line) -> None:
    for name in ("h1", "h2", "h3", "h4"):
        line.request(name, HEAVY)
        await idle()
    line.request("l1", LIGHT)
    await idle()
    assert line.order == ["h1", "h2"]
    await line.release("h1")
    assert line.order == ["h1", "h2", "l1"]  # the light user's first audio goes before the heavy user's queue
    await line.release("h2")
    assert line.order[-1] == "h3"


async def test_it_serves_waiting_users_with_equal_shares_in_arrival_order(line, settings) -> None:
    settings.ELEVENLABS_MAX_CONCURRENCY = 1
    line.request("h1", HEAVY)
    await idle()
    for name, user in (("l1", LIGHT), ("t1", THIRD), ("h2", HEAVY), ("l2", LIGHT)):
        line.request(name, user)
        await idle()
    for name in ("h1", "l1", "t1", "h2"):
        await line.release(name)
    assert line.order == ["h1", "l1", "t1", "h2", "l2"]


async def test_it_keeps_one_user_within_the_per_user_cap_while_slots_are_free(line, settings) -> None:
    settings.ELEVENLABS_MAX_CONCURRENCY = 4
    for name in ("h1", "h2", "h3"):
        line.request(name, HEAVY)
    line.request("l1", LIGHT)
    await idle()
    assert sorted(line.order) == ["h1", "h2", "l1"]
    await line.release("h1")
    assert line.order[-1] == "h3"


async def test_it_tells_a_waiting_request_its_place_once(line, settings) -> None:
    settings.ELEVENLABS_MAX_CONCURRENCY = 1
    line.request("h1", HEAVY)
    await idle()
    line.request("h2", HEAVY)
    line.request("l1", LIGHT)
    await idle()
    assert "h1" not in line.queued  # it got a slot at once: no `queued` frame
    assert line.queued == {"l1": 1, "h2": 2}  # the heavy user holds a slot, so the light one is ahead
    await line.release("h1")
    assert line.order == ["h1", "h2"]  # with h1 gone both hold none: equal shares, and h2 asked first
    assert line.queued == {"l1": 1, "h2": 2}  # told once, not again as the line moves


async def test_it_tells_each_waiter_the_place_it_is_served_in(line) -> None:
    """Places follow the dispatcher's order: each grant counts against its user, and a user at the
    per-user cap waits behind everyone who can be served before that user's own requests end."""
    line.request("t1", THIRD)
    line.request("l1", LIGHT)
    await idle()  # both slots taken: the third user and the light user hold one each
    for name, user in (("l2", LIGHT), ("h1", HEAVY), ("h2", HEAVY), ("h3", HEAVY)):
        line.request(name, user)
    await idle()
    # The heavy user holds none, so h1 goes first; then the light user and the heavy one hold one each and
    # l2 asked earlier; then h2; the light user is at its cap of two, and so is the heavy one for h3.
    assert line.queued == {"h1": 1, "l2": 2, "h2": 3, "h3": 4}
    for name in ("t1", "l1", "h1", "h2"):
        await line.release(name)
    assert line.order == ["t1", "l1", "h1", "l2", "h2", "h3"]


async def test_it_gives_a_cancelled_waiters_place_to_the_next(line, settings) -> None:
    settings.ELEVENLABS_MAX_CONCURRENCY = 1
    line.request("h1", HEAVY)
    line.request("l1", LIGHT)
    line.request("t1", THIRD)
    await idle()
    line.tasks["l1"].cancel()
    await idle()
    await line.release("h1")
    assert line.order == ["h1", "t1"]
    assert len(tts_slots().pool.held) == 1  # type: ignore[attr-defined]


async def test_it_releases_the_slot_of_a_cancelled_request(line, settings) -> None:
    settings.ELEVENLABS_MAX_CONCURRENCY = 1
    line.request("h1", HEAVY)
    line.request("l1", LIGHT)
    await idle()
    line.tasks["h1"].cancel()  # the turn was interrupted while its request held the slot
    await idle()
    assert line.order == ["h1", "l1"]
    await line.release("l1")
    slots = tts_slots()
    assert (slots.held, slots.tokens, slots.waiting) == ({}, {}, [])


async def test_it_never_lends_more_slots_than_the_limit(line, settings) -> None:
    settings.ELEVENLABS_MAX_CONCURRENCY = 3
    for index in range(12):
        line.request(f"r{index}", index % 5)
    await idle()
    for _ in range(9):
        inside = [name for name in line.order if not line.tasks[name].done()]
        assert len(inside) == 3
        await line.release(inside[0])


# --- the account-wide limit in Redis, as two processes share it -------------------------------------


def two_processes(limit: int, lease_seconds: float = 30.0) -> tuple[FairSlots, FairSlots]:
    """Two schedulers on one Redis key: what two server processes on the same vendor account see."""
    client = redis_client()
    assert client is not None
    return tuple(  # type: ignore[return-value]
        FairSlots(RedisPool(client, "vc:limits:tts:test", limit, lease_seconds), per_user=2) for _ in range(2)
    )


async def held_in_redis(key: str = "vc:limits:tts:test") -> int:
    client = redis_client()
    assert client is not None
    return int(await client.zcard(key))


async def eventually(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.02)


async def test_it_shares_the_vendor_limit_between_processes(redis_limits) -> None:
    first, second = two_processes(limit=2)
    a = await first.acquire(HEAVY)
    b = await second.acquire(LIGHT)
    waiting = asyncio.create_task(second.acquire(THIRD))
    await asyncio.sleep(0.2)
    assert not waiting.done() and await held_in_redis() == 2
    await first.release(a)  # another process frees a slot: the waiter finds it by polling
    token = await asyncio.wait_for(waiting, 5)
    await second.release(b)
    await second.release(token)
    assert await held_in_redis() == 0


async def test_it_frees_the_slots_of_a_process_that_died(redis_limits) -> None:
    dead, alive = two_processes(limit=1, lease_seconds=0.3)
    await dead.pool.try_acquire("held-by-a-crashed-process")  # never released, never renewed
    token = await asyncio.wait_for(alive.acquire(LIGHT), 5)
    await alive.release(token)


async def test_it_renews_the_leases_it_holds(redis_limits) -> None:
    holder, other = two_processes(limit=1, lease_seconds=0.3)
    token = await holder.acquire(HEAVY)
    waiting = asyncio.create_task(other.acquire(LIGHT))
    await asyncio.sleep(1.0)  # three leases long: renewal keeps the slot
    assert not waiting.done()
    await holder.release(token)
    await other.release(await asyncio.wait_for(waiting, 5))


async def test_it_leaks_no_redis_slot_when_waiters_and_holders_are_cancelled(redis_limits, settings) -> None:
    settings.ELEVENLABS_MAX_CONCURRENCY = 1

    async def speak(user_id: int) -> None:
        async with tts_slot(user_id):
            await asyncio.sleep(10)

    key = tts_slots().pool.key  # type: ignore[attr-defined]
    tasks = [asyncio.create_task(speak(user)) for user in (HEAVY, LIGHT, THIRD)]
    await eventually(lambda: _equals(held_in_redis(key), 1))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await eventually(lambda: _equals(held_in_redis(key), 0))
    await asyncio.sleep(0.2)  # a late grant to a cancelled waiter would show up now
    assert await held_in_redis(key) == 0


async def _equals(value, expected) -> bool:
    return await value == expected


async def test_it_keeps_slots_in_this_process_without_redis(local_limits, settings) -> None:
    settings.ELEVENLABS_MAX_CONCURRENCY = 3
    assert isinstance(tts_slots().pool, LocalPool)
    assert tts_slots().pool.limit == 3  # type: ignore[attr-defined]


async def test_it_hands_out_a_whole_batch_in_fair_order_with_one_redis_call(redis_limits) -> None:
    """Hundreds of requests at once: one script call per dispatch pass, not one round trip per waiter."""
    (slots, _) = two_processes(limit=5)
    calls: list[int] = []
    acquire_many = slots.pool.acquire_many

    async def counted(tokens: list[str]) -> int:
        calls.append(len(tokens))
        return await acquire_many(tokens)

    slots.pool.acquire_many = counted  # type: ignore[method-assign]
    # HEAVY asks three times first; LIGHT and THIRD once each, later: the cap of 2 and fewest-held order
    # let HEAVY in twice, then LIGHT and THIRD; one slot is left for nobody (HEAVY's third is capped).
    waiting = [asyncio.create_task(slots.acquire(user)) for user in (HEAVY, HEAVY, HEAVY, LIGHT, THIRD)]
    await asyncio.sleep(0.2)
    granted = [task for task in waiting if task.done()]
    assert calls[0] == 4 and len(granted) == 4 and not waiting[2].done()
    assert sorted(slots.tokens.values()) == [HEAVY, HEAVY, LIGHT, THIRD]
    assert await held_in_redis() == 4
    for task in granted:
        await slots.release(task.result())
    token = await asyncio.wait_for(waiting[2], 5)
    await slots.release(token)
    assert await held_in_redis() == 0


async def test_it_holds_more_redis_commands_at_once_than_redis_pys_default_pool(redis_limits, settings) -> None:
    """redis-py 8 fails a command past 100 pooled connections (MaxConnectionsError); at a few hundred
    sockets a burst of slot releases did. The limits' pool is REDIS_MAX_CONNECTIONS wide, and waits."""
    from chat.limits.shared import KEY_PREFIX, aclose_redis_clients

    await aclose_redis_clients()  # a pool built from this test's settings
    settings.REDIS_MAX_CONNECTIONS = 150
    client = redis_client()
    assert client is not None
    # Each BLPOP holds its connection for 0.3 s: 200 at once need more than 100 and more than 150.
    results = await asyncio.gather(*(client.blpop([f"{KEY_PREFIX}nothing:{i}"], timeout=0.3) for i in range(200)))
    assert results == [None] * 200
    assert client.connection_pool.max_connections == 150
