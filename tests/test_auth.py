"""Pages and accounts: log in, log out, sign up (switchable), change password, and the chat page's config."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from django.contrib.auth import get_user_model

from chat.models import Conversation, Message
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "An0ther-passphrase"


def page_config(html: str) -> dict[str, object]:
    match = re.search(r'<script id="voicechat-config" type="application/json">(.*?)</script>', html, re.S)
    assert match, "the chat page carries its config in a json_script"
    return json.loads(match.group(1))


@pytest.mark.parametrize("url", ["/", "/c/{id}/", "/accounts/password_change/", "/accounts/password_change/done/"])
def test_it_redirects_anonymous_pages_to_login(client, conversation, url) -> None:
    url = url.format(id=conversation.id)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={url}"


def test_it_serves_the_chat_page_with_its_config(client_alice, agent, settings) -> None:
    response = client_alice.get("/")
    assert response.status_code == 200
    config = page_config(response.content.decode())
    assert config == {
        "conversation_id": None,
        "latest_conversation_id": None,
        "ws_path": "/v1/convai/conversation",
        "max_message_chars": 4000,
        "agents": [
            {
                "id": str(agent.id),
                "name": agent.name,
                "first_message": agent.first_message,
                "language_code": "en",
                "is_default": True,
            }
        ],
        "username": "alice",
        "audio_format": "pcm_22050" if settings.TTS_BACKEND == "espeak" else settings.ELEVENLABS_OUTPUT_FORMAT,
        "login_url": "/accounts/login/",
    }
    assert '<div id="root"' in response.content.decode()
    assert "csrftoken" in response.cookies


def test_it_opens_one_of_my_conversations(client_alice, conversation, settings) -> None:
    settings.MAX_MESSAGE_CHARS = 123
    config = page_config(client_alice.get(f"/c/{conversation.id}/").content.decode())
    assert (config["conversation_id"], config["max_message_chars"]) == (str(conversation.id), 123)


def test_it_lands_a_returning_user_on_the_latest_conversation_with_a_message(client_alice, user, agent) -> None:
    older = Conversation.objects.create(owner=user, agent=agent, title="Older")
    Message.objects.create(conversation=older, role=Message.Role.USER, text="hi", status=Message.Status.COMPLETE)
    latest = Conversation.objects.create(owner=user, agent=agent, title="Latest")
    Message.objects.create(conversation=latest, role=Message.Role.USER, text="hi", status=Message.Status.COMPLETE)
    Conversation.objects.create(owner=user, agent=agent)  # never got a message: nothing to land on
    config = page_config(client_alice.get("/").content.decode())
    assert config["latest_conversation_id"] == str(latest.id)
    assert page_config(client_alice.get(f"/c/{older.id}/").content.decode())["latest_conversation_id"] is None


def test_it_makes_the_page_ready_for_the_format_its_agent_speaks_in(client_alice, user, agent, settings) -> None:
    settings.TTS_BACKEND = "elevenlabs"  # a provider that takes the agent's format (eSpeak has its own)
    agent.output_format = "pcm_16000"
    agent.save()
    conversation = Conversation.objects.create(owner=user, agent=agent, title="Slow")
    assert page_config(client_alice.get(f"/c/{conversation.id}/").content.decode())["audio_format"] == "pcm_16000"
    assert page_config(client_alice.get("/").content.decode())["audio_format"] == "pcm_16000"  # the default agent


def test_it_escapes_agent_names_in_the_page_config(client_alice, agent) -> None:
    agent.name = "</script><script>alert(1)</script>"
    agent.save()
    html = client_alice.get("/").content.decode()
    assert "<script>alert(1)" not in html
    assert page_config(html)["agents"][0]["name"] == agent.name  # type: ignore[index]


def test_it_answers_404_for_someone_elses_or_an_unknown_conversation(client, other_user, conversation) -> None:
    client.force_login(other_user)
    assert client.get(f"/c/{conversation.id}/").status_code == 404
    assert client.get(f"/c/{uuid.uuid4()}/").status_code == 404
    assert client.get("/c/not-a-uuid/").status_code == 404


def test_it_uses_no_external_assets(client, client_alice) -> None:
    for url in ("/", "/accounts/password_change/"):
        html = client_alice.get(url).content.decode()
        assert not re.search(r'(src|href)="(https?:)?//', html), url
    client.logout()
    for url in ("/accounts/login/", "/accounts/signup/"):
        assert not re.search(r'(src|href)="(https?:)?//', client.get(url).content.decode()), url


def test_it_logs_in_and_returns_to_the_page_asked_for(client, user, conversation) -> None:
    response = client.post(f"/accounts/login/?next=/c/{conversation.id}/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == f"/c/{conversation.id}/"
    assert client.get("/").status_code == 200


def test_it_refuses_a_wrong_password(client, user) -> None:
    response = client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 200 and response.context["form"].errors
    assert client.get("/").status_code == 302


def test_it_logs_out_with_post_only(client_alice) -> None:
    assert client_alice.get("/accounts/logout/").status_code == 405
    assert client_alice.get("/").status_code == 200
    response = client_alice.post("/accounts/logout/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert client_alice.get("/").status_code == 302


def test_it_changes_the_password(client_alice) -> None:
    assert client_alice.get("/accounts/password_change/").status_code == 200
    form = {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    response = client_alice.post("/accounts/password_change/", form)
    assert response.status_code == 302 and response["Location"] == "/accounts/password_change/done/"
    assert client_alice.get("/accounts/password_change/done/").status_code == 200
    assert get_user_model().objects.get(username="alice").check_password(NEW_PASSWORD)


def test_it_refuses_a_password_change_without_the_old_password(client_alice) -> None:
    form = {"old_password": "guess", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    response = client_alice.post("/accounts/password_change/", form)
    assert response.status_code == 200 and "old_password" in response.context["form"].errors
    assert get_user_model().objects.get(username="alice").check_password(PASSWORD)


def test_it_signs_up_and_logs_in(client, agent) -> None:
    assert client.get("/accounts/signup/").status_code == 200
    form = {"username": "newbie", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    response = client.post("/accounts/signup/", form)
    assert response.status_code == 302 and response["Location"] == "/"
    assert page_config(client.get("/").content.decode())["username"] == "newbie"


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"username": "newbie", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD + "x"}, "password2"),
        ({"username": "newbie", "password1": "12345678", "password2": "12345678"}, "password2"),
        ({"username": "alice", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}, "username"),
        ({"username": "", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}, "username"),
    ],
)
def test_it_rejects_a_bad_signup_with_field_errors(client, user, form, field) -> None:
    response = client.post("/accounts/signup/", form)
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert not get_user_model().objects.filter(username="newbie").exists()


def test_it_sends_a_logged_in_user_from_signup_to_the_app(client_alice) -> None:
    response = client_alice.get("/accounts/signup/")
    assert response.status_code == 302 and response["Location"] == "/"


def test_it_closes_signup_when_switched_off(client, settings) -> None:
    settings.ALLOW_SIGNUP = False
    assert client.get("/accounts/signup/").status_code == 404
    form = {"username": "newbie", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    assert client.post("/accounts/signup/", form).status_code == 404
    assert not get_user_model().objects.filter(username="newbie").exists()
    assert "/accounts/signup/" not in client.get("/accounts/login/").content.decode()


def test_it_links_to_signup_from_login_when_open(client) -> None:
    assert "/accounts/signup/" in client.get("/accounts/login/").content.decode()
