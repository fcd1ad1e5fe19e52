"""Workflows on conversations and messages. Transports call these; these never know about HTTP or sockets."""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import uuid

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import ValidationError
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from chat.models import Agent, Conversation, Message

logger = logging.getLogger(__name__)

TITLE_MAX_CHARS = 200


def agent_default() -> Agent:
    """The agent used when none is named: the one marked default, else the first active one."""
    agent = Agent.objects.filter(is_active=True).order_by("-is_default", "name").first()
    if agent is None:
        raise Agent.DoesNotExist("No active agent is configured; add one in the admin.")
    return agent


def agent_get(*, agent_id: uuid.UUID | str | None) -> Agent:
    """An active agent by id (blank: the default). Raises Agent.DoesNotExist for unknown ids."""
    if not agent_id:
        return agent_default()
    try:
        return Agent.objects.get(pk=agent_id, is_active=True)
    except (ValueError, ValidationError, Agent.DoesNotExist):
        raise Agent.DoesNotExist(f"No active agent {agent_id}.") from None


def conversation_get(*, owner: User | AnonymousUser, conversation_id: uuid.UUID | str) -> Conversation:
    """One of `owner`'s conversations; anything else (foreign, unknown, malformed) is DoesNotExist."""
    try:
        return Conversation.objects.select_related("agent").get(pk=conversation_id, owner_id=owner.pk)
    except (ValueError, ValidationError, Conversation.DoesNotExist):
        raise Conversation.DoesNotExist(f"No conversation {conversation_id}.") from None


def conversation_latest(*, owner: User | AnonymousUser) -> Conversation | None:
    """`owner`'s most recently active conversation that has a message, if any."""
    conversations = Conversation.objects.filter(owner_id=owner.pk, messages__isnull=False).select_related("agent")
    return conversations.order_by("-updated_at").first()


def conversation_create(*, owner: User, agent: Agent | None = None, title: str = "") -> Conversation:
    return Conversation.objects.create(owner=owner, agent=agent or agent_default(), title=title[:TITLE_MAX_CHARS])


def title_from_text(text: str) -> str:
    """A conversation title from the first user message: its first line, whitespace collapsed, cut at a word."""
    line = " ".join(text.strip().split("\n", 1)[0].split())
    if len(line) <= 80:
        return line
    return line[:80].rsplit(" ", 1)[0].rstrip(",.;:") + "…"


@transaction.atomic
def message_create_user(*, conversation: Conversation, text: str) -> Message:
    """Save the user's message first of all; set the conversation title when it has none."""
    message = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, text=text, status=Message.Status.COMPLETE
    )
    fields = ["updated_at"]
    if not conversation.title:
        conversation.title = title_from_text(text)
        fields.append("title")
    conversation.save(update_fields=fields)
    return message


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    conversation.title = title.strip()[:TITLE_MAX_CHARS]
    conversation.save(update_fields=["title", "updated_at"])
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete a conversation with its messages and their audio files."""
    conversation_delete_many(conversations=Conversation.objects.filter(pk=conversation.pk))


def conversation_delete_many(*, conversations: QuerySet[Conversation]) -> None:
    """Delete conversations, their messages and the audio files the ORM would leave behind in storage."""
    with transaction.atomic():
        names = _audio_names(Message.objects.filter(conversation__in=conversations))
        conversations.delete()
        transaction.on_commit(lambda: _audio_files_delete(names, remove_folders=True), robust=True)


def message_delete_many(*, messages: QuerySet[Message]) -> None:
    """Delete messages and their audio files (an admin removing part of a transcript)."""
    with transaction.atomic():
        names = _audio_names(messages)
        messages.delete()
        transaction.on_commit(lambda: _audio_files_delete(names, remove_folders=False), robust=True)


def _audio_names(messages: QuerySet[Message]) -> list[str]:
    return list(messages.exclude(audio="").values_list("audio", flat=True))


def _audio_files_delete(names: list[str], *, remove_folders: bool) -> None:
    # After the commit: a rolled-back delete must not lose audio, and a lost file only leaves a dead link.
    storage = default_storage  # Message.audio's storage: a local folder or a bucket (one DELETE per object)
    for name in names:
        try:
            storage.delete(name)
        except Exception:  # a bucket hiccup on one object must not keep the rest
            logger.exception("Could not delete stored audio %s", name)
    if remove_folders and isinstance(storage, FileSystemStorage):
        for folder in {posixpath.dirname(name) for name in names}:
            with contextlib.suppress(OSError):  # not empty, or already gone
                os.rmdir(storage.path(folder))


def message_get(*, viewer: User | AnonymousUser, message_id: uuid.UUID | str) -> Message:
    """A message `viewer` may see: their own, or any for staff who review transcripts. Else DoesNotExist."""
    messages = Message.objects.select_related("conversation")
    if not (viewer.is_staff and viewer.has_perm("chat.view_message")):
        messages = messages.filter(conversation__owner_id=viewer.pk)
    try:
        return messages.get(pk=message_id)
    except (ValueError, ValidationError, Message.DoesNotExist):
        raise Message.DoesNotExist(f"No message {message_id}.") from None


def agent_list() -> QuerySet[Agent]:
    """The agents a user may pick, the default first."""
    return Agent.objects.filter(is_active=True).order_by("-is_default", "name")


def message_feedback_save(
    *, conversation: Conversation, message_id: uuid.UUID | str, score: Message.Feedback | str | None
) -> bool:
    """Record a like/dislike (None clears it) on one of the conversation's replies; False when there is none."""
    try:
        updated = Message.objects.filter(conversation=conversation, pk=message_id, role=Message.Role.ASSISTANT).update(
            feedback=score or "", feedback_at=timezone.now() if score else None
        )
    except (ValueError, ValidationError):
        return False
    return updated > 0
