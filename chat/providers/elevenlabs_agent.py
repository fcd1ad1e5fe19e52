"""ElevenLabs Agents as a reply backend: an agent built on the vendor's platform writes and speaks each reply.

One `ElevenLabsAgentSession` is one voicechat conversation's link to the vendor. It mints a signed URL with
the official SDK (the API key never leaves the server, never reaches a log line or an error), opens the
vendor's convai WebSocket with `websockets`, and turns each `reply(text)` into the shared reply events:
TextDelta, AudioPart (PCM at `sample_rate`, with the vendor's per-character alignment) and Correction.
The connection closes after `idle_seconds` without a reply and reopens on the next one, carrying the
conversation so far to the vendor as a `contextual_update`. See docs/agents.md.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncGenerator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import websockets
from elevenlabs import AsyncElevenLabs
from elevenlabs.core import ApiError, RequestOptions
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from chat.providers.base import (
    Alignment,
    AudioPart,
    ChatMessage,
    Correction,
    ProviderError,
    ReplyEvent,
    ReplySession,
    TextDelta,
)
from chat.providers.elevenlabs import _detail, _shared_client
from chat.providers.pcm import Resampler, ulaw_to_pcm

logger = logging.getLogger(__name__)


class _RedactSignature(logging.Filter):
    """The signed URL opens a call on our account: keep its signature out of the socket's debug log."""

    pattern = re.compile(r"(conversation_signature|token)=[^&\s'\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "=" in message:
            record.msg, record.args = self.pattern.sub(r"\1=[redacted]", message), ()
        return True


socket_logger = logging.getLogger(f"{__name__}.socket")
socket_logger.addFilter(_RedactSignature())

# The overrides voicechat can fill from its own agent settings, by their path in the vendor's override
# object. Each must also be enabled in the vendor agent's Security tab, or the vendor refuses the call.
OVERRIDES = ("agent.language", "agent.first_message", "agent.prompt.prompt", "tts.voice_id")
AUDIO_FORMAT = re.compile(r"(pcm|ulaw)_(\d+)")
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # what the SDK's own Conversation allows
SOURCE_INFO = {"source": "voicechat", "version": "1"}
HISTORY_PREAMBLE = (
    "Earlier in this conversation (restored after the connection was reopened; continue it, do not greet again):"
)


@dataclass
class ReplyReceipt:
    """Filled in while a reply runs: the vendor's ids and what it billed, for the message's record."""

    conversation_id: str = ""
    vendor_audio_format: str = ""  # what the vendor sent, before conversion to `sample_rate`
    characters: int = 0  # characters of speech text the vendor spoke (its alignment), else of the reply
    call_seconds: float = 0.0  # vendor call time this reply accounts for, since the previous one ended
    audio_bytes: int = 0  # PCM yielded, at the session's rate
    first_text_at: float | None = None  # time.monotonic() of the first text and audio of the reply
    first_audio_at: float | None = None
    reconnected: bool = False  # a connection was (re)opened for this reply
    corrected: bool = False


@dataclass(frozen=True)
class _Closed:
    code: int
    reason: str


_WAKE = object()  # wakes a reply waiting for the vendor, so it sees an interruption at once


@dataclass
class _Connection:
    ws: ClientConnection
    conversation_id: str
    audio_format: str
    rate: int
    ulaw: bool
    inbox: asyncio.Queue[Any] | None = None  # the running reply's; events between replies are dropped
    floor: int = 0  # highest `interruption` id seen: events at or below it belong to interrupted replies
    closed: _Closed | None = None
    closed_by_us: bool = False
    replies: int = 0
    reader: asyncio.Task[None] | None = None
    billed_until: float = field(default_factory=time.monotonic)

    async def send(self, message: Mapping[str, Any]) -> None:
        await self.ws.send(json.dumps(message))


@dataclass
class _Turn:
    """What one reply has seen of the vendor so far."""

    text: str
    sent_at: float
    inbox: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    floor: int = 0  # vendor events at or below this id belong to an earlier, interrupted reply
    started: bool = False
    stopped: bool = False  # the vendor's `stop` text part arrived
    final_text: str | None = None  # the vendor's agent_response
    deltas: list[str] = field(default_factory=list)
    spoken: list[str] = field(default_factory=list)  # speech text of the audio yielded
    pending_audio: list[tuple[bytes, Alignment | None]] = field(default_factory=list)
    last_event_at: float = 0.0
    text_done_at: float | None = None
    last_audio_at: float | None = None
    yielded: bool = False
    interrupted: bool = False  # by our user
    vendor_interrupted: bool = False
    grace_until: float = 0.0
    correction: str | None = None
    finished: bool = False
    # The first reply on a call may race the vendor's greeting: its events wait until the vendor echoes
    # our message (user_transcript) or interrupts the greeting, or `hold_until` passes (no echo comes).
    holding: bool = False
    held: list[dict[str, Any]] = field(default_factory=list)
    hold_until: float = 0.0


class ElevenLabsAgentSession(ReplySession):
    """A voicechat conversation's connection to an ElevenLabs agent; one reply at a time."""

    name = "elevenlabs_agent"

    def __init__(
        self,
        *,
        api_key: str,
        agent_id: str,
        base_url: str = "https://api.elevenlabs.io",
        sample_rate: int = 24000,
        allowed_overrides: Collection[str] = (),
        language: str = "",
        first_message: str | None = None,
        prompt: str = "",
        voice_id: str = "",
        text_only: bool = False,
        dynamic_variables: Mapping[str, str | int | float | bool] | None = None,
        user_id: str = "",
        history: Sequence[ChatMessage] = (),
        history_chars: int = 4000,
        idle_seconds: float = 120.0,
        keepalive_seconds: float = 25.0,
        connect_timeout: float = 10.0,
        response_timeout: float = 20.0,
        stall_seconds: float = 10.0,
        audio_settle_seconds: float = 1.0,
        interrupt_grace_seconds: float = 1.0,
        max_retries: int = 1,
    ) -> None:
        unknown = set(allowed_overrides) - set(OVERRIDES)
        if unknown:
            raise ValueError(f"Unknown ElevenLabs agent overrides {sorted(unknown)}; known: {', '.join(OVERRIDES)}.")
        if not agent_id:
            raise ValueError("An ElevenLabs agent backend needs the vendor's agent_id.")
        self._api_key = api_key
        self.agent_id = agent_id
        self.base_url = base_url.rstrip("/")
        self._sample_rate = sample_rate
        self.overrides = _overrides(
            allowed_overrides,
            {
                "agent.language": language,
                "agent.first_message": first_message,
                "agent.prompt.prompt": prompt,
                "tts.voice_id": voice_id,
            },
        )
        if text_only:
            self.overrides.setdefault("conversation", {})["text_only"] = True
        self.text_only = text_only
        self.dynamic_variables = dict(dynamic_variables or {})
        self.user_id = user_id
        self.history = list(history)
        self.history_chars = history_chars
        self.idle_seconds = idle_seconds
        self.keepalive_seconds = max(0.05, min(keepalive_seconds, idle_seconds))
        self.connect_timeout = connect_timeout
        self.response_timeout = response_timeout
        self.stall_seconds = stall_seconds
        self.audio_settle_seconds = audio_settle_seconds
        self.interrupt_grace_seconds = interrupt_grace_seconds
        self.max_retries = max(0, max_retries)
        self.conversation_id = ""  # the vendor's, of the open (or last) connection
        self.vendor_audio_format = ""
        self.conversation_ids: list[str] = []  # every vendor conversation this session opened, in order
        self.receipt = ReplyReceipt()
        self._conn: _Connection | None = None
        self._turn: _Turn | None = None
        self._resampler: Resampler | None = None
        self._parts: bool | None = None  # does this agent stream text parts (learnt from its replies)
        self._silent = False  # the agent answered without audio once: do not wait for audio again
        self._unbilled = 0.0  # call seconds of closed connections not yet counted on a reply
        self._idle: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:  # never show the key
        return f"ElevenLabsAgentSession(agent_id={self.agent_id!r}, base_url={self.base_url!r})"

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def _greeting_suppressed(self) -> bool:
        return (self.overrides.get("agent") or {}).get("first_message") == ""

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.closed is None

    # --- the ReplySession contract -----------------------------------------------------------
    async def open(self) -> None:
        """Connect now rather than on the first reply (optional); raise ProviderError on failure."""
        async with self._lock:
            if not self.connected:
                await self._connect()
                self._arm_idle()

    async def reply(self, text: str) -> AsyncGenerator[ReplyEvent, None]:
        """One user turn. After `interrupt()` it yields no more text or audio, at most the vendor's Correction."""
        if self._turn is not None:  # a reply still running is superseded, as the vendor itself would do
            await self.interrupt()
        turn = self._turn = _Turn(text=text, sent_at=time.monotonic())
        self.receipt = ReplyReceipt()
        try:
            conn = await self._send_user_message(turn)
            try:
                async for event in self._follow(turn, conn):
                    yield event
            except _Reconnect:  # once: the vendor hung up before this reply produced anything
                turn = self._turn = _Turn(text=text, sent_at=time.monotonic())
                conn = await self._send_user_message(turn)
                async for event in self._follow(turn, conn, retry=False):
                    yield event
            turn.finished = True
        finally:
            self._end(turn)

    async def interrupt(self) -> None:
        """Tell the vendor the user took the turn; the running reply yields no further text or audio."""
        turn = self._turn
        if turn is None or turn.interrupted:
            return
        turn.interrupted = True
        turn.grace_until = time.monotonic() + self.interrupt_grace_seconds
        await self._signal_interruption(turn)

    async def aclose(self) -> None:
        """Close the vendor connection; a later reply opens a new one."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._conn is not None:
            await self._disconnect(self._conn)

    # --- connecting --------------------------------------------------------------------------
    async def _connect(self) -> _Connection:
        url = await self._signed_url()
        ws = await self._open_socket(url)
        try:
            await ws.send(json.dumps(self._initiation()))
            metadata = await asyncio.wait_for(self._metadata(ws), self.connect_timeout)
        except TimeoutError:
            await ws.close()
            raise ProviderError(
                "agent_timeout",
                f"The ElevenLabs agent did not start the conversation within {self.connect_timeout:g} s.",
            ) from None
        except ConnectionClosed as exc:
            raise _close_error(_closed(exc), before_reply=True) from None
        conn = self._attach(ws, metadata)
        if self.history:
            await conn.send({"type": "contextual_update", "text": self._history_text()})
        logger.info("ElevenLabs agent %s: conversation %s opened", self.agent_id, conn.conversation_id)
        return conn

    async def _signed_url(self) -> str:
        client = AsyncElevenLabs(
            api_key=self._api_key,
            base_url=self.base_url,
            timeout=self.connect_timeout,
            httpx_client=_shared_client(self.base_url),
        )
        options = cast(RequestOptions, {"max_retries": self.max_retries})
        try:
            # A conversation id in the signature makes it single-use: a leaked URL cannot open a second call.
            response = await client.conversational_ai.conversations.get_signed_url(
                agent_id=self.agent_id, include_conversation_id=True, request_options=options
            )
        except ApiError as exc:
            raise translate_signed_url_error(exc, self.agent_id) from None
        except httpx.TransportError as exc:
            logger.warning("ElevenLabs signed URL request failed: %s", type(exc).__name__)
            raise ProviderError("agent_unavailable", "ElevenLabs cannot be reached.", retryable=True) from None
        return response.signed_url

    async def _open_socket(self, url: str) -> ClientConnection:
        try:
            return await websockets.connect(
                url,
                subprotocols=[Subprotocol("convai")],
                open_timeout=self.connect_timeout,
                max_size=MAX_MESSAGE_BYTES,
                logger=socket_logger,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise ProviderError(
                "agent_unavailable",
                f"ElevenLabs refused to open the agent conversation (HTTP {status}); try again.",
                retryable=status >= 500,
                status=status,
            ) from None
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            logger.warning("ElevenLabs agent socket failed to open: %s", type(exc).__name__)
            raise ProviderError("agent_unavailable", "ElevenLabs cannot be reached.", retryable=True) from None

    def _initiation(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "conversation_initiation_client_data",
            "conversation_config_override": self.overrides,
            "dynamic_variables": self.dynamic_variables,
            "source_info": SOURCE_INFO,
        }
        if self.user_id:
            message["user_id"] = self.user_id
        return message

    async def _metadata(self, ws: ClientConnection) -> dict[str, Any]:
        """Wait for the vendor's conversation_initiation_metadata, answering its pings meanwhile."""
        while True:
            message = _parse(await ws.recv())
            if message is None:
                continue
            if message.get("type") == "ping":
                await ws.send(json.dumps(_pong(message)))
            elif message.get("type") == "conversation_initiation_metadata":
                return dict(message.get("conversation_initiation_metadata_event") or {})

    def _attach(self, ws: ClientConnection, metadata: dict[str, Any]) -> _Connection:
        audio_format = str(metadata.get("agent_output_audio_format") or "pcm_16000")
        match = AUDIO_FORMAT.fullmatch(audio_format)
        if match is None:
            raise ProviderError(
                "agent_unavailable",
                f"The ElevenLabs agent sends audio as {audio_format}; set its output format to PCM (pcm_24000).",
            )
        conn = _Connection(
            ws=ws,
            conversation_id=str(metadata.get("conversation_id") or ""),
            audio_format=audio_format,
            rate=int(match.group(2)),
            ulaw=match.group(1) == "ulaw",
        )
        conn.reader = asyncio.create_task(self._read(conn), name=f"elevenlabs-agent-{conn.conversation_id}")
        conn.billed_until = time.monotonic()
        self._conn = conn
        self.conversation_id, self.vendor_audio_format = conn.conversation_id, audio_format
        self.conversation_ids.append(conn.conversation_id)
        self._resampler = Resampler(conn.rate, self._sample_rate)
        return conn

    def _history_text(self) -> str:
        lines = [f"{'User' if m.role == 'user' else 'Agent'}: {m.content}" for m in self.history if m.content]
        kept: list[str] = []
        size = 0
        for line in reversed(lines):  # the most recent turns matter most
            size += len(line) + 1
            if size > self.history_chars:
                break
            kept.append(line)
        return "\n".join([HISTORY_PREAMBLE, *reversed(kept)])

    # --- reading the vendor ------------------------------------------------------------------
    async def _read(self, conn: _Connection) -> None:
        """Pump vendor events into the connection's queue; pings are answered here, whoever is listening."""
        try:
            async for raw in conn.ws:
                message = _parse(raw)
                if message is None:
                    continue
                match message.get("type"):
                    case "ping":
                        await conn.send(_pong(message))
                    case "client_tool_call":  # voicechat runs no client tools; say so rather than leave it waiting
                        await conn.send(_tool_refusal(message))
                    case "interruption":
                        conn.floor = max(conn.floor, _int((message.get("interruption_event") or {}).get("event_id")))
                        _deliver(conn, message)
                    case _:
                        _deliver(conn, message)
            conn.closed = _closed_ws(conn.ws)
        except ConnectionClosed as exc:
            conn.closed = _closed(exc)
        finally:
            conn.closed = conn.closed or _Closed(1006, "")
            _deliver(conn, conn.closed)
            self._unbilled += time.monotonic() - conn.billed_until
            conn.billed_until = time.monotonic()
            logger.info(
                "ElevenLabs agent %s: conversation %s closed (%d)",
                self.agent_id,
                conn.conversation_id,
                conn.closed.code,
            )

    async def _send_user_message(self, turn: _Turn) -> _Connection:
        async with self._lock:
            self._cancel_idle()
            conn = await self._usable_connection()
            try:
                await self._send_on(conn, turn)
            except ConnectionClosed:  # it closed while idle, just now: replace it once, transparently
                self._detach(conn)
                conn = await self._usable_connection()
                try:
                    await self._send_on(conn, turn)
                except ConnectionClosed:
                    raise self._close_error(conn) from None
        self.receipt.conversation_id, self.receipt.vendor_audio_format = conn.conversation_id, conn.audio_format
        return conn

    async def _usable_connection(self) -> _Connection:
        if self._conn is not None and self._conn.closed is None:
            return self._conn
        self.receipt.reconnected = True
        return await self._connect()

    async def _send_on(self, conn: _Connection, turn: _Turn) -> None:
        turn.floor, conn.inbox = conn.floor, turn.inbox
        turn.holding = conn.replies == 0 and not self._greeting_suppressed
        conn.replies += 1
        turn.sent_at = turn.last_event_at = time.monotonic()
        await conn.send({"type": "user_message", "text": turn.text})

    async def _follow(self, turn: _Turn, conn: _Connection, *, retry: bool = True) -> AsyncGenerator[ReplyEvent, None]:
        while not turn.finished and self._turn is turn:
            wait = self._wait(turn)
            if wait is None:
                return
            try:
                item = await asyncio.wait_for(turn.inbox.get(), wait)
            except TimeoutError:
                if turn.holding:
                    for event in self._release(turn):
                        if turn.interrupted and not isinstance(event, Correction):
                            break
                        turn.yielded = True
                        yield event
                    continue
                if turn.interrupted or turn.vendor_interrupted or turn.text_done_at is not None:
                    return  # the grace for a correction, or the settling time after the last audio, is over
                raise self._timeout(turn, conn) from None
            if item is _WAKE:
                continue
            if isinstance(item, _Closed):
                if conn.closed_by_us:
                    raise ProviderError("agent_unavailable", "The conversation with the ElevenLabs agent was closed.")
                if turn.interrupted or (turn.text_done_at is not None and item.code == 1000):
                    return
                if retry and not turn.yielded and item.code in (1000, 1001, 1002, 1006, 1011):
                    self._detach(conn)
                    raise _Reconnect  # the vendor hung up before answering: ask again on a fresh call
                raise self._close_error(conn)
            for event in self._apply(turn, item):
                if turn.interrupted and not isinstance(event, Correction):
                    break  # stop at once: nothing of an interrupted reply may follow but its correction
                turn.yielded = True
                yield event

    def _wait(self, turn: _Turn) -> float | None:
        """Seconds to wait for the vendor's next event, or None when the reply is over."""
        now = time.monotonic()
        if turn.holding and turn.held:
            return max(0.0, turn.hold_until - now)
        if turn.interrupted or turn.vendor_interrupted:
            return turn.grace_until - now if turn.correction is None and turn.grace_until > now else None
        if turn.text_done_at is None:
            limit = self.response_timeout if not turn.started else self.stall_seconds
            return max(0.0, turn.last_event_at + limit - now)
        if self.text_only or self._audio_covers_text(turn):
            return None
        if turn.last_audio_at is None and not self._silent:
            return max(0.0, turn.text_done_at + self.stall_seconds - now)
        last = max(turn.last_audio_at or 0.0, turn.text_done_at)
        left = last + self.audio_settle_seconds - now
        return left if left > 0 else None

    @staticmethod
    def _audio_covers_text(turn: _Turn) -> bool:
        text = turn.final_text if turn.final_text is not None else "".join(turn.deltas)
        spoken = "".join(turn.spoken)
        return bool(spoken) and re.sub(r"\s+", "", spoken) == re.sub(r"\s+", "", text)

    def _apply(self, turn: _Turn, message: dict[str, Any]) -> list[ReplyEvent]:
        """One vendor event's effect on the reply, as the events to yield."""
        kind = message.get("type")
        payload = message.get("text_response_part" if kind == "agent_chat_response_part" else f"{kind}_event")
        payload = payload if isinstance(payload, dict) else {}
        event_id = _int(payload.get("event_id"))
        if kind in ("agent_chat_response_part", "agent_response", "audio"):
            if event_id and event_id <= turn.floor:
                return []
            if turn.holding:
                turn.hold_until = turn.hold_until or time.monotonic() + self.audio_settle_seconds
                turn.held.append(message)
                return []
        match kind:
            case "agent_chat_response_part":
                return self._part(turn, payload)
            case "agent_response":
                return self._response(turn, str(payload.get("agent_response") or ""))
            case "audio":
                return self._audio(turn, payload)
            case "interruption":
                return self._interruption(turn, event_id)
            case "agent_response_correction":
                return self._correction(turn, str(payload.get("corrected_agent_response") or ""))
            case "user_transcript" if not turn.yielded:
                # The vendor took our message: whatever came before it (a greeting) is not this reply's.
                turn.pending_audio.clear()
                turn.held.clear()
                turn.holding = False
            case "error":
                raise ProviderError("agent_unavailable", _vendor_error(payload))
        return []

    def _part(self, turn: _Turn, part: dict[str, Any]) -> list[ReplyEvent]:
        self._parts = True
        turn.last_event_at = time.monotonic()
        match part.get("type"):
            case "start":
                return self._start(turn)
            case "stop":
                turn.stopped = True
                return self._check_text_done(turn)
        text = str(part.get("text") or "")
        events = self._start(turn) if not turn.started else []
        if text and not turn.interrupted:
            turn.deltas.append(text)
            self._first_text()
            events.append(TextDelta(text))
        return events

    def _response(self, turn: _Turn, text: str) -> list[ReplyEvent]:
        if self._parts and not turn.started:
            return []  # a text-part agent begins each reply with a part: this response is an earlier one's
        turn.last_event_at = time.monotonic()
        turn.final_text = text
        events: list[ReplyEvent] = []
        if not self._parts and not turn.deltas:
            events = self._start(turn)
            if text and not turn.interrupted:
                turn.deltas.append(text)
                self._first_text()
                events.append(TextDelta(text))
        return events + self._check_text_done(turn)

    def _check_text_done(self, turn: _Turn) -> list[ReplyEvent]:
        if turn.text_done_at is not None or turn.final_text is None or (self._parts and not turn.stopped):
            return []
        turn.text_done_at = time.monotonic()
        streamed = "".join(turn.deltas)
        if turn.final_text and re.sub(r"\s+", " ", streamed).strip() != re.sub(r"\s+", " ", turn.final_text).strip():
            # The parts and the final text disagree (beyond spacing): the final text is what the vendor keeps.
            self.receipt.corrected = True
            return [Correction(turn.final_text)]
        return []

    def _start(self, turn: _Turn) -> list[ReplyEvent]:
        turn.started = True
        events: list[ReplyEvent] = [self._audio_part(turn, pcm, alignment) for pcm, alignment in turn.pending_audio]
        turn.pending_audio.clear()
        return [event for event in events if isinstance(event, AudioPart) and event.pcm]

    def _audio(self, turn: _Turn, payload: dict[str, Any]) -> list[ReplyEvent]:
        if turn.interrupted:
            return []
        try:
            pcm = base64.b64decode(str(payload.get("audio_base_64") or ""), validate=True)
        except ValueError:
            logger.warning("ElevenLabs agent %s sent undecodable audio; skipped", self.agent_id)
            return []
        turn.last_event_at = turn.last_audio_at = time.monotonic()
        alignment = _alignment(payload.get("alignment"))
        if not turn.started:
            turn.pending_audio.append((pcm, alignment))  # held until the reply's text shows it is this reply's
            return []
        part = self._audio_part(turn, pcm, alignment)
        return [part] if part.pcm else []

    def _audio_part(self, turn: _Turn, pcm: bytes, alignment: Alignment | None) -> AudioPart:
        conn = cast(_Connection, self._conn)
        resampler = cast(Resampler, self._resampler)
        converted = resampler.convert(ulaw_to_pcm(pcm) if conn.ulaw else pcm)
        speech = "".join(alignment.chars) if alignment else ""
        turn.spoken.append(speech)
        self.receipt.characters += len(speech)
        self.receipt.audio_bytes += len(converted)
        if converted and self.receipt.first_audio_at is None:
            self.receipt.first_audio_at = time.monotonic()
        return AudioPart(pcm=converted, alignment=alignment, text=speech)

    def _interruption(self, turn: _Turn, event_id: int) -> list[ReplyEvent]:
        turn.floor = max(turn.floor, event_id)
        turn.pending_audio.clear()
        if turn.holding:  # the vendor cut its greeting short for our message
            turn.held.clear()
            turn.holding = False
            return []
        if turn.started and not turn.interrupted and not turn.vendor_interrupted:
            turn.vendor_interrupted = True  # the vendor cut this reply itself; wait briefly for its correction
            turn.grace_until = time.monotonic() + self.interrupt_grace_seconds
        return []

    def _correction(self, turn: _Turn, text: str) -> list[ReplyEvent]:
        if not turn.started and not turn.interrupted:
            return []  # about an earlier reply
        turn.correction = text
        self.receipt.corrected = True
        if turn.interrupted or turn.vendor_interrupted:
            turn.finished = True
        return [Correction(text)]

    def _release(self, turn: _Turn) -> list[ReplyEvent]:
        """No echo of our message came: what was held is this reply's after all."""
        turn.holding = False
        held, turn.held = turn.held, []
        return [event for message in held for event in self._apply(turn, message)]

    def _first_text(self) -> None:
        if self.receipt.first_text_at is None:
            self.receipt.first_text_at = time.monotonic()

    # --- ending a reply ----------------------------------------------------------------------
    def _end(self, turn: _Turn) -> None:
        if self._turn is turn:
            self._turn = None
        if not turn.finished and not turn.interrupted:
            # Abandoned (its task cancelled, or it failed): the vendor may still be speaking it, so tell it.
            turn.interrupted = True
            self._spawn(self._signal_interruption(turn))
        if turn.finished and not turn.interrupted and turn.text_done_at is not None and turn.last_audio_at is None:
            self._silent = True
        kept = turn.correction if turn.correction is not None else (turn.final_text or "".join(turn.deltas))
        self.history.append(ChatMessage("user", turn.text))
        if kept:
            self.history.append(ChatMessage("assistant", kept))
        conn = self._conn
        now = time.monotonic()
        if conn is not None and conn.inbox is turn.inbox:
            conn.inbox = None  # vendor events between replies are dropped
        if conn is not None and conn.closed is None:
            self.receipt.call_seconds = self._unbilled + now - conn.billed_until
            conn.billed_until = now
        else:
            self.receipt.call_seconds = self._unbilled
        self._unbilled = 0.0
        if self.receipt.characters == 0 and self.receipt.audio_bytes:
            self.receipt.characters = len(kept)
        self._arm_idle()

    async def _signal_interruption(self, turn: _Turn) -> None:
        turn.inbox.put_nowait(_WAKE)
        conn = self._conn
        if conn is None or conn.closed is not None:
            return
        # The vendor has no "stop" message for a text client; user activity is how a client says the
        # user has taken the floor (docs/agents.md). Late audio is dropped here whatever the vendor does.
        with contextlib.suppress(ConnectionClosed):
            await conn.send({"type": "user_activity"})

    def _timeout(self, turn: _Turn, conn: _Connection) -> ProviderError:
        self._detach(conn)  # a late answer must not reach the next reply
        self._spawn(self._disconnect(conn))
        if not turn.started:
            return ProviderError(
                "agent_timeout", f"The ElevenLabs agent did not answer within {self.response_timeout:g} s; try again."
            )
        return ProviderError(
            "agent_timeout", f"The ElevenLabs agent stopped responding for over {self.stall_seconds:g} s."
        )

    def _close_error(self, conn: _Connection) -> ProviderError:
        self._detach(conn)
        return _close_error(conn.closed or _Closed(1006, ""), before_reply=False)

    # --- idle and background -----------------------------------------------------------------
    def _arm_idle(self) -> None:
        self._cancel_idle()
        if self._conn is not None and self._conn.closed is None:
            self._idle = asyncio.create_task(self._keep_alive(self._conn), name="elevenlabs-agent-idle")

    def _cancel_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    async def _keep_alive(self, conn: _Connection) -> None:
        """Between replies: user activity keeps the vendor's 60 s idle limit away, up to `idle_seconds`."""
        deadline = time.monotonic() + self.idle_seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(self.keepalive_seconds, left))
            if conn.closed is not None:
                return
            if deadline - time.monotonic() > 0:
                with contextlib.suppress(ConnectionClosed):
                    await conn.send({"type": "user_activity"})
        self._idle = None
        logger.info("ElevenLabs agent %s: closing idle conversation %s", self.agent_id, conn.conversation_id)
        await self._disconnect(conn)

    def _detach(self, conn: _Connection) -> None:
        if self._conn is conn:
            self._conn = None

    async def _disconnect(self, conn: _Connection) -> None:
        self._detach(conn)
        conn.closed_by_us = True
        await conn.ws.close()
        if conn.reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await conn.reader

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


class _Reconnect(Exception):
    """The vendor closed the call before this reply produced anything; ask again on a new call."""


# --- vendor payloads -----------------------------------------------------------------------------


def _overrides(allowed: Collection[str], values: Mapping[str, str | None]) -> dict[str, Any]:
    """The conversation_config_override object: only what the operator allowed and voicechat has a value for."""
    override: dict[str, Any] = {}
    for path, value in values.items():
        if path in allowed and value is not None and (value or path == "agent.first_message"):
            *parents, leaf = path.split(".")
            node = override
            for name in parents:
                node = node.setdefault(name, {})
            node[leaf] = value
    return override


def _parse(raw: str | bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(raw)
    except ValueError:
        logger.warning("ElevenLabs agent sent a frame that is not JSON; skipped")
        return None
    return message if isinstance(message, dict) else None


def _pong(ping: dict[str, Any]) -> dict[str, Any]:
    return {"type": "pong", "event_id": _int((ping.get("ping_event") or {}).get("event_id"))}


def _tool_refusal(call: dict[str, Any]) -> dict[str, Any]:
    tool = call.get("client_tool_call") or {}
    return {
        "type": "client_tool_result",
        "tool_call_id": tool.get("tool_call_id"),
        "result": "This client runs no client tools.",
        "is_error": True,
    }


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _alignment(value: Any) -> Alignment | None:
    if not isinstance(value, dict):
        return None
    chars, starts, durations = (value.get(k) for k in ("chars", "char_start_times_ms", "char_durations_ms"))
    if not (isinstance(chars, list) and isinstance(starts, list) and isinstance(durations, list)):
        return None
    if not len(chars) == len(starts) == len(durations):
        return None
    return Alignment(tuple(map(str, chars)), tuple(map(_int, starts)), tuple(map(_int, durations)))


def _deliver(conn: _Connection, item: Any) -> None:
    if conn.inbox is not None:
        conn.inbox.put_nowait(item)


def _closed(exc: ConnectionClosed) -> _Closed:
    return _Closed(exc.rcvd.code, exc.rcvd.reason) if exc.rcvd is not None else _Closed(1006, "")


def _closed_ws(ws: ClientConnection) -> _Closed:
    return _Closed(ws.close_code or 1006, ws.close_reason or "")


def _vendor_error(payload: dict[str, Any]) -> str:
    detail = str(payload.get("message") or payload.get("reason") or payload.get("code") or "unknown error")[:200]
    return f"The ElevenLabs agent reported an error: {detail}"


def _close_error(closed: _Closed, *, before_reply: bool) -> ProviderError:
    """A vendor close code as a protocol error with a message an operator can act on."""
    reason = closed.reason[:160]
    if closed.code == 1008:
        if "override" in reason:
            message = (
                f"The ElevenLabs agent refused voicechat's overrides ({reason}). Enable them in the agent's "
                "Security tab, or remove them from ELEVENLABS_AGENT_OVERRIDES."
            )
        elif "dynamic_variable" in reason:
            message = f"The ElevenLabs agent needs a dynamic variable voicechat does not send ({reason})."
        else:
            message = f"The ElevenLabs agent refused the conversation ({reason or 'policy violation'})."
        return ProviderError("agent_refused", message, status=1008)
    if closed.code == 1002 and "timeout" in reason:
        return ProviderError("agent_timeout", f"The ElevenLabs agent timed out ({reason}); try again.", status=1002)
    if closed.code == 1011:
        message = "ElevenLabs had an internal error and ended the conversation; try again."
        return ProviderError("agent_unavailable", message, retryable=True, status=1011)
    if closed.code in (1000, 1001):
        when = "before it started" if before_reply else "in the middle of a reply"
        message = f"The ElevenLabs agent ended the conversation {when} ({reason or 'no reason given'})."
        return ProviderError("agent_unavailable", message, status=closed.code)
    return ProviderError(
        "agent_unavailable", "The connection to the ElevenLabs agent broke off; try again.", retryable=True
    )


def translate_signed_url_error(exc: ApiError, agent_id: str) -> ProviderError:
    """A refused signed-URL request as a protocol error; the key and the vendor's headers stay out of it."""
    status = exc.status_code or 0
    code, message = _detail(exc.body)
    if code == "quota_exceeded":
        return ProviderError("tts_quota_exceeded", "The ElevenLabs account is out of credits.", status=status)
    if status == 401:
        return ProviderError(
            "agent_unavailable", "The ElevenLabs API key was rejected; check ELEVENLABS_API_KEY.", status=401
        )
    if status == 403:
        return ProviderError(
            "agent_unavailable", f"The ElevenLabs API key may not use agent {agent_id}: {message}", status=403
        )
    if status == 404:
        return ProviderError(
            "agent_not_found",
            f"ElevenLabs has no agent {agent_id}; check the agent's ElevenLabs agent id in the admin.",
            status=404,
        )
    if status == 429:
        return ProviderError(
            "rate_limited",
            "ElevenLabs is at the plan's limit of simultaneous agent conversations; please try again shortly.",
            retryable=True,
            status=429,
        )
    return ProviderError(
        "agent_unavailable", f"ElevenLabs is unavailable (HTTP {status}).", retryable=status >= 500, status=status
    )
