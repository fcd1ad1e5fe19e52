"""REST API routes (session auth with CSRF); the OpenAPI schema lives at /api/schema/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from chat.api import (
    AgentListView,
    ConversationMessagesView,
    ConversationViewSet,
    GreetingAudioView,
    MessageAudioView,
    UsageView,
)

router = SimpleRouter()
router.register("conversations", ConversationViewSet, basename="api-conversation")

urlpatterns = [
    path("conversations/<uuid:pk>/messages/", ConversationMessagesView.as_view(), name="api-conversation-messages"),
    path("agents/", AgentListView.as_view(), name="api-agents"),
    path("messages/<uuid:pk>/audio/", MessageAudioView.as_view(), name="api-message-audio"),
    path("greetings/<uuid:pk>/audio/", GreetingAudioView.as_view(), name="api-greeting-audio"),
    path("usage/", UsageView.as_view(), name="api-usage"),
    *router.urls,
]
