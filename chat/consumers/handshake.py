"""Who a handshake is: a session cookie (+ allowed Origin), or a signed URL's token instead of both."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from chat.consumers.base import ConnectionBase
from chat.models import Agent, Conversation
from chat.services import agent_get, conversation_get
from chat.signing import TokenRefused, signed_url_verify, token_from_scope

SUBPROTOCOL = "convai"  # @elevenlabs/client asks for it and drops a socket that does not echo it


class Handshake(ConnectionBase):
    """Resolves the user, agent and conversation of a connection before it is accepted."""

    def _subprotocol(self) -> str | None:
        return SUBPROTOCOL if SUBPROTOCOL in self.scope.get("subprotocols", []) else None

    @database_sync_to_async
    def _authorize(self) -> bool:
        """Resolve the user, agent and conversation; anything unknown or foreign refuses the handshake."""
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        conversation_id = query.get("conversation_id", [""])[0]
        agent_id = query.get("agent_id", [""])[0]
        token = token_from_scope(self.scope)
        if token is not None:  # a signed URL replaces the cookie (chat/signing.py dropped it) and the Origin
            return self._authorize_signed(token, agent_id=agent_id, conversation_id=conversation_id)
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return False
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

    def _authorize_signed(self, token: str, *, agent_id: str, conversation_id: str) -> bool:
        try:
            signed = signed_url_verify(token, agent_id=agent_id, conversation_id=conversation_id)
        except TokenRefused as refused:
            self.token_refused = refused
            return False
        self.scope["user"] = signed.user
        self.agent = signed.agent
        self.conversation = signed.conversation or Conversation(id=uuid.uuid4(), owner=signed.user, agent=signed.agent)
        return True
