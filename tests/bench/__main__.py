"""`make bench`: time from Send to first sound, relay lag and starvation, at rising concurrency, on loopback.

Starts a fake ElevenLabs (first byte after 150 ms, audio paced at real time, PCM 24 kHz), the app under
Daphne with the demo LLM (30 tokens/s) and a separate client process per level; then does the same turn
with SPEECH_MODE=whole_reply (one TTS request after the whole reply, what peers do) for the baseline.
Prints a Markdown table and writes JSON to bench-results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests import servers

MESSAGE = "Tell me about streaming speech."
BYTES_PER_SECOND = 24000 * 2


# --- process figures ------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0, True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_kb(self.pid))
            time.sleep(0.1)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


# --- the setup ------------------------------------------------------------------------------------
def setup_django(workdir: Path) -> None:
    os.environ.update(
        DEBUG="true",
        SECRET_KEY=secrets.token_urlsafe(50),
        DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}",
        MEDIA_ROOT=str(workdir / "media"),
        REDIS_URL="",
        DJANGO_SETTINGS_MODULE="voicechat.settings",
    )
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


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


@contextmanager
def fake_vendor(first_byte_ms: float, realtime: bool) -> Any:
    args = [sys.executable, "-m", "tests.fakes.elevenlabs", "--port", "0", "--first-byte-ms", str(first_byte_ms)]
    process = subprocess.Popen(
        [*args, *(["--realtime"] if realtime else [])], cwd=servers.ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip(), process.pid
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def daphne(env: dict[str, str]) -> Any:
    port = servers.free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1", "-p", str(port), "voicechat.asgi:application"],
        cwd=servers.ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        servers.wait_for_port(port)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.wait(10)


def run_clients(spec: dict[str, Any]) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.client"],
        cwd=servers.ROOT,
        input=json.dumps(spec) + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    return list(json.loads(done.stdout))


def idle_rss_per_connection(url: str, pid: int, cookies: list[str]) -> float:
    """RSS the server adds per open, idle WebSocket (KB)."""
    before = rss_kb(pid)
    client = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.client"],
        cwd=servers.ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdin is not None and client.stdout is not None
    client.stdin.write(json.dumps({"url": url, "idle": True, "cookies": cookies}) + "\n")
    client.stdin.flush()
    client.stdout.readline()
    time.sleep(1)
    after = rss_kb(pid)
    client.stdin.close()
    client.wait(30)
    return (after - before) / len(cookies)


# --- figures ----------------------------------------------------------------------------------
def ideal_ttfa(tokens_per_second: float, first_byte_ms: float) -> float:
    """LLM time to the first speakable chunk plus the vendor's first-byte delay, in seconds."""
    from chat.providers.demo import DemoLLM
    from chat.speech import SpeechChunker

    reply = DemoLLM.reply_for(MESSAGE)
    chunker = SpeechChunker()
    for index, token in enumerate(DemoLLM.tokens(reply)):
        if chunker.feed(token):
            return (index + 1) / tokens_per_second + first_byte_ms / 1000
    return len(DemoLLM.tokens(reply)) / tokens_per_second + first_byte_ms / 1000


def upstream_timeline(results: list[dict[str, Any]], vendor_url: str) -> dict[str, list[tuple[float, int]]]:
    """Per assistant message: when each byte became relayable, as (time, cumulative bytes), in speaking order.

    A byte is relayable when the vendor sent it, but not before the previous chunk's last byte was sent:
    the next chunk is requested early on purpose and waits its turn, which no listener hears as lag.
    """
    from chat.models import Message

    with urllib.request.urlopen(vendor_url + "/_fake/requests") as response:
        requests = {r["request_id"]: r for r in json.load(response)}
    ids = [r["message_id"] for r in results if r["message_id"]]
    timelines: dict[str, list[tuple[float, int]]] = {}
    for message_id, request_ids in Message.objects.filter(pk__in=ids).values_list("pk", "tts_request_ids"):
        total, timeline, previous_end = 0, [], 0.0
        for request_id in request_ids:
            for sent_at, size in requests[request_id]["sends"]:
                total += size
                timeline.append((max(sent_at, previous_end), total))
            previous_end = timeline[-1][0] if timeline else previous_end
        timelines[str(message_id)] = timeline
    return timelines


def relay_lags(result: dict[str, Any], timeline: list[tuple[float, int]]) -> list[float]:
    """For each audio event: receive time minus the time its last byte became relayable (seconds)."""
    lags, received, cursor = [], 0, 0
    for recv_at, size in result["audio"]:
        received += size
        while cursor < len(timeline) - 1 and timeline[cursor][1] < received:
            cursor += 1
        if timeline and timeline[cursor][1] >= received:
            lags.append(recv_at - timeline[cursor][0])
    return lags


def starvation(result: dict[str, Any], prebuffer: float = 0.08) -> float:
    """Seconds a real-time player (80 ms start-up buffer, like the browser's) would have had nothing to play."""
    if not result["audio"]:
        return 0.0
    starved, play_at = 0.0, result["audio"][0][0] + prebuffer
    for recv_at, size in result["audio"]:
        if recv_at > play_at:
            starved += recv_at - play_at
            play_at = recv_at
        play_at += size / BYTES_PER_SECOND
    return starved


def summarize(level: int, results: list[dict[str, Any]], ideal: float, extra: dict[str, Any]) -> dict[str, Any]:
    good = [r for r in results if r["status"] == "complete" and r["audio"] and not r["errors"]]
    ttfa = [r["audio"][0][0] - r["sent_at"] for r in good]
    lags = [lag for r in good for lag in r.get("lags", [])]
    return {
        "clients": level,
        "ttfa_ms": {p: round(percentile(ttfa, p) * 1000, 1) for p in (50, 95, 99)},
        "ideal_ttfa_ms": round(ideal * 1000, 1),
        "overhead_ms": {p: round((percentile(ttfa, p) - ideal) * 1000, 1) for p in (50, 99)},
        "relay_lag_ms": {
            "p50": round(percentile(lags, 50) * 1000, 2),
            "p99": round(percentile(lags, 99) * 1000, 2),
            "max": round(max(lags, default=float("nan")) * 1000, 2),
        },
        "starvation_ms_total": round(sum(starvation(r) for r in good) * 1000, 1),
        "audio_seconds": round(sum(size for r in good for _, size in r["audio"]) / BYTES_PER_SECOND, 1),
        "errors": sum(len(r["errors"]) for r in results),
        "incomplete": len(results) - len(good),
        **extra,
    }


def run_level(
    level: int, url: str, pid: int, vendor: str, cookies: list[str], ideal: float, arrival_rate: float = 20.0
) -> dict[str, Any]:
    sampler = RssSampler(pid)
    sampler.start()
    cpu_before = cpu_seconds(pid)
    # Turns start at `arrival_rate` per second (uniformly at random); each lasts ~25 s of speech, so all
    # `level` conversations still stream at the same time.
    stagger = max(1.0, level / arrival_rate)
    results = run_clients({"url": url, "message": MESSAGE, "cookies": cookies[:level], "stagger": stagger})
    cpu = cpu_seconds(pid) - cpu_before
    sampler.running = False
    timelines = upstream_timeline(results, vendor)
    for result in results:
        result["lags"] = relay_lags(result, timelines.get(str(result["message_id"]), []))
    row = summarize(level, results, ideal, {"server_peak_rss_mb": round(sampler.peak / 1024, 1)})
    row["cpu_s_per_audio_s"] = round(cpu / row["audio_seconds"], 4) if row["audio_seconds"] else None
    row["rss_per_streaming_connection_kb"] = None
    return row


def table(rows: list[dict[str, Any]], baseline: dict[str, Any], idle_kb: float) -> str:
    head = (
        "| clients | TTFA p50 / p95 / p99 (ms) | ideal (ms) | overhead p50 / p99 (ms) | relay lag p50 / p99 / max (ms)"
        " | starvation (ms) | CPU s per audio s | peak RSS (MB) | errors / incomplete |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        t, o, lag = r["ttfa_ms"], r["overhead_ms"], r["relay_lag_ms"]
        lines.append(
            f"| {r['clients']} | {t[50]} / {t[95]} / {t[99]} | {r['ideal_ttfa_ms']} | {o[50]} / {o[99]} | "
            f"{lag['p50']} / {lag['p99']} / {lag['max']} | {r['starvation_ms_total']} | {r['cpu_s_per_audio_s']} | "
            f"{r['server_peak_rss_mb']} | {r['errors']} / {r['incomplete']} |"
        )
    ratio = rows[0]["ttfa_ms"][50] / baseline["ttfa_ms"][50] if baseline["ttfa_ms"][50] else float("nan")
    lines.append("")
    lines.append(
        f"Baseline (whole reply, then one TTS request), {baseline['clients']} client(s): TTFA p50 "
        f"{baseline['ttfa_ms'][50]} ms; pipelined / baseline = **{ratio:.3f}**. "
        f"Idle WebSocket: {idle_kb:.0f} KB RSS per connection."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ladder", default="1,10,50,100,200,400")
    parser.add_argument("--first-byte-ms", type=float, default=150.0)
    parser.add_argument("--tokens-per-second", type=float, default=30.0)
    parser.add_argument("--baseline-clients", type=int, default=1)
    parser.add_argument("--arrival-rate", type=float, default=20.0, help="new turns per second within a level")
    args = parser.parse_args()
    ladder = [int(n) for n in args.ladder.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="voicechat-bench-"))
    setup_django(workdir)
    cookies = make_cookies(max(ladder), "bench")
    ideal = ideal_ttfa(args.tokens_per_second, args.first_byte_ms)
    with fake_vendor(args.first_byte_ms, realtime=True) as (vendor, _):
        env = {
            **os.environ,
            "LLM_BACKEND": "demo",
            "DEMO_LLM_TOKENS_PER_SECOND": str(args.tokens_per_second),
            "TTS_BACKEND": "elevenlabs",
            "ELEVENLABS_API_KEY": "test-elevenlabs-key",
            "ELEVENLABS_BASE_URL": vendor,
            "ELEVENLABS_MAX_CONCURRENCY": "100000",
            "LOG_LEVEL": "WARNING",
            # Measure a production configuration: DEBUG keeps every SQL query and slows each one down.
            "DEBUG": "false",
            "SECRET_KEY": os.environ["SECRET_KEY"],  # the key the harness signed the sessions with
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "false",
            "SESSION_COOKIE_SECURE": "false",
            "CSRF_COOKIE_SECURE": "false",
            "SECURE_HSTS_SECONDS": "0",
        }
        with daphne(env) as (url, pid):
            run_level(1, url, pid, vendor, cookies, ideal)  # warm-up: imports, pools, first queries
            idle_kb = idle_rss_per_connection(url, pid, cookies[: max(ladder)])
            rows = []
            for level in ladder:
                rows.append(run_level(level, url, pid, vendor, cookies, ideal, args.arrival_rate))
                print(f"level {level}: {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
        with daphne({**env, "SPEECH_MODE": "whole_reply"}) as (url, pid):
            baseline = run_level(args.baseline_clients, url, pid, vendor, cookies, ideal)
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "settings": vars(args),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "idle_rss_per_connection_kb": round(idle_kb, 1),
        "levels": rows,
        "baseline": baseline,
    }
    out = servers.ROOT / "bench-results" / f"{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(table(rows, baseline, idle_kb))
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    main()
