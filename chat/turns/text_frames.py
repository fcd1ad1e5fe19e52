"""A reply's text deltas as frames: the first at once, then what arrived meanwhile, joined, at most every
`TEXT_FRAME_SECONDS`.

An LLM writes a token every 10–30 ms, and a frame per token (JSON, the consumer, Daphne, a socket write)
was a tenth of the event loop's time while a hundred conversations started at once. Ten frames a second
still read as live text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

TEXT_FRAME_SECONDS = 0.1


class TextFrames:
    """Paces `send(text)` calls for one reply; `close()` sends what is left, after every earlier frame."""

    def __init__(self, send: Callable[[str], Awaitable[object]], interval: float = TEXT_FRAME_SECONDS) -> None:
        self._send = send
        self._interval = interval
        self._pending: list[str] = []
        self._ready = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    async def add(self, text: str) -> None:
        if self._closed:
            raise RuntimeError("TextFrames.add after close")
        if self._writer is None:  # the reply's first text is shown at once; the writer starts by waiting
            self._writer = asyncio.create_task(self._write(), name="text-frames")
            await self._send(text)
            return
        self._pending.append(text)
        self._ready.set()

    async def _write(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._ready.wait()
            self._ready.clear()
            await self._send(self._take())

    def _take(self) -> str:
        text = "".join(self._pending)
        self._pending.clear()
        return text

    async def close(self) -> None:
        """Stop the writer and send the text it had not sent yet (nothing when there is none).

        The writer is stopped, not waited for, so closing adds no suspension to the turn's end (a second
        Stop landing there would skip recording the turn). It cannot be caught holding text: it takes the
        pending text and hands it to the transport before its send can suspend, so this last frame always
        follows the frames it sent."""
        self.discard()
        if self._pending:
            await self._send(self._take())

    def discard(self) -> None:
        """Stop the writer without sending more (the turn failed and sends no closing frames)."""
        self._closed = True
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
