"""A fake ElevenLabs API on loopback that speaks the vendor's HTTP contract, for the real SDK to talk to.

Usage: `async with FakeElevenLabs() as fake:` in async tests, `FakeElevenLabs.start_in_thread()` for
sync tests and subprocess servers (Daphne), or `python -m tests.fakes.elevenlabs --port 0` (prints its
URL on the first line of stdout) for the benchmark. Faults are queued with `fake.fail_next(kind, times)`
or `POST /_fake/faults {"kind": ..., "times": n}`; kinds are listed in FAULTS.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import math
import struct
import threading
import time
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

API_KEY = "test-elevenlabs-key"
KNOWN_VOICES = ("JBFqnCBsd6RMkjVDRZzb", "21m00Tcm4TlvDq8ikWAM", "EXAVITQu4vr4xnxnyYXq")
PCM_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
FAULTS = (
    "invalid_api_key",  # 401 {"detail": {"status": "invalid_api_key"}}
    "quota_exceeded",  # 401 {"detail": {"status": "quota_exceeded"}}
    "unprocessable",  # 422 FastAPI validation list
    "voice_not_found",  # 404 {"detail": {"status": "voice_not_found"}}
    "rate_limited",  # 429 too_many_concurrent_requests
    "server_error",  # 500 {"status": "internal_server_error"} (no detail wrapper)
    "reset",  # 200, some audio, then the connection is cut
    "stall",  # 200, some audio, then nothing for a long time
)


def pcm_for(text: str, sample_rate: int, ms_per_char: float = 60.0) -> bytes:
    """Deterministic PCM s16le for `text`: a tone whose pitch comes from the text, length from its size."""
    samples = max(1, round(len(text) * ms_per_char * sample_rate / 1000))
    period = 20 + zlib.crc32(text.encode()) % 60
    cycle = struct.pack(f"<{period}h", *(round(8000 * math.sin(2 * math.pi * i / period)) for i in range(period)))
    return (cycle * (samples // period + 1))[: samples * 2]


@dataclass
class RecordedRequest:
    path: str
    voice_id: str
    query: dict[str, str]
    body: dict[str, Any]
    key_ok: bool
    received_at: float
    status: int = 200
    request_id: str = ""
    sends: list[tuple[float, int]] = field(default_factory=list)  # (monotonic send time, bytes) per chunk
    pcm: bytes = b""
    finished: bool = False
    disconnected_early: bool = False


class FakeElevenLabs:
    """The fake server; one instance per test. Attributes are read by tests to check what happened."""

    def __init__(
        self,
        *,
        api_key: str = API_KEY,
        first_byte_ms: float = 0.0,
        realtime: bool = False,
        chunk_ms: float = 50.0,
        ms_per_char: float = 60.0,
        stall_seconds: float = 30.0,
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        self.first_byte_ms = first_byte_ms
        self.realtime = realtime
        self.chunk_ms = chunk_ms
        self.ms_per_char = ms_per_char
        self.stall_seconds = stall_seconds
        self.port = port
        self.requests: list[RecordedRequest] = []
        self.faults: list[str] = []
        self.open_streams = 0
        self.peak_streams = 0
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- control -----------------------------------------------------------------------------
    def fail_next(self, kind: str, times: int = 1) -> None:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")
        self.faults.extend([kind] * times)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tts_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if "/text-to-speech/" in r.path]

    def sent_pcm(self) -> list[bytes]:
        """The audio actually sent, per text-to-speech request, in request order."""
        return [r.pcm for r in self.tts_requests() if r.pcm]

    # --- lifecycle ---------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/text-to-speech/{voice_id}/stream", self.stream)
        app.router.add_post("/v1/text-to-speech/{voice_id}/stream/with-timestamps", self.stream_with_timestamps)
        app.router.add_get("/v1/voices", self.voices_v1)
        app.router.add_get("/v2/voices", self.voices_v2)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/_fake/faults", self.control_faults)
        app.router.add_get("/_fake/requests", self.control_requests)
        return app

    async def start(self) -> FakeElevenLabs:
        self._runner = web.AppRunner(self.app(), handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeElevenLabs:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @classmethod
    def start_in_thread(cls, **options: Any) -> FakeElevenLabs:
        fake = cls(**options)
        ready = threading.Event()

        def serve() -> None:
            fake._loop = asyncio.new_event_loop()
            fake._loop.run_until_complete(fake.start())
            ready.set()
            fake._loop.run_forever()
            fake._loop.run_until_complete(fake.close())

        fake._thread = threading.Thread(target=serve, daemon=True)
        fake._thread.start()
        ready.wait(10)
        return fake

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    # --- the vendor's endpoints --------------------------------------------------------------
    def _error(self, status: int, body: Any, request: RecordedRequest | None = None, **headers: str) -> web.Response:
        if request is not None:
            request.status = status
            request.finished = True
        return web.json_response(body, status=status, headers=headers)

    async def _accept(self, request: web.Request) -> tuple[RecordedRequest, web.Response | None]:
        """Record the request and decide on an error answer, if any, exactly as the vendor would."""
        try:
            body = await request.json()
        except ValueError:
            body = None
        record = RecordedRequest(
            path=request.path,
            voice_id=request.match_info["voice_id"],
            query=dict(request.query),
            body=body if isinstance(body, dict) else {},
            key_ok=request.headers.get("xi-api-key") == self.api_key,
            received_at=time.monotonic(),
            request_id=f"req_{next(self._ids)}",
        )
        self.requests.append(record)
        fault = self.faults.pop(0) if self.faults else ""
        if not record.key_ok or fault == "invalid_api_key":
            message = "Invalid API key" if not record.key_ok else "API key revoked"
            return record, self._error(401, {"detail": {"status": "invalid_api_key", "message": message}}, record)
        if fault == "quota_exceeded":
            detail = {"status": "quota_exceeded", "message": "This request exceeds your quota of 10000."}
            return record, self._error(401, {"detail": detail}, record)
        if fault == "rate_limited":
            detail = {"status": "too_many_concurrent_requests", "message": "Too many concurrent requests."}
            return record, self._error(429, {"detail": detail}, record, **{"retry-after": "0"})
        if fault == "server_error":
            return record, self._error(500, {"status": "internal_server_error", "message": "Internal error"}, record)
        if fault == "voice_not_found" or record.voice_id not in KNOWN_VOICES:
            detail = {"status": "voice_not_found", "message": f"A voice with voice_id {record.voice_id} was not found."}
            return record, self._error(404, {"detail": detail}, record)
        problems = self._validate(record) if fault != "unprocessable" else [("body", "text", "field required")]
        if problems:
            errors = [{"loc": list(loc), "msg": msg, "type": "value_error"} for *loc, msg in problems]
            return record, self._error(422, {"detail": errors}, record)
        record.status = 200
        record.body["_fault"] = fault
        return record, None

    @staticmethod
    def _validate(record: RecordedRequest) -> list[tuple[str, ...]]:
        problems: list[tuple[str, ...]] = []
        fmt = record.query.get("output_format", "mp3_44100_128")
        if not (fmt.startswith("pcm_") and fmt[4:].isdigit() and int(fmt[4:]) in PCM_RATES):
            problems.append(("query", "output_format", f"unsupported output format {fmt} in this fake"))
        if not isinstance(record.body.get("text"), str) or not record.body["text"].strip():
            problems.append(("body", "text", "field required"))
        settings = record.body.get("voice_settings") or {}
        for name in ("stability", "similarity_boost", "style"):
            if name in settings and settings[name] is not None and not 0 <= settings[name] <= 1:
                problems.append(("body", "voice_settings", name, "must be between 0 and 1"))
        speed = settings.get("speed")
        if speed is not None and not 0.7 <= speed <= 1.2:
            problems.append(("body", "voice_settings", "speed", "must be between 0.7 and 1.2"))
        if len(record.body.get("previous_request_ids") or []) > 3:
            problems.append(("body", "previous_request_ids", "at most 3 ids"))
        return problems

    async def stream(self, request: web.Request) -> web.StreamResponse:
        record, error = await self._accept(request)
        if error is not None:
            return error
        rate = int(record.query["output_format"][4:])
        pcm = pcm_for(record.body["text"], rate, self.ms_per_char)
        headers = {"request-id": record.request_id, "character-cost": str(len(record.body["text"]))}
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream", **headers})
        chunk_bytes = max(2, round(rate * self.chunk_ms / 1000) * 2)
        self.open_streams += 1
        self.peak_streams = max(self.peak_streams, self.open_streams)
        try:
            await response.prepare(request)
            await self._send_pcm(request, response, record, pcm, chunk_bytes, rate)
        except (ConnectionResetError, asyncio.CancelledError):
            record.disconnected_early = True
            raise
        finally:
            self.open_streams -= 1
        return response

    async def _send_pcm(
        self,
        request: web.Request,
        response: web.StreamResponse,
        record: RecordedRequest,
        pcm: bytes,
        chunk_bytes: int,
        rate: int,
    ) -> None:
        fault = record.body.pop("_fault", "")
        start = time.monotonic() + self.first_byte_ms / 1000
        for index, offset in enumerate(range(0, len(pcm), chunk_bytes)):
            if fault and index == 2:
                await self._break(request, fault)
            due = start + (index * chunk_bytes / 2 / rate if self.realtime else 0)
            if (delay := due - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            chunk = pcm[offset : offset + chunk_bytes]
            await response.write(chunk)
            record.sends.append((time.monotonic(), len(chunk)))
            record.pcm += chunk
        await response.write_eof()
        record.finished = True

    async def _break(self, request: web.Request, fault: str) -> None:
        if fault == "stall":
            await asyncio.sleep(self.stall_seconds)
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError("fault injected: connection reset mid-stream")

    async def stream_with_timestamps(self, request: web.Request) -> web.StreamResponse:
        record, error = await self._accept(request)
        if error is not None:
            return error
        text = record.body["text"]
        rate = int(record.query["output_format"][4:])
        pcm = pcm_for(text, rate, self.ms_per_char)
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/json",
                "request-id": record.request_id,
                "character-cost": str(len(text)),
            }
        )
        await response.prepare(request)
        per_char = self.ms_per_char / 1000
        for start in range(0, len(text), 10):
            chars = list(text[start : start + 10])
            alignment = {
                "characters": chars,
                "character_start_times_seconds": [(start + i) * per_char for i in range(len(chars))],
                "character_end_times_seconds": [(start + i + 1) * per_char for i in range(len(chars))],
            }
            piece = pcm[round(start * per_char * rate) * 2 : round((start + len(chars)) * per_char * rate) * 2]
            line = {
                "audio_base64": base64.b64encode(piece).decode(),
                "alignment": alignment,
                "normalized_alignment": alignment,
            }
            await response.write(json.dumps(line).encode() + b"\n")
        await response.write_eof()
        record.finished = True
        return response

    def _voice(self, voice_id: str) -> dict[str, Any]:
        return {"voice_id": voice_id, "name": f"Voice {voice_id[:4]}", "category": "premade", "labels": {}}

    async def voices_v1(self, request: web.Request) -> web.Response:
        if request.headers.get("xi-api-key") != self.api_key:
            return self._error(401, {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}})
        return web.json_response({"voices": [self._voice(v) for v in KNOWN_VOICES]})

    async def voices_v2(self, request: web.Request) -> web.Response:
        if request.headers.get("xi-api-key") != self.api_key:
            return self._error(401, {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}})
        voices = [self._voice(v) for v in KNOWN_VOICES]
        return web.json_response(
            {"voices": voices, "has_more": False, "total_count": len(voices), "next_page_token": None}
        )

    async def models(self, request: web.Request) -> web.Response:
        if request.headers.get("xi-api-key") != self.api_key:
            return self._error(401, {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}})
        models = [
            {"model_id": "eleven_flash_v2_5", "name": "Eleven Flash v2.5", "can_do_text_to_speech": True,
             "maximum_text_length_per_request": 40000, "languages": [{"language_id": "en", "name": "English"}]},
            {"model_id": "eleven_multilingual_v2", "name": "Eleven Multilingual v2", "can_do_text_to_speech": True,
             "maximum_text_length_per_request": 10000, "languages": [{"language_id": "en", "name": "English"}]},
        ]  # fmt: skip
        return web.json_response(models)

    async def control_faults(self, request: web.Request) -> web.Response:
        data = await request.json()
        self.fail_next(data["kind"], int(data.get("times", 1)))
        return web.json_response({"queued": self.faults})

    async def control_requests(self, request: web.Request) -> web.Response:
        rows = [{k: v for k, v in asdict(r).items() if k != "pcm"} | {"pcm_bytes": len(r.pcm)} for r in self.requests]
        return web.json_response(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake ElevenLabs API on loopback.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=API_KEY)
    parser.add_argument("--first-byte-ms", type=float, default=150.0)
    parser.add_argument("--realtime", action="store_true", help="pace audio at real time")
    parser.add_argument("--chunk-ms", type=float, default=50.0)
    args = parser.parse_args()
    fake = FakeElevenLabs(
        api_key=args.api_key,
        first_byte_ms=args.first_byte_ms,
        realtime=args.realtime,
        chunk_ms=args.chunk_ms,
        port=args.port,
    )

    async def serve() -> None:
        await fake.start()
        print(fake.url, flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
