"""The operator's console: agents, and transcripts with their audio, timings and cost."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, Exists, OuterRef, Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html

from chat.elevenlabs_agents import conversation_vendor_fetch, vendor_record_html
from chat.forms import AgentAdminForm
from chat.models import Agent, Conversation, Message
from chat.providers.base import ProviderError
from chat.services import conversation_delete_many, message_delete_many
from chat.turns import audio as audio_store

CSV_HEADER = ["conversation_id", "owner", "time", "role", "status", "text"]
TIMINGS = {
    "llm_first_token_ms": "LLM first token",
    "first_chunk_ms": "first chunk",
    "tts_first_byte_ms": "TTS first byte",
    "first_audio_sent_ms": "first audio sent",
    "client_first_audible_ms": "first audible",
}
TRANSCRIPT_COLUMNS = ("created_at", "role", "status", "text", "player", "timings")
MESSAGE_SECTIONS: dict[str | None, tuple[str, ...]] = {
    None: ("id", "conversation_link", "role", "status", "text", "created_at", "completed_at"),
    "Error": ("error_code", "error_message"),
    "Audio and cost": (
        "player",
        "audio_status",
        "audio_format",
        "audio_duration_ms",
        "tts_backend",
        "tts_characters",
        "tts_request_ids",
    ),
    "Timings (ms)": (*TIMINGS, "client_underruns"),
}


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    form = AgentAdminForm
    list_display = ["name", "is_default", "is_active", "llm", "voice_id", "tts_model_id", "language_code"]
    list_filter = ["is_active", "is_default", "backend"]
    search_fields = ["name", "system_prompt"]
    fieldsets = [
        ("Persona", {"fields": ["name", "system_prompt", "first_message", "is_default", "is_active"]}),
        (
            "Backend",
            {
                "fields": ["backend", "elevenlabs_agent_id"],
                "description": "An ElevenLabs agent writes and speaks replies itself: the LLM and voice settings "
                "below then apply only where ELEVENLABS_AGENT_OVERRIDES passes them on (docs/agents.md).",
            },
        ),
        ("LLM", {"fields": ["llm"]}),
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
                "description": "ElevenLabs ranges: stability, similarity boost and style 0–1; speed 0.7–1.2.",
            },
        ),
    ]


def audio_player(message: Message) -> str:
    url = audio_store.audio_url(message)
    return format_html('<audio controls preload="none" src="{}"></audio>', url) if url else "—"


def timings_summary(message: Message) -> str:
    """One line of the reply's latency figures, skipping those not measured."""
    parts = [f"{label} {getattr(message, field)} ms" for field, label in TIMINGS.items() if getattr(message, field)]
    if message.client_underruns:
        parts.append(f"{message.client_underruns} underruns")
    return " · ".join(parts) or "—"


class TranscriptInline(admin.TabularInline):
    """The conversation's messages in order, read-only: a transcript, not a form."""

    model = Message
    fields = TRANSCRIPT_COLUMNS
    readonly_fields = TRANSCRIPT_COLUMNS
    ordering = ["created_at"]
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="audio")
    def player(self, message: Message) -> str:
        return audio_player(message)

    @admin.display(description="timings")
    def timings(self, message: Message) -> str:
        return timings_summary(message)


class MessageStatusFilter(admin.SimpleListFilter):
    """Conversations with at least one message in the chosen status (e.g. every failed turn)."""

    title = "message status"
    parameter_name = "message_status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, str(label)) for value, label in Message.Status.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if not self.value():
            return queryset
        # A subquery, not a join: a join would repeat rows and inflate the message count.
        matching = Message.objects.filter(conversation=OuterRef("pk"), status=self.value())
        return queryset.filter(Exists(matching))


def export_rows(conversations: QuerySet[Conversation]) -> list[dict[str, Any]]:
    """The selected conversations with their messages in order, as plain data."""
    ordered = Prefetch("messages", queryset=Message.objects.order_by("created_at", "id"))
    return [
        {
            "id": str(conversation.id),
            "owner": conversation.owner.get_username(),
            "agent": conversation.agent.name,
            "title": conversation.title,
            "created_at": conversation.created_at.isoformat(),
            "updated_at": conversation.updated_at.isoformat(),
            "messages": [_export_message(m) for m in conversation.messages.all()],
        }
        for conversation in conversations.select_related("owner", "agent").prefetch_related(ordered)
    ]


def _export_message(message: Message) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "time": message.created_at.isoformat(),
        "role": message.role,
        "status": message.status,
        "text": message.text,
        "error_code": message.error_code,
        "audio_status": message.audio_status,
        "audio_duration_ms": message.audio_duration_ms,
        "tts_characters": message.tts_characters,
        **{field: getattr(message, field) for field in TIMINGS},
        "client_underruns": message.client_underruns,
    }


def _download(body: str, *, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=f"{content_type}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["title_or_id", "owner", "agent", "message_count", "updated_at"]
    list_filter = ["agent", MessageStatusFilter, "created_at", "updated_at"]
    search_fields = ["title", "owner__username", "messages__text"]
    readonly_fields = [
        "id",
        "owner",
        "agent",
        "created_at",
        "updated_at",
        "elevenlabs_conversation_id",
        "vendor_record",
    ]
    fields = [
        "id",
        "title",
        "owner",
        "agent",
        "created_at",
        "updated_at",
        "elevenlabs_conversation_id",
        "vendor_record",
    ]
    list_select_related = ["owner", "agent"]
    inlines = [TranscriptInline]
    actions = ["export_json", "export_csv", "fetch_elevenlabs_record"]
    date_hierarchy = "updated_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return super().get_queryset(request).annotate(num_messages=Count("messages", distinct=True))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # conversations are started by users, not typed in by operators

    @admin.display(description="title", ordering="title")
    def title_or_id(self, conversation: Conversation) -> str:
        return conversation.title or f"(untitled {str(conversation.id)[:8]})"

    @admin.display(description="messages", ordering="num_messages")
    def message_count(self, conversation: Conversation) -> int:
        return getattr(conversation, "num_messages", 0)

    def delete_model(self, request: HttpRequest, obj: Conversation) -> None:
        conversation_delete_many(conversations=Conversation.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        conversation_delete_many(conversations=queryset)

    @admin.action(description="Export selected conversations as JSON")
    def export_json(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> HttpResponse:
        body = json.dumps({"conversations": export_rows(queryset)}, ensure_ascii=False, indent=2)
        return _download(body, content_type="application/json", filename="conversations.json")

    @admin.action(description="Export selected conversations as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> HttpResponse:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_HEADER)
        for row in export_rows(queryset):
            for m in row["messages"]:
                writer.writerow([row["id"], row["owner"], m["time"], m["role"], m["status"], m["text"]])
        # The BOM makes spreadsheet programs read the file as UTF-8.
        return _download("\ufeff" + out.getvalue(), content_type="text/csv", filename="conversations.csv")

    @admin.action(description="Fetch the ElevenLabs agent transcripts, to compare")
    def fetch_elevenlabs_record(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        fetched = 0
        for conversation in queryset:
            try:
                fetched += len(conversation_vendor_fetch(conversation=conversation))
            except ProviderError as exc:
                self.message_user(request, f"{conversation}: {exc.message}", level=messages.ERROR)
        self.message_user(request, f"Fetched {fetched} ElevenLabs call record(s).")

    @admin.display(description="ElevenLabs record")
    def vendor_record(self, conversation: Conversation) -> str:
        return vendor_record_html(conversation.elevenlabs_record)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Messages are records of what was said and heard: viewable and deletable, never edited."""

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
    list_select_related = ["conversation"]
    fieldsets = [(title, {"fields": names}) for title, names in MESSAGE_SECTIONS.items()]
    readonly_fields = [name for names in MESSAGE_SECTIONS.values() for name in names]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: Message) -> None:
        message_delete_many(messages=Message.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        message_delete_many(messages=queryset)

    @admin.display(description="audio")
    def player(self, message: Message) -> str:
        return audio_player(message)

    @admin.display(description="conversation")
    def conversation_link(self, message: Message) -> str:
        url = reverse("admin:chat_conversation_change", args=[message.conversation_id])
        return format_html('<a href="{}">{}</a>', url, message.conversation)
