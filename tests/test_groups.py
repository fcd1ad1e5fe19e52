"""Ending a session tells the user's sockets over the channel layer (chat/groups.py), whatever ended it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator
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
from chat.models import Message
from tests.conftest import PASSWORD
from tests.wsclient import WS_PATH, receive_until, session_cookie_for
from voicechat.asgi import application

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
    await AsyncClient().aforce_login(bob)  # a login saves last_login (user_logged_in)
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


# --- the consumer's side: sockets close, other tabs follow -----------------------------------------
async def open_socket(cookie: str, query: str = "") -> WebsocketCommunicator:
    return (await open_socket_meta(cookie, query))[0]


async def open_socket_meta(cookie: str, query: str = "") -> tuple[WebsocketCommunicator, dict[str, Any]]:
    headers = [(b"origin", b"http://localhost:8000"), (b"host", b"localhost:8000"), (b"cookie", cookie.encode())]
    communicator = WebsocketCommunicator(application, f"{WS_PATH}?{query}", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    first = await communicator.receive_json_from(timeout=5)
    assert first["type"] == "conversation_initiation_metadata"
    return communicator, first["conversation_initiation_metadata_event"]


async def assert_ended(communicator: WebsocketCommunicator) -> None:
    frame = await communicator.receive_json_from(timeout=5)
    assert frame["type"] == "error" and frame["error_event"]["code"] == "session_ended", frame
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4001}


def client_of(cookie: str) -> AsyncClient:
    client = AsyncClient()
    client.cookies["sessionid"] = cookie.split("=", 1)[1]
    return client


async def test_it_closes_the_sockets_of_the_logged_out_session_only(bob: Any, agent: Any) -> None:
    laptop = await sync_to_async(session_cookie_for)(bob)
    phone = await sync_to_async(session_cookie_for)(bob)
    tabs = [await open_socket(laptop), await open_socket(laptop)]
    on_phone = await open_socket(phone)
    assert (await client_of(laptop).post("/accounts/logout/")).status_code == 302
    for tab in tabs:
        await assert_ended(tab)
    assert await on_phone.receive_nothing(timeout=0.3)
    await on_phone.disconnect()


async def test_it_closes_every_socket_of_the_user_when_the_password_changes(bob: Any, agent: Any) -> None:
    laptop = await sync_to_async(session_cookie_for)(bob)
    phone = await sync_to_async(session_cookie_for)(bob)
    sockets = [await open_socket(laptop), await open_socket(phone)]
    new = "another-long-passphrase-2"
    form = {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
    assert (await client_of(laptop).post("/accounts/password_change/", form)).status_code == 302
    for sock in sockets:
        await assert_ended(sock)


async def test_it_stops_the_running_turn_when_the_session_ends(bob: Any, agent: Any, settings: Any) -> None:
    settings.LLM_PROVIDERS["demo"]["OPTIONS"] = {"tokens_per_second": 5}  # still writing when the logout lands
    cookie = await sync_to_async(session_cookie_for)(bob)
    sock = await open_socket(cookie)
    await sock.send_json_to({"type": "user_message", "text": "Tell me a long story."})
    while (await sock.receive_json_from(timeout=5))["type"] != "agent_chat_response_part":
        pass
    assert (await client_of(cookie).post("/accounts/logout/")).status_code == 302
    while True:  # the turn's frames already sent, then the error and the close
        output = await sock.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            break
    assert output["code"] == 4001
    reply = await Message.objects.aget(role="assistant", conversation__owner=bob)
    assert reply.status == "interrupted"


async def test_it_shows_a_turn_in_the_other_tabs_of_the_conversation_only(bob: Any, agent: Any) -> None:
    cookie = await sync_to_async(session_cookie_for)(bob)
    sender, meta = await open_socket_meta(cookie)
    await sender.send_json_to({"type": "user_message", "text": "Start it."})  # the first message creates it
    await receive_until(sender)
    other_tab = await open_socket(cookie, f"conversation_id={meta['conversation_id']}")
    elsewhere = await open_socket(cookie)  # a new conversation of the same user
    await sender.send_json_to({"type": "user_message", "text": "Hello from tab one."})
    own = await receive_until(sender)
    shown = await receive_until(other_tab)
    assert shown.of("user_transcript")[0]["user_transcript"] == "Hello from tab one."
    assert shown.text == own.text and shown.text
    assert "audio" in own.types and "audio" not in shown.types
    assert own.types.count("user_transcript") == 1 and await sender.receive_nothing(timeout=0.3)  # no echo
    assert await elsewhere.receive_nothing(timeout=0.3)
    for communicator in (sender, other_tab, elsewhere):
        await communicator.disconnect()


async def test_it_shares_nothing_while_the_user_has_no_other_socket(bob: Any, agent: Any) -> None:
    """Only the owner's sockets show a conversation: a lone socket's turn costs the channel layer nothing."""
    cookie = await sync_to_async(session_cookie_for)(bob)
    sender, meta = await open_socket_meta(cookie)
    await sender.send_json_to({"type": "user_message", "text": "Start it."})
    await receive_until(sender)
    layer = get_channel_layer()
    spy = await layer.new_channel()
    await layer.group_add(conversation_group(meta["conversation_id"]), spy)
    await sender.send_json_to({"type": "user_message", "text": "Alone here."})
    await receive_until(sender)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(layer.receive(spy), 0.3)
    other_tab = await open_socket(cookie, f"conversation_id={meta['conversation_id']}")
    await sender.send_json_to({"type": "user_message", "text": "Now with company."})
    await receive_until(sender)
    shared = await asyncio.wait_for(layer.receive(spy), 5)
    assert shared["frame"]["type"] == "user_transcript"
    await layer.group_discard(conversation_group(meta["conversation_id"]), spy)
    for communicator in (sender, other_tab):
        await communicator.disconnect()
