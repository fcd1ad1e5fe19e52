"""WebSocket routes."""

from django.urls import path

from chat.consumers import ConversationConsumer

websocket_urlpatterns = [path("v1/convai/conversation", ConversationConsumer.as_asgi())]
