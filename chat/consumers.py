"""The WebSocket transport of protocol v1 (DESIGN.md §5): authorize, translate frames, own the turn task.

Policy lives in chat/limits.py and the reply in chat/turns; this module only translates between frames
and those calls. Whatever happens to a connection — a bug in a handler, a disconnect, a crash of the
dispatch loop — its running turn is cancelled (see `__call__`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import Coroutine
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from chat import protocol
from chat.limits import Refusal, message_check
from chat.models import Agent, Conversation
from chat.protocol import (
    AlignmentPayload,
    ClientData,
    ClientFrame,
    ContextualUpdate,
    Feedback,
    FrameError,
    Interrupt,
    PlaybackReport,
    Pong,
    ServerFrame,
    Settings,
    Speak,
    UserActivity,
    UserAudioChunk,
    UserMessage,
    WordTiming,
)
from chat.services import agent_get, conversation_get
from chat.turns import Turn, TurnSpec
from chat.turns.backends import output_format, reply_providers
from chat.turns.speak import greeting_play, greeting_text, speak_message
from chat.turns.store import playback_report_save, sweeper_ensure
from chat.turns.turn import HEARTBEAT_SECONDS

logger = logging.getLogger(__name__)

PING_INTERVAL_SECONDS = 20.0
# A client may say how it wants the conversation (text only, voice) in its first frame; the greeting
# waits this long for it before it is spoken.
GREETING_WAIT_SECONDS = 0.5
CLOSE_FRAME_TOO_LARGE = 4009
MAX_CONTEXT_UPDATES = 20


class ConversationConsumer(AsyncWebsocketConsumer):
    """One client connection to one conversation; at most one reply turn runs at a time."""

    conversation: Conversation
    agent: Agent
    ping_interval: float = PING_INTERVAL_SECONDS

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # However the dispatch loop ends (a disconnect, or an exception nobody caught), the turn this
        # connection started must not run on — and bill — for nobody.
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._shutdown()

    async def connect(self) -> None:
        sweeper_ensure(interval=settings.TURN_SWEEP_SECONDS, stale_after=3 * HEARTBEAT_SECONDS)
        self.event_id = 0
        self.closed = False
        self.turn_task: asyncio.Task[Any] | None = None
        self.ping_task: asyncio.Task[None] | None = None
        self.pings: dict[int, float] = {}
        self.last_rtt_ms: int | None = None
        self.speak = True
        self.binary_audio = False
        self.context: list[str] = []
        self.greeting_pending = False
        self.greeting_override: str | None = None
        self.greeting_shown = ""
        self.greeting_id: uuid.UUID | None = None
        if not await self._authorize():
            await self.close()  # before accept: the handshake is refused (HTTP 403)
            return
        await self.accept()
        self.output_format = output_format()
        await self._send_metadata()
        self.ping_task = asyncio.create_task(self._ping_forever())
        if self.conversation._state.adding and self.agent.first_message.strip():
            self.greeting_pending = True
            asyncio.get_running_loop().call_later(GREETING_WAIT_SECONDS, self._start_greeting)

    @database_sync_to_async
    def _authorize(self) -> bool:
        """Resolve the user, agent and conversation; anything unknown or foreign refuses the handshake."""
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return False
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        conversation_id = query.get("conversation_id", [""])[0]
        agent_id = query.get("agent_id", [""])[0]
        try:
            if conversation_id:
                self.conversation = conversation_get(owner=user, conversation_id=conversation_id)
                self.agent = self.conversation.agent
            else:
                # The row is created by the first message: sockets and page loads leave no empty ones.
                self.agent = agent_get(agent_id=agent_id or None)
                self.conversation = Conversation(id=uuid.uuid4(), owner=user, agent=self.agent)
        except (Conversation.DoesNotExist, Agent.DoesNotExist):
            return False
        return True

    async def _send_metadata(self) -> None:
        await self.emit(
            {
                "type": "conversation_initiation_metadata",
                "conversation_initiation_metadata_event": {
                    "conversation_id": str(self.conversation.id),
                    "agent_output_audio_format": self.output_format,
                    "user_input_audio_format": "pcm_16000",  # parseable by the SDKs; audio input is ignored
                    "agent_id": str(self.agent.id),
                    "max_message_chars": settings.MAX_MESSAGE_CHARS,
                    "protocol_version": protocol.PROTOCOL_VERSION,
                    "conversation_exists": not self.conversation._state.adding,
                    "speak": self.speak,
                    "binary_audio": self.binary_audio,
                },
            }
        )

    async def disconnect(self, code: int) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        self.closed = True
        ping = getattr(self, "ping_task", None)
        if ping is not None:
            ping.cancel()
        if hasattr(self, "turn_task"):
            await self._cancel_turn()

    # --- client → server ---------------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            await self._receive(text_data, bytes_data)
        except Exception:  # a handler bug answers with an error; the socket stays open
            logger.exception("Frame handling failed in conversation %s", self.conversation.id)
            await self.error("internal_error", "That message could not be handled; please try again.")

    async def _receive(self, text_data: str | None, bytes_data: bytes | None) -> None:
        size = len(text_data) if text_data is not None else len(bytes_data or b"")
        if size > settings.WS_MAX_FRAME_BYTES:
            await self.error(
                "frame_too_large", f"Frames are limited to {settings.WS_MAX_FRAME_BYTES} bytes; this one has {size}."
            )
            await self.close(code=CLOSE_FRAME_TOO_LARGE)
            return
        if text_data is None:
            await self.error("invalid_message", "Send JSON text frames; binary frames are not part of the protocol.")
            return
        try:
            frame = protocol.parse_client_frame(text_data)
        except FrameError as exc:
            await self.error("invalid_message", exc.message)
            return
        await self.dispatch_frame(frame)
        self._start_greeting()  # after the first frame, which may have said how to speak it

    async def dispatch_frame(self, frame: ClientFrame) -> None:
        match frame:
            case UserMessage(text=text):
                await self.on_user_message(text)
            case Interrupt():
                await self._cancel_turn()
            case Pong(event_id=event_id):
                self.on_pong(event_id)
            case UserActivity() | UserAudioChunk():
                pass  # keep-alive; speech input does not exist yet
            case PlaybackReport():
                await self.on_playback_report(frame)
            case ClientData():
                self.on_client_data(frame)
            case Settings(speak=speak):
                self.speak = speak
            case ContextualUpdate(text=text):
                self.context = [*self.context, text[: settings.MAX_MESSAGE_CHARS]][-MAX_CONTEXT_UPDATES:]
            case Speak(message_id=message_id):
                await self.on_speak(message_id)
            case Feedback():
                await self.error("invalid_message", "feedback is not available yet.")

    def on_client_data(self, frame: ClientData) -> None:
        if frame.text_only is not None:
            self.speak = not frame.text_only
        if frame.speak is not None:
            self.speak = self.speak and frame.speak
        self.binary_audio = frame.binary_audio
        if frame.first_message is not None:
            self.greeting_override = frame.first_message

    def _start_greeting(self) -> None:
        """Show (and speak) the agent's first message on a new conversation, once."""
        if not self.greeting_pending or self.closed or self.turn_task is not None:
            self.greeting_pending = False
            return
        self.greeting_pending = False
        text = greeting_text(self.agent, self.greeting_override)
        if not text:
            return
        self.greeting_shown = text
        self.turn_task = asyncio.create_task(self._run_job(self._greet(text)), name=f"greeting-{self.conversation.id}")

    async def _greet(self, text: str) -> None:
        try:
            tts = reply_providers(agent=self.agent, speak=self.speak).tts
        except Refusal:
            tts = None  # the voice is misconfigured: the greeting is still shown
        greeting = await greeting_play(agent=self.agent, text=text, tts=tts, output=self)
        self.greeting_id = greeting.pk if greeting is not None and greeting.audio else None

    async def on_speak(self, message_id: str) -> None:
        """Play a stored reply that has no audio yet: synthesise it once and keep it."""
        try:
            tts = reply_providers(agent=self.agent, speak=True).tts
        except Refusal as refusal:
            await self.error(refusal.code, refusal.message)
            return
        assert tts is not None
        await self._cancel_turn()
        job = speak_message(
            conversation_id=self.conversation.id, message_id=message_id, agent=self.agent, tts=tts, output=self
        )
        self.turn_task = asyncio.create_task(self._run_job(job), name=f"speak-{message_id}")

    async def on_user_message(self, text: object) -> None:
        started_at = time.monotonic()
        try:
            clean = message_check(text)
            providers = reply_providers(agent=self.agent, speak=self.speak)
        except Refusal as refusal:
            await self.error(refusal.code, refusal.message)
            return
        await self._cancel_turn()
        spec = TurnSpec(
            conversation=self.conversation,
            agent=self.agent,
            text=clean,
            started_at=started_at,
            speak=self.speak,
            whole_reply=settings.SPEECH_MODE == "whole_reply",
            greeting=self.greeting_shown,
            greeting_id=self.greeting_id,
            context=tuple(self.context),
        )
        self.context = []
        turn = Turn(spec, output=self, llm=providers.llm, tts=providers.tts)
        self.turn_task = asyncio.create_task(self._run_job(turn.run()), name=f"turn-{self.conversation.id}")

    async def _run_job(self, job: Coroutine[Any, Any, object]) -> None:
        """Run a turn, a greeting or a Play; a bug ends it with an error frame, never the socket."""
        try:
            await job
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("A reply failed in conversation %s", self.conversation.id)
            await self.error("internal_error", "The reply failed unexpectedly; please try again.")

    async def _cancel_turn(self) -> None:
        """Stop the running turn and wait until it has closed its upstream requests and saved its text."""
        task, self.turn_task = self.turn_task, None
        if task is None or task.done():
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def on_pong(self, event_id: int) -> None:
        sent = self.pings.pop(event_id, None)
        if sent is not None:
            self.last_rtt_ms = round((time.monotonic() - sent) * 1000)

    async def on_playback_report(self, report: PlaybackReport) -> None:
        saved = await playback_report_save(
            conversation_id=self.conversation.id,
            message_id=report.message_id,
            first_audible_ms=report.first_audible_ms,
            underruns=report.underruns,
            heard_ms=report.heard_ms,
        )
        if not saved:
            await self.error("invalid_message", "playback_report needs the message_id of a reply in this conversation.")

    # --- server → client (the turn's TurnOutput) ---------------------------------------------
    async def emit(self, frame: ServerFrame) -> int:
        """Send one protocol frame with the connection's next event_id (errors carry none); returns the id."""
        event_id = 0
        if frame["type"] != "error":
            self.event_id += 1
            event_id = protocol.payload_of(frame)["event_id"] = self.event_id
        if not self.closed:
            await self.send(text_data=protocol.encode(frame))
        return event_id

    async def audio(
        self, pcm: bytes, *, message_id: str, alignment: AlignmentPayload | None, words: list[WordTiming] | None
    ) -> None:
        self.event_id += 1
        if self.closed:
            return
        if self.binary_audio:
            if alignment is not None or words:
                text = protocol.alignment_frame(self.event_id, message_id, alignment=alignment, words=words)
                await self.send(text_data=text)
            await self.send(bytes_data=protocol.audio_frame_binary(pcm, self.event_id))
            return
        encoded = base64.b64encode(pcm).decode("ascii")
        await self.send(text_data=protocol.audio_frame_json(encoded, self.event_id, alignment=alignment, words=words))

    async def error(self, code: str, message: str) -> None:
        await self.emit(protocol.error_frame(code, message))

    async def _ping_forever(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.ping_interval)
            sent = time.monotonic()
            event_id = await self.emit({"type": "ping", "ping_event": {"ping_ms": self.last_rtt_ms}})
            if len(self.pings) >= 10:  # a client that never answers must not grow this dict
                self.pings.pop(min(self.pings))
            self.pings[event_id] = sent
