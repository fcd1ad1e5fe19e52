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


def test_the_harness_lives_where_make_bench_looks() -> None:
    assert (Path(servers.ROOT) / "tests" / "bench" / "__main__.py").is_file()
