"""Twisted TCP writes flushed at the end of the loop iteration, without a trip through the selector (Daphne's
transport, installed by `voicechat.serve`).

Twisted's `FileDescriptor.write` queues the bytes and calls `startWriting`, which registers the socket with
the reactor for writability; on the next loop iteration the reactor calls `doWrite`, which sends what is
queued and unregisters the socket. Under the asyncio reactor that is two `epoll_ctl` calls and a ready
callback wrapped in Twisted's log context for every WebSocket frame the app sends: about 7 % of the event
loop's time in the benchmark's arrival burst (README, *Performance*).

Here `startWriting` on a plain TCP connection asks the loop to call `doWrite` once, soon, instead. Every
write made before that (a frame's timing and its audio, text and audio of one step) is still sent in one
`send`, as Twisted's queue did, and nothing but the timing of the flush changes: the bytes, their order and
the bookkeeping are Twisted's own `doWrite`. Whatever it cannot send (a slow reader's full send buffer),
what it reports (a lost connection), a connection that is closing, and a reactor without a running
asyncio loop go to Twisted's registration for writability, so back-pressure and loss detection are as
before.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from twisted.internet import tcp

logger = logging.getLogger(__name__)

_register = tcp.Connection.startWriting  # Twisted's own: reactor.addWriter(self)


def _start_writing(self: Any) -> None:
    if self._flush_soon:
        return
    if self.disconnecting or self._writeDisconnecting:
        _register(self)
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not inside the asyncio reactor's loop
        _register(self)
        return
    self._flush_soon = True
    loop.call_soon(_flush, self)


def _flush(self: Any) -> None:
    self._flush_soon = False
    if not self.connected:
        return  # lost meanwhile: Twisted dropped it and its buffer
    if self.disconnecting or self._writeDisconnecting:
        _register(self)  # closing: the reactor's doWrite sends the rest and then closes, as always
        return
    try:
        lost = self.doWrite()
    except Exception:
        logger.exception("Writing to %r failed", self)
        lost = True
    if lost is not None or self.offset < len(self.dataBuffer) or self._tempDataLen:
        # The kernel took part of it, or the connection failed: the reactor calls doWrite again when the
        # socket is writable and acts on what it returns (a lost connection is reported again, the same).
        _register(self)


def install() -> None:
    """Make every Twisted TCP connection in this process flush its writes this way (idempotent)."""
    tcp.Connection._flush_soon = False  # type: ignore[attr-defined]
    tcp.Connection.startWriting = _start_writing  # type: ignore[method-assign]


def installed() -> bool:
    return tcp.Connection.startWriting is _start_writing
