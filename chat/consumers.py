"""The WebSocket transport of protocol v1 (DESIGN.md §5): authorize, translate frames, own the turn task."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from chat.models import Agent, Conversation
from chat.protocol import PROTOCOL_VERSION, frame
from chat.providers import llm_provider, tts_provider
from chat.services import agent_get, conversation_create, conversation_get
from chat.turn_store import playback_report_save
from chat.turns import Turn, TurnSpec

logger = logging.getLogger(__name__)

PING_INTERVAL_SECONDS = 20.0


class ConversationConsumer(AsyncWebsocketConsumer):
    """One browser connection to one conversation; at most one reply turn runs at a time."""

    conversation: Conversation
    agent: Agent
    ping_interval: float = PING_INTERVAL_SECONDS

    async def connect(self) -> None:
        self.event_id = 0
        self.closed = False
        self.turn_task: asyncio.Task[Any] | None = None
        self.ping_task: asyncio.Task[None] | None = None
        self.pings: dict[int, float] = {}
        self.last_rtt_ms: int | None = None
        if not await self._authorize():
            await self.close()  # before accept: the handshake is refused (HTTP 403)
            return
        await self.accept()
        self.output_format = tts_provider().output_format
        await self.emit(
            "conversation_initiation_metadata",
            {
                "conversation_id": str(self.conversation.id),
                "agent_output_audio_format": self.output_format,
                "user_input_audio_format": "none",
                "agent_id": str(self.agent.id),
                "max_message_chars": settings.MAX_MESSAGE_CHARS,
                "protocol_version": PROTOCOL_VERSION,
            },
        )
        self.ping_task = asyncio.create_task(self._ping_forever())

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
                self.agent = agent_get(agent_id=agent_id or None)
                self.conversation = conversation_create(owner=user, agent=self.agent)
        except (Conversation.DoesNotExist, Agent.DoesNotExist):
            return False
        return True

    async def disconnect(self, code: int) -> None:
        self.closed = True
        if self.ping_task is not None:
            self.ping_task.cancel()
        await self._cancel_turn()

    # --- client → server ---------------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self.error("invalid_message", "Send JSON text frames; binary frames are not part of the protocol.")
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            await self.error("invalid_message", "That frame is not valid JSON.")
            return
        if not isinstance(message, dict):
            await self.error("invalid_message", 'Each frame must be a JSON object with a "type".')
            return
        await self.dispatch_message(message)

    async def dispatch_message(self, message: dict[str, Any]) -> None:
        match message.get("type"):
            case "user_message":
                await self.on_user_message(message.get("text"))
            case "interrupt":
                await self._cancel_turn()
            case "pong":
                self.on_pong(message.get("event_id"))
            case "user_activity":
                pass
            case "playback_report":
                await self.on_playback_report(message)
            case other:
                await self.error("invalid_message", f"Unknown message type {other!r}.")

    async def on_user_message(self, text: Any) -> None:
        started_at = time.monotonic()
        if not isinstance(text, str) or not text.strip():
            await self.error("invalid_message", 'A user_message needs a non-empty "text".')
            return
        if len(text) > settings.MAX_MESSAGE_CHARS:
            await self.error(
                "message_too_long",
                f"Messages are limited to {settings.MAX_MESSAGE_CHARS} characters; this one has {len(text)}.",
            )
            return
        await self._cancel_turn()
        try:
            llm = llm_provider(self.agent.llm)
            tts = tts_provider()
        except ImproperlyConfigured as exc:
            logger.error("Provider configuration error: %s", exc)
            await self.error("llm_unavailable", "The assistant is misconfigured; an operator has to fix it.")
            return
        spec = TurnSpec(
            conversation=self.conversation,
            agent=self.agent,
            text=text.strip(),
            started_at=started_at,
            whole_reply=settings.SPEECH_MODE == "whole_reply",
        )
        turn = Turn(spec, emit=self.emit, llm=llm, tts=tts)
        self.turn_task = asyncio.create_task(self._run_turn(turn), name=f"turn-{self.conversation.id}")

    async def _run_turn(self, turn: Turn) -> None:
        try:
            await turn.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Turn failed in conversation %s", self.conversation.id)
            await self.error("internal_error", "The reply failed unexpectedly; please try again.")

    async def _cancel_turn(self) -> None:
        """Stop the running turn and wait until it has closed its upstream requests and saved its text."""
        task, self.turn_task = self.turn_task, None
        if task is None or task.done():
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def on_pong(self, event_id: Any) -> None:
        sent = self.pings.pop(event_id, None) if isinstance(event_id, int) else None
        if sent is not None:
            self.last_rtt_ms = round((time.monotonic() - sent) * 1000)

    async def on_playback_report(self, message: dict[str, Any]) -> None:
        first_audible = message.get("first_audible_ms")
        underruns = message.get("underruns", 0)
        valid = (first_audible is None or (isinstance(first_audible, int) and 0 <= first_audible < 3_600_000)) and (
            isinstance(underruns, int) and 0 <= underruns < 1_000_000
        )
        if valid:
            valid = await playback_report_save(
                conversation=self.conversation,
                message_id=str(message.get("message_id", "")),
                first_audible_ms=first_audible,
                underruns=underruns,
            )
        if not valid:
            await self.error(
                "invalid_message", "playback_report needs a message_id of this conversation and whole-number figures."
            )

    # --- server → client ---------------------------------------------------------------------
    async def emit(self, event_type: str, payload: dict[str, Any]) -> int:
        """Send one protocol frame with the connection's next event_id (errors carry none); returns the id."""
        event_id = 0
        if event_type != "error":
            self.event_id += 1
            event_id = payload["event_id"] = self.event_id
        if not self.closed:
            await self.send(text_data=json.dumps(frame(event_type, payload), separators=(",", ":")))
        return event_id

    async def error(self, code: str, message: str) -> None:
        await self.emit("error", {"code": code, "message": message})

    async def _ping_forever(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.ping_interval)
            sent = time.monotonic()
            event_id = await self.emit("ping", {"ping_ms": self.last_rtt_ms})
            if len(self.pings) >= 10:  # a client that never answers must not grow this dict
                self.pings.pop(min(self.pings))
            self.pings[event_id] = sent
