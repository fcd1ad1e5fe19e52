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
  application close timeout) to finish its consumers — a reply cut off is saved `interrupted` — before
  it cancels them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import environ

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

    config = uvicorn.Config(APPLICATION, **uvicorn_options(host, port))  # type: ignore[arg-type]
    logging.getLogger("uvicorn.error").addFilter(_NoQueryStrings())  # after Config set Uvicorn's logging up
    uvicorn.Server(config).run()


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _arguments(argv)
    if arguments.server == "uvicorn":
        _uvicorn(arguments.host, arguments.port)
        return 0
    from daphne.cli import CommandLineInterface

    CommandLineInterface().run(["-b", arguments.host, "-p", str(arguments.port), APPLICATION])
    return 0


if __name__ == "__main__":
    sys.exit(main())
