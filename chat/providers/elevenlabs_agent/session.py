"""`ElevenLabsAgentSession`: one voicechat conversation's call to an ElevenLabs agent, one reply at a time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, Collection, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import websockets
from elevenlabs import AsyncElevenLabs
from elevenlabs.core import ApiError, RequestOptions
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from chat.providers.base import ChatMessage, Correction, ProviderError, ReplyEvent, ReplySession, ReplyUsage
from chat.providers.elevenlabs import _shared_client
from chat.providers.elevenlabs_agent import errors, wire
from chat.providers.elevenlabs_agent.reply import AgentTraits, Reply, ReplyReceipt, ReplyTiming
from chat.providers.pcm import Resampler, ulaw_to_pcm

logger = logging.getLogger(__name__)

_WAKE = object()  # wakes a reply waiting for the vendor, so it sees an interruption at once
_RECONNECTABLE = (1000, 1001, 1002, 1006, 1011)  # closes worth one more try on a new call


@dataclass
class _Connection:
    """One vendor call: its socket, the reader pumping its events, and what it announced."""

    ws: ClientConnection
    conversation_id: str
    audio_format: str
    resampler: Resampler
    ulaw: bool
    inbox: asyncio.Queue[Any] | None = None  # the running reply's; events between replies are dropped
    floor: int = 0  # the last `interruption` id: events at or below it belong to interrupted replies
    closed: wire.Closed | None = None
    closed_by_us: bool = False
    replies: int = 0
    reader: asyncio.Task[None] | None = None
    billed_until: float = field(default_factory=time.monotonic)

    async def send(self, message: Mapping[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    def deliver(self, item: Any) -> None:
        if self.inbox is not None:
            self.inbox.put_nowait(item)

    def to_pcm(self, audio: bytes) -> bytes:
        return self.resampler.convert(ulaw_to_pcm(audio) if self.ulaw else audio)


class _Reconnect(Exception):
    """The vendor closed the call before this reply produced anything; ask again on a new call."""


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
        if unknown := sorted(set(allowed_overrides) - set(wire.OVERRIDES)):
            raise ValueError(f"Unknown ElevenLabs agent overrides {unknown}; known: {', '.join(wire.OVERRIDES)}.")
        if not agent_id:
            raise ValueError("An ElevenLabs agent backend needs the vendor's agent_id.")
        self._api_key = api_key
        self.agent_id = agent_id
        self.base_url = base_url.rstrip("/")
        self._sample_rate = sample_rate
        values = {
            "agent.language": language,
            "agent.first_message": first_message,
            "agent.prompt.prompt": prompt,
            "tts.voice_id": voice_id,
        }
        self.overrides = wire.overrides(allowed_overrides, values)
        if text_only:
            self.overrides.setdefault("conversation", {})["text_only"] = True
        self.dynamic_variables = dict(dynamic_variables or {})
        self.user_id = user_id
        self.history = list(history)
        self.history_chars = history_chars
        self.idle_seconds = idle_seconds
        self.keepalive_seconds = max(0.05, min(keepalive_seconds, idle_seconds))
        self.connect_timeout = connect_timeout
        self.timing = ReplyTiming(
            response_timeout=response_timeout,
            stall_seconds=stall_seconds,
            audio_settle_seconds=audio_settle_seconds,
            interrupt_grace_seconds=interrupt_grace_seconds,
            text_only=text_only,
        )
        self.max_retries = max(0, max_retries)
        self.conversation_id = ""  # the vendor's, of the open (or last) call
        self.vendor_audio_format = ""
        self.conversation_ids: list[str] = []  # every vendor call this session opened, in order
        self.receipt = ReplyReceipt()  # of the running (or last) reply
        self.traits = AgentTraits()
        self._conn: _Connection | None = None
        self._reply: Reply | None = None
        self._unbilled = 0.0  # call seconds of closed calls not yet counted on a reply
        self._idle: asyncio.Task[None] | None = None
        self._background: set[asyncio.Future[None]] = set()
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:  # never show the key
        return f"ElevenLabsAgentSession(agent_id={self.agent_id!r}, base_url={self.base_url!r})"

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.closed is None

    # --- the ReplySession contract -----------------------------------------------------------
    async def open(self) -> None:
        """Call the vendor now rather than on the first reply (optional); raise ProviderError on failure."""
        async with self._lock:
            if not self.connected:
                await self._connect()
                self._arm_idle()

    async def reply(self, text: str) -> AsyncGenerator[ReplyEvent, None]:
        """One user turn. After `interrupt()` it yields no more text or audio, at most the vendor's Correction."""
        if self._reply is not None:  # a reply still running is superseded, as the vendor itself would do
            await self.interrupt()
        self.receipt = ReplyReceipt()
        reply = self._reply = self._new_reply(text)
        try:
            conn = await self._send_user_message(reply)
            try:
                async for event in self._follow(reply, conn, may_retry=True):
                    yield event
            except _Reconnect:  # the vendor hung up before this reply produced anything: once more
                reply = self._reply = self._new_reply(text)
                conn = await self._send_user_message(reply)
                async for event in self._follow(reply, conn, may_retry=False):
                    yield event
            reply.finished = True
        finally:
            self._end(reply)

    async def interrupt(self) -> None:
        """Tell the vendor the user took the turn; the running reply yields no further text or audio."""
        reply = self._reply
        if reply is None or reply.interrupted:
            return
        reply.interrupt()
        await self._signal_interruption(reply)

    def usage(self) -> ReplyUsage:
        receipt = self.receipt
        ids = (receipt.conversation_id,) if receipt.conversation_id else ()
        return ReplyUsage(characters=receipt.characters, call_seconds=receipt.call_seconds, vendor_ids=ids)

    async def aclose(self) -> None:
        """Hang up; a later reply calls again."""
        self._cancel_idle()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._conn is not None:
            await self._disconnect(self._conn)

    # --- calling the vendor ------------------------------------------------------------------
    async def _connect(self) -> _Connection:
        url = await self._signed_url()
        ws = await self._open_socket(url)
        try:
            await ws.send(json.dumps(wire.initiation(self.overrides, self.dynamic_variables, self.user_id)))
            metadata = await asyncio.wait_for(self._metadata(ws), self.connect_timeout)
            conn = self._attach(ws, metadata)
        except TimeoutError:
            await ws.close()
            message = f"The ElevenLabs agent did not start the conversation within {self.connect_timeout:g} s."
            raise ProviderError("agent_timeout", message) from None
        except ConnectionClosed as exc:
            raise errors.close_error(wire.Closed.of(exc), before_reply=True) from None
        except ProviderError:
            await ws.close()
            raise
        if self.history:
            await conn.send({"type": "contextual_update", "text": wire.history_text(self.history, self.history_chars)})
        logger.info(
            "ElevenLabs agent %s: call %s opened (audio %s, played as pcm_%d)",
            self.agent_id,
            conn.conversation_id,
            conn.audio_format,
            self._sample_rate,
        )
        return conn

    async def _signed_url(self) -> str:
        client = AsyncElevenLabs(
            api_key=self._api_key,
            base_url=self.base_url,
            timeout=self.connect_timeout,
            # One request per call, off the audio path: httpx's own pool (no aiohttp session to close).
            httpx_client=_shared_client(self.base_url, http_client="httpx"),
        )
        options = cast(RequestOptions, {"max_retries": self.max_retries})
        try:
            # A conversation id in the signature makes it single-use: a leaked URL cannot open a second call.
            response = await client.conversational_ai.conversations.get_signed_url(
                agent_id=self.agent_id, include_conversation_id=True, request_options=options
            )
        except ApiError as exc:
            raise errors.signed_url_error(exc, self.agent_id) from None
        except httpx.TransportError as exc:
            logger.warning("ElevenLabs signed URL request failed: %s", type(exc).__name__)
            raise ProviderError("agent_unavailable", "ElevenLabs cannot be reached.", retryable=True) from None
        return response.signed_url

    async def _open_socket(self, url: str) -> ClientConnection:
        # Errors are re-raised `from None`: the websockets exceptions may quote the signed URL.
        try:
            return await websockets.connect(
                url,
                subprotocols=[Subprotocol("convai")],
                open_timeout=self.connect_timeout,
                max_size=wire.MAX_MESSAGE_BYTES,
                logger=wire.socket_logger,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            message = f"ElevenLabs refused to open the agent conversation (HTTP {status}); try again."
            raise ProviderError("agent_unavailable", message, retryable=status >= 500, status=status) from None
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            logger.warning("ElevenLabs agent socket failed to open: %s", type(exc).__name__)
            raise ProviderError("agent_unavailable", "ElevenLabs cannot be reached.", retryable=True) from None

    async def _metadata(self, ws: ClientConnection) -> dict[str, Any]:
        """Wait for the vendor's conversation_initiation_metadata, answering its pings meanwhile."""
        while True:
            message = wire.parse(await ws.recv())
            if message is None:
                continue
            if message.get("type") == "ping":
                await ws.send(json.dumps(wire.pong(message)))
            elif message.get("type") == "conversation_initiation_metadata":
                return wire.payload(message)

    def _attach(self, ws: ClientConnection, metadata: dict[str, Any]) -> _Connection:
        audio_format = str(metadata.get("agent_output_audio_format") or "pcm_16000")
        match = wire.AUDIO_FORMAT.fullmatch(audio_format)
        if match is None:
            raise ProviderError(
                "agent_unavailable",
                f"The ElevenLabs agent sends audio as {audio_format}; set its output format to PCM (pcm_24000).",
            )
        conn = _Connection(
            ws=ws,
            conversation_id=str(metadata.get("conversation_id") or ""),
            audio_format=audio_format,
            resampler=Resampler(int(match.group(2)), self._sample_rate),
            ulaw=match.group(1) == "ulaw",
        )
        conn.reader = asyncio.create_task(self._read(conn), name=f"elevenlabs-agent-{conn.conversation_id}")
        self._conn = conn
        self.conversation_id, self.vendor_audio_format = conn.conversation_id, audio_format
        self.conversation_ids.append(conn.conversation_id)
        return conn

    async def _read(self, conn: _Connection) -> None:
        """Pump the call's events to the running reply; pings are answered here, whoever is listening."""
        try:
            async for raw in conn.ws:
                message = wire.parse(raw)
                if message is None:
                    continue
                match message.get("type"):
                    case "ping":
                        await conn.send(wire.pong(message))
                    case "client_tool_call":  # voicechat runs no client tools; say so rather than leave it waiting
                        await conn.send(wire.tool_refusal(message))
                    case "interruption":
                        conn.floor = max(conn.floor, wire.as_int(wire.payload(message).get("event_id")))
                        conn.deliver(message)
                    case _:
                        conn.deliver(message)
            conn.closed = wire.Closed.of_socket(conn.ws)
        except ConnectionClosed as exc:
            conn.closed = wire.Closed.of(exc)
        finally:
            conn.closed = conn.closed or wire.Closed(1006, "")
            conn.deliver(conn.closed)
            self._unbilled += time.monotonic() - conn.billed_until
            conn.billed_until = time.monotonic()
            code = conn.closed.code
            logger.info("ElevenLabs agent %s: call %s closed (%d)", self.agent_id, conn.conversation_id, code)

    # --- one reply ---------------------------------------------------------------------------
    def _new_reply(self, text: str) -> Reply:
        return Reply(text, timing=self.timing, traits=self.traits, receipt=self.receipt, to_pcm=_no_audio)

    async def _send_user_message(self, reply: Reply) -> _Connection:
        async with self._lock:
            self._cancel_idle()
            conn = await self._usable_connection()
            try:
                await self._send_on(conn, reply)
            except ConnectionClosed:  # it closed while idle, just now: replace it once, transparently
                self._detach(conn)
                conn = await self._usable_connection()
                try:
                    await self._send_on(conn, reply)
                except ConnectionClosed:
                    raise self._close_error(conn) from None
        self.receipt.conversation_id, self.receipt.vendor_audio_format = conn.conversation_id, conn.audio_format
        return conn

    async def _usable_connection(self) -> _Connection:
        if self._conn is not None and self._conn.closed is None:
            return self._conn
        self.receipt.reconnected = True
        return await self._connect()

    async def _send_on(self, conn: _Connection, reply: Reply) -> None:
        greeting_suppressed = (self.overrides.get("agent") or {}).get("first_message") == ""
        reply.floor, reply.to_pcm = conn.floor, conn.to_pcm
        reply.holding = conn.replies == 0 and not greeting_suppressed
        reply.last_event_at = time.monotonic()
        conn.inbox = reply.inbox
        conn.replies += 1
        await conn.send({"type": "user_message", "text": reply.text})

    async def _follow(self, reply: Reply, conn: _Connection, *, may_retry: bool) -> AsyncGenerator[ReplyEvent, None]:
        while not reply.finished and self._reply is reply:
            wait = reply.wait()
            if wait is None:
                return
            try:
                item = await asyncio.wait_for(reply.inbox.get(), wait)
            except TimeoutError:
                try:
                    events = reply.timed_out()
                except ProviderError:
                    self._hang_up(conn)  # a late answer must not reach the next reply
                    raise
            else:
                if isinstance(item, wire.Closed):
                    self._closed(reply, conn, item, may_retry=may_retry)
                    return
                try:
                    events = [] if item is _WAKE else reply.apply(item)
                except ProviderError:
                    self._hang_up(conn)  # the vendor reported an error: this call is not to be trusted further
                    raise
            for event in events:
                if reply.interrupted and not isinstance(event, Correction):
                    break  # stop at once: nothing of an interrupted reply may follow but its correction
                reply.yielded = True
                yield event

    def _closed(self, reply: Reply, conn: _Connection, closed: wire.Closed, *, may_retry: bool) -> None:
        """The call ended under a running reply: its end, one more try, or the error to raise."""
        self._detach(conn)
        if conn.closed_by_us:
            raise ProviderError("agent_unavailable", "The conversation with the ElevenLabs agent was closed.")
        if reply.interrupted or (reply.text_done_at is not None and closed.code == 1000):
            return
        if may_retry and not reply.yielded and closed.code in _RECONNECTABLE:
            raise _Reconnect
        raise errors.close_error(closed, before_reply=False)

    def _end(self, reply: Reply) -> None:
        current = self._reply is reply  # else a newer reply superseded it and owns the call now
        if current:
            self._reply = None
        if not reply.finished and not reply.interrupted:
            # Abandoned (its task cancelled, or it failed): the vendor may still be speaking it, so tell it.
            reply.interrupt()
            self._spawn(self._signal_interruption(reply))
        if reply.finished and not reply.interrupted and reply.text_done_at and reply.last_audio_at is None:
            self.traits.silent = True
        kept = reply.kept_text()
        self.history.append(ChatMessage("user", reply.text))
        if kept:
            self.history.append(ChatMessage("assistant", kept))
        if current:
            self._bill(reply, kept)
            self._arm_idle()

    def _bill(self, reply: Reply, kept: str) -> None:
        conn, now, receipt = self._conn, time.monotonic(), reply.receipt
        if conn is not None and conn.inbox is reply.inbox:
            conn.inbox = None  # vendor events between replies are dropped
        receipt.call_seconds = self._unbilled
        if conn is not None and conn.closed is None:
            receipt.call_seconds += now - conn.billed_until
            conn.billed_until = now
        self._unbilled = 0.0
        if receipt.characters == 0 and receipt.audio_bytes:
            receipt.characters = len(kept)  # audio without alignment: bill the reply's text

    async def _signal_interruption(self, reply: Reply) -> None:
        reply.inbox.put_nowait(_WAKE)
        conn = self._conn
        if conn is None or conn.closed is not None:
            return
        # The vendor has no "stop" message for a text client; user activity is how a client says the
        # user has taken the floor (docs/agents.md). Late audio is dropped here whatever the vendor does.
        with contextlib.suppress(ConnectionClosed):
            await conn.send(wire.USER_ACTIVITY)

    def _close_error(self, conn: _Connection) -> ProviderError:
        self._detach(conn)
        return errors.close_error(conn.closed or wire.Closed(1006, ""), before_reply=False)

    # --- idle and hanging up -----------------------------------------------------------------
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
                    await conn.send(wire.USER_ACTIVITY)
        self._idle = None
        logger.info("ElevenLabs agent %s: hanging up idle call %s", self.agent_id, conn.conversation_id)
        await self._disconnect(conn)

    def _detach(self, conn: _Connection) -> None:
        if self._conn is conn:
            self._conn = None

    def _hang_up(self, conn: _Connection) -> None:
        self._detach(conn)
        self._spawn(self._disconnect(conn))

    async def _disconnect(self, conn: _Connection) -> None:
        self._detach(conn)
        conn.closed_by_us = True
        await conn.ws.close()
        if conn.reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await conn.reader

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _no_audio(audio: bytes) -> bytes:
    """A reply's converter before it knows its call (replaced when its message is sent)."""
    return audio
