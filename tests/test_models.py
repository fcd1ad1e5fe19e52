"""Models and services: titles, renames, deletes that take their audio along, agents and who sees what."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import AnonymousUser, Permission
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from chat.models import Agent, Conversation, Message
from chat.services import (
    agent_default,
    agent_get,
    agent_list,
    conversation_create,
    conversation_delete,
    conversation_get,
    conversation_rename,
    message_create_user,
    message_delete_many,
    message_get,
    title_from_text,
)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("  What is   the capital\nof France?", "What is the capital"),
        ("Hello", "Hello"),
        ("word " * 40, ("word " * 16).strip() + "…"),
    ],
)
def test_it_makes_a_title_from_the_first_line(text, title) -> None:
    assert title_from_text(text) == title
    assert len(title_from_text(text)) <= 81


def test_it_titles_a_conversation_from_its_first_message_only(user, agent) -> None:
    conversation = conversation_create(owner=user)
    assert (conversation.agent, conversation.title) == (agent, "")
    message_create_user(conversation=conversation, text="Tell me about whales")
    message_create_user(conversation=conversation, text="And dolphins?")
    conversation.refresh_from_db()
    assert conversation.title == "Tell me about whales"
    assert [m.role for m in conversation.messages.all()] == ["user", "user"]


def test_it_keeps_a_title_the_user_chose(conversation) -> None:
    message_create_user(conversation=conversation, text="Something else")
    conversation.refresh_from_db()
    assert conversation.title == "First"


def test_it_renames_and_touches_the_conversation(conversation) -> None:
    before = conversation.updated_at
    conversation_rename(conversation=conversation, title="  Trip planning  ")
    conversation.refresh_from_db()
    assert conversation.title == "Trip planning" and conversation.updated_at > before


def test_it_cuts_titles_to_200_characters(user, agent, conversation) -> None:
    assert len(conversation_create(owner=user, title="x" * 300).title) == 200
    conversation_rename(conversation=conversation, title="y" * 300)
    assert len(conversation.title) == 200


def test_it_deletes_a_conversation_its_messages_and_audio(
    conversation, spoken_reply, django_capture_on_commit_callbacks
) -> None:
    path = spoken_reply.audio.path
    with django_capture_on_commit_callbacks(execute=True):
        conversation_delete(conversation=conversation)
    assert not Message.objects.exists()
    with pytest.raises(FileNotFoundError):
        open(path, "rb")  # noqa: SIM115


def test_it_keeps_the_audio_when_the_delete_is_rolled_back(conversation, spoken_reply) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        conversation_delete(conversation=conversation)
        raise RuntimeError("the request failed after the delete")
    assert Message.objects.filter(pk=spoken_reply.pk).exists()
    with open(spoken_reply.audio.path, "rb"):
        pass


def test_it_deletes_single_messages_with_their_audio(
    conversation, spoken_reply, django_capture_on_commit_callbacks
) -> None:
    question = message_create_user(conversation=conversation, text="Hi?")
    path = spoken_reply.audio.path
    with django_capture_on_commit_callbacks(execute=True):
        message_delete_many(messages=Message.objects.filter(pk=spoken_reply.pk))
    assert list(Message.objects.all()) == [question]
    with pytest.raises(FileNotFoundError):
        open(path, "rb")  # noqa: SIM115


@pytest.mark.parametrize(
    ("field", "bad", "good"),
    [
        ("stability", 1.1, 1.0),
        ("stability", -0.1, 0.0),
        ("similarity_boost", 1.1, 1.0),
        ("style", -0.5, 0.0),
        ("speed", 0.6, 0.7),
        ("speed", 1.3, 1.2),
        ("language_code", "EN", "en"),
        ("llm", "gpt-9", "openai"),
    ],
)
def test_it_validates_agent_settings(field, bad, good) -> None:
    agent = Agent(name="Voice", **{field: bad})
    with pytest.raises(ValidationError) as error:
        agent.full_clean()
    assert list(error.value.message_dict) == [field]
    setattr(agent, field, good)
    agent.full_clean()


def test_it_allows_one_default_agent_only(agent) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Agent.objects.create(name="Second", is_default=True)


def test_it_picks_the_default_agent_then_any_active_one(agent) -> None:
    Agent.objects.create(name="Aardvark")
    assert agent_default() == agent
    agent.is_active = False
    agent.save()
    assert agent_default().name == "Aardvark"
    Agent.objects.update(is_active=False)
    with pytest.raises(Agent.DoesNotExist):
        agent_default()


def test_it_gets_active_agents_only(agent) -> None:
    retired = Agent.objects.create(name="Retired", is_active=False)
    assert agent_get(agent_id=None) == agent and agent_get(agent_id=str(agent.id)) == agent
    for unknown in (retired.id, uuid.uuid4(), "not-a-uuid"):
        with pytest.raises(Agent.DoesNotExist):
            agent_get(agent_id=unknown)
    assert list(agent_list()) == [agent]


def test_it_gets_only_the_owners_conversation(conversation, user, other_user) -> None:
    assert conversation_get(owner=user, conversation_id=conversation.id) == conversation
    for owner, conversation_id in (
        (other_user, conversation.id),
        (AnonymousUser(), conversation.id),
        (user, uuid.uuid4()),
        (user, "not-a-uuid"),
    ):
        with pytest.raises(Conversation.DoesNotExist):
            conversation_get(owner=owner, conversation_id=conversation_id)


def test_it_shows_a_message_to_its_owner_and_to_reviewers_only(
    spoken_reply, user, other_user, django_user_model
) -> None:
    assert message_get(viewer=user, message_id=spoken_reply.id) == spoken_reply
    reviewer = django_user_model.objects.create_user("reviewer", is_staff=True)
    for viewer in (other_user, AnonymousUser(), reviewer):
        with pytest.raises(Message.DoesNotExist):
            message_get(viewer=viewer, message_id=spoken_reply.id)
    reviewer.user_permissions.add(Permission.objects.get(codename="view_message"))
    reviewer = django_user_model.objects.get(pk=reviewer.pk)  # a fresh permission cache
    assert message_get(viewer=reviewer, message_id=spoken_reply.id) == spoken_reply


def test_it_orders_messages_by_creation(conversation) -> None:
    texts = [f"m{n}" for n in range(5)]
    for text in texts:
        message_create_user(conversation=conversation, text=text)
    assert [m.text for m in conversation.messages.all()] == texts
