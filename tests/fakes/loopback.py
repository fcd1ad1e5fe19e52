"""The plumbing shared by the vendor fakes: an aiohttp app on 127.0.0.1, usable in-process or in a thread."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Self

from aiohttp import web


class LoopbackServer:
    """Serves `app()` on a free loopback port: `async with Server() as s:` or `Server.start_in_thread()`."""

    def __init__(self, *, port: int = 0) -> None:
        self.port = port
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def app(self) -> web.Application:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Self:
        # Handler cancellation: a client that hangs up stops its handler at once, like a real server's
        # worker, so "open streams" counts drop as soon as the client side closes.
        self._runner = web.AppRunner(self.app(), handle_signals=False, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @classmethod
    def start_in_thread(cls, **options: Any) -> Self:
        """Run the server on its own event loop in a daemon thread (sync tests, Daphne, browsers)."""
        server = cls(**options)
        started: list[BaseException | None] = []
        ready = threading.Event()

        def serve() -> None:
            loop = server._loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(server.start())
                started.append(None)
            except BaseException as exc:  # handed to the starting thread, never lost here
                started.append(exc)
                return
            finally:
                ready.set()
            loop.run_forever()
            loop.run_until_complete(server.close())
            loop.close()

        server._thread = threading.Thread(target=serve, name=f"{cls.__name__}-server", daemon=True)
        server._thread.start()
        if not ready.wait(10) or started[0] is not None:
            raise RuntimeError(f"{cls.__name__} did not start") from (started[0] if started else None)
        return server

    def stop(self) -> None:
        """Stop a server started with `start_in_thread`."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None


async def wait_or_disconnect(request: web.Request, seconds: float, poll: float = 0.01) -> None:
    """Sleep up to `seconds`, returning early when the client has gone (so stalls end with their client).

    The client is checked every `poll` seconds; a benchmark pacing hundreds of streams raises it to save CPU."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        if request.transport is None or request.transport.is_closing():
            raise ConnectionResetError("client disconnected")
        await asyncio.sleep(min(left, poll))
