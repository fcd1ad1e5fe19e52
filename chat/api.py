"""REST API views: the logged-in user's conversations, their messages and the agents they may pick."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, mixins, viewsets
from rest_framework.pagination import PageNumberPagination
from rest_framework.serializers import BaseSerializer

from chat.models import Agent, Conversation, Message
from chat.serializers import (
    AgentSerializer,
    ConversationRenameSerializer,
    ConversationSerializer,
    MessageSerializer,
)
from chat.services import conversation_create, conversation_delete, conversation_rename


class MessagePagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class ConversationViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """The user's conversations, newest first. Another user's conversation is a 404, never a 403."""

    serializer_class = ConversationSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Conversation]:
        return (
            Conversation.objects.filter(owner_id=self.request.user.pk)
            .select_related("agent")
            .order_by("-updated_at", "-created_at")
        )

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return ConversationRenameSerializer if self.action == "partial_update" else ConversationSerializer

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        data = serializer.validated_data
        serializer.instance = conversation_create(
            owner=self.request.user,  # type: ignore[arg-type]
            agent=data.get("agent"),
            title=data.get("title", ""),
        )

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        assert isinstance(serializer.instance, Conversation)
        serializer.instance = conversation_rename(
            conversation=serializer.instance, title=serializer.validated_data["title"]
        )

    def perform_destroy(self, instance: Conversation) -> None:
        conversation_delete(conversation=instance)

    @extend_schema(request=ConversationRenameSerializer, responses=ConversationSerializer)
    def partial_update(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().partial_update(request, *args, **kwargs)
        response.data = ConversationSerializer(self.get_object()).data
        return response


class ConversationMessagesView(generics.ListAPIView):
    """A conversation's messages, oldest first, paginated."""

    serializer_class = MessageSerializer
    pagination_class = MessagePagination

    def get_queryset(self) -> QuerySet[Message]:
        conversation = generics.get_object_or_404(
            Conversation.objects.filter(owner_id=self.request.user.pk), pk=self.kwargs["pk"]
        )
        return Message.objects.filter(conversation=conversation).order_by("created_at")


class AgentListView(generics.ListAPIView):
    """The active agents a user may start a conversation with."""

    serializer_class = AgentSerializer
    pagination_class = None
    queryset = Agent.objects.filter(is_active=True).order_by("-is_default", "name")
