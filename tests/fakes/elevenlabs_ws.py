"""The fake ElevenLabs API plus its text-to-speech WebSockets, `stream-input` and `multi-stream-input`.

It is the HTTP fake (tests/fakes/elevenlabs.py) with two more routes, so one loopback server speaks both
transports with the same key, voices and audio: the PCM of a generated text is `pcm_for(text)`, exactly
what `/stream` answers for that text, so a reply's bytes can be compared across transports.

The protocol, as ../shared/ELEVENLABS.md §4 and the SDK's message types describe it:
* auth by the `xi-api-key` header (or `xi-api-key`/`xi_api_key`/`authorization` in the first message);
  a wrong key gets `{"message", "error": "invalid_api_key", "code": 1008}` and a 1008 close.
* `stream-input`: the first message must be `{"text": " "}` (voice_settings, generation_config only there,
  or unchanged later); texts are buffered, generated when flushed (`flush: true`), when the buffer passes
  the chunk_length_schedule, or at once with `auto_mode=true`; `{"text": " "}` keeps it alive;
  `{"text": ""}` generates what is left, sends `{"isFinal": true}` and closes.
* `multi-stream-input`: messages carry `context_id`; the first message of an unknown id creates that
  context; `{"context_id", "text": ""}` keeps a context alive; `close_context` drops its unflushed text,
  still sends the audio of what was flushed (the SDK: "it will continue flushing") and then
  `{"isFinal": true, "contextId"}` — so audio does arrive after a close, and a client must drop it;
  `close_socket` finishes every context and closes. A sixth context that has not had its isFinal yet
  closes the socket with 1008 "Maximum simultaneous contexts per WebSocket connection exceeded (5)".
* a context (or, on stream-input, the socket) without input for `inactivity_timeout` seconds (query,
  default 20, at most 180) closes the socket with 1008 and the vendor's reason; so does a multi socket
  without any context for that long.
* audio messages carry `chunk_ms` of PCM each with the alignment of the characters that start in them,
  times relative to that message; with `sync_alignment=true` every message has it, without it every
  second one has `alignment: null` (the vendor may omit it). Each generation is made from the moment it
  was flushed, `first_byte_ms` later, and with `realtime` paced from then on like an HTTP request of
  the HTTP fake; a context's generations are sent in order, so one made while the previous was still
  being sent follows it at once (the vendor generates ahead; so do two HTTP requests in flight).

Faults (`fail_ws_next(kind, times, seconds=...)`, `fail_ws_always(kind)`, or `POST /_fake/ws-faults`)
are listed in WS_FAULTS. Records: `sockets` (RecordedSocket: every client message, the close, the
contexts left open), `contexts` (RecordedContext: texts, generations, PCM sent, audio sent after the
client closed it), `problems` (client messages that break the protocol's rules but that the vendor
would let pass, e.g. a text without its trailing space), counters `open_sockets`, `open_contexts` and
their peaks. Over HTTP: `GET /_fake/ws-state`, `GET /_fake/ws-sends`; `POST /_fake/reset` clears them.

Run as a process like the HTTP fake: `python -m tests.fakes.elevenlabs_ws --port 0 --realtime`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.elevenlabs import API_KEY, FakeElevenLabs
from tests.fakes.elevenlabs_contract import PCM_RATES, pcm_for

__all__ = [
    "INACTIVITY_REASON",
    "MAX_CONTEXTS_REASON",
    "QUOTA_MESSAGE",
    "WS_FAULTS",
    "FakeElevenLabsWS",
    "RecordedContext",
    "RecordedSocket",
]

WS_FAULTS = (
    "invalid_api_key",  # the next socket: the vendor's error message, then close 1008 "Invalid API key"
    "quota_exceeded",  # the next context's first generation: the vendor's quota message, then close 1008
    "stall",  # the next context: two audio messages, then nothing at all for `stall_seconds`
    "drop",  # the next context: two audio messages, then the TCP connection is cut without a close frame
    "slow_first_audio",  # the next context: its first audio comes `seconds` later than usual
)
_CONTEXT_FAULTS = ("quota_exceeded", "stall", "drop", "slow_first_audio")
_BREAK_AFTER_MESSAGES = 2
INACTIVITY_REASON = "Have not received a new text input within the timeout of {} seconds. Streaming input terminated."
MAX_CONTEXTS_REASON = "Maximum simultaneous contexts per WebSocket connection exceeded ({})"
QUOTA_MESSAGE = "This request exceeds your quota of 10000. You have 0 credits remaining, while 91 credits are required."
DEFAULT_SCHEDULE = (120, 160, 250, 290)
_SECRET_FIELDS = ("xi-api-key", "xi_api_key", "authorization")


@dataclass
class WsFault:
    kind: str
    seconds: float = 2.0


@dataclass
class RecordedContext:
    """One synthesis context as the fake saw it (on stream-input, the socket's only one, id "")."""

    context_id: str
    socket: int  # index in `sockets`
    created_at: float
    voice_settings: Any = None
    generation_config: Any = None
    texts: list[str] = field(default_factory=list)  # every message's text that was more than a keep-alive
    generations: list[str] = field(default_factory=list)  # each text generated, stripped, in order
    pcm: bytearray = field(default_factory=bytearray)
    audio_messages: int = 0
    sends: list[tuple[float, int]] = field(default_factory=list)  # (monotonic send time, PCM bytes)
    first_text_at: float | None = None  # when its first text came: what a request's arrival is on HTTP
    first_audio_at: float | None = None
    keep_alives: int = 0
    closed_by_client: bool = False
    closed_at: float | None = None
    audio_after_close: int = 0  # PCM bytes sent after the client closed it: what it must drop
    final_sent: bool = False
    fault: str = ""


@dataclass
class RecordedSocket:
    """One WebSocket connection; keys the client sent in messages are recorded as "***"."""

    endpoint: str  # "stream-input" | "multi-stream-input"
    voice_id: str
    query: dict[str, str]
    headers: dict[str, str]
    key_ok: bool
    opened_at: float
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    contexts: list[RecordedContext] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    closed_by: str = ""  # "server" | "client"
    # Contexts the client never closed, when the socket ended for no fault of the fake's own making.
    left_open: list[str] = field(default_factory=list)
    fault: str = ""


class FakeElevenLabsWS(FakeElevenLabs):
    """The HTTP fake plus the TTS WebSockets; one instance per test."""

    def __init__(
        self,
        *,
        inactivity_timeout: float = 20.0,
        max_contexts: int = 5,
        ws_chunk_ms: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.inactivity_timeout = inactivity_timeout  # when the client's query names none
        self.max_contexts = max_contexts
        self.ws_chunk_ms = ws_chunk_ms or self.chunk_ms
        self.sockets: list[RecordedSocket] = []
        self.contexts: list[RecordedContext] = []
        self.problems: list[str] = []
        self.ws_faults: list[WsFault] = []
        self.ws_always: WsFault | None = None
        self.open_sockets = self.peak_sockets = 0
        self.open_contexts = self.peak_contexts = 0

    # --- control -----------------------------------------------------------------------------
    def fail_ws_next(self, kind: str, times: int = 1, *, seconds: float = 2.0) -> None:
        """The next `times` sockets (invalid_api_key) or contexts (the others) get fault `kind`."""
        self.ws_faults.extend(WsFault(_known(kind), seconds) for _ in range(times))

    def fail_ws_always(self, kind: str, *, seconds: float = 2.0) -> None:
        self.ws_always = WsFault(_known(kind), seconds)

    def clear_faults(self) -> None:
        super().clear_faults()
        self.ws_faults.clear()
        self.ws_always = None

    def reset(self) -> None:
        super().reset()
        self.sockets.clear()
        self.contexts.clear()
        self.problems.clear()
        self.peak_sockets, self.peak_contexts = self.open_sockets, self.open_contexts

    def _take_fault(self, kinds: tuple[str, ...]) -> WsFault | None:
        for index, fault in enumerate(self.ws_faults):
            if fault.kind in kinds:
                return self.ws_faults.pop(index)
        return self.ws_always if self.ws_always and self.ws_always.kind in kinds else None

    def left_open(self) -> list[str]:
        """Contexts any socket ended with while the client had not closed them (leaks)."""
        return [context for socket in self.sockets for context in socket.left_open]

    def ws_pcm(self) -> list[bytes]:
        """The audio sent per context, in the order the contexts were created."""
        return [bytes(c.pcm) for c in self.contexts if c.pcm]

    # --- lifecycle ---------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get("/v1/text-to-speech/{voice_id}/stream-input", self.stream_input)
        app.router.add_get("/v1/text-to-speech/{voice_id}/multi-stream-input", self.multi_stream_input)
        app.router.add_post("/_fake/ws-faults", self.control_ws_faults)
        app.router.add_get("/_fake/ws-state", self.control_ws_state)
        app.router.add_get("/_fake/ws-sends", self.control_ws_sends)
        return app

    async def stream_input(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve(request, multi=False)

    async def multi_stream_input(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve(request, multi=True)

    async def _serve(self, request: web.Request, *, multi: bool) -> web.WebSocketResponse:
        record = RecordedSocket(
            endpoint="multi-stream-input" if multi else "stream-input",
            voice_id=request.match_info["voice_id"],
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items() if k.lower() not in _SECRET_FIELDS},
            key_ok=request.headers.get("xi-api-key") == self.api_key,
            opened_at=time.monotonic(),
        )
        self.sockets.append(record)
        ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        self.open_sockets += 1
        self.peak_sockets = max(self.peak_sockets, self.open_sockets)
        session = _Session(self, request, ws, record, multi=multi)
        try:
            await session.run()
        except ConnectionResetError:
            pass  # a fault cut the connection, or the client went away mid-send
        finally:
            # Counted down first: the handler may be cancelled (the client left) while it tidies up.
            self.open_sockets -= 1
            await session.end()
        return ws

    # --- test control over HTTP (for a fake in another process) ------------------------------
    async def control_requests(self, request: web.Request) -> web.Response:
        """The HTTP requests, then one row per WebSocket context in the same shape, keyed by its context id
        (what the streaming provider reports as the reply's request id), so one harness reads both."""
        response = await super().control_requests(request)
        assert response.text is not None
        rows: list[dict[str, Any]] = json.loads(response.text)
        for context in self.contexts:
            socket = self.sockets[context.socket]
            rows.append(
                {
                    "path": f"/v1/text-to-speech/{socket.voice_id}/{socket.endpoint}",
                    "voice_id": socket.voice_id,
                    "query": socket.query,
                    "body": {"text": "".join(context.texts)},
                    "headers": socket.headers,
                    "key_ok": socket.key_ok,
                    "received_at": context.first_text_at or context.created_at,
                    "status": 200 if socket.close_code in (None, 1000) else socket.close_code,
                    "fault": context.fault,
                    "request_id": context.context_id,
                    "sends": context.sends,
                    "finished": context.final_sent,
                    "disconnected_early": context.closed_by_client and context.audio_after_close > 0,
                    "pcm_bytes": sum(size for _, size in context.sends),
                }
            )
        return web.json_response(rows)

    async def control_ws_faults(self, request: web.Request) -> web.Response:
        data = await request.json()
        try:
            if data.get("always"):
                self.fail_ws_always(data["kind"], seconds=float(data.get("seconds", 2.0)))
            else:
                self.fail_ws_next(data["kind"], int(data.get("times", 1)), seconds=float(data.get("seconds", 2.0)))
        except (KeyError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"queued": [f.kind for f in self.ws_faults]})

    async def control_ws_state(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "open_sockets": self.open_sockets,
                "peak_sockets": self.peak_sockets,
                "open_contexts": self.open_contexts,
                "peak_contexts": self.peak_contexts,
                "sockets": len(self.sockets),
                "contexts": len(self.contexts),
                "left_open": self.left_open(),
                "audio_after_close": sum(c.audio_after_close for c in self.contexts),
                "problems": self.problems,
                "closes": [[s.close_code, s.close_reason, s.closed_by] for s in self.sockets],
            }
        )

    async def control_ws_sends(self, request: web.Request) -> web.Response:
        return web.json_response([{"context_id": c.context_id, "sends": c.sends} for c in self.contexts])


class _Closed(Exception):
    """The server closed the socket; the session ends."""


class _Context:
    """A live context: its text buffer, its queue of generations and the task that speaks them."""

    def __init__(self, session: _Session, record: RecordedContext, fault: WsFault | None) -> None:
        self.session = session
        self.record = record
        self.fault = fault
        self.buffer = ""
        self.schedule = list(DEFAULT_SCHEDULE)
        self.generated = 0  # generations made so far (the index into the schedule)
        self.queue: deque[tuple[str, float]] = deque()  # (text, flushed at)
        self.wake = asyncio.Event()
        self.last_input = time.monotonic()
        self.closing = False  # the client closed it (or the socket): finish what was flushed, then isFinal
        self.finished = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def add_text(self, text: str, *, flush: bool) -> None:
        self.buffer += text
        threshold = self.schedule[min(self.generated, len(self.schedule) - 1)]
        if flush or self.session.auto_mode or len(self.buffer.strip()) >= threshold:
            self.generate()

    def generate(self) -> None:
        text, self.buffer = self.buffer.strip(), ""
        if text:
            self.generated += 1
            self.queue.append((text, time.monotonic()))
            self.wake.set()

    def close(self, *, flush_rest: bool) -> None:
        if flush_rest:
            self.generate()
        self.buffer = ""
        self.closing = True
        self.wake.set()


class _Session:
    """One socket: reads client messages, enforces the rules, and owns its contexts."""

    def __init__(
        self,
        fake: FakeElevenLabsWS,
        request: web.Request,
        ws: web.WebSocketResponse,
        record: RecordedSocket,
        *,
        multi: bool,
    ) -> None:
        self.fake, self.request, self.ws, self.record, self.multi = fake, request, ws, record, multi
        self.index = len(fake.sockets) - 1
        query = record.query
        self.auto_mode = query.get("auto_mode") == "true"
        self.sync_alignment = query.get("sync_alignment") == "true"
        self.rate = 0
        self.timeout = fake.inactivity_timeout
        self.live: dict[str, _Context] = {}  # every context without its isFinal yet, closing ones too
        self.closed_ids: set[str] = set()
        self.last_input = time.monotonic()
        self.initialised = False
        self.closing_socket = False
        self.lock = asyncio.Lock()
        self.server_closed = False
        self.authorised = False
        self.closer: asyncio.Task[None] | None = None

    # --- the socket --------------------------------------------------------------------------
    async def run(self) -> None:
        refusal = self._refusal()
        if refusal is not None:
            await self.fail(*refusal)
            return
        try:
            while not self.ws.closed:
                try:
                    message = await self.ws.receive(timeout=max(0.001, self._deadline() - time.monotonic()))
                except TimeoutError:
                    if self._deadline() > time.monotonic():
                        continue  # a context closed meanwhile: the clock is later now
                    await self.fail("", INACTIVITY_REASON.format(_seconds(self.timeout)), send_error=False)
                    return
                if message.type != WSMsgType.TEXT:
                    if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                        if not self.server_closed:
                            self.record.closed_by = self.record.closed_by or "client"
                            self.record.close_code = self.ws.close_code
                        return
                    continue
                try:
                    data = json.loads(message.data)
                except ValueError:
                    await self.fail("invalid_message", "Invalid JSON.")
                    return
                if not isinstance(data, dict):
                    await self.fail("invalid_message", "Messages must be JSON objects.")
                    return
                self.record.received.append((time.monotonic(), _redacted(data)))
                if not self.authorised:
                    await self._authorise(data)
                if self.multi:
                    await self._multi(data)
                else:
                    await self._single(data)
        except _Closed:
            return

    def _refusal(self) -> tuple[str, str] | None:
        record = self.record
        fault = self.fake._take_fault(("invalid_api_key",))
        if fault is not None:
            record.fault = fault.kind
        if fault is None and not record.key_ok and "xi-api-key" not in self.request.headers:
            record.key_ok = self.request.query.get("authorization") in (
                self.fake.api_key,
                f"Bearer {self.fake.api_key}",
            )
        self.authorised = record.key_ok and fault is None
        if fault is not None or (not record.key_ok and "xi-api-key" in self.request.headers):
            return "invalid_api_key", "Invalid API key"
        if record.voice_id not in self.fake.voices:
            return "voice_not_found", f"A voice with voice_id {record.voice_id} was not found."
        fmt = record.query.get("output_format", "mp3_44100_128")
        kind, _, rate = fmt.partition("_")
        if kind != "pcm" or not rate.isdigit() or int(rate) not in PCM_RATES:
            # The fake makes PCM only; the vendor's MP3 and friends are out of its scope.
            return "invalid_request", f"Unsupported output format for this fake: {fmt}"
        self.rate = int(rate)
        if "inactivity_timeout" in record.query:
            value = record.query["inactivity_timeout"]
            if not value.isdigit() or not 1 <= int(value) <= 180:
                return "invalid_request", "inactivity_timeout must be an integer between 1 and 180."
            self.timeout = float(value)
        if record.query.get("model_id") == "eleven_v3":
            return "invalid_request", "eleven_v3 is not available over WebSockets."
        return None

    async def _authorise(self, data: dict[str, Any]) -> None:
        """No key in the header or query: the first message must carry it."""
        key = (
            data.get("xi-api-key")
            or data.get("xi_api_key")
            or str(data.get("authorization") or "").removeprefix("Bearer ")
        )
        if key != self.fake.api_key:
            await self.fail("invalid_api_key", "Invalid API key")
        self.authorised = self.record.key_ok = True

    def _deadline(self) -> float:
        """When the earliest inactivity close is due."""
        inputs = [c.last_input for c in self.live.values() if not c.closing]
        if not inputs and not any(c.closing for c in self.live.values()):
            inputs = [self.last_input]  # an idle socket times out as a whole
        if not inputs:
            return time.monotonic() + self.timeout  # only closing contexts: they end by themselves
        return min(inputs) + self.timeout

    async def fail(self, error: str, reason: str, *, send_error: bool = True) -> None:
        """The vendor's way of refusing: an error message (when it has one), then a 1008 close."""
        if send_error and error:
            with contextlib.suppress(ConnectionResetError):
                await self.send({"message": reason, "error": error, "code": 1008})
        await self.close(1008, reason)
        raise _Closed

    async def close(self, code: int, reason: str = "") -> None:
        if self.server_closed:
            return
        self.server_closed = True
        self.record.close_code, self.record.close_reason, self.record.closed_by = code, reason, "server"
        with contextlib.suppress(ConnectionResetError):
            await self.ws.close(code=code, message=reason.encode()[:123])

    async def send(self, data: dict[str, Any]) -> None:
        async with self.lock:
            if self.ws.closed:
                raise ConnectionResetError("socket closed")
            await self.ws.send_str(json.dumps(data))

    async def end(self) -> None:
        """The socket is gone: stop its contexts and note those the client never closed."""
        for context in list(self.live.values()):
            if not context.record.closed_by_client and not self.record.fault:
                self.record.left_open.append(context.record.context_id)
            if context.task is not None:
                context.task.cancel()
        tasks = [c.task for c in self.live.values() if c.task is not None]
        for context in list(self.live.values()):
            self._retire(context)
        await asyncio.gather(*tasks, return_exceptions=True)
        if not self.ws.closed:
            with contextlib.suppress(ConnectionResetError):
                await self.ws.close()

    # --- client messages ---------------------------------------------------------------------
    async def _single(self, data: dict[str, Any]) -> None:
        text = data.get("text")
        self.last_input = time.monotonic()
        if not self.initialised:
            if text != " ":
                await self.fail("invalid_message", "The first message must have text set to a single space.")
            self.initialised = True
            self._open("", data, self.fake._take_fault(_CONTEXT_FAULTS))
            return
        context = self.live.get("")
        if context is None or context.closing:
            self.fake.problems.append("stream-input: a message after the closing empty text")
            return
        self._check_settings(context, data)
        context.last_input = self.last_input
        if text == "":
            context.record.closed_by_client, context.record.closed_at = True, time.monotonic()
            context.close(flush_rest=True)  # {"text": ""} flushes, then closes
            return
        if isinstance(text, str) and text.strip():
            self._text(context, text)
        elif text == " ":
            context.record.keep_alives += 1
        if data.get("try_trigger_generation"):
            self.fake.problems.append("stream-input: try_trigger_generation (advanced, not recommended)")
        context.add_text(text if isinstance(text, str) and text.strip() else "", flush=bool(data.get("flush")))

    async def _multi(self, data: dict[str, Any]) -> None:
        self.last_input = time.monotonic()
        if data.get("close_socket"):
            for each in self.live.values():
                each.record.closed_by_client, each.record.closed_at = True, time.monotonic()
                each.close(flush_rest=False)
            self.closing_socket = True
            self._maybe_close_socket()
            return
        context_id = str(data.get("context_id", data.get("contextId", "")) or "")
        context = self.live.get(context_id)
        if context is not None and context.closing:
            self.fake.problems.append(f"multi-stream-input: message for context {context_id!r} after closing it")
            return
        if data.get("close_context"):
            if context is None:
                self.fake.problems.append(f"multi-stream-input: close_context for unknown context {context_id!r}")
                return
            context.record.closed_by_client, context.record.closed_at = True, time.monotonic()
            context.close(flush_rest=False)
            return
        text = data.get("text")
        if context is None:
            if context_id in self.closed_ids:
                self.fake.problems.append(f"multi-stream-input: context id {context_id!r} reused after closing")
            if len(self.live) >= self.fake.max_contexts:
                reason = MAX_CONTEXTS_REASON.format(self.fake.max_contexts)
                await self.fail("max_active_conversations", reason)
            context = self._open(context_id, data, self.fake._take_fault(_CONTEXT_FAULTS))
        else:
            self._check_settings(context, data)
        context.last_input = self.last_input
        if text == "" and not data.get("flush"):
            context.record.keep_alives += 1  # empty text resets the context's clock, nothing more
            return
        if isinstance(text, str) and text.strip():
            self._text(context, text)
        context.add_text(text if isinstance(text, str) and text.strip() else "", flush=bool(data.get("flush")))

    def _text(self, context: _Context, text: str) -> None:
        context.record.texts.append(text)
        if context.record.first_text_at is None:
            context.record.first_text_at = time.monotonic()
        if not text.endswith(" "):
            self.fake.problems.append(f"text does not end with a space: {text[-20:]!r}")

    def _configure(self, context: _Context, data: dict[str, Any]) -> None:
        config = data.get("generation_config") or {}
        schedule = config.get("chunk_length_schedule") if isinstance(config, dict) else None
        if schedule:
            context.schedule = [int(n) for n in schedule]

    def _check_settings(self, context: _Context, data: dict[str, Any]) -> None:
        for name in ("voice_settings", "generation_config"):
            if name in data and data[name] != getattr(context.record, name):
                self.fake.problems.append(f"{name} changed after the first message of its context")

    def _open(self, context_id: str, data: dict[str, Any], fault: WsFault | None) -> _Context:
        """A new context, from its first message (settings are taken from there only)."""
        record = RecordedContext(
            context_id=context_id,
            socket=self.index,
            created_at=time.monotonic(),
            voice_settings=data.get("voice_settings"),
            generation_config=data.get("generation_config"),
            fault=fault.kind if fault else "",
        )
        self.record.contexts.append(record)
        self.fake.contexts.append(record)
        context = _Context(self, record, fault)
        self._configure(context, data)
        self.live[context_id] = context
        self.fake.open_contexts += 1
        self.fake.peak_contexts = max(self.fake.peak_contexts, self.fake.open_contexts)
        context.task = asyncio.create_task(self._speak(context))
        return context

    def _retire(self, context: _Context) -> None:
        if self.live.get(context.record.context_id) is context:
            del self.live[context.record.context_id]
            self.closed_ids.add(context.record.context_id)
            self.fake.open_contexts -= 1

    def _maybe_close_socket(self) -> None:
        if self.closing_socket and not self.live and self.closer is None:
            self.closer = asyncio.create_task(self.close(1000))

    # --- audio -------------------------------------------------------------------------------
    async def _speak(self, context: _Context) -> None:
        """Send the context's flushed texts' audio in order, then isFinal."""
        fake = self.fake
        first = True
        try:
            while True:
                while not context.queue and not context.closing:
                    context.wake.clear()
                    await context.wake.wait()
                if not context.queue:
                    break
                text, flushed_at = context.queue.popleft()
                context.record.generations.append(text)
                fault = context.fault.kind if context.fault else ""
                if first and fault == "quota_exceeded":
                    self.record.fault = fault  # the vendor's own reason: no context counts as left open
                    await self.fail("quota_exceeded", QUOTA_MESSAGE)
                latency = fake.first_byte_ms / 1000
                if first and fault == "slow_first_audio":
                    latency += context.fault.seconds if context.fault else 0.0
                first = False
                await self._send_generation(context, text, flushed_at + latency)
            await self.send({"isFinal": True, **self._context_field(context)})
            context.record.final_sent = True
        except (_Closed, ConnectionResetError):
            return
        finally:
            self._retire(context)
            self._maybe_close_socket()
        if not self.multi:
            await self.close(1000)

    async def _send_generation(self, context: _Context, text: str, start: float) -> None:
        """Send one generation's audio, made from `start` on (and paced from then, in real time)."""
        fake = self.fake
        pcm = pcm_for(text, self.rate, fake.ms_per_char)
        piece_bytes = max(2, round(self.rate * fake.ws_chunk_ms / 1000) * 2)
        await _sleep_until(start)
        sent = 0
        while sent < len(pcm):
            piece = pcm[sent : sent + piece_bytes]
            fault = context.fault.kind if context.fault else ""
            if fault in ("stall", "drop") and context.record.audio_messages == _BREAK_AFTER_MESSAGES:
                await self._break(context)
            at = start + sent / 2 / self.rate
            if fake.realtime:
                await _sleep_until(at)
            message: dict[str, Any] = {"audio": base64.b64encode(piece).decode()}
            alignment = None
            if self.sync_alignment or context.record.audio_messages % 2 == 0:
                alignment = _alignment(text, sent / 2 / self.rate * 1000, len(piece) / 2 / self.rate * 1000, fake)
            message |= {"isFinal": None, "normalizedAlignment": alignment, "alignment": alignment}
            message |= self._context_field(context)
            await self.send(message)
            self._record_send(context, piece)
            sent += len(piece)

    async def _break(self, context: _Context) -> None:
        """Inject the context's mid-stream fault."""
        assert context.fault is not None
        kind, context.fault = context.fault.kind, None
        if kind == "drop":
            self.record.fault = kind  # its contexts could not be closed: none counts as left open
            if self.request.transport is not None:
                self.request.transport.abort()
            raise ConnectionResetError("fault injected: connection dropped mid-stream")
        # A stalled vendor answers nothing, not even a close, for `stall_seconds` (or until the socket goes).
        await asyncio.sleep(self.fake.stall_seconds)

    def _record_send(self, context: _Context, piece: bytes) -> None:
        record = context.record
        now = time.monotonic()
        record.audio_messages += 1
        record.sends.append((now, len(piece)))
        if record.first_audio_at is None:
            record.first_audio_at = now
        if record.closed_by_client:
            record.audio_after_close += len(piece)
        if self.fake.keep_audio:
            record.pcm.extend(piece)

    def _context_field(self, context: _Context) -> dict[str, str]:
        return {"contextId": context.record.context_id} if self.multi else {}


async def _sleep_until(at: float) -> None:
    delay = at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def _alignment(text: str, start_ms: float, length_ms: float, fake: FakeElevenLabsWS) -> dict[str, list[Any]]:
    """The characters of `text` that start within [start_ms, start_ms + length_ms), relative to start_ms."""
    per_char = fake.ms_per_char
    first = max(0, int(-(-start_ms // per_char)))  # ceil: the first character starting at or after start_ms
    chars, starts, durations = [], [], []
    index = first
    while index < len(text) and index * per_char < start_ms + length_ms:
        chars.append(text[index])
        starts.append(round(index * per_char - start_ms))
        durations.append(round(per_char))
        index += 1
    return {"chars": chars, "charStartTimesMs": starts, "charDurationsMs": durations}


def _redacted(data: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if k in _SECRET_FIELDS else v) for k, v in data.items()}


def _seconds(value: float) -> str:
    return f"{value:g}"


def _known(kind: str) -> str:
    if kind not in WS_FAULTS:
        raise ValueError(f"unknown WebSocket fault {kind!r}; known: {', '.join(WS_FAULTS)}")
    return kind


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake ElevenLabs API (HTTP and TTS WebSockets) on loopback.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=API_KEY)
    parser.add_argument("--first-byte-ms", type=float, default=150.0)
    parser.add_argument("--realtime", action="store_true", help="pace audio at real time")
    parser.add_argument("--chunk-ms", type=float, default=50.0)
    parser.add_argument("--inactivity-timeout", type=float, default=20.0)
    parser.add_argument("--log-sends", type=Path, help="append one JSON line per HTTP chunk sent to this file")
    parser.add_argument(
        "--pace-poll-ms", type=float, default=10.0, help="how often HTTP pacing checks for a gone client"
    )
    args = parser.parse_args()
    log = args.log_sends.open("a") if args.log_sends else None
    fake = FakeElevenLabsWS(
        api_key=args.api_key,
        first_byte_ms=args.first_byte_ms,
        realtime=args.realtime,
        chunk_ms=args.chunk_ms,
        inactivity_timeout=args.inactivity_timeout,
        log_sends=log,
        keep_audio=False,
        pace_poll_ms=args.pace_poll_ms,
    )

    async def serve() -> None:
        await fake.start()
        print(fake.url, flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
