"""A fake ElevenLabs Agents platform on loopback: signed URLs, the convai WebSocket, transcripts, agent list.

It speaks the vendor's contract as ../shared/ELEVENLABS.md §5–§6 describes it, for the official SDK (signed
URL, conversation detail, agent list) and for our own `websockets` client (the conversation socket):

* `GET /v1/convai/conversation/get-signed-url?agent_id=` — `xi-api-key` checked; 401 invalid_api_key or
  quota_exceeded, 404 unknown agent, 429 concurrent_limit_exceeded, 500, in the vendor's error shapes.
* `WS /v1/convai/conversation?agent_id=…&conversation_signature=…` (subprotocol `convai`): expects
  `conversation_initiation_client_data` first and refuses overrides the agent does not allow (close 1008
  `override_error`) or a missing required dynamic variable (1008 `missing_dynamic_variable`); sends
  `conversation_initiation_metadata`, pings (answer with pong), answers each `user_message` with
  `user_transcript`, `agent_chat_response_part` start/delta/stop, `agent_response` and `audio` events
  (deterministic PCM at the agent's format with per-character `alignment`); `user_activity` or a new
  `user_message` during a reply interrupts it the way the vendor does: no more of its audio, an
  `interruption`, then `agent_response_correction` with the text whose audio was sent. No input for
  `idle_limit` seconds closes with 1002 `transport_receive_timeout`.
* `GET /v1/convai/conversations/{id}` (transcript and metadata) and `GET /v1/convai/agents`.

Run it like the TTS fake: `async with FakeElevenLabsAgents() as fake:`, `FakeElevenLabsAgents.start_in_thread()`,
or as a process: `python -m tests.fakes.elevenlabs_agent --port 0 --first-response-ms 300 --chunk-gap-ms 50`
(prints its URL on the first stdout line).
Faults: `fake.fail_next(kind, times)` / `fake.fail_always(kind)`, or `POST /_fake/faults {"kind", "times",
"always"}`; signed-URL faults hit the next signed-URL request, handshake faults the next socket, reply
faults the next reply. Records: `signed_url_requests`, `conversations` (what each client sent and was sent).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.elevenlabs import API_KEY
from tests.fakes.elevenlabs_agent_contract import (
    AGENTS,
    FakeAgent,
    FakeConversation,
    FakeReply,
    agent_json,
    conversation_json,
    default_reply,
    override_paths,
    sentences,
)
from tests.fakes.elevenlabs_contract import pcm_for
from tests.fakes.loopback import LoopbackServer

__all__ = [
    "AGENTS",
    "API_KEY",
    "FAULTS",
    "FakeAgent",
    "FakeConversation",
    "FakeElevenLabsAgents",
    "FakeReply",
    "default_reply",
]

URL_FAULTS = ("invalid_api_key", "quota_exceeded", "concurrency_limit", "server_error")
HANDSHAKE_FAULTS = ("handshake_forbidden",)  # the socket's signature refused: HTTP 403 before the upgrade
REPLY_FAULTS = (
    "close_1008",  # the vendor closes with 1008 after the reply's first audio
    "close_1011",  # ... with 1011 (internal error)
    "stall",  # after the first audio nothing more at all, not even pings, until the client leaves
    "slow_first_response",  # nothing of the reply for `slow_seconds` (pings go on)
)
FAULTS = URL_FAULTS + HANDSHAKE_FAULTS + REPLY_FAULTS
SIGNATURE_SECONDS = 15 * 60


class FakeElevenLabsAgents(LoopbackServer):
    def __init__(
        self,
        *,
        api_key: str = API_KEY,
        agents: Iterable[FakeAgent] = AGENTS,
        ping_interval: float = 0.5,
        idle_limit: float = 60.0,
        ms_per_char: int = 60,
        chunk_chars: int = 12,
        chunk_gap_ms: float = 0.0,
        first_response_ms: float = 0.0,
        slow_seconds: float = 30.0,
        echo_user_transcript: bool = True,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.api_key = api_key
        self.agents = {agent.agent_id: agent for agent in agents}
        self.ping_interval = ping_interval
        self.idle_limit = idle_limit
        self.ms_per_char = ms_per_char
        self.chunk_chars = chunk_chars
        self.chunk_gap_ms = chunk_gap_ms
        self.first_response_ms = first_response_ms
        self.slow_seconds = slow_seconds
        self.echo_user_transcript = echo_user_transcript
        self.compose: Callable[[str, FakeConversation], str] = default_reply
        # Test hooks: the final agent_response text (the vendor may tidy what it streamed), and raw
        # events (client_tool_call, error, …) sent once, numbered, before the next reply's text.
        self.final_text: Callable[[str], str] = lambda text: text
        self.inject: list[dict[str, Any]] = []
        self.signed_url_requests: list[dict[str, Any]] = []
        self.issued_signatures: list[str] = []
        self.conversations: list[FakeConversation] = []
        self.open_sockets = 0
        self._signatures: dict[str, tuple[str, float, bool]] = {}  # token -> (agent_id, issued, single use)
        self._faults: dict[tuple[str, ...], list[str]] = {URL_FAULTS: [], HANDSHAKE_FAULTS: [], REPLY_FAULTS: []}
        self._always: set[str] = set()
        self._ids = itertools.count(1)
        self._sockets: set[web.WebSocketResponse] = set()

    # --- control -----------------------------------------------------------------------------
    def fail_next(self, kind: str, times: int = 1) -> None:
        self._faults[_group(kind)].extend([kind] * times)

    def fail_always(self, kind: str) -> None:
        _group(kind)
        self._always.add(kind)

    def clear_faults(self) -> None:
        for queue in self._faults.values():
            queue.clear()
        self._always.clear()

    def _next_fault(self, group: tuple[str, ...]) -> str:
        queue = self._faults[group]
        if queue:
            return queue.pop(0)
        return next((kind for kind in group if kind in self._always), "")

    def conversation(self, conversation_id: str) -> FakeConversation | None:
        return next((c for c in self.conversations if c.conversation_id == conversation_id), None)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/convai/conversation/get-signed-url", self.signed_url)
        app.router.add_get("/v1/convai/conversation", self.socket)
        app.router.add_get("/v1/convai/conversations/{conversation_id}", self.conversation_detail)
        app.router.add_get("/v1/convai/agents", self.agent_list)
        app.router.add_post("/_fake/faults", self.control_faults)
        app.router.add_get("/_fake/state", self.control_state)
        app.on_shutdown.append(self._close_sockets)
        return app

    async def _close_sockets(self, app: web.Application) -> None:
        """Hang up on clients still connected, as the vendor going away would (else shutdown waits)."""
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"server shutting down")

    # --- REST --------------------------------------------------------------------------------
    async def signed_url(self, request: web.Request) -> web.Response:
        agent_id = request.query.get("agent_id", "")
        key_ok = request.headers.get("xi-api-key") == self.api_key
        self.signed_url_requests.append({"agent_id": agent_id, "key_ok": key_ok, "query": dict(request.query)})
        fault = self._next_fault(URL_FAULTS)
        if not key_ok or fault == "invalid_api_key":
            return _detail(401, "invalid_api_key", "Invalid API key")
        if fault == "quota_exceeded":
            return _detail(401, "quota_exceeded", "This request exceeds your quota. You have 0 credits remaining.")
        if fault == "concurrency_limit":
            message = "Too many concurrent conversations. Your plan allows a maximum of 2 concurrent conversations."
            return _detail(429, "concurrent_limit_exceeded", message)
        if fault == "server_error":
            return web.json_response({"status": "internal_server_error", "message": "Internal error."}, status=500)
        if agent_id not in self.agents:
            return _detail(404, "agent_not_found", f"Agent with id {agent_id} not found.")
        token = secrets.token_urlsafe(18)
        single_use = request.query.get("include_conversation_id") == "true"
        self._signatures[token] = (agent_id, time.time(), single_use)
        self.issued_signatures.append(token)
        ws_root = self.url.replace("http://", "ws://")
        url = f"{ws_root}/v1/convai/conversation?agent_id={agent_id}&conversation_signature={token}"
        return web.json_response({"signed_url": url})

    async def conversation_detail(self, request: web.Request) -> web.Response:
        if request.headers.get("xi-api-key") != self.api_key:
            return _detail(401, "invalid_api_key", "Invalid API key")
        found = self.conversation(request.match_info["conversation_id"])
        if found is None:
            return _detail(404, "conversation_not_found", "Conversation not found.")
        return web.json_response(conversation_json(found))

    async def agent_list(self, request: web.Request) -> web.Response:
        if request.headers.get("xi-api-key") != self.api_key:
            return _detail(401, "invalid_api_key", "Invalid API key")
        search = request.query.get("search", "").lower()
        agents = [a for a in self.agents.values() if search in a.name.lower()]
        size = int(request.query.get("page_size", "30"))
        start = int(request.query.get("cursor") or 0)
        page, more = agents[start : start + size], start + size < len(agents)
        return web.json_response(
            {
                "agents": [agent_json(a) for a in page],
                "next_cursor": str(start + size) if more else None,
                "has_more": more,
            }
        )

    # --- the conversation socket ---------------------------------------------------------------
    async def socket(self, request: web.Request) -> web.StreamResponse:
        agent = self._authorised_agent(request)
        if agent is None or self._next_fault(HANDSHAKE_FAULTS):
            return web.json_response({"detail": {"status": "invalid_signature"}}, status=403)
        ws = web.WebSocketResponse(protocols=("convai",), autoping=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        conversation = FakeConversation(conversation_id=f"conv_{next(self._ids):04d}", agent=agent)
        self.conversations.append(conversation)
        self.open_sockets += 1
        try:
            await _Session(self, ws, conversation).run()
        finally:
            self.open_sockets -= 1
            self._sockets.discard(ws)
            conversation.ended_at = conversation.ended_at or time.time()
            conversation.close_code = conversation.close_code or ws.close_code
        return ws

    def _authorised_agent(self, request: web.Request) -> FakeAgent | None:
        token = request.query.get("conversation_signature", "")
        agent_id, issued, single_use = self._signatures.get(token, ("", 0.0, False))
        if not agent_id or agent_id != request.query.get("agent_id") or time.time() - issued > SIGNATURE_SECONDS:
            return None
        if single_use:
            del self._signatures[token]
        return self.agents[agent_id]

    # --- test control over HTTP ----------------------------------------------------------------
    async def control_faults(self, request: web.Request) -> web.Response:
        data = await request.json()
        try:
            if data.get("always"):
                self.fail_always(data["kind"])
            else:
                self.fail_next(data["kind"], int(data.get("times", 1)))
        except (KeyError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})

    async def control_state(self, request: web.Request) -> web.Response:
        rows = [
            {"conversation_id": c.conversation_id, "received": c.received_types(), "close_code": c.close_code}
            for c in self.conversations
        ]
        return web.json_response({"open_sockets": self.open_sockets, "conversations": rows})


class _Session:
    """One open conversation socket: the vendor's side of the protocol."""

    def __init__(self, fake: FakeElevenLabsAgents, ws: web.WebSocketResponse, conversation: FakeConversation) -> None:
        self.fake, self.ws, self.conversation = fake, ws, conversation
        self.event_ids = itertools.count(1)
        self.send_lock = asyncio.Lock()
        self.reply: FakeReply | None = None
        self.reply_task: asyncio.Task[None] | None = None
        self.last_input = time.monotonic()
        self.tasks: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        try:
            first = await asyncio.wait_for(self.ws.receive(), timeout=10)
        except TimeoutError:
            return await self.close(1008, "invalid_message")
        if first.type != WSMsgType.TEXT:
            return
        init = json.loads(first.data)
        self.conversation.received.append(init)
        if (refusal := self.refusal(init)) is not None:
            return await self.close(1008, refusal)
        self.conversation.init = init
        await self.send_metadata()
        self.tasks = [asyncio.create_task(self.pinger()), asyncio.create_task(self.idle_watch())]
        if greeting := self.first_message(init):
            self.start_reply("", greeting=greeting)
        try:
            async for message in self.ws:
                if message.type == WSMsgType.TEXT:
                    await self.handle(json.loads(message.data))
        finally:
            for task in [*self.tasks, *([self.reply_task] if self.reply_task else [])]:
                task.cancel()
            await asyncio.gather(*self.tasks, *([self.reply_task] if self.reply_task else []), return_exceptions=True)

    def refusal(self, init: dict[str, Any]) -> str | None:
        if init.get("type") != "conversation_initiation_client_data":
            return "invalid_message: conversation_initiation_client_data must come first"
        overrides = init.get("conversation_config_override") or {}
        refused = sorted(set(override_paths(overrides)) - self.conversation.agent.allowed_overrides)
        if refused:
            return f"override_error: Override for field '{refused[0]}' is not allowed by config."
        variables = init.get("dynamic_variables") or {}
        missing = [name for name in self.conversation.agent.required_variables if name not in variables]
        if missing:
            return f"missing_dynamic_variable: Missing required dynamic variables in first message: {missing}"
        self.conversation.text_only = bool((overrides.get("conversation") or {}).get("text_only"))
        return None

    async def send_metadata(self) -> None:
        event = {
            "conversation_id": self.conversation.conversation_id,
            "agent_output_audio_format": self.conversation.agent.output_format,
            "user_input_audio_format": "pcm_16000",
        }
        await self.send("conversation_initiation_metadata", event, event_id=False)

    async def send(self, kind: str, payload: dict[str, Any], *, key: str = "", event_id: bool = True) -> int:
        async with self.send_lock:
            number = next(self.event_ids) if event_id else 0
            body = {**payload, "event_id": number} if event_id else payload
            if self.ws.closed or self.conversation.stalled:
                return number
            await self.ws.send_str(json.dumps({"type": kind, key or f"{kind}_event": body}))
            self.conversation.sent_types.append(kind)
            return number

    async def close(self, code: int, reason: str) -> None:
        self.conversation.close_code = code
        self.conversation.termination_reason = reason
        self.conversation.ended_at = time.time()
        await self.ws.close(code=code, message=reason.encode()[:120])

    # --- client messages ---------------------------------------------------------------------
    async def handle(self, message: dict[str, Any]) -> None:
        self.conversation.received.append(message)
        match message.get("type"):
            case "pong":
                self.conversation.pongs.append(int(message.get("event_id", 0)))
            case "user_message":
                self.last_input = time.monotonic()
                await self.interrupt()
                self.start_reply(str(message.get("text", "")))
            case "user_activity":
                self.last_input = time.monotonic()
                await self.interrupt()
            case "contextual_update":
                self.last_input = time.monotonic()
                self.conversation.contextual_updates.append(str(message.get("text", "")))

    def first_message(self, init: dict[str, Any]) -> str:
        agent_override = (init.get("conversation_config_override") or {}).get("agent") or {}
        return str(agent_override.get("first_message", self.conversation.agent.first_message))

    def start_reply(self, user_text: str, *, greeting: str = "") -> None:
        text = greeting or self.fake.compose(user_text, self.conversation)
        reply = FakeReply(user_text=user_text, text=text, greeting=bool(greeting))
        self.conversation.replies.append(reply)
        if not greeting:
            self.conversation.transcript.append(self.turn("user", user_text))
        self.reply = reply
        self.reply_task = asyncio.create_task(self.speak(reply))

    async def interrupt(self) -> None:
        """The user took the turn: stop the running reply's audio at once, then say what was kept."""
        reply, task = self.reply, self.reply_task
        if reply is None or task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        reply.interrupted = True
        kept = reply.spoken.strip()
        entry = self.turn("agent", kept, interrupted=True, original=reply.text)
        if reply.entry is not None:  # its text was complete: the transcript keeps what was heard instead
            reply.entry.update(entry, time_in_call_secs=reply.entry["time_in_call_secs"])
        else:
            self.conversation.transcript.append(entry)
        await self.send("interruption", {})
        correction = {"original_agent_response": reply.text, "corrected_agent_response": kept}
        await self.send("agent_response_correction", correction)

    # --- the agent's reply -------------------------------------------------------------------
    async def speak(self, reply: FakeReply) -> None:
        """A reply: its text as parts (when the agent streams them), agent_response, and audio per sentence.

        The vendor's first message is spoken the same way, without parts and without a user transcript."""
        fault = "" if reply.greeting else self.fake._next_fault(REPLY_FAULTS)
        if not reply.greeting and self.fake.echo_user_transcript:
            await self.send("user_transcript", {"user_transcript": reply.user_text}, key="user_transcription_event")
        await asyncio.sleep(self.fake.first_response_ms / 1000)
        if fault == "slow_first_response":
            await asyncio.sleep(self.fake.slow_seconds)
        parts = self.conversation.agent.chat_parts and not reply.greeting
        for event in [] if reply.greeting else self.fake.inject:
            kind = str(event["type"])
            key = next(k for k in event if k != "type")
            await self.send(kind, event[key], key=key)
        self.fake.inject = [] if not reply.greeting else self.fake.inject
        if parts:
            await self.part("start")
        pieces = sentences(reply.text)
        for index, sentence in enumerate(pieces):
            if parts:
                for piece in re.findall(r"\S+\s*", sentence):
                    await self.part("delta", piece)
            if index == len(pieces) - 1:
                if parts:
                    await self.part("stop")
                await self.send("agent_response", {"agent_response": self.fake.final_text(reply.text)})
                reply.entry = self.turn("agent", reply.text)
                self.conversation.transcript.append(reply.entry)
            if not self.conversation.text_only and not await self.speak_sentence(reply, sentence, fault):
                return
        reply.finished = True
        self.last_input = time.monotonic()  # the vendor's idle clock runs from the end of the agent's turn

    async def part(self, kind: str, text: str = "") -> None:
        await self.send("agent_chat_response_part", {"text": text, "type": kind}, key="text_response_part")

    async def speak_sentence(self, reply: FakeReply, sentence: str, fault: str) -> bool:
        """Send the sentence's audio; False when a fault ended the conversation."""
        rate = int(self.conversation.agent.output_format.split("_")[1])
        ms = self.fake.ms_per_char
        pcm = pcm_for(sentence, rate, ms)
        size = self.fake.chunk_chars
        for start in range(0, len(sentence), size):
            chars = sentence[start : start + size]
            end = len(pcm) if start + size >= len(sentence) else round((start + size) * ms * rate / 1000) * 2
            piece = pcm[round(start * ms * rate / 1000) * 2 : end]
            alignment = {
                "chars": list(chars),
                "char_start_times_ms": [i * ms for i in range(len(chars))],
                "char_durations_ms": [ms] * len(chars),
            }
            await self.send("audio", {"audio_base_64": base64.b64encode(piece).decode(), "alignment": alignment})
            reply.spoken += chars
            reply.audio_bytes += len(piece)
            if fault in ("close_1008", "close_1011"):
                code = int(fault[-4:])
                await self.close(code, "Policy violation" if code == 1008 else "Internal error")
                return False
            if fault == "stall":
                self.conversation.stalled = True
                await asyncio.sleep(3600)  # cancelled when the client leaves
            await asyncio.sleep(self.fake.chunk_gap_ms / 1000)
        return True

    def turn(self, role: str, message: str, *, interrupted: bool = False, original: str = "") -> dict[str, Any]:
        entry: dict[str, Any] = {
            "role": role,
            "message": message,
            "time_in_call_secs": int(time.time() - self.conversation.started_at),
            "interrupted": interrupted,
            "source_medium": "text" if role == "user" else None,
        }
        if original:
            entry["original_message"] = original
        return entry

    # --- keep-alive and idle -----------------------------------------------------------------
    async def pinger(self) -> None:
        while not self.ws.closed:
            if not self.conversation.stalled:
                number = await self.send("ping", {"ping_ms": None})
                self.conversation.pings.append(number)
            await asyncio.sleep(self.fake.ping_interval)

    async def idle_watch(self) -> None:
        while not self.ws.closed:
            speaking = self.reply_task is not None and not self.reply_task.done()
            left = self.fake.idle_limit - (time.monotonic() - self.last_input)
            if left <= 0 and not speaking:
                return await self.close(1002, "transport_receive_timeout")
            await asyncio.sleep(max(0.01, min(left, 0.05)))


def _group(kind: str) -> tuple[str, ...]:
    for group in (URL_FAULTS, HANDSHAKE_FAULTS, REPLY_FAULTS):
        if kind in group:
            return group
    raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")


def _detail(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"detail": {"status": code, "message": message}}, status=status)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake ElevenLabs agents platform on loopback.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=API_KEY)
    parser.add_argument("--first-response-ms", type=float, default=300.0, help="the agent's LLM, before any event")
    parser.add_argument("--chunk-gap-ms", type=float, default=0.0, help="pause after each audio event")
    parser.add_argument("--ping-interval", type=float, default=5.0)
    args = parser.parse_args()
    fake = FakeElevenLabsAgents(
        api_key=args.api_key,
        first_response_ms=args.first_response_ms,
        chunk_gap_ms=args.chunk_gap_ms,
        ping_interval=args.ping_interval,
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
