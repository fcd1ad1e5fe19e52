"""Twisted TCP writes that go to the socket at once when nothing is queued (Daphne's transport, installed by
`voicechat.serve`).

Twisted's `FileDescriptor.write` never writes: it queues the bytes and registers the socket with the
reactor for writability, and on the next loop iteration `doWrite` sends them and unregisters it. Under
the asyncio reactor that is two `epoll_ctl` calls, a ready callback wrapped in Twisted's log context and
the buffer's bookkeeping for every WebSocket frame the app sends: a fifth of the event loop's time in
the benchmark's arrival burst went to that path (README, *Performance*). asyncio's own transports and
Uvicorn try `send()` first and queue only what the kernel did not take; this does the same for Twisted's
plain TCP connections.

It sends at once only when Twisted has nothing queued for the socket, so bytes keep their order; whatever
the kernel does not take (a slow reader's full send buffer), and every case it does not handle
(TLS, a connection closing, an error from `send`), goes to Twisted's own write, with its buffering,
producer back-pressure and loss detection unchanged.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp

_original_write = tcp.Connection.write


def _write(self: Any, data: bytes) -> None:
    if (
        type(data) is bytes
        and data
        and not self.TLS
        and self.connected
        and not self.disconnecting
        and not self._writeDisconnecting
        and not self._writeDisconnected
        and not self._tempDataLen
        and self.offset == len(self.dataBuffer)
    ):
        try:
            sent = self.socket.send(data)
        except OSError:  # would block, interrupted, or lost: Twisted's write queues and finds out which
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    _original_write(self, data)


def install() -> None:
    """Make every Twisted TCP connection in this process write at once when it can (idempotent)."""
    tcp.Connection.write = _write  # type: ignore[method-assign]


def installed() -> bool:
    return tcp.Connection.write is _write
