"""The operator's console: agents, and transcripts with their audio, timings and cost."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from chat import admin_display as display
from chat.api_keys import api_key_assign
from chat.elevenlabs_agents import conversation_vendor_fetch, vendor_record_html
from chat.forms import AgentAdminForm
from chat.limits import admin as limits_admin  # noqa: F401  (registers the speech budget admin)
from chat.models import Agent, ApiKey, Conversation, Message
from chat.providers.base import ProviderError
from chat.services import conversation_delete_many, message_delete_many
from chat.voice_views import admin_voice_preview

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldOpts, _FieldsetSpec

CSV_HEADER = ["conversation_id", "owner", "time", "role", "status", "text"]
TIMINGS = (
    "llm_first_token_ms",
    "first_chunk_ms",
    "tts_first_byte_ms",
    "first_audio_sent_ms",
    "client_first_audible_ms",
)
TRANSCRIPT_FIELDS = ("heading", "body", "player", "details")
MESSAGE_SECTIONS: dict[str | None, tuple[str, ...]] = {
    None: ("id", "conversation_link", "owner", "role", "status_badge", "rendered_text", "created_at", "completed_at"),
    "Error": ("error_code", "error_message"),
    "Audio and cost": (
        "player",
        "audio_status_badge",
        "audio_format",
        "audio_duration_ms",
        "tts_backend",
        "tts_characters",
        "tts_request_ids",
    ),
    "Timings": ("timings", *TIMINGS, "client_underruns"),
    "Feedback": ("feedback", "feedback_at"),
    "Source text": ("text",),
}
SOURCE_TEXT_NOTE = "The text exactly as stored, markdown and all."
ADMIN_CSS = {"all": ["site/admin.css"]}

admin.site.site_header = "voicechat administration"
admin.site.site_title = "voicechat admin"
# The model list on every page takes 300 px; at a laptop's 1366 px the message list needs them.
# The same list is one click away on the admin's home page and in the breadcrumbs.
admin.site.enable_nav_sidebar = False


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
                    "tts_transport",
                    "language_code",
                    ("stability", "similarity_boost"),
                    ("style", "speed"),
                    "use_speaker_boost",
                    "allow_breaks",
                    "output_format",
                ],
                "description": "ElevenLabs ranges: stability, similarity boost and style 0–1; speed 0.7–1.2.",
            },
        ),
        ("Voices users may pick", {"fields": ["user_voice_ids"]}),
        (
            "Client overrides",
            {
                "fields": ["allow_voice_override", "allow_first_message_override", "allow_language_override"],
                "description": "What an SDK's conversation_initiation_client_data may change; any other override "
                "closes the socket with the error override_not_allowed, as on ElevenLabs.",
            },
        ),
    ]

    class Media:
        css = ADMIN_CSS
        js = ["site/voice-preview.js"]

    def get_urls(self) -> list[URLPattern]:
        # Before the model's own patterns, whose <path:object_id>/ would swallow it. Not admin_view(): that
        # wrapper is sync-only, and the preview streams; the view checks staff and permission itself.
        preview = path("voices/<str:voice_id>/preview/", admin_voice_preview, name="chat_agent_voice_preview")
        return [preview, *super().get_urls()]


class TranscriptInline(admin.StackedInline):
    """The conversation's messages in order, read-only and laid out as a transcript, not a form."""

    model = Message
    template = "admin/chat/transcript_inline.html"
    verbose_name_plural = "transcript"
    fields = TRANSCRIPT_FIELDS
    readonly_fields = TRANSCRIPT_FIELDS
    ordering = ["created_at"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="message")
    def heading(self, message: Message) -> SafeString:
        return display.transcript_heading(message)

    @admin.display(description="text")
    def body(self, message: Message) -> SafeString:
        return display.message_text(message)

    @admin.display(description="audio")
    def player(self, message: Message) -> SafeString | str:
        return display.audio_player(message) if message.audio else ""

    @admin.display(description="timings and cost")
    def details(self, message: Message) -> SafeString | str:
        return display.transcript_details(message)


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


# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV Injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: str) -> str:
    """A cell a spreadsheet shows as text: a leading quote disarms a formula; users write messages and names."""
    return f"'{value}" if value.startswith(_FORMULA_STARTS) else value


def _download(body: str, *, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=f"{content_type}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["title_or_id", "owner", "agent", "message_count", "characters_billed", "updated_at"]
    list_filter = ["agent", MessageStatusFilter, "created_at", "updated_at"]
    search_fields = ["title", "owner__username", "messages__text"]
    fields = [
        "id",
        "title",
        "owner",
        "agent",
        "created_at",
        "updated_at",
        "speech",
        "elevenlabs_conversation_id",
        "vendor_record",
    ]
    readonly_fields = [
        "id",
        "owner",
        "agent",
        "created_at",
        "updated_at",
        "speech",
        "elevenlabs_conversation_id",
        "vendor_record",
    ]
    list_select_related = ["owner", "agent"]
    inlines = [TranscriptInline]
    actions = ["export_json", "export_csv", "fetch_elevenlabs_record"]
    date_hierarchy = "updated_at"

    class Media:
        css = ADMIN_CSS

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        # A subquery for the sum: a search or filter on messages joins them again and would repeat rows.
        billed = (
            Message.objects.filter(conversation=OuterRef("pk"))
            .values("conversation")
            .annotate(total=Sum("tts_characters"))
            .values("total")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(num_messages=Count("messages", distinct=True), billed=Coalesce(Subquery(billed), 0))
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # conversations are started by users, not typed in by operators

    @admin.display(description="title", ordering="title")
    def title_or_id(self, conversation: Conversation) -> str:
        return conversation.title or f"(untitled {str(conversation.id)[:8]})"

    @admin.display(description="messages", ordering="num_messages")
    def message_count(self, conversation: Conversation) -> int:
        return getattr(conversation, "num_messages", 0)

    @admin.display(description="chars billed", ordering="billed")
    def characters_billed(self, conversation: Conversation) -> int:
        return getattr(conversation, "billed", 0)

    @admin.display(description="speech")
    def speech(self, conversation: Conversation) -> str:
        totals = conversation.messages.filter(role=Message.Role.ASSISTANT).aggregate(
            characters=Coalesce(Sum("tts_characters"), 0),
            spoken=Count("pk", filter=Q(tts_characters__gt=0) | ~Q(audio="")),
            audio_ms=Coalesce(Sum("audio_duration_ms"), 0),
        )
        return display.speech_summary(**totals)

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
        writer = csv.writer(out, quoting=csv.QUOTE_ALL)
        writer.writerow(CSV_HEADER)
        for row in export_rows(queryset):
            for m in row["messages"]:
                cells = [row["id"], row["owner"], m["time"], m["role"], m["status"], m["text"]]
                writer.writerow([csv_cell(cell) for cell in cells])
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


def _shows(section: str | None, message: Message | None) -> bool:
    if section == "Error":
        return bool(message and (message.error_code or message.error_message))
    if section in ("Audio and cost", "Timings"):
        return bool(message and message.role == Message.Role.ASSISTANT)
    if section == "Feedback":
        return bool(message and message.feedback)
    return True


def _section(title: str | None, names: tuple[str, ...]) -> _FieldOpts:
    if title == "Source text":
        return {"fields": names, "classes": ["collapse"], "description": SOURCE_TEXT_NOTE}
    return {"fields": names}


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Messages are records of what was said and heard: viewable and deletable, never edited."""

    list_display = [
        "when",
        "text_preview",
        "role",
        "status_badge",
        "audio_badge",
        "conversation_title",
        "owner",
        "billed",
        "heard",
        "feedback",
    ]
    list_display_links = ["when", "text_preview"]
    list_filter = ["role", "status", "audio_status", "error_code", "feedback"]
    search_fields = ["text", "conversation__title", "conversation__owner__username"]
    ordering = ["-created_at"]
    date_hierarchy = "created_at"
    list_select_related = ["conversation", "conversation__owner"]
    readonly_fields = [name for names in MESSAGE_SECTIONS.values() for name in names]

    class Media:
        css = ADMIN_CSS

    def get_fieldsets(self, request: HttpRequest, obj: Message | None = None) -> _FieldsetSpec:
        """Only the sections that say something about this message: a user's has no audio or timings."""
        return [(title, _section(title, names)) for title, names in MESSAGE_SECTIONS.items() if _shows(title, obj)]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: Message) -> None:
        message_delete_many(messages=Message.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        message_delete_many(messages=queryset)

    @admin.display(description="time", ordering="created_at")
    def when(self, message: Message) -> SafeString:
        return display.moment(message, seconds=False)

    @admin.display(description="text")
    def text_preview(self, message: Message) -> SafeString:
        return display.text_preview(message)

    @admin.display(description="text")
    def rendered_text(self, message: Message) -> SafeString:
        return format_html('<div class="vc-text">{}</div>', display.message_text(message))

    @admin.display(description="status", ordering="status")
    def status_badge(self, message: Message) -> SafeString:
        return display.status_badge(message)

    @admin.display(description="audio", ordering="audio_status")
    def audio_badge(self, message: Message) -> SafeString | str:
        return display.audio_badge(message, subject=False) if message.role == Message.Role.ASSISTANT else ""

    @admin.display(description="audio status")
    def audio_status_badge(self, message: Message) -> SafeString:
        return display.audio_badge(message, subject=False)

    @admin.display(description="audio")
    def player(self, message: Message) -> SafeString | str:
        return display.audio_player(message)

    @admin.display(description="summary")
    def timings(self, message: Message) -> SafeString | str:
        return display.timings_line(message) or display.NOTHING

    @admin.display(description="conversation", ordering="conversation__title")
    def conversation_title(self, message: Message) -> SafeString:
        url = reverse("admin:chat_conversation_change", args=[message.conversation_id])
        title = message.conversation.title or f"(untitled {str(message.conversation_id)[:8]})"
        return format_html('<a class="vc-preview" href="{}" title="{}">{}</a>', url, title, title)

    @admin.display(description="conversation")
    def conversation_link(self, message: Message) -> SafeString:
        url = reverse("admin:chat_conversation_change", args=[message.conversation_id])
        return format_html('<a href="{}">{}</a>', url, message.conversation)

    @admin.display(description="owner", ordering="conversation__owner__username")
    def owner(self, message: Message) -> str:
        return message.conversation.owner.get_username()

    @admin.display(description="billed", ordering="tts_characters")
    def billed(self, message: Message) -> str:
        """Characters billed; blank for a user's message, which is never spoken."""
        return f"{message.tts_characters:,}" if message.role == Message.Role.ASSISTANT else ""

    @admin.display(description="heard", ordering="client_first_audible_ms")
    def heard(self, message: Message) -> str:
        """How long after Send the browser played the reply's first sound."""
        return f"{message.client_first_audible_ms} ms" if message.client_first_audible_ms is not None else ""


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys for the ElevenLabs-shaped API (`xi-api-key`); a new key is shown once, then only its prefix."""

    list_display = ["name", "user", "prefix", "created_at", "last_used_at"]
    list_select_related = ["user"]
    search_fields = ["name", "user__username", "prefix"]
    autocomplete_fields = ["user"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("user", "name") if obj is None else ("user", "name", "prefix", "created_at", "last_used_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return () if obj is None else ("user", "prefix", "created_at", "last_used_at")

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if not change:
            raw_key = api_key_assign(obj)
            notice = f"The new key for {obj.user} is {raw_key} — copy it now; it is not shown again."
            self.message_user(request, notice, messages.WARNING)
        super().save_model(request, obj, form, change)
