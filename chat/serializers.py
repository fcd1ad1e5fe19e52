"""Wire shapes of the REST API. Serializers translate; services decide."""

from __future__ import annotations

from rest_framework import serializers

from chat.models import Agent, Conversation, Message
from chat.services import TITLE_MAX_CHARS
from chat.turns import audio as audio_store


class AgentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Agent
        fields = ["id", "name", "first_message", "language_code", "is_default"]


class ConversationSerializer(serializers.ModelSerializer):
    title = serializers.CharField(max_length=TITLE_MAX_CHARS, required=False, allow_blank=True)
    agent = serializers.PrimaryKeyRelatedField(queryset=Agent.objects.filter(is_active=True), required=False)
    agent_name = serializers.CharField(source="agent.name", read_only=True)

    class Meta:
        model = Conversation
        fields = ["id", "title", "agent", "agent_name", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]


class ConversationRenameSerializer(serializers.ModelSerializer):
    title = serializers.CharField(max_length=TITLE_MAX_CHARS, allow_blank=False, trim_whitespace=True)

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
