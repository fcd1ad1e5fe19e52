"""REST API routes (session auth); the schema lives at /api/schema/."""

from django.urls import path

from chat.audio_views import message_audio

urlpatterns = [
    path("messages/<uuid:pk>/audio/", message_audio, name="api-message-audio"),
]
