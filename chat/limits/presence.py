"""Who is connected and who is speaking: one running turn per user, a cap on each user's open sockets.

Kept in Redis when REDIS_URL is set, so every process sees every socket; in this process otherwise.
Entries are keyed by the Channels channel name, which is how the transport reaches another socket.
"""

from __future__ import annotations

from django.conf import settings

from chat.limits.refusal import Refusal
from chat.limits.shared import KEY_PREFIX, redis_client

CLOSE_TOO_MANY_CONNECTIONS = 4008
# A claim outlives a crashed process only until then; a stale one just names a channel nobody reads.
TURN_CLAIM_SECONDS = 3600

_turns: dict[int, str] = {}
_sockets: dict[int, dict[str, None]] = {}  # insertion-ordered: the oldest socket first

_RELEASE_IF_MINE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Scripts run atomically, so two processes opening sockets for one user cannot both miss the other.
# The liveness keys are named from the members rather than passed in KEYS: fine on one Redis, not on a cluster.
_SOCKET_OPEN = """
local alive, channel, cap, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local t = redis.call('TIME')
redis.call('SET', alive .. channel, '1', 'EX', ttl)
redis.call('ZADD', KEYS[1], tonumber(t[1]) * 1000000 + tonumber(t[2]), channel)
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if redis.call('EXISTS', alive .. member) == 0 then redis.call('ZREM', KEYS[1], member) end
end
local evicted = {}
local excess = redis.call('ZCARD', KEYS[1]) - cap
if excess > 0 then
  evicted = redis.call('ZRANGE', KEYS[1], 0, excess - 1)
  for _, member in ipairs(evicted) do
    redis.call('ZREM', KEYS[1], member)
    redis.call('DEL', alive .. member)
  end
end
redis.call('EXPIRE', KEYS[1], ttl)
return evicted
"""

_SOCKET_TOUCH = """
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 0 end
redis.call('SET', ARGV[1] .. ARGV[2], '1', 'EX', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


def _turn_key(user_id: int) -> str:
    return f"{KEY_PREFIX}turn:{user_id}"


def _sockets_key(user_id: int) -> str:
    return f"{KEY_PREFIX}sockets:{user_id}"


_ALIVE_PREFIX = f"{KEY_PREFIX}socket:"


async def turn_claim(user_id: int, channel_name: str) -> str | None:
    """Make this socket's turn the user's running one; returns the socket whose turn it replaces, if another."""
    client = redis_client()
    previous: object
    if client is None:
        previous = _turns.get(user_id)
        _turns[user_id] = channel_name
    else:
        previous = await client.set(_turn_key(user_id), channel_name, ex=TURN_CLAIM_SECONDS, get=True)
    return previous if isinstance(previous, str) and previous != channel_name else None


async def turn_release(user_id: int, channel_name: str) -> None:
    """The turn of this socket ended; a newer claim by another socket is left alone."""
    client = redis_client()
    if client is None:
        if _turns.get(user_id) == channel_name:
            del _turns[user_id]
        return
    await client.eval(_RELEASE_IF_MINE, 1, _turn_key(user_id), channel_name)


async def socket_open(user_id: int, channel_name: str) -> list[str]:
    """Register an open socket; returns the user's oldest sockets past MAX_SOCKETS_PER_USER, to be closed."""
    cap = settings.MAX_SOCKETS_PER_USER
    client = redis_client()
    if client is None:
        sockets = _sockets.setdefault(user_id, {})
        sockets[channel_name] = None
        evicted = list(sockets)[: max(0, len(sockets) - cap)]
        for channel in evicted:
            del sockets[channel]
        return evicted
    ttl = settings.LIMITS_LEASE_SECONDS
    evicted = await client.eval(_SOCKET_OPEN, 1, _sockets_key(user_id), _ALIVE_PREFIX, channel_name, cap, ttl)
    return list(evicted)


async def socket_touch(user_id: int, channel_name: str) -> bool:
    """Keep a socket's entry alive (call at least every LIMITS_LEASE_SECONDS / 2); False if it was evicted."""
    client = redis_client()
    if client is None:
        return channel_name in _sockets.get(user_id, {})
    ttl = settings.LIMITS_LEASE_SECONDS
    touched = await client.eval(_SOCKET_TOUCH, 1, _sockets_key(user_id), _ALIVE_PREFIX, channel_name, ttl)
    return bool(touched)


async def socket_count(user_id: int) -> int:
    """How many sockets the user has open in every process (a socket that died unclosed counts until its lease ends)."""
    client = redis_client()
    if client is None:
        return len(_sockets.get(user_id, {}))
    return int(await client.zcard(_sockets_key(user_id)))


async def socket_close(user_id: int, channel_name: str) -> None:
    """Forget a closed socket (closing one that was evicted or never opened is fine)."""
    client = redis_client()
    if client is None:
        sockets = _sockets.get(user_id, {})
        sockets.pop(channel_name, None)
        if not sockets:
            _sockets.pop(user_id, None)
        return
    async with client.pipeline(transaction=True) as pipe:
        pipe.zrem(_sockets_key(user_id), channel_name)
        pipe.delete(_ALIVE_PREFIX + channel_name)
        await pipe.execute()


def too_many_connections() -> Refusal:
    """What the transport sends an evicted socket before closing it."""
    cap = settings.MAX_SOCKETS_PER_USER
    return Refusal(
        "too_many_connections",
        f"You have more than {cap} tabs or windows open; this one, the oldest, was disconnected. "
        "Reload it to use it again (your oldest other tab will then close).",
        close_code=CLOSE_TOO_MANY_CONNECTIONS,
    )


def turn_replaced() -> Refusal:
    """What the transport sends the socket whose running turn a newer message of the same user replaced."""
    return Refusal(
        "turn_replaced",
        "You sent a message from another tab or window, so the reply here was stopped. Only one reply runs at a time.",
    )


def presence_clear() -> None:
    """Forget every in-process claim and socket (tests; Redis entries expire on their own)."""
    _turns.clear()
    _sockets.clear()
