"""The benchmark's Markdown output: the table per level, where TTFA overhead went, and the goals of issue #5."""

from __future__ import annotations

import math
from typing import Any

from tests.bench.figures import BREAKDOWN

Row = dict[str, Any]


def _f(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _row(r: Row) -> str:
    t, o, lag = r["ttfa_ms"], r["overhead_ms"], r["relay_lag_ms"]
    cells = [
        r["clients"],
        f"{_f(t['50'])} / {_f(t['95'])} / {_f(t['99'])}",
        _f(r["ideal_ttfa_ms"]),
        f"{_f(o['50'])} / {_f(o['99'])}",
        f"{_f(lag['p50'])} / {_f(lag['p99'])} / {_f(lag['max'])}",
        f"{_f(r['starvation_ms_total'])} ({r['starved_turns']})",
        _f(r["cpu_s_per_audio_s"]),
        f"{_f(r['server_cores'])} / {_f(r['vendor_cores'])} / {_f(r['client_cores'])} ({_f(r['machine_busy_pct'])}%)",
        _f(r["server_peak_rss_mb"]),
        _f(r["rss_per_streaming_connection_kb"]),
        f"{r['errors']} / {r['incomplete']} of {r['turns']}",
    ]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table(report: dict[str, Any]) -> str:
    soak = [report["soak"] | {"clients": f"soak {report['soak']['clients']}"}] if report.get("soak") else []
    rows: list[Row] = report["levels"] + soak
    lines = [
        "| clients | TTFA p50 / p95 / p99 (ms) | ideal (ms) | overhead p50 / p99 (ms) | relay lag p50 / p99 / max (ms)"
        " | starvation ms (turns) | server CPU s per audio s | cores: server / vendor / clients (machine busy)"
        " | server peak RSS (MB) | RSS per streaming conn (KB) | errors / incomplete |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_row(r) for r in report["levels"]]
    if report.get("soak"):
        row = report["soak"]
        lines.append(_row(row | {"clients": f"soak {row['clients']} × {row['wall_s']:.0f} s"}))
    baseline = report.get("baseline")
    if baseline is not None:
        lines.append(_row(baseline | {"clients": f"baseline {baseline['clients']}"}))
    lines += ["", "TTFA overhead, where it went — p50 / p99 (ms):", ""]
    lines += [
        "| clients | turn start (first token late) | LLM pace late | chunk → vendor request"
        " | vendor first byte late (harness) | vendor → client |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        b = r["overhead_breakdown_ms"]
        cells = [f"{_f(b[k]['50'])} / {_f(b[k]['99'])}" for k in BREAKDOWN]
        lines.append(f"| {r['clients']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _check(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def goals(report: dict[str, Any]) -> str:
    """Issue #5's goals, each with its figure."""
    by_clients = {r["clients"]: r for r in report["levels"]}

    def at(clients: int, *keys: str) -> float | None:
        value: Any = by_clients.get(clients)
        for key in keys:
            value = None if value is None else value[key]
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)

    def le(value: float | None, limit: float) -> bool | None:
        return None if value is None else value <= limit

    # The pipeline against the baseline: both one listener. Goals of levels the run did not have are n/a.
    first = at(1, "ttfa_ms", "50")
    baseline = report["baseline"]["ttfa_ms"]["50"] if report.get("baseline") else None
    ratio = None if first is None or baseline is None else round(first / baseline, 3)
    small = [r for r in report["levels"] if r["clients"] <= 200]
    starving = [r["clients"] for r in small if r["starvation_ms_total"] > 0]
    lines = [
        "| goal | figure | |",
        "|---|---|---|",
        f"| TTFA overhead p50 ≤ 10 ms at 100 | {_f(at(100, 'overhead_ms', '50'))} ms | "
        f"{_check(le(at(100, 'overhead_ms', '50'), 10))} |",
        f"| TTFA overhead p99 ≤ 40 ms at 100 | {_f(at(100, 'overhead_ms', '99'))} ms | "
        f"{_check(le(at(100, 'overhead_ms', '99'), 40))} |",
        f"| relay lag p99 ≤ 25 ms at 100 | {_f(at(100, 'relay_lag_ms', 'p99'))} ms | "
        f"{_check(le(at(100, 'relay_lag_ms', 'p99'), 25))} |",
        f"| relay lag p99 ≤ 50 ms at 400 | {_f(at(400, 'relay_lag_ms', 'p99'))} ms | "
        f"{_check(le(at(400, 'relay_lag_ms', 'p99'), 50))} |",
        f"| starvation 0 at ≤ 200 streams | levels with starvation: {starving or ('none' if small else '–')} | "
        f"{_check(not starving if small else None)} |",
        f"| pipelined TTFA at 1 client ≤ 0.2 × baseline | {_f(first)} / {_f(baseline)} ms"
        f" = {_f(ratio)} | {_check(le(ratio, 0.2))} |",
        f"| ≤ 200 KB RSS per idle connection | {report['idle_rss_per_connection_kb']:g} KB | "
        f"{_check(report['idle_rss_per_connection_kb'] <= 200)} |",
    ]
    if report.get("soak"):
        soak = report["soak"]
        lines.append(
            f"| no RSS growth over the soak ({soak['clients']} streams, {soak['wall_s']:.0f} s) | "
            f"{soak['rss_slope_kb_per_min']:g} KB/min after the first minute "
            f"({' → '.join(f'{mb:g}' for mb in soak['rss_first_last_mb'])} MB from minute 1 to the end) | reported |"
        )
    errors = sum(r["errors"] + r["incomplete"] for r in [*report["levels"], *filter(None, [report.get("baseline")])])
    lines.append(f"| 0 errors and incomplete turns | {errors} | {_check(errors == 0)} |")
    return "\n".join(lines)
