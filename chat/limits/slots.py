"""TTS request slots: the vendor's concurrency limit per account, shared fairly between users.

`async with tts_slot(user_id, on_queued=...)` wraps one synthesis request. At most
ELEVENLABS_MAX_CONCURRENCY requests run at once for the whole site (counted in Redis when REDIS_URL is
set, so every process shares the one account's limit; in this process otherwise), and no user holds
more than TTS_SLOTS_PER_USER. When a slot frees, it goes to the waiting user who holds the fewest,
the longest waiting among equals: one user's ten tabs cannot push back another user's first audio.
Fair order is kept among the waiters of one process; across processes the shared limit is first come.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import uuid
import weakref
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from django.conf import settings

from chat.limits.shared import KEY_PREFIX, account_key, redis_client

logger = logging.getLogger(__name__)

OnQueued = Callable[[int], Awaitable[object]]  # called once with the 1-based place in line, when a request waits

# How often waiters look for a slot another process freed: it cannot tell this process when it does.
POLL_SECONDS = 0.05


class SlotPool(ABC):
    """Counts the slots in use; knows nothing of users or order."""

    polls = False  # True when slots free up elsewhere without telling this process
    lease_seconds = 0.0  # > 0: held slots expire unless renewed this often, so a dead process leaks none

    @abstractmethod
    async def try_acquire(self, token: str) -> bool: ...

    @abstractmethod
    async def release(self, token: str) -> None: ...

    async def renew(self, tokens: Collection[str]) -> None:
        return None

    async def acquire_many(self, tokens: list[str]) -> int:
        """Take slots for as many of `tokens`, in order, as are free; returns how many (the first n)."""
        taken = 0
        for token in tokens:
            if not await self.try_acquire(token):
                break
            taken += 1
        return taken


class LocalPool(SlotPool):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held: set[str] = set()

    async def try_acquire(self, token: str) -> bool:
        if len(self.held) >= self.limit:
            return False
        self.held.add(token)
        return True

    async def release(self, token: str) -> None:
        self.held.discard(token)


# A sorted set of tokens scored by when their lease ends; the Redis server's clock is the only clock used.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
# The same for a batch: one round trip hands out every slot a dispatch pass can fill.
_ACQUIRE_MANY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local free = tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1])
local n = math.min(math.max(free, 0), #ARGV - 2)
for i = 1, n do redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[i + 2]) end
if n > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return n
"""
_RENEW = """
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', until_ms, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""


class RedisPool(SlotPool):
    polls = True

    def __init__(self, client: aioredis.Redis, key: str, limit: int, lease_seconds: float) -> None:
        self.client = client
        self.key = key
        self.limit = limit
        self.lease_seconds = lease_seconds

    @property
    def _lease_ms(self) -> int:
        return int(self.lease_seconds * 1000)

    async def try_acquire(self, token: str) -> bool:
        acquired = await self.client.eval(_ACQUIRE, 1, self.key, token, self.limit, self._lease_ms)
        return bool(acquired)

    async def acquire_many(self, tokens: list[str]) -> int:
        if not tokens:
            return 0
        return int(await self.client.eval(_ACQUIRE_MANY, 1, self.key, self.limit, self._lease_ms, *tokens))

    async def release(self, token: str) -> None:
        await self.client.zrem(self.key, token)

    async def renew(self, tokens: Collection[str]) -> None:
        if tokens:
            await self.client.eval(_RENEW, 1, self.key, self._lease_ms, *tokens)


@dataclass(eq=False)
class _Waiter:
    user_id: int
    seq: int
    granted: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    considered: asyncio.Event = field(default_factory=asyncio.Event)  # a dispatch pass has looked at it


class FairSlots:
    """Hands a pool's slots to waiting requests, fewest-held user first; one instance per event loop."""

    def __init__(self, pool: SlotPool, *, per_user: int) -> None:
        self.pool = pool
        self.per_user = per_user
        self.held: Counter[int] = Counter()
        self.tokens: dict[str, int] = {}
        self.waiting: list[_Waiter] = []
        self._seq = 0
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None

    def _place(self, waiter: _Waiter) -> int:
        """`waiter`'s 1-based place in the order requests will be served as slots free: first those the
        per-user cap lets through, in the order the dispatcher grants them, then those waiting on their
        own user's requests to end (fewest held, then longest waiting)."""
        line = self._fitting()
        if waiter in line:
            return line.index(waiter) + 1
        fitting = set(line)
        capped = sorted((w for w in self.waiting if w not in fitting), key=lambda w: (self.held[w.user_id], w.seq))
        return len(line) + capped.index(waiter) + 1

    async def acquire(self, user_id: int, on_queued: OnQueued | None = None) -> str:
        """Wait for a slot and return its token; cancelling the wait never leaves a slot taken."""
        self._seq += 1
        waiter = _Waiter(user_id, self._seq)
        self.waiting.append(waiter)
        self._kick()
        try:
            await waiter.considered.wait()
            if not waiter.granted.done() and on_queued is not None:
                await on_queued(self._place(waiter))
            return await asyncio.shield(waiter.granted)
        except BaseException:
            self._abandon(waiter)
            raise

    def _abandon(self, waiter: _Waiter) -> None:
        if waiter in self.waiting:
            self.waiting.remove(waiter)
            self._kick()  # its place may have been the only thing keeping an eligible waiter back
        elif waiter.granted.done() and not waiter.granted.cancelled():
            self._spawn(self.release(waiter.granted.result()))

    async def release(self, token: str) -> None:
        user_id = self.tokens.pop(token, None)
        if user_id is None:
            return
        self.held[user_id] -= 1
        if not self.held[user_id]:
            del self.held[user_id]
        if not self.tokens and self._renewer is not None:
            self._renewer.cancel()  # nothing left to keep alive; do not sleep on past the last slot
        try:
            await self.pool.release(token)
        finally:
            self._kick()

    def _kick(self) -> None:
        self._wake.set()
        if self.waiting and (self._dispatcher is None or self._dispatcher.done()):
            self._dispatcher = asyncio.create_task(self._dispatch(), name="tts-slots")

    async def _dispatch(self) -> None:
        while self.waiting:
            self._wake.clear()
            try:
                await self._grant_what_fits()
            except Exception:  # e.g. Redis unreachable: keep the waiters, try again shortly
                logger.exception("Could not hand out TTS slots")
            for waiter in self.waiting:
                waiter.considered.set()
            if not self.waiting:
                return
            if self.pool.polls:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            else:
                await self._wake.wait()

    async def _grant_what_fits(self) -> None:
        """Ask the pool once for a slot for every waiter the per-user cap lets through, in fair order."""
        line = self._fitting()
        if not line:
            return
        tokens = [uuid.uuid4().hex for _ in line]
        taken = await self.pool.acquire_many(tokens)
        for waiter, token in zip(line[:taken], tokens, strict=False):
            if waiter not in self.waiting:  # gave up while the pool was asked
                await self.pool.release(token)
                continue
            self.waiting.remove(waiter)
            self.held[waiter.user_id] += 1
            self.tokens[token] = waiter.user_id
            waiter.granted.set_result(token)
            waiter.considered.set()
        if taken:
            self._keep_leases()

    def _fitting(self) -> list[_Waiter]:
        """The waiters that would be served one by one (fewest held first, then longest waiting), were
        there slots for all: each grant counts against its user before the next is picked."""
        queues: dict[int, deque[_Waiter]] = {}
        for waiter in sorted(self.waiting, key=lambda w: w.seq):
            queues.setdefault(waiter.user_id, deque()).append(waiter)
        holding = {user_id: self.held[user_id] for user_id in queues}
        heap = [(holding[u], q[0].seq, u) for u, q in queues.items() if holding[u] < self.per_user]
        heapq.heapify(heap)
        line: list[_Waiter] = []
        while heap:
            _, _, user_id = heapq.heappop(heap)
            queue = queues[user_id]
            line.append(queue.popleft())
            holding[user_id] += 1
            if queue and holding[user_id] < self.per_user:
                heapq.heappush(heap, (holding[user_id], queue[0].seq, user_id))
        return line

    def _keep_leases(self) -> None:
        if self.pool.lease_seconds and (self._renewer is None or self._renewer.done()):
            self._renewer = asyncio.create_task(self._renew(), name="tts-slot-leases")

    async def _renew(self) -> None:
        while self.tokens:
            await asyncio.sleep(self.pool.lease_seconds / 3)
            try:
                await self.pool.renew(list(self.tokens))
            except Exception:
                logger.exception("Could not renew TTS slot leases")

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        _background.add(task)
        task.add_done_callback(_background.discard)


# Tasks that must finish although their caller was cancelled (releases); kept so they are not collected.
_background: set[asyncio.Future[None]] = set()
_schedulers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[object, ...], FairSlots]] = (
    weakref.WeakKeyDictionary()
)


def tts_slots() -> FairSlots:
    """This loop's scheduler for the configured limits (a new one if the settings changed, as in tests)."""
    limit, per_user = settings.ELEVENLABS_MAX_CONCURRENCY, settings.TTS_SLOTS_PER_USER
    config = (limit, per_user, settings.REDIS_URL, account_key(), settings.LIMITS_LEASE_SECONDS)
    per_loop = _schedulers.setdefault(asyncio.get_running_loop(), {})
    if config not in per_loop:
        client = redis_client()
        pool: SlotPool = (
            LocalPool(limit)
            if client is None
            else RedisPool(client, f"{KEY_PREFIX}tts:{account_key()}", limit, settings.LIMITS_LEASE_SECONDS)
        )
        per_loop[config] = FairSlots(pool, per_user=per_user)
    return per_loop[config]


@contextlib.asynccontextmanager
async def tts_slot(user_id: int, *, on_queued: OnQueued | None = None) -> AsyncIterator[None]:
    """Hold one TTS request slot for the body; `on_queued(position)` is awaited once if the request must wait."""
    slots = tts_slots()
    token = await slots.acquire(user_id, on_queued)
    try:
        yield
    finally:
        # Shielded: a cancelled turn must still give its slot back, and now rather than at lease expiry.
        release = asyncio.ensure_future(slots.release(token))
        _background.add(release)
        release.add_done_callback(_background.discard)
        await asyncio.shield(release)
