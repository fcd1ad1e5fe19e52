"""The benchmark's processes: start and stop them on loopback, and read their CPU and memory from /proc."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from tests import servers

CLOCK_TICK = os.sysconf("SC_CLK_TCK")


# --- figures from /proc -------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, over all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / CLOCK_TICK, sum(values) / CLOCK_TICK


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class RssSampler(threading.Thread):
    """Samples the summed RSS of the server processes every `interval` seconds; keeps the peak and the series."""

    def __init__(self, pids: list[int], interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pids, self.interval = pids, interval
        self.peak, self.samples = 0, list[tuple[float, int]]()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            rss = sum(rss_kb(pid) for pid in self.pids)
            self.peak = max(self.peak, rss)
            self.samples.append((time.monotonic(), rss))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


# --- processes ----------------------------------------------------------------------------------
# The fakes a run can speak to: ElevenLabs' HTTP TTS, the same plus its TTS WebSocket, or ElevenLabs Agents.
VENDOR_MODULES = {
    "http": "tests.fakes.elevenlabs",
    "ws": "tests.fakes.elevenlabs_ws",
    "agent": "tests.fakes.elevenlabs_agent",
}


@contextmanager
def fake_vendor(first_byte_ms: float, kind: str = "http") -> Iterator[tuple[str, int]]:
    """A fake ElevenLabs in its own process, audio paced at real time; yields (url, pid)."""
    args = [sys.executable, "-m", VENDOR_MODULES[kind], "--port", "0"]
    if kind == "agent":  # the agent's LLM takes first_byte_ms, then 50 ms of audio per event, paced
        args += ["--first-response-ms", str(first_byte_ms), "--chunk-gap-ms", "50"]
    else:
        # One wake-up per 50 ms chunk instead of five: the vendor's own CPU is taken from the server's cores.
        args += ["--first-byte-ms", str(first_byte_ms), "--realtime"]
        args += ["--pace-poll-ms", "50"] if kind == "http" else []
    process = subprocess.Popen(args, cwd=servers.ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip(), process.pid
    finally:
        process.terminate()
        process.wait(10)


def fake_requests(vendor_url: str) -> dict[str, dict[str, Any]]:
    """Every request the fake has answered since its last reset, by request id (none from the agents fake)."""
    try:
        with urllib.request.urlopen(vendor_url + "/_fake/requests") as response:
            return {r["request_id"]: r for r in json.load(response)}
    except urllib.error.HTTPError:
        return {}


def fake_reset(vendor_url: str) -> None:
    """Forget recorded requests (between levels, so each level's records stay small)."""
    with contextlib.suppress(urllib.error.HTTPError):  # the agents fake keeps no per-request records
        urllib.request.urlopen(urllib.request.Request(vendor_url + "/_fake/reset", method="POST")).close()


@contextmanager
def redis_server() -> Iterator[str]:
    """A throw-away redis-server on a free port (no persistence); yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("--processes > 1 needs Redis: set REDIS_URL or install redis-server.")
    port = servers.free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        servers.wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def server_command(server: str, port: int) -> list[str]:
    """The app's own launcher (`voicechat.serve`): Daphne, the default, or Uvicorn, with the project's flags."""
    return [sys.executable, "-m", "voicechat.serve", "--server", server, "--host", "127.0.0.1", "--port", str(port)]


@contextmanager
def app_server(env: dict[str, str], server: str = "daphne", log: Path | None = None) -> Iterator[tuple[str, int]]:
    """One server process serving the app; yields (url, pid). Its output goes to `log` (appended), else nowhere."""
    port = servers.free_port()
    with ExitStack() as stack:
        out = stack.enter_context(log.open("ab")) if log else subprocess.DEVNULL
        process = subprocess.Popen(
            server_command(server, port), cwd=servers.ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            servers.wait_for_port(port)
            yield f"http://127.0.0.1:{port}", process.pid
        finally:
            process.terminate()
            process.wait(10)


@contextmanager
def app_servers(
    env: dict[str, str], processes: int, server: str, logs: Path | None = None, name: str = "server"
) -> Iterator[tuple[list[str], list[int]]]:
    """`processes` server processes; more than one share a Redis channel layer (REDIS_URL or a fresh one).

    With `logs` (a directory), process i writes to `logs/{name}-{i}.log`.
    """
    if logs:
        logs.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        if processes > 1 and not env.get("REDIS_URL"):
            env = {**env, "REDIS_URL": stack.enter_context(redis_server())}
        started = [
            stack.enter_context(app_server(env, server, logs / f"{name}-{i}.log" if logs else None))
            for i in range(processes)
        ]
        yield [url for url, _ in started], [pid for _, pid in started]


@contextmanager
def bench_database(workdir: Path, *, postgres: bool) -> Iterator[str]:
    """A fresh database for one run: SQLite in the work directory, or a throw-away PostgreSQL database."""
    if not postgres:
        yield f"sqlite:///{workdir / 'db.sqlite3'}"
        return
    import psycopg

    server = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
    name = f"voicechat_bench_{os.getpid()}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def clients_in_background(spec: dict[str, Any]) -> Iterator[None]:
    """The load generator running beside the measured one; stopped (its results dropped) on exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.client"],
        cwd=servers.ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdin is not None
    process.stdin.write(json.dumps(spec) + "\n")
    process.stdin.flush()
    try:
        yield
    finally:
        process.terminate()
        process.wait(30)


def run_clients(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the load generator in its own process; returns {"turns": [...], "cpu_s": ...}."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.client"],
        cwd=servers.ROOT,
        input=json.dumps(spec) + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(done.stdout))


def idle_rss_per_connection(urls: list[str], pids: list[int], cookies: list[str]) -> float:
    """RSS the server adds per open, idle WebSocket (KB)."""
    before = sum(rss_kb(pid) for pid in pids)
    client = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.client"],
        cwd=servers.ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdin is not None and client.stdout is not None
    client.stdin.write(json.dumps({"urls": urls, "idle": True, "cookies": cookies}) + "\n")
    client.stdin.flush()
    client.stdout.readline()
    time.sleep(1)
    after = sum(rss_kb(pid) for pid in pids)
    client.stdin.close()
    client.wait(30)
    return (after - before) / len(cookies)
