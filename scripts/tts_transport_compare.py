"""A quick side-by-side of the TTS transports in one process: `/stream` per chunk vs the vendor's WebSocket.

Not the benchmark (`make bench` drives the whole server with real clients); this isolates what differs
between the transports — the vendor connection, reading its audio and the relay — with the same
relay pacing and a sink that only counts. The fake vendor runs in its own process (real-time pacing,
first audio after --first-byte-ms), so its CPU is not counted.

    DEBUG=true .venv/bin/python scripts/tts_transport_compare.py --replies 20 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voicechat.settings")
os.environ.setdefault("DEBUG", "true")

import django  # noqa: E402

django.setup()

from chat.limits import Refusal  # noqa: E402
from chat.providers import ProviderError, TTSProvider  # noqa: E402
from chat.providers.base import Alignment, SpeechReceipt, SpeechRequest  # noqa: E402
from chat.providers.elevenlabs import ElevenLabsTTS, aclose_shared_clients  # noqa: E402
from chat.providers.elevenlabs_ws import ElevenLabsWebSocketTTS, aclose_sockets  # noqa: E402
from chat.speech import SpeechChunk  # noqa: E402
from chat.turns.stream_relay import speech_relay_for  # noqa: E402

SENTENCES = [
    "The first sentence of this reply is long enough to be spoken on its own.",
    "A second sentence follows it, and it is also long enough to stand alone.",
    "And the third sentence ends the reply with one more thought for the listener.",
]
KEY = "test-elevenlabs-key"


@dataclass
class CountingSink:
    started: float
    first_audio: float | None = None
    size: int = 0
    frames: int = 0
    errors: list[str] = field(default_factory=list)

    async def speech_audio(self, pcm: bytes, chunk: SpeechChunk, audio_offset: int) -> None:
        if self.first_audio is None:
            self.first_audio = time.monotonic()
        self.size += len(pcm)
        self.frames += 1

    async def speech_alignment(self, chunk: SpeechChunk, alignment: Alignment, chunk_offset_bytes: int) -> None:
        pass

    async def speech_chunk_end(self, chunk: SpeechChunk, audio_start: int, audio_end: int) -> None:
        pass

    async def speech_failed(self, error: ProviderError) -> None:
        self.errors.append(error.code)

    async def speech_refused(self, refusal: Refusal) -> None:
        self.errors.append(refusal.code)

    async def speech_queued(self, position: int | None) -> None:
        pass

    def speech_request(
        self, chunk: SpeechChunk, previous: list[SpeechReceipt], upcoming: SpeechChunk | None
    ) -> SpeechRequest:
        return SpeechRequest(text=chunk.text, next_text=upcoming.text if upcoming else "")


async def one_reply(tts: TTSProvider, delay: float, chunk_every: float) -> CountingSink:
    await asyncio.sleep(delay)
    sink = CountingSink(started=time.monotonic())
    relay = speech_relay_for(tts, sink)
    runner = asyncio.create_task(relay.run())
    for index, text in enumerate(SENTENCES):  # as an LLM writes them
        if index:
            await asyncio.sleep(chunk_every)
        relay.add(SpeechChunk(text, tuple(range(len(text)))))
    relay.close()
    await runner
    return sink


async def level(tts: TTSProvider, replies: int, spread: float, chunk_every: float) -> dict[str, float]:
    rng = random.Random(7)
    delays = [rng.uniform(0, spread) for _ in range(replies)]
    cpu, wall = time.process_time(), time.monotonic()
    sinks = await asyncio.gather(*(one_reply(tts, d, chunk_every) for d in delays))
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    audio_s = sum(s.size for s in sinks) / 2 / tts.sample_rate
    ttfa = sorted((s.first_audio - s.started) * 1000 for s in sinks if s.first_audio is not None)
    return {
        "ttfa_p50_ms": statistics.median(ttfa),
        "ttfa_p95_ms": ttfa[max(0, round(len(ttfa) * 0.95) - 1)],
        "ttfa_max_ms": ttfa[-1],
        "cpu_s_per_audio_s": cpu / audio_s,
        "frames_per_audio_s": sum(s.frames for s in sinks) / audio_s,
        "audio_s": audio_s,
        "wall_s": wall,
        "errors": float(sum(len(s.errors) for s in sinks)),
    }


async def compare(url: str, args: argparse.Namespace) -> None:
    voice = "JBFqnCBsd6RMkjVDRZzb"
    transports: dict[str, TTSProvider] = {
        "http /stream": ElevenLabsTTS(api_key=KEY, base_url=url, voice_id=voice),
        "ws multi-stream-input": ElevenLabsWebSocketTTS(api_key=KEY, base_url=url, voice_id=voice),
        "ws stream-input": ElevenLabsWebSocketTTS(api_key=KEY, base_url=url, voice_id=voice, multi_context=False),
    }
    for tts in transports.values():  # warm: pooled connections and sockets, imports
        await level(tts, 1, 0.0, 0.0)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in transports}
    for _ in range(args.rounds):
        for name, tts in transports.items():
            results[name].append(await level(tts, args.replies, args.spread, args.chunk_every))
    print(f"{args.replies} replies at once (started over {args.spread:g} s), {args.rounds} rounds, medians:")
    for name, runs in results.items():
        row = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        print(
            f"  {name:24} TTFA p50 {row['ttfa_p50_ms']:6.1f} ms  p95 {row['ttfa_p95_ms']:6.1f}  "
            f"max {row['ttfa_max_ms']:6.1f}  CPU {row['cpu_s_per_audio_s'] * 1000:6.3f} ms/audio s  "
            f"frames {row['frames_per_audio_s']:4.1f}/audio s  errors {row['errors']:g}"
        )
    await aclose_sockets()
    await aclose_shared_clients()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replies", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--first-byte-ms", type=float, default=150.0)
    parser.add_argument("--spread", type=float, default=1.0, help="seconds over which the replies start")
    parser.add_argument("--chunk-every", type=float, default=0.4, help="seconds between chunks (LLM pace)")
    args = parser.parse_args()
    command = [sys.executable, "-m", "tests.fakes.elevenlabs_ws", "--port", "0", "--realtime"]
    command += ["--first-byte-ms", str(args.first_byte_ms), "--pace-poll-ms", "50"]
    fake = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert fake.stdout is not None
        asyncio.run(compare(fake.stdout.readline().strip(), args))
    finally:
        fake.terminate()
        fake.wait(10)


if __name__ == "__main__":
    main()
