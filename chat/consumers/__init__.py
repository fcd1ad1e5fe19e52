"""The WebSocket transport of protocol v1 (DESIGN.md §5); `conversation.ConversationConsumer` is the consumer.

Split by what each part translates: `handshake` (who is connecting), `conversation` (client frames, the
turn task), `output` (server frames and audio), `events` (channel-layer messages from other sockets and
processes), on the shared state of `base`.
"""

from chat.consumers.conversation import ConversationConsumer

__all__ = ["ConversationConsumer"]
