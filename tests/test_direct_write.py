"""`voicechat.direct_write`: a Twisted TCP connection's writes go out at the end of the loop iteration, in one
`send`, without registering the socket with the selector; whatever that cannot do is left to Twisted."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from twisted.internet import tcp
from twisted.internet.protocol import Protocol

from voicechat import direct_write


class Reactor:
    """What a FileDescriptor asks of its reactor, recorded: which descriptors wait to be writable."""

    def __init__(self) -> None:
        self.writers: set[object] = set()
        self.registrations = 0

    def addWriter(self, writer: object) -> None:
        self.writers.add(writer)
        self.registrations += 1

    def removeWriter(self, writer: object) -> None:
        self.writers.discard(writer)

    def addReader(self, reader: object) -> None:
        pass

    def removeReader(self, reader: object) -> None:
        pass


class CountingSocket:
    """The connection's socket, with its `send` calls counted."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sends = 0

    def send(self, data: bytes) -> int:
        self.sends += 1
        return self.sock.send(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.sock, name)


@pytest.fixture(autouse=True)
def installed() -> Iterator[None]:
    original = tcp.Connection.startWriting
    direct_write.install()
    direct_write.install()  # twice is once
    yield
    tcp.Connection.startWriting = original  # type: ignore[method-assign]


Pair = tuple[tcp.Connection, socket.socket, Reactor, CountingSocket]


@pytest.fixture
def pair() -> Iterator[Pair]:
    ours, peer = socket.socketpair()
    reactor = Reactor()
    connection = tcp.Connection(ours, Protocol(), reactor=reactor)  # type: ignore[arg-type]
    counting = CountingSocket(ours)
    connection.socket = counting  # type: ignore[assignment]
    connection.connected = True
    peer.settimeout(2)
    yield connection, peer, reactor, counting
    ours.close()
    peer.close()


def _drain(connection: tcp.Connection, peer: socket.socket, reactor: Reactor, expected: int) -> bytes:
    """Read what the peer gets, calling doWrite as the reactor would while the connection waits to write."""
    received = bytearray()
    while len(received) < expected:
        if connection in reactor.writers:
            assert connection.doWrite() is None
        received += peer.recv(1 << 20)
    return bytes(received)


async def test_the_writes_of_one_step_go_out_together_with_no_trip_through_the_selector(pair: Pair) -> None:
    connection, peer, reactor, counting = pair
    assert direct_write.installed()
    connection.write(b"timing frame")
    connection.write(b", audio frame")
    connection.writeSequence([b", ", b"text frame"])
    assert counting.sends == 0  # nothing yet: the step that wrote is still running
    await asyncio.sleep(0)
    assert peer.recv(100) == b"timing frame, audio frame, text frame"
    assert counting.sends == 1
    assert reactor.registrations == 0
    connection.write(b"next step")
    await asyncio.sleep(0)
    assert peer.recv(100) == b"next step"
    assert (counting.sends, reactor.registrations) == (2, 0)


async def test_what_the_kernel_refuses_waits_for_writability_and_later_writes_keep_their_order(pair: Pair) -> None:
    connection, peer, reactor, _ = pair
    connection.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    big = bytes(range(256)) * 4096  # 1 MB: far more than the send buffer takes
    connection.write(big)
    await asyncio.sleep(0)
    assert connection in reactor.writers  # the rest waits for the reactor, as with Twisted's own write
    connection.write(b"after")
    connection.write(b" and more")
    await asyncio.sleep(0)
    assert _drain(connection, peer, reactor, len(big) + 14) == big + b"after and more"
    assert connection not in reactor.writers
    registrations = reactor.registrations
    connection.write(b"idle again")  # drained: back to the flush at the end of the step
    await asyncio.sleep(0)
    assert peer.recv(100) == b"idle again"
    assert reactor.registrations == registrations


async def test_a_closing_connection_is_left_to_twisted(pair: Pair) -> None:
    connection, peer, reactor, counting = pair
    connection.write(b"last words")
    connection.loseConnection()  # before the flush: the reactor sends them, then closes
    await asyncio.sleep(0)
    assert connection in reactor.writers and counting.sends == 0
    assert connection.doWrite() is not None  # sent, and done: the reactor would now close the socket
    assert peer.recv(100) == b"last words"


async def test_a_lost_connection_is_left_for_twisted_to_report(pair: Pair) -> None:
    connection, peer, reactor, _ = pair
    peer.close()
    connection.write(b"into the void")  # EPIPE at the flush: no exception, the reactor's doWrite reports it
    await asyncio.sleep(0)
    assert connection in reactor.writers
    assert connection.doWrite() is not None


async def test_a_connection_lost_before_the_flush_sends_nothing(pair: Pair) -> None:
    connection, _, reactor, counting = pair
    connection.write(b"too late")
    connection.connected = False  # what connectionLost leaves
    await asyncio.sleep(0)
    assert counting.sends == 0 and not reactor.writers


def test_outside_a_running_loop_it_is_twisteds_own_write(pair: Pair) -> None:
    connection, peer, reactor, _ = pair
    connection.write(b"sync")
    assert connection in reactor.writers
    assert _drain(connection, peer, reactor, 4) == b"sync"
