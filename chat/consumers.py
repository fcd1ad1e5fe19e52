"""Placeholder replaced by the consumer work."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer


class ConversationConsumer(AsyncJsonWebsocketConsumer):
    pass
