"""Routes of the ElevenLabs-shaped HTTP API (chat/convai_api.py), at the vendor's paths under /v1/convai/."""

from django.urls import path

from chat.convai_api import ConversationDetailView, ConversationListView, SignedUrlView

urlpatterns = [
    path("conversation/get-signed-url", SignedUrlView.as_view(), name="convai-signed-url"),
    path("conversations", ConversationListView.as_view(), name="convai-conversations"),
    path("conversations/<str:conversation_id>", ConversationDetailView.as_view(), name="convai-conversation"),
]
