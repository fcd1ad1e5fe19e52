"""Real server processes for end-to-end tests: the app under Daphne (Uvicorn with ASGI_SERVER=uvicorn in the
environment) on a temp database, TTS via the fake.

`daphne_app` is one process on SQLite. `daphne_cluster` is several processes sharing one PostgreSQL
database and one Redis, as an operator runs them; `postgres_admin_url()` and `redis_url()` say whether
those services are there (tests skip otherwise), `redis_server()` starts a throw-away Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def answers(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


@dataclass
class App:
    url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None  # the server, for a test that signals it

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, check=True
        )
        return done.stdout

    def session_cookie(self, username: str, password: str = "a-long-passphrase-1") -> str:
        """Create a user in the app's database and return a logged-in session cookie for it."""
        return self.session_cookies([username], password)[0]

    def session_cookies(self, usernames: list[str], password: str = "a-long-passphrase-1") -> list[str]:
        script = (
            "from django.contrib.auth import get_user_model; from tests.wsclient import session_cookie_for\n"
            f"for name in {usernames!r}:\n"
            f"    print(session_cookie_for(get_user_model().objects.create_user(name, password={password!r})))"
        )
        return self.manage("shell", "-c", script).strip().splitlines()[-len(usernames) :]


@contextmanager
def daphne_app(tmp_path: Path, **overrides: str) -> Iterator[App]:
    """Daphne serving the app on a temp SQLite file (migrated), stopped on exit."""
    port = free_port()
    env = {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "MEDIA_ROOT": str(tmp_path / "media"),
        "REDIS_URL": "",
        "LLM_BACKEND": "demo",
        "DEMO_LLM_TOKENS_PER_SECOND": "100",
        **overrides,
    }
    app = App(url=f"http://127.0.0.1:{port}", env=env)
    app.manage("migrate", "--noinput", "-v0")
    server = app.process = _start_server(env, port, tmp_path / "daphne.log")
    try:
        yield app
    finally:
        _stop(server)


def _start_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """The app's server on `port` (Daphne; Uvicorn when env has ASGI_SERVER=uvicorn), its output in `log`
    (read it when a test fails); returns once it listens."""
    with log.open("ab") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "voicechat.serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port)
    except TimeoutError:
        _stop(server)
        raise
    return server


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        _stop(process)


# --- PostgreSQL + Redis ---------------------------------------------------------------------------
def postgres_admin_url() -> str | None:
    """DATABASE_URL when it names a PostgreSQL server that answers (CI's second pass), else None."""
    url = os.environ.get("DATABASE_URL", "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql") or not answers(parts.hostname or "", parts.port or 5432):
        return None
    return url


def redis_url() -> str | None:
    """REDIS_URL when it names a Redis that answers, else None."""
    url = os.environ.get("REDIS_URL", "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not answers(parts.hostname or "", parts.port or 6379):
        return None
    return url


@contextmanager
def redis_server(*, idle_timeout: int = 0) -> Iterator[str]:
    """A throw-away redis-server on a free port, no persistence; yields its URL.

    `idle_timeout` is Redis' own `timeout`: it closes a client connection idle that many seconds,
    as managed Redis services and proxies in front of Redis do.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen([*args, "--timeout", str(idle_timeout)], stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass(frozen=True)
class S3:
    """An S3-compatible server on loopback with one empty bucket; `env` are the app's variables for it."""

    endpoint: str
    bucket: str
    region: str = "us-east-1"
    access_key: str = "test-access-key"
    secret_key: str = "test-secret-key"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AUDIO_STORAGE": "s3",
            "S3_BUCKET": self.bucket,
            "S3_ENDPOINT_URL": self.endpoint,
            "S3_REGION": self.region,
            "S3_ACCESS_KEY_ID": self.access_key,
            "S3_SECRET_ACCESS_KEY": self.secret_key,
            "S3_ADDRESSING_STYLE": "path",
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def object_keys(self) -> list[str]:
        listing = self.client().list_objects_v2(Bucket=self.bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))


@contextmanager
def s3_server() -> Iterator[S3]:
    """moto's S3 server in its own process on a free loopback port, with a fresh bucket."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        s3 = S3(endpoint=f"http://127.0.0.1:{port}", bucket=f"voicechat-{secrets.token_hex(4)}")
        s3.client().create_bucket(Bucket=s3.bucket)
        yield s3
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A new, empty database on the server of `admin_url`, dropped on exit; yields its URL."""
    import psycopg

    name = f"vc_test_{secrets.token_hex(4)}"
    parts = urlsplit(admin_url)
    maintenance = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _delete_redis_keys(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@dataclass
class Cluster:
    """Daphne processes on one PostgreSQL database and one Redis: `apps[i]` is process i."""

    apps: list[App]
    env: dict[str, str]
    logs: list[Path]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def manage(self, *args: str) -> str:
        return self.apps[0].manage(*args)

    def query(self, script: str) -> Any:
        """Run `script` in a Django shell on the cluster's database; it prints one JSON value, returned here."""
        return json.loads(self.manage("shell", "-c", script).strip().splitlines()[-1])

    def kill(self, index: int) -> None:
        """SIGKILL process `index`: no shutdown code runs, as in a crash or an OOM kill."""
        process = self.processes[index]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def start(self, index: int) -> None:
        """(Re)start process `index` on its port."""
        port = urlsplit(self.apps[index].url).port
        assert port is not None
        self.processes[index] = _start_server(self.env, port, self.logs[index])

    def log(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')}" for path in self.logs)


@contextmanager
def daphne_cluster(
    tmp_path: Path, *, processes: int = 2, admin_url: str, redis: str, **overrides: str
) -> Iterator[Cluster]:
    """`processes` Daphne processes on a fresh PostgreSQL database (migrated) and Redis, stopped on exit.

    A random channel layer prefix keeps this cluster's groups and messages apart from anything else
    on that Redis; its keys are deleted afterwards.
    """
    prefix = f"vc-test-{secrets.token_hex(4)}"
    with ExitStack() as stack:
        database_url = stack.enter_context(postgres_database(admin_url))
        stack.callback(_delete_redis_keys, redis, prefix)
        env = {
            **os.environ,
            "DEBUG": "true",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis,
            "CHANNEL_LAYER_PREFIX": prefix,
            "MEDIA_ROOT": str(tmp_path / "media"),
            "LLM_BACKEND": "demo",
            "DEMO_LLM_TOKENS_PER_SECOND": "100",
            **overrides,
        }
        ports = [free_port() for _ in range(processes)]
        cluster = Cluster(
            apps=[App(url=f"http://127.0.0.1:{port}", env=env) for port in ports],
            env=env,
            logs=[tmp_path / f"daphne-{i}.log" for i in range(processes)],
            processes=[],
        )
        cluster.manage("migrate", "--noinput", "-v0")
        stack.callback(_stop_all, cluster.processes)
        for i, port in enumerate(ports):
            cluster.processes.append(_start_server(env, port, cluster.logs[i]))
        yield cluster


# --- a browser-like WebSocket client ---------------------------------------------------------------
@dataclass
class Socket:
    """One protocol v1 WebSocket, read continuously (as a page does): answers pings, keeps every frame."""

    ws: aiohttp.ClientWebSocketResponse
    frames: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    seen: list[dict[str, Any]] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None
    reader: asyncio.Task[None] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # the conversation_initiation_metadata payload

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                frame = json.loads(message.data)
                self.seen.append(frame)
                if frame["type"] == "ping":
                    await self.ws.send_json({"type": "pong", "event_id": frame["ping_event"]["event_id"]})
                await self.frames.put(frame)
        self.close_code = self.ws.close_code
        self.closed.set()

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_json(message)

    async def next(self, *types: str, timeout: float = 20) -> dict[str, Any]:
        """The next frame of one of `types` (any type when none is given); other frames are skipped."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.frames.get()
                if not types or frame["type"] in types:
                    return frame

    async def turn(self, text: str, timeout: float = 60) -> list[dict[str, Any]]:
        """Send a user message; the frames up to its `agent_response_complete`."""
        await self.send({"type": "user_message", "text": text})
        frames = []
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.frames.get()
                frames.append(frame)
                if frame["type"] == "agent_response_complete":
                    return frames


@asynccontextmanager
async def open_socket(http: aiohttp.ClientSession, base: str, cookie: str, *, query: str = "") -> AsyncIterator[Socket]:
    """A socket on `base` with the session `cookie`, past its `conversation_initiation_metadata`."""
    url = f"{base.replace('http', 'ws', 1)}/v1/convai/conversation" + (f"?{query}" if query else "")
    ws = await http.ws_connect(url, headers={"Cookie": cookie, "Origin": base}, heartbeat=None)
    sock = Socket(ws)
    sock.reader = asyncio.create_task(sock._read())
    try:
        first = await sock.next("conversation_initiation_metadata", timeout=20)
        sock.metadata = first["conversation_initiation_metadata_event"]
        yield sock
    finally:
        await ws.close()
        sock.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sock.reader
