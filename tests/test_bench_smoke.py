"""A small run of the benchmark's client against a real Daphne: correctness only, never timings."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from chat.providers.demo import DemoLLM
from chat.speech import SpeechChunker
from tests import servers
from tests.bench.figures import MESSAGE, least_squares_slope, relay_lags, starvation, summarize
from tests.bench.procs import run_clients
from tests.bench.report import goals
from tests.fakes.elevenlabs import FakeElevenLabs, pcm_for

pytestmark = pytest.mark.daphne


@pytest.fixture(scope="module")
def bench_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[servers.App, FakeElevenLabs, list[str]]]:
    fake = FakeElevenLabs.start_in_thread()
    overrides = {
        "TTS_BACKEND": "elevenlabs",
        "ELEVENLABS_API_KEY": fake.api_key,
        "ELEVENLABS_BASE_URL": fake.url,
        "ELEVENLABS_MAX_CONCURRENCY": "100",
        "DEMO_LLM_TOKENS_PER_SECOND": "500",
    }
    try:
        with servers.daphne_app(tmp_path_factory.mktemp("bench"), **overrides) as app:
            yield app, fake, app.session_cookies([f"load{n}" for n in range(5)])
    finally:
        fake.stop()


def spoken_chunks() -> list[str]:
    chunker = SpeechChunker()
    return [chunk.text for chunk in chunker.feed(DemoLLM.reply_for(MESSAGE)) + chunker.flush()]


@pytest.mark.parametrize("clients", [1, 5])
def test_it_relays_every_byte_of_every_turn_in_order(
    bench_app: tuple[servers.App, FakeElevenLabs, list[str]], clients: int
) -> None:
    app, fake, cookies = bench_app
    fake.reset()
    out = run_clients({"urls": [app.url], "message": MESSAGE, "cookies": cookies[:clients], "verify": True})
    turns = out["turns"]
    # The fake sent exactly each chunk's deterministic PCM, once per turn ...
    chunks = spoken_chunks()
    requests = fake.tts_requests()
    assert Counter(r.body["text"] for r in requests) == Counter(chunks * clients)
    assert all(bytes(r.pcm) == pcm_for(r.body["text"], 24000) for r in requests)
    # ... and every client received all of it, in speaking order, with nothing else.
    expected = hashlib.sha256(b"".join(pcm_for(chunk, 24000) for chunk in chunks)).hexdigest()
    assert len(turns) == clients
    for turn in turns:
        assert turn["errors"] == []
        assert (turn["status"], turn["audio_status"]) == ("complete", "complete")
        assert turn["sha256"] == expected
    row = summarize(clients, turns, ideal=0.0)
    assert (row["errors"], row["incomplete"], row["turns"]) == (0, 0, clients)


def test_the_figures_follow_their_definitions() -> None:
    turn = {"audio": [(10.0, 4800), (10.2, 4800)]}  # 100 ms each, the second arrives 100 ms late
    assert starvation(turn, prebuffer=0.0) == pytest.approx(0.1)
    assert starvation(turn, prebuffer=0.1) == pytest.approx(0.0)
    timeline = [(9.9, 2400), (9.95, 4800), (10.15, 9600)]
    assert relay_lags(turn, timeline) == pytest.approx([0.05, 0.05])
    assert least_squares_slope([(0, 1.0), (1, 3.0), (2, 5.0)]) == pytest.approx(2.0)


def _level(clients: int, ttfa: float, starved_ms: float) -> dict[str, object]:
    figures = {"50": ttfa, "95": ttfa, "99": ttfa}
    return {
        "clients": clients,
        "ttfa_ms": figures,
        "overhead_ms": figures,
        "relay_lag_ms": {"p50": 1.0, "p99": 1.0, "max": 1.0},
        "starvation_ms_total": starved_ms,
        "errors": 0,
        "incomplete": 0,
    }


def test_the_goals_table_judges_only_the_levels_that_ran() -> None:
    """A `--ladder 300,600` run once read "starvation 0 at ≤ 200 streams: met" with every level starving,
    and judged the pipeline against the baseline on 300 clients' TTFA instead of one listener's."""
    heavy = {"levels": [_level(300, 4000.0, 5.0)], "baseline": _level(1, 3000.0, 0.0), "idle_rss_per_connection_kb": 50}
    rows = {line.split(" | ")[0]: line for line in goals(heavy).splitlines()}
    assert rows["| starvation 0 at ≤ 200 streams"].endswith("| n/a |")
    assert rows["| pipelined TTFA at 1 client ≤ 0.2 × baseline"].endswith("| n/a |")
    ladder = {**heavy, "levels": [_level(1, 360.0, 0.0), _level(100, 900.0, 20.0), _level(300, 4000.0, 5.0)]}
    rows = {line.split(" | ")[0]: line for line in goals(ladder).splitlines()}
    assert "levels with starvation: [100]" in rows["| starvation 0 at ≤ 200 streams"]
    assert rows["| starvation 0 at ≤ 200 streams"].endswith("| **missed** |")
    assert "360 / 3000 ms = 0.12 | met |" in rows["| pipelined TTFA at 1 client ≤ 0.2 × baseline"]


def test_the_report_of_a_run_without_the_baseline_judges_it_n_a() -> None:
    """`--baseline-clients 0` (a quick A/B of the ladder) once failed the run at its end on the missing row."""
    run = {"levels": [_level(1, 360.0, 0.0), _level(100, 900.0, 0.0)], "idle_rss_per_connection_kb": 50}
    rows = {line.split(" | ")[0]: line for line in goals(run).splitlines()}
    assert "360 / – ms" in rows["| pipelined TTFA at 1 client ≤ 0.2 × baseline"]
    assert rows["| pipelined TTFA at 1 client ≤ 0.2 × baseline"].endswith("| n/a |")
    assert rows["| 0 errors and incomplete turns"].endswith("| met |")


def test_the_harness_lives_where_make_bench_looks() -> None:
    assert (Path(servers.ROOT) / "tests" / "bench" / "__main__.py").is_file()
