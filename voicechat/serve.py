"""`python -m voicechat.serve`: the app under Daphne (the default) or Uvicorn, with the flags this project needs.

One place for how a server process starts, used by `make run`, the tests and the benchmark, so that
the two servers are started alike and an option cannot be forgotten on one of them. Both run in this
process (no exec), so its pid is the server's.

Uvicorn (uvloop, httptools, websockets' sans-I/O protocol) is an option for a process that carries many
concurrent voices: it measured less CPU per audio second and far less latency under load than Daphne
on Twisted (README, *Performance*). Its flags keep it behaving like Daphne for the app:

- no proxy headers: the client's address is the socket's; X-Forwarded-For is judged by the app alone
  (TRUSTED_PROXY_COUNT), as under Daphne. Uvicorn's default would trust it from 127.0.0.1, so a client
  on loopback (or behind a proxy there) could pick its own address and walk past per-address limits;
- no access log, and no query string in the WebSocket handshake lines Uvicorn logs at INFO: a URL may
  carry a signed conversation token there;
- no lifespan (Channels' router has no application for it);
- pings every 20 s like Daphne's, the socket dropped if one goes unanswered for 30 s;
- on SIGTERM Uvicorn closes every socket at once (1012) and gives the app up to 10 s (Daphne's
  application close timeout) to finish its consumers before it cancels them.

Daphne gets `--websocket_connect_timeout` from the setting WS_CONNECT_TIMEOUT_SECONDS (20 s by default, its
Server class's own default; its command line's is 5 s): a handshake the app has not answered by then is refused (403),
or dropped by autobahn's opening-handshake timeout, which the same flag sets. Under a burst a saturated
event loop took longer than 5 s to answer some handshakes and those conversations were lost (README,
*Performance*); answered late, they are served. Uvicorn does not bound the app's answer.

On SIGTERM both mark the process as stopping (`chat.shutdown`) before a consumer is stopped, so a reply
cut off is saved `interrupted` with `server_restarted`. Daphne gets its own consumer shutdown (below), and
Twisted's TCP connections flush their writes at the end of the loop step, not through the selector
(`voicechat.direct_write`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import environ

from chat import shutdown

APPLICATION = "voicechat.asgi:application"
SERVERS = ("daphne", "uvicorn")
PING_INTERVAL_SECONDS = 20
PING_TIMEOUT_SECONDS = 30
SHUTDOWN_GRACE_SECONDS = 10


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    dotenv = Path(__file__).resolve().parent.parent / ".env"
    if dotenv.is_file():  # ASGI_SERVER may be there, as every setting may (the real environment wins)
        environ.Env.read_env(dotenv, overwrite=False)
    parser = argparse.ArgumentParser(prog="python -m voicechat.serve", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default=os.environ.get("ASGI_SERVER") or "daphne",
        help="ASGI server (default: $ASGI_SERVER, else daphne)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    arguments = parser.parse_args(argv)
    if arguments.server not in SERVERS:  # an ASGI_SERVER argparse did not check
        parser.error(f"ASGI_SERVER must be one of {', '.join(SERVERS)}, not {arguments.server!r}")
    return arguments


def uvicorn_options(host: str, port: int) -> dict[str, object]:
    """Keyword arguments of `uvicorn.Config` for this app (see the module's docstring for why each)."""
    return {
        "host": host,
        "port": port,
        "lifespan": "off",
        "proxy_headers": False,
        "access_log": False,
        "server_header": False,
        "ws_ping_interval": PING_INTERVAL_SECONDS,
        "ws_ping_timeout": PING_TIMEOUT_SECONDS,
        "timeout_graceful_shutdown": SHUTDOWN_GRACE_SECONDS,
    }


class _NoQueryStrings(logging.Filter):
    """Cuts the query string from Uvicorn's `"WebSocket /path?query" [accepted]` lines (a signed URL's token)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and '"WebSocket %s"' in str(record.msg):
            record.args = tuple(arg.split("?", 1)[0] if isinstance(arg, str) else arg for arg in record.args)
        return True


def _uvicorn(host: str, port: int) -> None:
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            shutdown.begin()  # before Uvicorn closes the sockets, so the turns they cancel know why
            super().handle_exit(sig, frame)

    config = uvicorn.Config(APPLICATION, **uvicorn_options(host, port))  # type: ignore[arg-type]
    logging.getLogger("uvicorn.error").addFilter(_NoQueryStrings())  # after Config set Uvicorn's logging up
    Server(config).run()


def _daphne(host: str, port: int) -> None:
    from daphne.cli import CommandLineInterface
    from daphne.server import Server
    from django.conf import settings
    from twisted.internet import defer

    from voicechat import direct_write

    class StoppingServer(Server):
        def kill_all_applications(self) -> Any:
            """Daphne's own version raises KeyError on a connection entry without an application: the one
            a WebSocket's handshake request leaves for up to a second (until Daphne's checker removes it),
            so on a server in use it mostly stops no consumer at all and their replies are left `streaming`
            for the sweeper. It also stops waiting as soon as one consumer ends cancelled, while others may
            still be saving. This one cancels every consumer and waits for all, up to the shutdown grace."""
            shutdown.begin()  # before the consumers are cancelled, so the turns they stop know why
            running = [
                task
                for details in list(self.connections.values())
                if (task := details.get("application_instance")) is not None and not task.done()
            ]
            for task in running:
                task.cancel()
            logging.getLogger("daphne.server").info("Stopping %i consumers", len(running))
            if not running:
                return None
            return defer.Deferred.fromFuture(
                asyncio.ensure_future(asyncio.wait(running, timeout=SHUTDOWN_GRACE_SECONDS))
            )

    direct_write.install()  # writes flushed at the end of the step, not via the selector (its module says why)
    cli = CommandLineInterface()
    cli.server_class = StoppingServer
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voicechat.settings")  # as voicechat.asgi does, a step early
    timeout = str(settings.WS_CONNECT_TIMEOUT_SECONDS)
    cli.run(["-b", host, "-p", str(port), "--websocket_connect_timeout", timeout, APPLICATION])


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _arguments(argv)
    run = _uvicorn if arguments.server == "uvicorn" else _daphne
    try:
        run(arguments.host, arguments.port)
    except KeyboardInterrupt:  # Ctrl-C: Uvicorn re-raises it once it has stopped; no traceback for that
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
