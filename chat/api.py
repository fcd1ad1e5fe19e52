"""REST API views: the logged-in user's conversations, their messages, stored audio and the agents to pick.

Every queryset is filtered by owner, so another user's object is a 404, never a 403 that confirms it exists.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from django.db.models.fields.files import FieldFile
from django.http import Http404, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, mixins, viewsets
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from chat.byte_ranges import RangeNotSatisfiable, byte_range
from chat.limits import speech_budget_now
from chat.models import Agent, Conversation, Greeting, Message
from chat.serializers import (
    AgentSerializer,
    ConversationSerializer,
    ConversationUpdateSerializer,
    MessageSerializer,
    SpeechBudgetSerializer,
    VoiceChoiceSerializer,
)
from chat.services import (
    TITLE_MAX_CHARS,
    agent_get,
    agent_list,
    conversation_create,
    conversation_delete,
    conversation_get,
    conversation_rename,
    message_get,
)
from chat.storage import StoredAudio
from chat.voices import agent_voices, conversation_voice_set

# Written out because drf-spectacular cannot say "at least one of": a PATCH renames, picks a voice, or both.
UPDATE_REQUEST = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": TITLE_MAX_CHARS},
        "voice_id": {
            "type": "string",
            "maxLength": 100,
            "description": "One of GET /api/agents/{agent}/voices/; blank goes back to the agent's own voice.",
        },
    },
    "minProperties": 1,
}


class MessagePagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class ConversationViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """The user's conversations, most recently active first."""

    serializer_class = ConversationSerializer

    def get_queryset(self) -> QuerySet[Conversation]:
        return (
            Conversation.objects.filter(owner_id=self.request.user.pk)
            .select_related("agent")
            .order_by("-updated_at", "-created_at")
        )

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        data = serializer.validated_data
        conversation = conversation_create(
            owner=self.request.user,  # type: ignore[arg-type]  # IsAuthenticated: never anonymous here
            agent=data.get("agent"),
            title=data.get("title", ""),
        )
        if data.get("voice_id"):
            conversation = conversation_voice_set(conversation=conversation, voice_id=data["voice_id"])
        serializer.instance = conversation

    @extend_schema(request={"application/json": UPDATE_REQUEST}, responses=ConversationSerializer)
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Rename a conversation and/or pick its voice (among its agent's); nothing else may change."""
        conversation = self.get_object()
        serializer = ConversationUpdateSerializer(data=request.data, context={"conversation": conversation})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if "title" in data:
            conversation = conversation_rename(conversation=conversation, title=data["title"])
        if "voice_id" in data:
            conversation = conversation_voice_set(conversation=conversation, voice_id=data["voice_id"])
        return Response(ConversationSerializer(conversation).data)

    def perform_destroy(self, instance: Conversation) -> None:
        conversation_delete(conversation=instance)


class ConversationMessagesView(generics.ListAPIView):
    """A conversation's messages, oldest first; `?page=last` opens the latest page."""

    serializer_class = MessageSerializer
    pagination_class = MessagePagination

    def get_queryset(self) -> QuerySet[Message]:
        try:
            conversation = conversation_get(owner=self.request.user, conversation_id=self.kwargs["pk"])
        except Conversation.DoesNotExist:
            raise Http404("No such conversation.") from None
        return conversation.messages.order_by("created_at", "id")


class AgentListView(generics.ListAPIView):
    """The active agents a user may start a conversation with, the default first."""

    serializer_class = AgentSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[Agent]:
        return agent_list()


class AgentVoicesView(APIView):
    """The voices a user may pick for conversations with this agent, its own voice first."""

    @extend_schema(
        responses={200: VoiceChoiceSerializer(many=True), 404: OpenApiResponse(description="No such agent.")}
    )
    def get(self, request: Request, pk: uuid.UUID) -> Response:
        try:
            agent = agent_get(agent_id=pk)
        except Agent.DoesNotExist:
            raise Http404("No such agent.") from None
        choices = agent_voices(agent)
        return Response(VoiceChoiceSerializer(choices, many=True, context={"agent": agent}).data)


class _AnyContent(BaseContentNegotiation):
    """Audio players send whatever Accept they like; errors are still rendered as JSON."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> Any:
        return renderers[0], renderers[0].media_type


class MessageAudioView(APIView):
    """The stored WAV of one reply, with single byte ranges. Owner only (staff may review any)."""

    content_negotiation_class = _AnyContent

    @extend_schema(
        parameters=[
            OpenApiParameter("Range", OpenApiTypes.STR, OpenApiParameter.HEADER, description="e.g. bytes=0-1023"),
        ],
        responses={
            (200, "audio/wav"): OpenApiResponse(OpenApiTypes.BINARY, description="The whole WAV file."),
            (206, "audio/wav"): OpenApiResponse(OpenApiTypes.BINARY, description="The requested byte range."),
            404: OpenApiResponse(description="No such message, not yours, or it has no audio."),
            416: OpenApiResponse(description="The range lies outside the file."),
        },
    )
    def get(self, request: Request, pk: uuid.UUID) -> HttpResponse:
        try:
            message = message_get(viewer=request.user, message_id=pk)
        except Message.DoesNotExist:
            raise Http404("No such audio.") from None
        if not message.audio:
            raise Http404("This message has no audio.")
        return _audio_response(message.audio, request.headers.get("Range", ""), filename=f"{message.pk}.wav")


class GreetingAudioView(APIView):
    """The stored WAV of an active agent's spoken greeting (shared by all its conversations), with ranges."""

    content_negotiation_class = _AnyContent

    @extend_schema(
        parameters=[
            OpenApiParameter("Range", OpenApiTypes.STR, OpenApiParameter.HEADER, description="e.g. bytes=0-1023"),
        ],
        responses={
            (200, "audio/wav"): OpenApiResponse(OpenApiTypes.BINARY, description="The whole WAV file."),
            (206, "audio/wav"): OpenApiResponse(OpenApiTypes.BINARY, description="The requested byte range."),
            404: OpenApiResponse(description="No such greeting, or it has no audio yet."),
            416: OpenApiResponse(description="The range lies outside the file."),
        },
    )
    def get(self, request: Request, pk: uuid.UUID) -> HttpResponse:
        greeting = Greeting.objects.filter(pk=pk, agent__is_active=True).exclude(audio="").first()
        if greeting is None:
            raise Http404("No such greeting audio.")
        return _audio_response(greeting.audio, request.headers.get("Range", ""), filename=f"greeting-{greeting.pk}.wav")


def _audio_response(file: FieldFile, range_header: str, *, filename: str) -> HttpResponse:
    response = _audio_body(file, range_header)
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=86400"
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    return response


def _audio_body(file: FieldFile, range_header: str) -> HttpResponse:
    try:
        audio = StoredAudio(file.storage, file.name or "")
    except FileNotFoundError:
        raise Http404("This audio file is missing.") from None
    try:
        span = byte_range(range_header, audio.size)
    except RangeNotSatisfiable:
        audio.close()
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{audio.size}"
        return response
    first, last = span if span else (0, audio.size - 1)
    # Only the range is read (a ranged GET on a bucket): a seek in a long reply costs its bytes, not the file's.
    response = HttpResponse(audio.read(first, last), status=206 if span else 200, content_type="audio/wav")
    if span:
        response["Content-Range"] = f"bytes {first}-{last}/{audio.size}"
    return response


class UsageView(APIView):
    """What is left of the user's speech allowance, in characters (the unit the TTS vendor bills)."""

    @extend_schema(responses=SpeechBudgetSerializer)
    def get(self, request: Request) -> Response:
        assert request.user.pk is not None  # IsAuthenticated
        return Response(SpeechBudgetSerializer(speech_budget_now(request.user.pk)).data)
