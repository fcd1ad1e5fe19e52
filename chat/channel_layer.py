"""The Redis channel layer, with a connection pool that waits for a free connection instead of failing.

channels_redis builds a plain redis-py `ConnectionPool`, which raises `MaxConnectionsError` on the
command that finds all `max_connections` busy. A burst of group joins, leaves and sends from a few
hundred sockets in one process can do that, and the consumer that made the call then fails. The pool
here is redis-py's `BlockingConnectionPool` of the same size: such a command waits up to the host's
`timeout` (REDIS_CONNECT_TIMEOUT) for a connection to come back, as the limits' Redis client does.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from channels_redis.core import RedisChannelLayer as _RedisChannelLayer


class RedisChannelLayer(_RedisChannelLayer):
    def create_pool(self, index: int) -> Any:
        host = dict(self.hosts[index])
        if "address" not in host:  # sentinel or host/port entries: channels_redis's own pools
            return super().create_pool(index)
        return aioredis.BlockingConnectionPool.from_url(host.pop("address"), **host)
