"""Whether this process is stopping (SIGTERM or SIGINT to its server), for what a turn records as its end.

`voicechat.serve` marks it when either server begins a graceful stop: Uvicorn's signal handler, and a
Twisted shutdown trigger that runs before Daphne cancels its consumers. A reply cut off after that is
saved `interrupted` with `server_restarted` (the reason the sweeper gives a reply whose process died),
so a transcript says why it ends early; a socket still open is closed with 1012 (service restart),
which tells a client to reconnect. Nothing here imports Django: the launcher marks it before setup.
"""

from __future__ import annotations

import threading

SERVER_RESTARTED = "server_restarted"
SERVER_RESTARTED_MESSAGE = "The server restarted during this reply; what was written is kept. Ask again for the rest."

_stopping = threading.Event()


def begin() -> None:
    """The server has begun to stop (idempotent)."""
    _stopping.set()


def stopping() -> bool:
    return _stopping.is_set()
