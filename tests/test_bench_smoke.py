"""A small run of the benchmark's client against a real Daphne: correctness only, never timings."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from chat.providers.demo import DemoLLM
from chat.speech import SpeechChunker
from tests import servers
from tests.bench.__main__ import MESSAGE, relay_lags, run_clients, starvation
from tests.fakes.elevenlabs import FakeElevenLabs, pcm_for

pytestmark = pytest.mark.daphne


@pytest.fixture(scope="module")
def bench_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[servers.App, list[str]]]:
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
            yield app, app.session_cookies([f"load{n}" for n in range(5)])
    finally:
        fake.stop()


def expected_sha256() -> str:
    chunker = SpeechChunker()
    reply = DemoLLM.reply_for(MESSAGE)
    chunks = chunker.feed(reply) + chunker.flush()
    return hashlib.sha256(b"".join(pcm_for(chunk, 24000) for chunk in chunks)).hexdigest()


@pytest.mark.parametrize("clients", [1, 5])
def test_it_relays_every_byte_of_every_turn_in_order(bench_app: tuple[servers.App, list[str]], clients: int) -> None:
    app, cookies = bench_app
    results = run_clients({"url": app.url, "message": MESSAGE, "cookies": cookies[:clients], "verify": True})
    assert len(results) == clients
    for result in results:
        assert result["errors"] == []
        assert (result["status"], result["audio_status"]) == ("complete", "complete")
        assert result["sha256"] == expected_sha256()


def test_the_figures_follow_their_definitions() -> None:
    result = {"audio": [(10.0, 4800), (10.2, 4800)]}  # 100 ms each, the second arrives 100 ms late
    assert starvation(result, prebuffer=0.0) == pytest.approx(0.1)
    assert starvation(result, prebuffer=0.1) == pytest.approx(0.0)
    timeline = [(9.9, 2400), (9.95, 4800), (10.15, 9600)]
    assert relay_lags(result, timeline) == pytest.approx([0.05, 0.05])


def test_the_harness_lives_where_make_bench_looks() -> None:
    assert (Path(servers.ROOT) / "tests" / "bench" / "__main__.py").is_file()
