"""`make bench`: time from Send to first sound, relay lag and starvation, at rising concurrency, on loopback.

Starts a fake ElevenLabs (first byte after 150 ms, audio paced at real time, PCM 24 kHz), the app under
Daphne (one process, or `--processes N` behind Redis; `--server uvicorn` for the Uvicorn option) with the demo LLM
(30 tokens/s) and a separate client process per level; then does the same turn with
SPEECH_MODE=whole_reply (one TTS request after the whole reply, what peers do) for the baseline.
`--soak 600` adds a 10-minute run at 50 streams and reports the server's RSS slope. Prints Markdown
tables and writes JSON to bench-results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests import servers
from tests.bench import procs
from tests.bench.figures import (
    MESSAGE,
    Turn,
    ideal_llm_seconds,
    least_squares_slope,
    relay_lags,
    summarize,
    ttfa_breakdown,
    upstream_timeline,
)
from tests.bench.report import goals, table
from voicechat import serve


@dataclass
class Bench:
    """What every level needs: the servers, the fake vendor, the logged-in users and the ideal figures."""

    urls: list[str]
    pids: list[int]
    vendor_url: str
    vendor_pid: int
    cookies: list[str]
    ideal_llm: float
    first_byte: float
    arrival_rate: float
    token_s: float  # the demo LLM's time per token
    binary: bool = False  # clients ask for binary audio frames, as the browser page does

    @property
    def ideal(self) -> float:
        return self.ideal_llm + self.first_byte


# --- the setup ------------------------------------------------------------------------------------
def setup_django(workdir: Path, database_url: str) -> None:
    """Django in this process, on the benchmark's own database: users and sessions are made here."""
    os.environ.update(
        DEBUG="true",
        SECRET_KEY=secrets.token_urlsafe(50),
        DATABASE_URL=database_url,
        MEDIA_ROOT=str(workdir / "media"),
        REDIS_URL=os.environ.get("BENCH_REDIS_URL", ""),
        DJANGO_SETTINGS_MODULE="voicechat.settings",
    )
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def use_agent_backend() -> None:
    """Make the default agent one built on ElevenLabs (the agents fake's first agent)."""
    from chat.models import Agent
    from tests.fakes.elevenlabs_agent import AGENTS

    Agent.objects.filter(is_default=True).update(backend="elevenlabs_agent", elevenlabs_agent_id=AGENTS[0].agent_id)


def make_cookies(count: int, prefix: str) -> list[str]:
    """Users with logged-in sessions, created straight in the database (no password hashing per user)."""
    from django.contrib.auth import get_user_model

    from tests.wsclient import session_cookie_for

    user_model = get_user_model()
    users = [user_model(username=f"{prefix}{n}") for n in range(count)]
    for user in users:
        user.set_unusable_password()
    user_model.objects.bulk_create(users)
    return [session_cookie_for(u) for u in user_model.objects.filter(username__startswith=prefix).order_by("id")]


def server_env(vendor_url: str, tokens_per_second: float) -> dict[str, str]:
    return {
        **os.environ,
        "LLM_BACKEND": "demo",
        "DEMO_LLM_TOKENS_PER_SECOND": str(tokens_per_second),
        "TTS_BACKEND": "elevenlabs",
        "ELEVENLABS_API_KEY": "test-elevenlabs-key",
        "ELEVENLABS_BASE_URL": vendor_url,
        "ELEVENLABS_OUTPUT_FORMAT": "pcm_24000",
        "ELEVENLABS_MAX_CONCURRENCY": "100000",  # the fake has no plan limit
        "LOG_LEVEL": "WARNING",
        # Measure a production configuration: DEBUG keeps every SQL query and slows each one down.
        "DEBUG": "false",
        "SECRET_KEY": os.environ["SECRET_KEY"],  # the key the harness signed the sessions with
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "SECURE_HSTS_SECONDS": "0",
        # The load is the point: no speech budget, socket cap or frame limit may refuse it.
        "SPEECH_DAILY_CHARS": "0",
        "SPEECH_MONTHLY_CHARS": "0",
        "SPEECH_SITE_DAILY_CHARS": "0",
        "MAX_SOCKETS_PER_USER": "1000",
        "DATABASE_URL": os.environ["DATABASE_URL"],
    }


# --- one level ------------------------------------------------------------------------------------
def attach_upstream(bench: Bench, turns: list[Turn], *, lags: bool = True) -> None:
    """Give each turn its relay lags and TTFA breakdown, from the fake's records of the turn's requests."""
    from chat.models import Message

    requests = procs.fake_requests(bench.vendor_url)
    ids = [t["message_id"] for t in turns if t["message_id"]]
    request_ids = {
        str(pk): list(r) for pk, r in Message.objects.filter(pk__in=ids).values_list("pk", "tts_request_ids")
    }
    for turn in turns:
        turn["request_ids"] = request_ids.get(str(turn["message_id"]), [])
        if lags and all(r in requests for r in turn["request_ids"]):
            turn["lags"] = relay_lags(turn, upstream_timeline(turn["request_ids"], requests))
        if turn["audio"]:
            turn["breakdown"] = ttfa_breakdown(turn, requests, bench.ideal_llm, bench.first_byte, bench.token_s)


def run_level(bench: Bench, clients: int, duration: float = 0.0, *, rss_interval: float = 0.1) -> dict[str, Any]:
    """`clients` conversations, arriving at `arrival_rate` per second, each taking turns for `duration` s."""
    procs.fake_reset(bench.vendor_url)
    rss_before = sum(procs.rss_kb(pid) for pid in bench.pids)
    sampler = procs.RssSampler(bench.pids, rss_interval)
    sampler.start()
    started = time.monotonic()
    server_cpu = sum(procs.cpu_seconds(pid) for pid in bench.pids)
    vendor_cpu = procs.cpu_seconds(bench.vendor_pid)
    busy, total = procs.machine_busy_seconds()
    # Turns start uniformly at random over `stagger` s; each lasts ~25 s of speech, so all still overlap.
    stagger = max(1.0, clients / bench.arrival_rate)
    spec: dict[str, Any] = {"urls": bench.urls, "message": MESSAGE, "cookies": bench.cookies[:clients]}
    spec["binary"] = bench.binary
    spec |= {"stagger": stagger} | ({"until": started + stagger + duration} if duration else {})
    out = procs.run_clients(spec)
    wall = time.monotonic() - started
    server_cpu = sum(procs.cpu_seconds(pid) for pid in bench.pids) - server_cpu
    vendor_cpu = procs.cpu_seconds(bench.vendor_pid) - vendor_cpu
    busy_after, total_after = procs.machine_busy_seconds()
    sampler.stop()
    turns = out["turns"]
    attach_upstream(bench, turns)
    row = summarize(clients, turns, bench.ideal)
    audio = row["audio_seconds"]
    return row | {
        "wall_s": round(wall, 1),
        "cpu_s_per_audio_s": round(server_cpu / audio, 4) if audio else None,
        "server_cores": round(server_cpu / wall, 2),
        "vendor_cores": round(vendor_cpu / wall, 2),
        "client_cores": round(out["cpu_s"] / wall, 2),
        "machine_busy_pct": round(100 * (busy_after - busy) / (total_after - total), 1),
        "server_rss_before_mb": round(rss_before / 1024, 1),
        "server_peak_rss_mb": round(sampler.peak / 1024, 1),
        "rss_per_streaming_connection_kb": round((sampler.peak - rss_before) / clients, 1),
        "rss_samples": sampler.samples if rss_interval >= 1 else [],
    }


def run_fairness(bench: Bench, sockets: int, others: int) -> dict[str, Any]:
    """Others' time to first audio while one user takes turns on `sockets` sockets, against the quiet case.

    The heavy user's sockets keep sending (each new message replaces that user's running turn: one turn
    per user); the others arrive meanwhile and take one turn each.
    """
    quiet = run_level(bench, others)
    heavy_cookie, other_cookies = bench.cookies[-1], bench.cookies[:others]
    procs.fake_reset(bench.vendor_url)
    spec: dict[str, Any] = {"urls": bench.urls, "message": MESSAGE, "binary": bench.binary}
    heavy = {**spec, "cookies": [heavy_cookie] * sockets, "stagger": 0.5, "until": time.monotonic() + 40}
    with procs.clients_in_background(heavy):
        time.sleep(3)  # the heavy user is streaming before the others arrive
        busy = procs.run_clients({**spec, "cookies": other_cookies, "stagger": max(1.0, others / bench.arrival_rate)})
    loaded = summarize(others, busy["turns"], bench.ideal)
    ratio = loaded["ttfa_ms"]["50"] / quiet["ttfa_ms"]["50"] if quiet["ttfa_ms"]["50"] else None
    return {
        "sockets": sockets,
        "others": others,
        "quiet_ttfa_ms": quiet["ttfa_ms"],
        "loaded_ttfa_ms": loaded["ttfa_ms"],
        "ttfa_p50_ratio": round(ratio, 2) if ratio else None,
        "loaded_errors": loaded["errors"],
        "loaded_incomplete": loaded["incomplete"],
    }


def run_soak(bench: Bench, seconds: float, clients: int) -> dict[str, Any]:
    """`clients` conversations taking turns back to back for `seconds`; the server's RSS slope in KB/min."""
    row = run_level(bench, clients, seconds, rss_interval=5.0)
    samples = row.pop("rss_samples")
    start = samples[0][0]
    steady = [(t - start, kb) for t, kb in samples if t - start >= 60]  # the first minute fills pools and caches
    row["rss_slope_kb_per_min"] = round(60 * least_squares_slope(steady), 1)
    row["rss_slope_whole_kb_per_min"] = round(60 * least_squares_slope([(t - start, kb) for t, kb in samples]), 1)
    row["rss_first_last_mb"] = [round(steady[0][1] / 1024, 1), round(steady[-1][1] / 1024, 1)] if steady else []
    row["rss_series_kb"] = [[round(t - start), kb] for t, kb in samples]
    return row


# --- the run --------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--ladder", default="1,10,50,100,200,400", help="concurrent conversations per level")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds each client keeps taking turns (0: one)")
    parser.add_argument("--soak", type=float, default=0.0, help="seconds of the memory soak (0: none; try 600)")
    parser.add_argument("--soak-clients", type=int, default=50)
    parser.add_argument("--processes", type=int, default=1, help="server processes (more than one: Redis layer)")
    parser.add_argument("--server", choices=serve.SERVERS, default="daphne", help="the ASGI server (voicechat.serve)")
    parser.add_argument(
        "--server-logs", type=Path, default=None, metavar="DIR", help="keep each server process's output in DIR"
    )
    parser.add_argument("--first-byte-ms", type=float, default=150.0)
    parser.add_argument("--tokens-per-second", type=float, default=30.0)
    parser.add_argument("--baseline-clients", type=int, default=1)
    parser.add_argument("--arrival-rate", type=float, default=20.0, help="new conversations per second in a level")
    parser.add_argument("--binary", action="store_true", help="binary audio frames (our page) instead of JSON")
    parser.add_argument(
        "--database",
        choices=("auto", "sqlite", "postgres"),
        default="auto",
        help="auto: SQLite for one process, PostgreSQL (127.0.0.1:5432, a throw-away database) for more",
    )
    parser.add_argument(
        "--server-env", action="append", default=[], metavar="NAME=VALUE", help="extra server setting (repeatable)"
    )
    parser.add_argument(
        "--fairness",
        default="",
        metavar="SOCKETS,OTHERS",
        help="also run one user on SOCKETS sockets taking turns while OTHERS users take one turn each",
    )
    parser.add_argument("--skip-ladder", action="store_true", help="only the extra scenarios and the baseline")
    parser.add_argument(
        "--vendor",
        choices=("http", "ws", "agent"),
        default="http",
        help="http: TTS /stream(/with-timestamps); ws: the TTS WebSocket transport; agent: an ElevenLabs agent backend",
    )
    return parser.parse_args()


def progress(name: str, row: dict[str, Any]) -> None:
    shown = {k: v for k, v in row.items() if k not in ("rss_series_kb", "rss_samples")}
    print(f"{name}: {json.dumps(shown)}", file=sys.stderr, flush=True)


def run_all(args: argparse.Namespace, workdir: Path, database_url: str) -> dict[str, Any]:
    ladder = [] if args.skip_ladder else [int(n) for n in args.ladder.split(",") if n.strip()]
    setup_django(workdir, database_url)
    cookies = make_cookies(max([*ladder, args.soak_clients, args.baseline_clients, 100]), "bench")
    report: dict[str, Any] = {"levels": [], "soak": None}
    ideal_llm, token_s = ideal_llm_seconds(args.tokens_per_second), 1 / args.tokens_per_second
    if args.vendor == "agent":
        use_agent_backend()
        ideal_llm = 0.0  # the agent's own LLM time is the fake's first-response delay, counted as "first byte"
    with procs.fake_vendor(args.first_byte_ms, args.vendor) as (vendor_url, vendor_pid):
        env = server_env(vendor_url, args.tokens_per_second) | dict(kv.split("=", 1) for kv in args.server_env)
        if args.vendor == "ws":
            env |= {"TTS_BACKEND": "elevenlabs_ws"}

        def bench_for(urls: list[str], pids: list[int]) -> Bench:
            first_byte = args.first_byte_ms / 1000
            return Bench(urls, pids, vendor_url, vendor_pid, cookies, ideal_llm, first_byte, 20.0, token_s, args.binary)

        with procs.app_servers(env, args.processes, args.server, args.server_logs, "server") as (urls, pids):
            bench = bench_for(urls, pids)
            run_level(bench, 1)  # warm-up: imports, pools, first queries
            idle_cookies = cookies[: max([*ladder, 100])]
            report["idle_rss_per_connection_kb"] = round(procs.idle_rss_per_connection(urls, pids, idle_cookies), 1)
            bench.arrival_rate = args.arrival_rate
            for clients in ladder:
                report["levels"].append(run_level(bench, clients, args.duration))
                progress(f"level {clients}", report["levels"][-1])
            if args.soak:
                report["soak"] = run_soak(bench, args.soak, args.soak_clients)
                progress("soak", report["soak"])
            if args.fairness:
                sockets, others = (int(n) for n in args.fairness.split(","))
                report["fairness"] = run_fairness(bench, sockets, others)
                progress("fairness", report["fairness"])
        if args.baseline_clients > 0:  # 0: no baseline (a quicker A/B of the ladder alone)
            with procs.app_servers(
                {**env, "SPEECH_MODE": "whole_reply"}, args.processes, args.server, args.server_logs, "baseline"
            ) as (urls, pids):
                baseline = bench_for(urls, pids)
                run_level(baseline, 1)
                report["baseline"] = run_level(baseline, args.baseline_clients)
                progress("baseline", report["baseline"])
    return report


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return {"cpus": os.cpu_count(), "cpu": model, "platform": platform.platform(), "python": platform.python_version()}


def main() -> None:
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="voicechat-bench-"))
    postgres = args.database == "postgres" or (args.database == "auto" and args.processes > 1)
    try:
        with procs.bench_database(workdir, postgres=postgres) as database_url:
            report = run_all(args, workdir, database_url)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report |= {
        "machine": machine(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out = servers.ROOT / "bench-results" / f"{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(table(report))
    print()
    print(goals(report))
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    main()
