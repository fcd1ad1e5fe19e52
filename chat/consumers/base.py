"""What every part of a conversation socket shares: its state, and stopping its running turn."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from chat.groups import ConversationFrame
from chat.limits import FrameRate
from chat.models import Agent, Conversation
from chat.providers import ReplySession
from chat.signing import TokenRefused


class ConnectionBase(AsyncWebsocketConsumer):
    """The state of one client connection (set in `ConversationConsumer.connect`)."""

    conversation: Conversation
    agent: Agent
    event_id: int
    closed: bool
    turn_task: asyncio.Task[Any] | None
    ping_task: asyncio.Task[None] | None
    pings: dict[int, float]
    last_rtt_ms: int | None
    speak: bool
    binary_audio: bool
    context: list[str]
    voice_id: str
    responses: dict[int, str]  # agent_response event_id -> message_id, for feedback
    token_refused: TokenRefused | None
    reply_session: ReplySession | None  # an agent that writes and speaks by itself
    greeting_pending: bool
    greeting_override: str | None
    greeting_shown: str
    greeting_id: uuid.UUID | None
    groups_joined: list[str]
    outbox: deque[ConversationFrame]  # frames for the conversation's other sockets
    outbox_ready: asyncio.Event
    outbox_drained: asyncio.Event
    sharer: asyncio.Task[None] | None
    sharing: bool  # the user has other sockets, which may show this conversation: share its turns' frames
    registered: bool
    frame_rate: FrameRate
    output_format: str

    def reset_state(self) -> None:
        """A new connection's state, before anything about it is known."""
        self.event_id = 0
        self.closed = False
        self.turn_task = self.ping_task = self.sharer = None
        self.pings, self.last_rtt_ms = {}, None
        self.speak, self.binary_audio = True, False
        self.context, self.voice_id, self.responses = [], "", {}
        self.token_refused = None
        self.reply_session = None
        self.greeting_pending, self.greeting_override, self.greeting_shown, self.greeting_id = False, None, "", None
        self.groups_joined = []
        self.outbox, self.outbox_ready, self.outbox_drained = deque(), asyncio.Event(), asyncio.Event()
        self.sharing = True
        self.registered = False
        self.frame_rate = FrameRate.from_settings()

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        """Send a frame; on a connection that has gone, mark it closed instead of raising into the turn.

        Daphne drops a frame sent after the client left; Uvicorn raises `ClientDisconnected` (an `OSError`),
        which a turn would record as an internal failure before the disconnect (or a server stop) had
        cancelled it as `interrupted`.
        """
        try:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)
        except OSError:
            self.closed = True

    @property
    def user_id(self) -> int:
        return int(self.scope["user"].pk)

    async def _cancel_turn(self) -> None:
        """Stop the running turn and wait until it has closed its upstream requests and saved its text."""
        task, self.turn_task = self.turn_task, None
        if task is None or task.done():
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
