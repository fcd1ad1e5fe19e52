"""A fake ElevenLabs API on loopback that speaks the vendor's HTTP contract, for the real SDK to talk to.

Three ways to run it:
* async, in-process: `async with FakeElevenLabs() as fake:` (the `fake_elevenlabs` fixture);
* in a thread with its own loop: `fake = FakeElevenLabs.start_in_thread(); fake.url; fake.stop()`;
* as a process: `python -m tests.fakes.elevenlabs --port 0 --first-byte-ms 150 --realtime [--log-sends PATH]`
  prints its URL on the first stdout line.

Faults are queued per text-to-speech request with `fake.fail_next(kind, times, retry_after=...)`, or made
permanent with `fake.fail_always(kind)`; over HTTP: `POST /_fake/faults {"kind", "times", "retry_after",
"always"}`. Kinds are listed in FAULTS. Introspection: `requests` (RecordedRequest per call),
`open_streams`, `peak_streams`, and over HTTP `GET /_fake/requests`, `/_fake/sends`, `/_fake/state`,
`POST /_fake/reset`. Send times are `time.monotonic()`, comparable across processes on one machine.

`/stream/with-timestamps` sends the same PCM as `/stream`, one NDJSON line per `chunk_ms` of audio with
the alignment of the characters whose sound starts in it (null when none does), in seconds from the
start of the request's audio; `sends` count the PCM bytes of each line. The catalogue (`/v1/voices`,
`/v2/voices` paginated, `/v1/models`) fails on demand with `fake.fail_library_next(kind)` (LIBRARY_FAULTS)
and records `library_calls`; voice previews are served, without a key, from the fake's own origin at
the vendor's bucket path, each download's headers kept in `preview_requests`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web

from tests.fakes.elevenlabs_contract import (
    MODELS,
    pcm_for,
    preview_for,
    rate_and_type,
    timestamped_lines,
    validation_problems,
    voice_json,
)
from tests.fakes.loopback import LoopbackServer, wait_or_disconnect

__all__ = [
    "API_KEY",
    "FAULTS",
    "KNOWN_VOICES",
    "LIBRARY_FAULTS",
    "FakeElevenLabs",
    "Fault",
    "RecordedRequest",
    "pcm_for",
    "preview_for",
]

API_KEY = "test-elevenlabs-key"
KNOWN_VOICES = ("JBFqnCBsd6RMkjVDRZzb", "21m00Tcm4TlvDq8ikWAM", "EXAVITQu4vr4xnxnyYXq", "pNInz6obpgDQGcFmaJgB")
FAULTS = (
    "invalid_api_key",  # 401 {"detail": {"status": "invalid_api_key", ...}}
    "quota_exceeded",  # 401 {"detail": {"status": "quota_exceeded", ...}}
    "unprocessable",  # 422 FastAPI validation list
    "voice_not_found",  # 404 {"detail": {"status": "voice_not_found", ...}}
    "text_too_long",  # 400 {"detail": {"code": "max_character_limit_exceeded", ...}} (the newer shape)
    "forbidden",  # 403, output format above the plan's tier
    "rate_limited",  # 429 too_many_concurrent_requests (retry-after header when given)
    "server_error",  # 500 {"status": "internal_server_error", ...} (no detail wrapper)
    "reset",  # 200, two chunks of audio, then the connection is cut
    "stall",  # 200, two chunks of audio, then nothing for `stall_seconds` (or until the client leaves)
    "garbled",  # 200, two chunks, then a line that is not JSON, then the rest (/stream/with-timestamps only)
)
LIBRARY_FAULTS = (
    "forbidden",  # 401 missing_permissions: a scoped key that may not read voices or models
    "rate_limited",  # 429
    "server_error",  # 500 without a detail wrapper
    "garbage",  # 200 with a body that is not the vendor's JSON
)
_BREAK_AFTER_CHUNKS = 2


@dataclass
class Fault:
    kind: str
    retry_after: float | None = None


@dataclass
class RecordedRequest:
    """One call as the fake saw it; the API key itself is never recorded, only whether it matched."""

    path: str
    voice_id: str
    query: dict[str, str]
    body: dict[str, Any]
    headers: dict[str, str]
    key_ok: bool
    received_at: float
    status: int = 200
    fault: str = ""
    request_id: str = ""
    sends: list[tuple[float, int]] = field(default_factory=list)  # (monotonic send time, PCM bytes) per chunk
    pcm: bytearray = field(default_factory=bytearray)
    finished: bool = False
    disconnected_early: bool = False


class FakeElevenLabs(LoopbackServer):
    """The fake server; one instance per test. Tests read its attributes to check what happened."""

    def __init__(
        self,
        *,
        api_key: str = API_KEY,
        voices: Iterable[str] = KNOWN_VOICES,
        first_byte_ms: float = 0.0,
        realtime: bool = False,
        chunk_ms: float = 50.0,
        ms_per_char: float = 60.0,
        stall_seconds: float = 30.0,
        log_sends: TextIO | None = None,
        keep_audio: bool = True,
        pace_poll_ms: float = 10.0,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.keep_audio = keep_audio
        self.pace_poll = pace_poll_ms / 1000  # how often a paced wait checks that the client is still there
        self.api_key = api_key
        self.voices = tuple(voices)
        self.first_byte_ms = first_byte_ms
        self.realtime = realtime
        self.chunk_ms = chunk_ms
        self.ms_per_char = ms_per_char
        self.stall_seconds = stall_seconds
        self.log_sends = log_sends
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self.always: Fault | None = None
        self.open_streams = 0
        self.peak_streams = 0
        self.library_faults: list[str] = []  # for the next /v1/voices, /v2/voices or /v1/models calls
        self.library_calls: list[tuple[str, dict[str, str]]] = []  # (path, query) per catalogue call
        self.preview_requests: list[dict[str, str]] = []  # the headers of each preview download
        self.set_cookie = ""  # a Set-Cookie header for every text-to-speech response (a CDN's, say)
        self._ids = itertools.count(1)

    # --- control -----------------------------------------------------------------------------
    def fail_next(self, kind: str, times: int = 1, *, retry_after: float | None = None) -> None:
        """Answer the next `times` text-to-speech requests with fault `kind`."""
        self.faults.extend(Fault(_known(kind), retry_after) for _ in range(times))

    def fail_always(self, kind: str, *, retry_after: float | None = None) -> None:
        """Answer every text-to-speech request with `kind` until `clear_faults()`."""
        self.always = Fault(_known(kind), retry_after)

    def fail_library_next(self, kind: str, times: int = 1) -> None:
        """Answer the next `times` voice or model list calls with `kind` (LIBRARY_FAULTS)."""
        if kind not in LIBRARY_FAULTS:
            raise ValueError(f"unknown library fault {kind!r}; known: {', '.join(LIBRARY_FAULTS)}")
        self.library_faults.extend([kind] * times)

    def clear_faults(self) -> None:
        self.faults.clear()
        self.library_faults.clear()
        self.always = None

    def reset(self) -> None:
        self.clear_faults()
        self.requests.clear()
        self.library_calls.clear()
        self.preview_requests.clear()
        self.peak_streams = self.open_streams

    def tts_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if "/text-to-speech/" in r.path]

    def sent_pcm(self) -> list[bytes]:
        """The audio actually sent, per text-to-speech request, in request order."""
        return [bytes(r.pcm) for r in self.tts_requests() if r.pcm]

    def _next_fault(self) -> Fault | None:
        return self.faults.pop(0) if self.faults else self.always

    # --- lifecycle ---------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/text-to-speech/{voice_id}/stream", self.stream)
        app.router.add_post("/v1/text-to-speech/{voice_id}/stream/with-timestamps", self.stream_with_timestamps)
        app.router.add_get("/v1/voices", self.voices_v1)
        app.router.add_get("/v2/voices", self.voices_v2)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/eleven-public-prod/premade/voices/{voice_id}/preview.mp3", self.preview)
        app.router.add_post("/_fake/faults", self.control_faults)
        app.router.add_post("/_fake/reset", self.control_reset)
        app.router.add_get("/_fake/requests", self.control_requests)
        app.router.add_get("/_fake/sends", self.control_sends)
        app.router.add_get("/_fake/state", self.control_state)
        return app

    # --- request checks, in the vendor's order -----------------------------------------------
    async def _accept(self, request: web.Request) -> tuple[RecordedRequest, web.Response | None]:
        """Record the request and decide on an error answer, if any, as the vendor would."""
        try:
            body = await request.json()
        except ValueError:
            body = None
        record = RecordedRequest(
            path=request.path,
            voice_id=request.match_info["voice_id"],
            query=dict(request.query),
            body=body if isinstance(body, dict) else {},
            headers={k.lower(): v for k, v in request.headers.items() if k.lower() != "xi-api-key"},
            key_ok=request.headers.get("xi-api-key") == self.api_key,
            received_at=time.monotonic(),
            request_id=f"req_{next(self._ids)}",
        )
        self.requests.append(record)
        fault = self._next_fault()
        record.fault = fault.kind if fault else ""
        error = self._refusal(record, fault)
        if error is not None:
            record.status, record.finished = error.status, True
        return record, error

    def _refusal(self, record: RecordedRequest, fault: Fault | None) -> web.Response | None:
        kind = fault.kind if fault else ""
        if not record.key_ok or kind == "invalid_api_key":
            return _detail(401, "invalid_api_key", "Invalid API key" if not record.key_ok else "API key revoked")
        if kind == "quota_exceeded":
            return _detail(401, "quota_exceeded", "This request exceeds your quota of 10000. You have 0 credits.")
        if kind == "rate_limited":
            headers = {} if fault is None or fault.retry_after is None else {"retry-after": f"{fault.retry_after:g}"}
            return _detail(429, "too_many_concurrent_requests", "Too many concurrent requests.", headers)
        if kind == "server_error":
            return web.json_response({"status": "internal_server_error", "message": "Internal error."}, status=500)
        if kind == "forbidden":
            return _detail(403, "", "Output format is only available on the Pro tier and above.")
        if kind == "text_too_long":
            detail = {"type": "validation_error", "code": "max_character_limit_exceeded", "message": "Text too long."}
            return web.json_response({"detail": detail}, status=400)
        if kind == "voice_not_found" or record.voice_id not in self.voices:
            return _detail(404, "voice_not_found", f"A voice with voice_id {record.voice_id} was not found.")
        problems = (
            [("body", "text", "field required")]
            if kind == "unprocessable"
            else validation_problems(record.query, record.body)
        )
        if problems:
            errors = [{"loc": list(loc), "msg": msg, "type": "value_error"} for *loc, msg in problems]
            return web.json_response({"detail": errors}, status=422)
        return None

    # --- the vendor's endpoints --------------------------------------------------------------
    async def stream(self, request: web.Request) -> web.StreamResponse:
        record, error = await self._accept(request)
        if error is not None:
            return error
        rate, content_type = rate_and_type(record.query["output_format"])
        pcm = pcm_for(record.body["text"], rate, self.ms_per_char)
        chunk_bytes = max(2, round(rate * self.chunk_ms / 1000) * 2)
        chunks = [(pcm[i : i + chunk_bytes],) * 2 for i in range(0, len(pcm), chunk_bytes)]
        async with _OpenStream(self, record):
            await wait_or_disconnect(request, self.first_byte_ms / 1000)
            response = self._response(record, content_type)
            await response.prepare(request)
            await self._send(request, response, record, chunks, rate)
        return response

    async def stream_with_timestamps(self, request: web.Request) -> web.StreamResponse:
        record, error = await self._accept(request)
        if error is not None:
            return error
        text = record.body["text"]
        rate, _ = rate_and_type(record.query["output_format"])
        pcm = pcm_for(text, rate, self.ms_per_char)
        lines = [
            (json.dumps(line).encode() + b"\n", audio)
            for line, audio in timestamped_lines(text, pcm, rate, self.ms_per_char, self.chunk_ms)
        ]
        if record.fault == "garbled":
            lines.insert(min(_BREAK_AFTER_CHUNKS, len(lines)), (b'{"audio_base64": "AAAA", "align\n', b""))
        async with _OpenStream(self, record):
            await wait_or_disconnect(request, self.first_byte_ms / 1000)
            response = self._response(record, "application/json")
            await response.prepare(request)
            await self._send(request, response, record, lines, rate)
        return response

    def _response(self, record: RecordedRequest, content_type: str) -> web.StreamResponse:
        headers = {"request-id": record.request_id, "character-cost": str(len(record.body["text"]))}
        if self.set_cookie:
            headers["Set-Cookie"] = self.set_cookie
        return web.StreamResponse(headers={"Content-Type": content_type, **headers})

    async def _send(
        self,
        request: web.Request,
        response: web.StreamResponse,
        record: RecordedRequest,
        chunks: list[tuple[bytes, bytes]],
        rate: int,
    ) -> None:
        """Write (wire bytes, the PCM they carry) pairs, paced by the audio already sent when real time."""
        start = time.monotonic()
        sent_samples = 0
        for index, (wire, pcm) in enumerate(chunks):
            if index == _BREAK_AFTER_CHUNKS and record.fault in ("reset", "stall"):
                await self._break(request, record.fault)
            if self.realtime:  # chunk i leaves at t0 + the audio duration already sent
                await wait_or_disconnect(request, start + sent_samples / rate - time.monotonic(), self.pace_poll)
            await response.write(wire)
            self._log_send(record, len(pcm))
            if self.keep_audio:  # a long benchmark keeps send times only, not every byte
                record.pcm.extend(pcm)
            sent_samples += len(pcm) // 2
        await response.write_eof()
        record.finished = True

    def _log_send(self, record: RecordedRequest, size: int) -> None:
        now = time.monotonic()
        record.sends.append((now, size))
        if self.log_sends is not None:
            self.log_sends.write(json.dumps({"request_id": record.request_id, "t": now, "bytes": size}) + "\n")
            self.log_sends.flush()

    async def _break(self, request: web.Request, fault: str) -> None:
        if fault == "stall":
            await wait_or_disconnect(request, self.stall_seconds)
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError("fault injected: connection reset mid-stream")

    def _library_refusal(self, request: web.Request) -> web.Response | None:
        self.library_calls.append((request.path, dict(request.query)))
        if request.headers.get("xi-api-key") != self.api_key:
            return _detail(401, "invalid_api_key", "Invalid API key")
        kind = self.library_faults.pop(0) if self.library_faults else ""
        if kind == "forbidden":
            message = "The API key you used is missing the permission voices_read to execute this operation."
            return _detail(401, "missing_permissions", message)
        if kind == "rate_limited":
            return _detail(429, "too_many_concurrent_requests", "Too many concurrent requests.")
        if kind == "server_error":
            return web.json_response({"status": "internal_server_error", "message": "Internal error."}, status=500)
        if kind == "garbage":
            return web.Response(text="<html>bad gateway</html>", content_type="text/html")
        return None

    def _preview_base(self, request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    async def voices_v1(self, request: web.Request) -> web.Response:
        if (refused := self._library_refusal(request)) is not None:
            return refused
        base = self._preview_base(request)
        return web.json_response({"voices": [voice_json(v, base) for v in self.voices]})

    async def voices_v2(self, request: web.Request) -> web.Response:
        if (refused := self._library_refusal(request)) is not None:
            return refused
        size = int(request.query.get("page_size", "10"))
        if not 1 <= size <= 100:
            errors = [{"loc": ["query", "page_size"], "msg": "must be between 1 and 100", "type": "value_error"}]
            return web.json_response({"detail": errors}, status=422)
        start = int(request.query.get("next_page_token") or 0)
        base = self._preview_base(request)
        page = [voice_json(v, base) for v in self.voices[start : start + size]]
        more = start + size < len(self.voices)
        return web.json_response(
            {
                "voices": page,
                "has_more": more,
                "total_count": len(self.voices),
                "next_page_token": str(start + size) if more else None,
            }
        )

    async def models(self, request: web.Request) -> web.Response:
        return self._library_refusal(request) or web.json_response(MODELS)

    async def preview(self, request: web.Request) -> web.StreamResponse:
        """A voice's sample on the public file host: no key needed, sent in pieces."""
        self.preview_requests.append({k.lower(): v for k, v in request.headers.items()})
        voice_id = request.match_info["voice_id"]
        if voice_id not in self.voices:
            return web.Response(status=404, text="NoSuchKey")
        body = preview_for(voice_id)
        response = web.StreamResponse(headers={"Content-Type": "audio/mpeg", "Content-Length": str(len(body))})
        await response.prepare(request)
        for start in range(0, len(body), 8192):
            await response.write(body[start : start + 8192])
        await response.write_eof()
        return response

    # --- test control ------------------------------------------------------------------------
    async def control_faults(self, request: web.Request) -> web.Response:
        data = await request.json()
        try:
            if data.get("always"):
                self.fail_always(data["kind"], retry_after=data.get("retry_after"))
            else:
                self.fail_next(data["kind"], int(data.get("times", 1)), retry_after=data.get("retry_after"))
        except (KeyError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"queued": [f.kind for f in self.faults], "always": _kind(self.always)})

    async def control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def control_requests(self, request: web.Request) -> web.Response:
        names = [name for name in RecordedRequest.__dataclass_fields__ if name != "pcm"]
        rows = [{name: getattr(r, name) for name in names} | {"pcm_bytes": len(r.pcm)} for r in self.requests]
        return web.json_response(rows)

    async def control_sends(self, request: web.Request) -> web.Response:
        return web.json_response([{"request_id": r.request_id, "sends": r.sends} for r in self.tts_requests()])

    async def control_state(self, request: web.Request) -> web.Response:
        state = {"open_streams": self.open_streams, "peak_streams": self.peak_streams, "requests": len(self.requests)}
        return web.json_response(state)


class _OpenStream:
    """Counts a streaming answer as open from its first moment until its handler ends, however it ends."""

    def __init__(self, fake: FakeElevenLabs, record: RecordedRequest) -> None:
        self.fake, self.record = fake, record

    async def __aenter__(self) -> None:
        self.fake.open_streams += 1
        self.fake.peak_streams = max(self.fake.peak_streams, self.fake.open_streams)

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.fake.open_streams -= 1
        if exc_type is not None and issubclass(exc_type, ConnectionResetError | asyncio.CancelledError):
            # Faults cut the stream on purpose; only a client leaving on its own counts as "early".
            self.record.disconnected_early = not self.record.fault


def _known(kind: str) -> str:
    if kind not in FAULTS:
        raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")
    return kind


def _kind(fault: Fault | None) -> str | None:
    return fault.kind if fault else None


def _detail(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"detail": {"status": code, "message": message}}, status=status, headers=headers)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake ElevenLabs API on loopback.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=API_KEY)
    parser.add_argument("--first-byte-ms", type=float, default=150.0)
    parser.add_argument("--realtime", action="store_true", help="pace audio at real time")
    parser.add_argument("--chunk-ms", type=float, default=50.0)
    parser.add_argument("--log-sends", type=Path, help="append one JSON line per chunk sent to this file")
    parser.add_argument(
        "--pace-poll-ms", type=float, default=10.0, help="how often real-time pacing checks for a gone client"
    )
    args = parser.parse_args()
    log = args.log_sends.open("a") if args.log_sends else None
    fake = FakeElevenLabs(
        api_key=args.api_key,
        first_byte_ms=args.first_byte_ms,
        realtime=args.realtime,
        chunk_ms=args.chunk_ms,
        log_sends=log,
        keep_audio=False,
        pace_poll_ms=args.pace_poll_ms,
        port=args.port,
    )

    async def serve() -> None:
        await fake.start()
        print(fake.url, flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
