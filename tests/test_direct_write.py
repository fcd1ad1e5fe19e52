"""`voicechat.direct_write`: a Twisted TCP connection sends at once when nothing is queued, and otherwise
behaves as Twisted's own (order, buffering of what the kernel refused, TLS and closing untouched)."""

from __future__ import annotations

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


@pytest.fixture(autouse=True)
def installed() -> Iterator[None]:
    original = tcp.Connection.write
    direct_write.install()
    direct_write.install()  # twice is once
    yield
    tcp.Connection.write = original  # type: ignore[method-assign]


@pytest.fixture
def pair() -> Iterator[tuple[tcp.Connection, socket.socket, Reactor]]:
    ours, peer = socket.socketpair()
    reactor = Reactor()
    connection = tcp.Connection(ours, Protocol(), reactor=reactor)  # type: ignore[arg-type]
    connection.connected = True
    peer.settimeout(2)
    yield connection, peer, reactor
    ours.close()
    peer.close()


def _drain(connection: tcp.Connection, peer: socket.socket, reactor: Reactor, expected: int) -> bytes:
    """Read what the peer gets, letting the 'reactor' call doWrite while the connection waits to write."""
    received = bytearray()
    while len(received) < expected:
        if connection in reactor.writers:
            assert connection.doWrite() is None
        received += peer.recv(1 << 20)
    return bytes(received)


Pair = tuple[tcp.Connection, socket.socket, Reactor]


def test_with_nothing_queued_a_write_reaches_the_socket_at_once(pair: Pair) -> None:
    connection, peer, reactor = pair
    assert direct_write.installed()
    connection.write(b"first frame")
    connection.write(b", second")
    assert peer.recv(100) == b"first frame, second"
    assert reactor.registrations == 0  # no trip through the selector
    assert connection.dataBuffer == b"" and not connection._tempDataBuffer


def test_what_the_kernel_refuses_is_queued_and_later_writes_keep_their_order(
    pair: Pair,
) -> None:
    connection, peer, reactor = pair
    connection.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    big = bytes(range(256)) * 4096  # 1 MB: far more than the send buffer takes
    connection.write(big)
    assert connection in reactor.writers  # the rest waits for writability, as Twisted's own write does
    assert connection._tempDataLen > 0
    connection.write(b"after")  # queued behind the rest, not sent ahead of it
    connection.write(b" and more")
    assert _drain(connection, peer, reactor, len(big) + 14) == big + b"after and more"
    assert connection not in reactor.writers
    connection.write(b"idle again")  # the queue is empty: straight to the socket once more
    assert peer.recv(100) == b"idle again"


def test_it_leaves_tls_closing_and_non_bytes_to_twisted(pair: Pair) -> None:
    connection, peer, reactor = pair
    connection.disconnecting = True  # loseConnection() was called: Twisted sends what is queued, then closes
    connection.write(b"late")
    assert connection in reactor.writers and connection._tempDataBuffer == [b"late"]
    connection.disconnecting = False
    with pytest.raises(TypeError):
        connection.write("text")
    assert _drain(connection, peer, reactor, 4) == b"late"

    class TlsLayer(Protocol):
        def __init__(self) -> None:
            self.plaintext: list[bytes] = []

        def write(self, data: bytes) -> None:
            self.plaintext.append(data)

    layer = TlsLayer()
    connection.protocol = layer  # type: ignore[assignment]
    connection.TLS = True  # after startTLS the bytes go through the TLS layer, which writes the ciphertext itself
    connection.write(b"secret")
    assert layer.plaintext == [b"secret"]


def test_a_lost_connection_is_left_for_twisted_to_find(pair: Pair) -> None:
    connection, peer, reactor = pair
    peer.close()
    connection.write(b"into the void")  # EPIPE: no exception here, Twisted's doWrite reports the loss
    assert connection in reactor.writers
    assert connection.doWrite() is not None
