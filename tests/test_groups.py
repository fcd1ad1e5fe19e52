"""Ending a session tells the user's sockets over the channel layer (chat/groups.py), whatever ended it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers, get_channel_layer
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import AsyncClient

from chat.groups import (
    SessionEnded,
    conversation_frame,
    conversation_group,
    session_digest,
    session_ended_applies,
    user_group,
)
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

User = get_user_model()


class Listener:
    """A channel in the user's group, as a socket of that user would have."""

    def __init__(self, user_id: object) -> None:
        self.user_id = user_id
        self.channel = ""

    async def join(self) -> Listener:
        layer = get_channel_layer()
        assert layer is not None
        self.channel = await layer.new_channel()
        await layer.group_add(user_group(self.user_id), self.channel)
        return self

    async def next(self, timeout: float = 5) -> dict[str, Any]:
        layer = get_channel_layer()
        assert layer is not None
        async with asyncio.timeout(timeout):
            return dict(await layer.receive(self.channel))

    async def nothing(self) -> bool:
        """True when no message arrives: the senders under test have sent by the time their view returned."""
        try:
            await self.next(timeout=0.3)
        except TimeoutError:
            return True
        return False


async def logged_in_client(user: Any) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(user)
    return client


def session_key(client: AsyncClient) -> str:
    key = client.cookies["sessionid"].value
    assert key
    return key


@pytest.fixture
def bob(db) -> Any:
    return User.objects.create_user("bob", password=PASSWORD)


def test_it_names_groups_as_the_contract_says() -> None:
    assert user_group(7) == "user.7"
    assert conversation_group("3f1c") == "conversation.3f1c"
    frame = {"type": "agent_chat_response_part", "text_response_part": {"text": "Hi"}}
    assert conversation_frame(frame, origin="specific.abc!def") == {
        "type": "conversation.frame",
        "frame": frame,
        "origin": "specific.abc!def",
    }


def test_it_applies_a_session_end_to_its_session_only() -> None:
    one: SessionEnded = {"type": "session.ended", "reason": "logged_out", "session": session_digest("key-a")}
    everyone: SessionEnded = {"type": "session.ended", "reason": "password_changed", "session": None}
    assert session_ended_applies(one, "key-a")
    assert not session_ended_applies(one, "key-b")
    assert not session_ended_applies(one, None)
    assert session_ended_applies(everyone, "key-b") and session_ended_applies(everyone, None)
    digest = session_digest("key-a")
    assert digest is not None and "key-a" not in digest


async def test_it_ends_the_logged_out_session_and_no_other(bob: Any) -> None:
    listener = await Listener(bob.pk).join()
    laptop, phone = await logged_in_client(bob), await logged_in_client(bob)
    ended = session_key(laptop)
    response = await laptop.post("/accounts/logout/")
    assert response.status_code == 302
    message = cast(SessionEnded, await listener.next())
    assert message == {"type": "session.ended", "reason": "logged_out", "session": session_digest(ended)}
    assert session_ended_applies(message, ended)
    assert not session_ended_applies(message, session_key(phone))
    assert await listener.nothing()


async def test_it_ends_every_session_when_the_user_changes_the_password(bob: Any) -> None:
    listener = await Listener(bob.pk).join()
    client = await logged_in_client(bob)
    new = "another-long-passphrase-2"
    response = await client.post(
        "/accounts/password_change/", {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
    )
    assert response.status_code == 302, response.content
    message = await listener.next()
    assert message == {"type": "session.ended", "reason": "password_changed", "session": None}
    assert await listener.nothing()


async def test_it_ends_every_session_when_an_admin_sets_the_password(bob: Any) -> None:
    admin = await sync_to_async(User.objects.create_superuser)("root", password=PASSWORD)
    listener = await Listener(bob.pk).join()
    admin_listener = await Listener(admin.pk).join()
    client = await logged_in_client(admin)
    new = "an-admin-chosen-passphrase-3"
    response = await client.post(
        f"/admin/auth/user/{bob.pk}/password/", {"password1": new, "password2": new, "usable_password": "true"}
    )
    assert response.status_code == 302, response.content
    assert (await listener.next())["reason"] == "password_changed"
    assert await admin_listener.nothing()


async def test_it_ends_every_session_on_deactivation_and_deletion(bob: Any) -> None:
    listener = await Listener(bob.pk).join()
    bob.is_active = False
    await bob.asave()
    assert (await listener.next())["reason"] == "deactivated"
    await bob.adelete()
    assert (await listener.next())["reason"] == "deleted"


async def test_it_leaves_sessions_alone_on_login_and_other_edits(bob: Any) -> None:
    listener = await Listener(bob.pk).join()
    assert await AsyncClient().alogin(username="bob", password=PASSWORD)  # saves last_login
    bob.first_name = "Bob"
    await bob.asave()
    bob.set_password(PASSWORD)  # same password, new salt: a new hash all the same
    await bob.asave(update_fields=["first_name"])  # but this save does not write it
    assert await listener.nothing()


async def test_it_ends_nothing_when_the_change_rolls_back(bob: Any) -> None:
    listener = await Listener(bob.pk).join()

    def change_then_fail() -> None:
        with transaction.atomic():
            bob.set_password("rolled-back-passphrase-4")
            bob.save()
            raise RuntimeError("the request failed after the save")

    with pytest.raises(RuntimeError):
        await sync_to_async(change_then_fail)()
    assert await listener.nothing()


async def test_it_logs_out_even_when_the_channel_layer_is_down(
    bob: Any, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.servers import free_port

    closed = f"redis://127.0.0.1:{free_port()}/0"
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [closed]}}
    }
    channel_layers.backends.clear()
    try:
        client = await logged_in_client(bob)
        with caplog.at_level(logging.ERROR, logger="chat.groups"):
            response = await client.post("/accounts/logout/")
        assert response.status_code == 302
        assert "session ended (logged_out)" in caplog.text
        assert not client.cookies["sessionid"].value  # the session is gone all the same
    finally:
        channel_layers.backends.clear()
