"""What other sockets and processes tell this one over the channel layer (chat/groups.py, chat/limits)."""

from __future__ import annotations

import json
from typing import Any

from chat.consumers.output import FrameOutput
from chat.groups import ConversationFrame, SessionEnded, conversation_group, session_ended_applies, user_group
from chat.limits import socket_open, too_many_connections, turn_replaced

CLOSE_SESSION_ENDED = 4001


class ChannelEvents(FrameOutput):
    """Handlers for channel-layer messages: logout or password change, other tabs' frames, limits."""

    async def _join_groups(self) -> None:
        """Before accept, so a logout racing the handshake still finds this socket."""
        self.groups_joined = [user_group(self.scope["user"].pk), conversation_group(self.conversation.id)]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)

    async def _register(self) -> None:
        """Count this socket against the user's cap; the oldest ones past it are told to close."""
        self.registered = True
        for channel in await socket_open(self.user_id, self.channel_name):
            await self.channel_layer.send(channel, {"type": "limits.evicted"})

    async def session_ended(self, message: SessionEnded) -> None:
        if self.closed or not session_ended_applies(message, self.scope["session"].session_key):
            return
        await self.error("session_ended", "Your session ended (logged out or password changed); log in again.")
        self.closed = True
        await self._cancel_turn()
        await self.close(code=CLOSE_SESSION_ENDED)

    async def conversation_frame(self, message: ConversationFrame) -> None:
        if message["origin"] != self.channel_name and not self.closed:
            await self.send(text_data=json.dumps(message["frame"], separators=(",", ":"), ensure_ascii=False))

    async def limits_evicted(self, event: dict[str, Any]) -> None:
        await self.refuse(too_many_connections())

    async def limits_turn_replaced(self, event: dict[str, Any]) -> None:
        if self.turn_task is not None and not self.turn_task.done():
            await self.refuse(turn_replaced())
            await self._cancel_turn()
