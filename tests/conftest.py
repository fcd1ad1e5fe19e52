"""Shared fixtures: users, agents, conversations, and the loopback vendor fakes."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from chat.models import Agent, Conversation

pytest_plugins = ["tests.fakes.fixtures"]

User = get_user_model()
PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def user(db):
    return User.objects.create_user(username="alice", password=PASSWORD)


@pytest.fixture
def other_user(db):
    return User.objects.create_user(username="mallory", password=PASSWORD)


@pytest.fixture
def agent(db) -> Agent:
    # Transactional tests flush the data migration's agent, so make sure one exists.
    agent, _ = Agent.objects.get_or_create(
        is_default=True, defaults={"name": "Assistant", "language_code": "en", "system_prompt": "Be brief."}
    )
    return agent


@pytest.fixture
def conversation(user, agent) -> Conversation:
    return Conversation.objects.create(owner=user, agent=agent, title="First")


@pytest.fixture
def client_alice(client, user):
    client.force_login(user)
    return client
