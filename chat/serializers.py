"""Wire shapes of the REST API. Serializers translate; services decide."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from rest_framework import serializers

from chat import voices
from chat.models import Agent, Conversation, Message
from chat.services import TITLE_MAX_CHARS, agent_default
from chat.turns import audio as audio_store


class AgentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Agent
        fields = ["id", "name", "first_message", "language_code", "is_default"]


class ConversationSerializer(serializers.ModelSerializer):
    title = serializers.CharField(max_length=TITLE_MAX_CHARS, required=False, allow_blank=True)
    agent = serializers.PrimaryKeyRelatedField(queryset=Agent.objects.filter(is_active=True), required=False)
    agent_name = serializers.CharField(source="agent.name", read_only=True)
    voice_id = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        help_text="One of GET /api/agents/{agent}/voices/; blank: the agent's own voice.",
    )

    class Meta:
        model = Conversation
        fields = ["id", "title", "agent", "agent_name", "voice_id", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        voice_id = attrs.get("voice_id", "").strip()
        try:
            agent = attrs.get("agent") or agent_default()
        except Agent.DoesNotExist:
            return attrs  # conversation_create reports the missing agent
        if not voices.voice_allowed(agent, voice_id):
            raise serializers.ValidationError({"voice_id": "This agent does not offer that voice."})
        return attrs | {"voice_id": voice_id}


class ConversationUpdateSerializer(serializers.Serializer):
    """PATCH: a new title, a new voice, or both."""

    title = serializers.CharField(max_length=TITLE_MAX_CHARS, allow_blank=False, trim_whitespace=True, required=False)
    voice_id = serializers.CharField(max_length=100, allow_blank=True, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError({"title": "Send a new title, a voice_id, or both."})
        conversation = self.context["conversation"]
        if "voice_id" in attrs and not voices.voice_allowed(conversation.agent, attrs["voice_id"].strip()):
            raise serializers.ValidationError({"voice_id": "This agent does not offer that voice."})
        return attrs


class VoiceChoiceSerializer(serializers.Serializer):
    """A voice a user may pick for conversations with one agent."""

    voice_id = serializers.CharField()
    name = serializers.CharField()
    category = serializers.CharField(help_text="The vendor's grouping (premade, cloned, …); may be blank.")
    description = serializers.CharField()
    language = serializers.CharField(help_text="The voice's language when known (e.g. en, de-de); may be blank.")
    is_default = serializers.BooleanField(help_text="The agent's own voice, used when a conversation picks none.")
    preview_url = serializers.SerializerMethodField(help_text="A sample served by this server, or null.")

    def get_preview_url(self, choice: voices.VoiceChoice) -> str | None:
        if not choice.has_preview:
            return None
        return reverse("api-agent-voice-preview", kwargs={"pk": self.context["agent"].pk, "voice_id": choice.voice_id})


class Meta:
    model = Conversation
    fields = ["title"]


class MessageSerializer(serializers.ModelSerializer):
    audio_url = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = [
            "id",
            "role",
            "text",
            "status",
            "error_code",
            "error_message",
            "created_at",
            "completed_at",
            "audio_status",
            "audio_url",
            "audio_duration_ms",
            "tts_characters",
            "llm_first_token_ms",
            "first_chunk_ms",
            "tts_first_byte_ms",
            "first_audio_sent_ms",
            "client_first_audible_ms",
            "client_underruns",
            "words",
            "heard_text",
        ]
        read_only_fields = fields

    def get_audio_url(self, message: Message) -> str | None:
        return audio_store.audio_url(message)


class SpeechBudgetSerializer(serializers.Serializer):
    """What is left of the user's speech allowance (chat.limits.BudgetView); null limit means unlimited."""

    remaining_chars = serializers.IntegerField(allow_null=True, help_text="Characters of speech left; null: unlimited.")
    limit_chars = serializers.IntegerField(allow_null=True, help_text="The allowance that binds (day or month).")
    resets_at = serializers.DateTimeField(allow_null=True, help_text="When that allowance renews.")
    site_exhausted = serializers.BooleanField(help_text="The whole site's daily speech allowance is used up.")
