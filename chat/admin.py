"""The operator's console: agents, and transcripts with their audio, timings and cost."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from chat import audio as audio_store
from chat.models import Agent, Conversation, Message


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "is_default", "is_active", "llm", "voice_id", "tts_model_id", "language_code"]
    list_filter = ["is_active", "is_default"]
    search_fields = ["name", "system_prompt"]
    fieldsets = [
        ("Persona", {"fields": ["name", "system_prompt", "first_message", "is_default", "is_active"]}),
        ("Language model", {"fields": ["llm"]}),
        (
            "Voice",
            {
                "fields": [
                    "voice_id",
                    "tts_model_id",
                    "language_code",
                    ("stability", "similarity_boost"),
                    ("style", "speed"),
                    "use_speaker_boost",
                ],
                "description": "ElevenLabs ranges: stability, similarity and style 0–1; speed 0.7–1.2.",
            },
        ),
    ]


def _audio_player(message: Message) -> str:
    url = audio_store.audio_url(message)
    return format_html('<audio controls preload="none" src="{}"></audio>', url) if url else "—"


class TranscriptInline(admin.TabularInline):
    model = Message
    fields = ("created_at", "role", "status", "text", "audio_player", "first_audio_sent_ms")
    readonly_fields = fields
    ordering = ["created_at"]
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="audio")
    def audio_player(self, message: Message) -> str:
        return _audio_player(message)


class MessageStatusFilter(admin.SimpleListFilter):
    title = "message status"
    parameter_name = "message_status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, str(label)) for value, label in Message.Status.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value():
            return queryset.filter(messages__status=self.value()).distinct()
        return queryset


def _rows(conversations: QuerySet[Conversation]) -> list[dict[str, Any]]:
    rows = []
    for conversation in conversations.select_related("owner", "agent").prefetch_related("messages"):
        messages = sorted(conversation.messages.all(), key=lambda m: m.created_at)
        rows.append(
            {
                "id": str(conversation.id),
                "owner": conversation.owner.get_username(),
                "agent": conversation.agent.name,
                "title": conversation.title,
                "created_at": conversation.created_at.isoformat(),
                "messages": [
                    {
                        "id": str(m.id),
                        "time": m.created_at.isoformat(),
                        "role": m.role,
                        "status": m.status,
                        "text": m.text,
                        "audio_status": m.audio_status,
                        "error_code": m.error_code,
                        "tts_characters": m.tts_characters,
                        "first_audio_sent_ms": m.first_audio_sent_ms,
                        "client_first_audible_ms": m.client_first_audible_ms,
                    }
                    for m in messages
                ],
            }
        )
    return rows


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["title_or_id", "owner", "agent", "message_count", "updated_at"]
    list_filter = ["agent", MessageStatusFilter, "created_at", "updated_at"]
    search_fields = ["title", "owner__username", "messages__text"]
    readonly_fields = ["id", "owner", "agent", "created_at", "updated_at"]
    fields = ["id", "title", "owner", "agent", "created_at", "updated_at"]
    inlines = [TranscriptInline]
    actions = ["export_json", "export_csv"]
    date_hierarchy = "updated_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return super().get_queryset(request).select_related("owner", "agent").annotate(num_messages=Count("messages"))

    @admin.display(description="title", ordering="title")
    def title_or_id(self, conversation: Conversation) -> str:
        return conversation.title or f"(untitled {str(conversation.id)[:8]})"

    @admin.display(description="messages", ordering="num_messages")
    def message_count(self, conversation: Conversation) -> int:
        return getattr(conversation, "num_messages", 0)

    @admin.action(description="Export selected conversations as JSON")
    def export_json(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> HttpResponse:
        body = json.dumps({"conversations": _rows(queryset)}, ensure_ascii=False, indent=2)
        response = HttpResponse(body, content_type="application/json; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="conversations.json"'
        return response

    @admin.action(description="Export selected conversations as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> HttpResponse:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["conversation_id", "owner", "time", "role", "status", "text"])
        for row in _rows(queryset):
            for m in row["messages"]:
                writer.writerow([row["id"], row["owner"], m["time"], m["role"], m["status"], m["text"]])
        # A BOM so spreadsheet programs read the UTF-8 correctly.
        response = HttpResponse("\ufeff" + out.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="conversations.csv"'
        return response


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "role",
        "status",
        "audio_status",
        "error_code",
        "tts_characters",
        "first_audio_sent_ms",
        "client_first_audible_ms",
        "client_underruns",
    ]
    list_filter = ["role", "status", "audio_status", "error_code"]
    search_fields = ["text"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Message._meta.fields] + ["audio_player"]
    list_select_related = ["conversation"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="audio")
    def audio_player(self, message: Message) -> str:
        return _audio_player(message)
