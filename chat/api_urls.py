"""REST API routes (session auth with CSRF); the OpenAPI schema lives at /api/schema/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from chat.api import (
    AgentListView,
    AgentVoicesView,
    ConversationMessagesView,
    ConversationViewSet,
    GreetingAudioView,
    MessageAudioView,
    UsageView,
)
from chat.voice_views import agent_voice_preview

router = SimpleRouter()
router.register("conversations", ConversationViewSet, basename="api-conversation")

urlpatterns = [
    path("conversations/<uuid:pk>/messages/", ConversationMessagesView.as_view(), name="api-conversation-messages"),
    path("agents/", AgentListView.as_view(), name="api-agents"),
    path("messages/<uuid:pk>/audio/", MessageAudioView.as_view(), name="api-message-audio"),
    path("greetings/<uuid:pk>/audio/", GreetingAudioView.as_view(), name="api-greeting-audio"),
    path("usage/", UsageView.as_view(), name="api-usage"),
    path("agents/<uuid:pk>/voices/", AgentVoicesView.as_view(), name="api-agent-voices"),
    path("agents/<uuid:pk>/voices/<str:voice_id>/preview/", agent_voice_preview, name="api-agent-voice-preview"),
    *router.urls,
]
