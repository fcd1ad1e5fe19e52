"""The ElevenLabs-shaped HTTP endpoints, so code written for ElevenLabs agents runs against voicechat.

* `GET /v1/convai/conversation/get-signed-url` — a signed WebSocket URL (chat/signing.py).
* `GET /v1/convai/conversations` and `GET /v1/convai/conversations/{id}` — the vendor's history API over
  the caller's own conversations; anyone else's is a 404 like one that does not exist.

Authenticated by the session (the page) or an `xi-api-key` (chat/api_keys.py, what the SDKs send).
Errors use the vendor's body, `{"detail": {"status": code, "message": sentence}}`, and 422 for bad
query parameters, so the SDKs raise the error classes their users already catch.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime
from typing import Any

from django.db.models import Count, Exists, Max, OuterRef, Q, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat.api_keys import XiApiKeyAuthentication
from chat.models import Agent, Conversation, Message
from chat.services import agent_get, conversation_get
from chat.signing import signed_url_query
from chat.turns import audio as audio_store

WS_PATH = "/v1/convai/conversation"
DEFAULT_PAGE_SIZE = 30  # the vendor's defaults and limits for conversation lists
MAX_PAGE_SIZE = 100
IN_FLIGHT = (Message.Status.PENDING, Message.Status.STREAMING)


class VendorError(Exception):
    """An error answered in the vendor's body shape."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status_code, self.code, self.message = status_code, code, message

    def response(self) -> Response:
        return Response({"detail": {"status": self.code, "message": self.message}}, status=self.status_code)


def _invalid(parameter: str, message: str) -> VendorError:
    return VendorError(422, "invalid_parameters", f"{parameter}: {message}")


class ConvaiView(APIView):
    authentication_classes = [XiApiKeyAuthentication, SessionAuthentication]

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, VendorError):
            return exc.response()
        return super().handle_exception(exc)


# --- get-signed-url ---------------------------------------------------------------------------
class SignedUrlSerializer(serializers.Serializer):
    signed_url = serializers.CharField(help_text="ws[s]:// URL of the conversation socket; single use.")


class SignedUrlView(ConvaiView):
    """A single-use WebSocket URL for the caller and an agent; valid for SIGNED_URL_MAX_AGE seconds."""

    @extend_schema(
        operation_id="convai_get_signed_url",
        parameters=[
            OpenApiParameter("agent_id", OpenApiTypes.STR, description="An agent id (blank: the default agent)."),
            OpenApiParameter("conversation_id", OpenApiTypes.UUID, description="Resume one of your conversations."),
        ],
        responses={
            200: SignedUrlSerializer,
            401: OpenApiResponse(description="No session and no valid xi-api-key."),
            404: OpenApiResponse(description="No such active agent, or no such conversation of yours."),
            422: OpenApiResponse(description="agent_id and conversation_id disagree."),
        },
    )
    def get(self, request: Request) -> Response:
        user = request.user
        agent_id = request.query_params.get("agent_id", "").strip()
        conversation_id = request.query_params.get("conversation_id", "").strip()
        conversation = None
        if conversation_id:
            try:
                conversation = conversation_get(owner=user, conversation_id=conversation_id)
            except Conversation.DoesNotExist:
                raise VendorError(404, "conversation_not_found", "No such conversation of yours.") from None
            if agent_id and agent_id != str(conversation.agent_id):
                raise _invalid("agent_id", "that conversation belongs to another agent.")
            agent = conversation.agent
        else:
            try:
                agent = agent_get(agent_id=agent_id or None)
            except Agent.DoesNotExist:
                raise VendorError(404, "agent_not_found", f"No active agent {agent_id!r}.") from None
        scheme = "wss" if request.is_secure() else "ws"
        query = signed_url_query(user=user, agent=agent, conversation=conversation)  # type: ignore[arg-type]
        return Response({"signed_url": f"{scheme}://{request.get_host()}{WS_PATH}?{query}"})


# --- conversations: wire shapes ---------------------------------------------------------------
class FeedbackSerializer(serializers.Serializer):
    score = serializers.ChoiceField(choices=Message.Feedback.choices)
    time_in_call_secs = serializers.IntegerField()


class TranscriptItemSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["user", "agent"])
    message = serializers.CharField(allow_null=True)
    time_in_call_secs = serializers.IntegerField()
    interrupted = serializers.BooleanField()
    feedback = FeedbackSerializer(allow_null=True)
    source_medium = serializers.CharField()
    id = serializers.UUIDField()
    created_at_unix_ms = serializers.IntegerField()
    audio_url = serializers.CharField(allow_null=True, help_text="voicechat: the stored WAV of this reply.")


class ConversationFeedbackSerializer(serializers.Serializer):
    overall_score = serializers.ChoiceField(choices=Message.Feedback.choices, allow_null=True)
    likes = serializers.IntegerField()
    dislikes = serializers.IntegerField()


class ConversationMetadataSerializer(serializers.Serializer):
    start_time_unix_secs = serializers.IntegerField()
    call_duration_secs = serializers.IntegerField()
    main_language = serializers.CharField(allow_null=True)
    termination_reason = serializers.CharField(allow_null=True)
    feedback = ConversationFeedbackSerializer()
    tts_characters = serializers.IntegerField(help_text="voicechat: characters billed by the TTS vendor.")


STATUSES = ["initiated", "in-progress", "done"]


class ConversationDetailSerializer(serializers.Serializer):
    conversation_id = serializers.UUIDField()
    agent_id = serializers.UUIDField()
    agent_name = serializers.CharField()
    status = serializers.ChoiceField(choices=STATUSES)
    user_id = serializers.CharField()
    title = serializers.CharField(help_text="voicechat: the conversation's title.")
    has_audio = serializers.BooleanField()
    has_user_audio = serializers.BooleanField()
    has_response_audio = serializers.BooleanField()
    has_auxiliary_audio = serializers.BooleanField()
    user_message_count = serializers.IntegerField()
    agent_message_count = serializers.IntegerField()
    transcript = TranscriptItemSerializer(many=True)
    metadata = ConversationMetadataSerializer()


class ConversationSummarySerializer(serializers.Serializer):
    conversation_id = serializers.UUIDField()
    agent_id = serializers.UUIDField()
    agent_name = serializers.CharField()
    start_time_unix_secs = serializers.IntegerField()
    call_duration_secs = serializers.IntegerField()
    message_count = serializers.IntegerField()
    user_message_count = serializers.IntegerField()
    agent_message_count = serializers.IntegerField()
    status = serializers.ChoiceField(choices=STATUSES)
    call_successful = serializers.ChoiceField(choices=["success", "failure", "unknown"])
    call_summary_title = serializers.CharField()
    main_language = serializers.CharField(allow_null=True)


class ConversationPageSerializer(serializers.Serializer):
    conversations = ConversationSummarySerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)
    has_more = serializers.BooleanField()


# --- conversations: translation ---------------------------------------------------------------
def _unix(moment: datetime) -> int:
    return int(moment.timestamp())


def _secs_since(start: datetime, moment: datetime | None) -> int:
    return max(0, int((moment - start).total_seconds())) if moment else 0


def _status(*, message_count: int, in_flight: bool) -> str:
    # Ours never "end" like a call: a conversation can always be resumed, so "done" means nothing is running.
    if message_count == 0:
        return "initiated"
    return "in-progress" if in_flight else "done"


def _summaries(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    running = Message.objects.filter(conversation=OuterRef("pk"), status__in=IN_FLIGHT)
    return conversations.select_related("agent").annotate(
        n_messages=Count("messages"),
        n_user=Count("messages", filter=Q(messages__role=Message.Role.USER)),
        n_agent=Count("messages", filter=Q(messages__role=Message.Role.ASSISTANT)),
        last_at=Max("messages__created_at"),
        last_completed_at=Max("messages__completed_at"),
        in_flight=Exists(running),
    )


def summary_data(conversation: Any) -> dict[str, Any]:
    """One row of the list, from a conversation annotated by `_summaries`."""
    ended = max(filter(None, [conversation.last_at, conversation.last_completed_at]), default=None)
    return {
        "conversation_id": str(conversation.id),
        "agent_id": str(conversation.agent_id),
        "agent_name": conversation.agent.name,
        "start_time_unix_secs": _unix(conversation.created_at),
        "call_duration_secs": _secs_since(conversation.created_at, ended),
        "message_count": conversation.n_messages,
        "user_message_count": conversation.n_user,
        "agent_message_count": conversation.n_agent,
        "status": _status(message_count=conversation.n_messages, in_flight=conversation.in_flight),
        "call_successful": "unknown",
        "call_summary_title": conversation.title,
        "main_language": conversation.agent.language_code or None,
    }


def _transcript_item(message: Message, start: datetime) -> dict[str, Any]:
    at = _secs_since(start, message.created_at)
    feedback = {"score": message.feedback, "time_in_call_secs": at} if message.feedback else None
    return {
        "role": "user" if message.role == Message.Role.USER else "agent",
        "message": message.text,
        "time_in_call_secs": at,
        "interrupted": message.status == Message.Status.INTERRUPTED,
        "feedback": feedback,
        "source_medium": "text",
        "id": str(message.id),
        "created_at_unix_ms": int(message.created_at.timestamp() * 1000),
        "audio_url": audio_store.audio_url(message),
    }


def detail_data(conversation: Conversation) -> dict[str, Any]:
    messages = list(conversation.messages.order_by("created_at", "id"))
    start = conversation.created_at
    ended = max((m.completed_at or m.created_at for m in messages), default=None)
    likes = sum(m.feedback == Message.Feedback.LIKE for m in messages)
    dislikes = sum(m.feedback == Message.Feedback.DISLIKE for m in messages)
    has_audio = any(m.audio for m in messages)
    return {
        "conversation_id": str(conversation.id),
        "agent_id": str(conversation.agent_id),
        "agent_name": conversation.agent.name,
        "status": _status(message_count=len(messages), in_flight=any(m.status in IN_FLIGHT for m in messages)),
        "user_id": conversation.owner.get_username(),
        "title": conversation.title,
        "has_audio": has_audio,
        "has_user_audio": False,
        "has_response_audio": has_audio,
        "has_auxiliary_audio": False,
        "user_message_count": sum(m.role == Message.Role.USER for m in messages),
        "agent_message_count": sum(m.role == Message.Role.ASSISTANT for m in messages),
        "transcript": [_transcript_item(m, start) for m in messages],
        "metadata": {
            "start_time_unix_secs": _unix(start),
            "call_duration_secs": _secs_since(start, ended),
            "main_language": conversation.agent.language_code or None,
            "termination_reason": None,
            "feedback": {
                "overall_score": _overall(likes, dislikes),
                "likes": likes,
                "dislikes": dislikes,
            },
            "tts_characters": sum(m.tts_characters for m in messages),
        },
    }


def _overall(likes: int, dislikes: int) -> str | None:
    if likes == dislikes:
        return None
    return Message.Feedback.LIKE if likes > dislikes else Message.Feedback.DISLIKE


# --- conversations: keyset pages ----------------------------------------------------------------
def cursor_encode(conversation: Conversation) -> str:
    position = f"{conversation.created_at.isoformat()}|{conversation.id}"
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def cursor_decode(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) after which the next page starts; a cursor we did not make is a 422."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, conversation_id = raw.split("|")
        return datetime.fromisoformat(created), uuid.UUID(conversation_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _invalid("cursor", "not a cursor this API returned.") from None


def _int_param(request: Request, name: str, *, default: int | None, low: int, high: int) -> int | None:
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _invalid(name, "must be a whole number.") from None
    if not low <= value <= high:
        raise _invalid(name, f"must be between {low} and {high}.")
    return value


_LIST_PARAMETERS = [
    OpenApiParameter("page_size", OpenApiTypes.INT, description=f"1–{MAX_PAGE_SIZE}; default {DEFAULT_PAGE_SIZE}."),
    OpenApiParameter("cursor", OpenApiTypes.STR, description="next_cursor of the previous page."),
    OpenApiParameter("agent_id", OpenApiTypes.UUID, description="Only conversations with this agent."),
    OpenApiParameter("call_start_after_unix", OpenApiTypes.INT, description="Started at or after (Unix seconds)."),
    OpenApiParameter("call_start_before_unix", OpenApiTypes.INT, description="Started before (Unix seconds)."),
]


class ConversationListView(ConvaiView):
    """Your conversations, newest first, in the vendor's page shape."""

    @extend_schema(
        operation_id="convai_conversations_list",
        parameters=_LIST_PARAMETERS,
        responses={200: ConversationPageSerializer, 401: OpenApiResponse(), 422: OpenApiResponse()},
    )
    def get(self, request: Request) -> Response:
        page_size = _int_param(request, "page_size", default=DEFAULT_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE)
        assert page_size is not None
        conversations = self._filtered(request).order_by("-created_at", "-id")
        if cursor := request.query_params.get("cursor", "").strip():
            created, last_id = cursor_decode(cursor)
            conversations = conversations.filter(Q(created_at__lt=created) | Q(created_at=created, id__lt=last_id))
        rows = list(_summaries(conversations)[: page_size + 1])
        page, has_more = rows[:page_size], len(rows) > page_size
        return Response(
            {
                "conversations": [summary_data(c) for c in page],
                "next_cursor": cursor_encode(page[-1]) if has_more else None,
                "has_more": has_more,
            }
        )

    def _filtered(self, request: Request) -> QuerySet[Conversation]:
        conversations = Conversation.objects.filter(owner_id=request.user.pk)
        if agent_id := request.query_params.get("agent_id", "").strip():
            try:
                conversations = conversations.filter(agent_id=uuid.UUID(agent_id))
            except ValueError:
                raise _invalid("agent_id", "not an agent id.") from None
        limit = 253_402_300_799  # 9999-12-31, the last second a datetime holds
        if (after := _int_param(request, "call_start_after_unix", default=None, low=0, high=limit)) is not None:
            conversations = conversations.filter(created_at__gte=datetime.fromtimestamp(after, UTC))
        if (before := _int_param(request, "call_start_before_unix", default=None, low=0, high=limit)) is not None:
            conversations = conversations.filter(created_at__lt=datetime.fromtimestamp(before, UTC))
        return conversations


class ConversationDetailView(ConvaiView):
    """One of your conversations with its whole transcript, in the vendor's shape."""

    @extend_schema(
        operation_id="convai_conversation_get",
        responses={200: ConversationDetailSerializer, 401: OpenApiResponse(), 404: OpenApiResponse()},
    )
    def get(self, request: Request, conversation_id: str) -> Response:
        try:
            conversation = conversation_get(owner=request.user, conversation_id=conversation_id)
        except Conversation.DoesNotExist:
            raise VendorError(404, "conversation_not_found", "No such conversation of yours.") from None
        return Response(detail_data(conversation))
