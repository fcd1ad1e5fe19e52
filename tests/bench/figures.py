"""The benchmark's figures, computed from what the clients received and what the fake vendor sent.

Every time is `time.monotonic()` in seconds (system-wide on Linux, so the client's, the server's and the
fake's clocks are one clock); figures are reported in milliseconds.
"""

from __future__ import annotations

import collections
import math
from typing import Any

MESSAGE = "Tell me about streaming speech."
BYTES_PER_SECOND = 24000 * 2
PLAYER_PREBUFFER_S = 0.08  # the browser player's start-up buffer (frontend/src/player.ts)

BREAKDOWN = ("turn_start", "llm_late", "request_setup", "vendor_late", "relay")

Turn = dict[str, Any]
Timeline = list[tuple[float, int]]  # (time the bytes became relayable, cumulative bytes) in speaking order


def percentile(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def ms(seconds: float, digits: int = 1) -> float:
    return round(seconds * 1000, digits)


def ideal_llm_seconds(tokens_per_second: float, message: str = MESSAGE) -> float:
    """When the demo LLM, at its pace, has written the tokens that complete the first speakable chunk."""
    from chat.providers.demo import DemoLLM
    from chat.speech import SpeechChunker

    tokens = DemoLLM.tokens(DemoLLM.reply_for(message))
    chunker = SpeechChunker()
    for index, token in enumerate(tokens):
        if chunker.feed(token):
            return (index + 1) / tokens_per_second
    return len(tokens) / tokens_per_second


def ideal_ttfa(tokens_per_second: float, first_byte_ms: float, message: str = MESSAGE) -> float:
    """LLM time to the first speakable chunk plus the vendor's first-byte delay, in seconds."""
    return ideal_llm_seconds(tokens_per_second, message) + first_byte_ms / 1000


def upstream_timeline(request_ids: list[str], requests: dict[str, dict[str, Any]]) -> Timeline:
    """When each byte of one turn became relayable, from the vendor's sends of the turn's requests.

    A byte is relayable when the vendor sent it, but not before the previous chunk's last byte was sent:
    the next chunk is requested early on purpose and waits its turn, which no listener hears as lag.
    """
    total, timeline, previous_end = 0, [], 0.0
    for request_id in request_ids:
        for sent_at, size in requests[request_id]["sends"]:
            total += size
            timeline.append((max(sent_at, previous_end), total))
        previous_end = timeline[-1][0] if timeline else previous_end
    return timeline


def relay_lags(turn: Turn, timeline: Timeline) -> list[float]:
    """Per audio event: receive time minus when the last upstream byte it carries became relayable."""
    lags, received, cursor = [], 0, 0
    for recv_at, size in turn["audio"]:
        received += size
        while cursor < len(timeline) - 1 and timeline[cursor][1] < received:
            cursor += 1
        if timeline and timeline[cursor][1] >= received:
            lags.append(recv_at - timeline[cursor][0])
    return lags


def starvation(turn: Turn, prebuffer: float = PLAYER_PREBUFFER_S) -> float:
    """Seconds a real-time player (starting `prebuffer` after the first audio) would have had nothing to play."""
    if not turn["audio"]:
        return 0.0
    starved, play_at = 0.0, turn["audio"][0][0] + prebuffer
    for recv_at, size in turn["audio"]:
        if recv_at > play_at:
            starved += recv_at - play_at
            play_at = recv_at
        play_at += size / BYTES_PER_SECOND
    return starved


def ttfa_breakdown(
    turn: Turn, requests: dict[str, dict[str, Any]], ideal_llm: float, first_byte: float, token_s: float
) -> dict[str, float]:
    """Where one turn's TTFA went, in seconds, from the server's metrics and the fake's records.

    turn_start: the LLM's first token later than its pace allows (socket in, saving the messages, history);
    llm_late: the rest of the delay until the first chunk was cut (event-loop lag while the LLM streams);
    request_setup: chunk cut → the vendor saw the request (httpx pool, connect, SDK);
    vendor_late: the fake's first byte later than its configured delay (the harness's own lag);
    relay: vendor's first byte → client's first audio event (server relay, socket, client).
    """
    metrics, first = turn.get("metrics") or {}, requests.get((turn.get("request_ids") or [""])[0])
    if not first or not first["sends"] or metrics.get("first_chunk_ms") is None:
        return {}
    server_start = turn["sent_at"]  # the client's send; the socket hop is a few tens of microseconds
    chunk_at = server_start + metrics["first_chunk_ms"] / 1000
    start_late = metrics["llm_first_token_ms"] / 1000 - token_s
    return {
        "turn_start": start_late,
        "llm_late": chunk_at - server_start - ideal_llm - start_late,
        "request_setup": first["received_at"] - chunk_at,
        "vendor_late": first["sends"][0][0] - first["received_at"] - first_byte,
        "relay": turn["audio"][0][0] - first["sends"][0][0],
    }


def least_squares_slope(points: list[tuple[float, float]]) -> float:
    """Slope of y over x (per unit x) by ordinary least squares; nan for fewer than two points."""
    if len(points) < 2:
        return math.nan
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else math.nan


def summarize(label: int | str, turns: list[Turn], ideal: float) -> dict[str, Any]:
    """One row of the table: latency, lag, starvation, completeness (process figures are added by the caller)."""
    good = [t for t in turns if t["status"] == "complete" and t["audio"] and not t["errors"]]
    ttfa = [t["audio"][0][0] - t["sent_at"] for t in good]
    lags = [lag for t in good for lag in t.get("lags", [])]
    starved = [starvation(t) for t in good]
    parts = [t["breakdown"] for t in good if t.get("breakdown")]
    return {
        "clients": label,
        "turns": len(turns),
        "ttfa_ms": {str(p): ms(percentile(ttfa, p)) for p in (50, 95, 99)},
        "ideal_ttfa_ms": ms(ideal),
        "overhead_ms": {str(p): ms(percentile(ttfa, p) - ideal) for p in (50, 95, 99)},
        "overhead_breakdown_ms": {
            name: {str(p): ms(percentile([b[name] for b in parts], p)) for p in (50, 99)} for name in BREAKDOWN
        },
        "relay_lag_ms": {
            "p50": ms(percentile(lags, 50), 2),
            "p99": ms(percentile(lags, 99), 2),
            "max": ms(max(lags, default=math.nan), 2),
        },
        "starvation_ms_total": ms(sum(starved)),
        "starved_turns": sum(1 for s in starved if s > 0),
        "audio_seconds": round(sum(size for t in good for _, size in t["audio"]) / BYTES_PER_SECOND, 1),
        "errors": sum(len(t["errors"]) for t in turns),
        "error_codes": dict(collections.Counter(code for t in turns for code in t["errors"]).most_common(5)),
        "incomplete": len(turns) - len(good),
    }
