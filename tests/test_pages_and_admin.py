"""Pages, sign-up and log-in, and the admin's agents and transcripts (with both exports)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.contrib.auth import get_user_model

from chat.models import Agent, Conversation, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_logged(client):
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw-long-enough-1")
    client.force_login(admin)
    return client


@pytest.fixture
def transcript(user, agent) -> Conversation:
    conversation = Conversation.objects.create(owner=user, agent=agent, title="Billing")
    Message.objects.create(conversation=conversation, role="user", text='Price, "quoted"\nnext line', status="complete")
    Message.objects.create(conversation=conversation, role="assistant", text="It is 5 €.", status="interrupted")
    return conversation


def test_it_redirects_anonymous_pages_to_login(client, conversation) -> None:
    for url in ("/", f"/c/{conversation.id}/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_it_serves_the_chat_page_with_its_config(client_alice, conversation) -> None:
    response = client_alice.get(f"/c/{conversation.id}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="voicechat-config"' in html and str(conversation.id) in html
    assert "voicechat/app.js" in html
    assert "csrftoken" in response.cookies


def test_it_signs_up_and_logs_in(client) -> None:
    form = {"username": "newbie", "password1": "a-Long-passphrase-9", "password2": "a-Long-passphrase-9"}
    response = client.post("/accounts/signup/", form)
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_it_rejects_a_bad_signup_with_field_errors(client) -> None:
    response = client.post("/accounts/signup/", {"username": "x", "password1": "a", "password2": "b"})
    assert response.status_code == 200
    assert not get_user_model().objects.filter(username="x").exists()


def test_it_closes_signup_when_switched_off(client, settings) -> None:
    settings.ALLOW_SIGNUP = False
    assert client.get("/accounts/signup/").status_code == 404
    assert "Create an account" not in client.get("/accounts/login/").content.decode()


def test_it_logs_in_and_out(client, user) -> None:
    from tests.conftest import PASSWORD

    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/").status_code == 200
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_it_changes_the_password(client_alice) -> None:
    from tests.conftest import PASSWORD

    form = {"old_password": PASSWORD, "new_password1": "An0ther-passphrase", "new_password2": "An0ther-passphrase"}
    response = client_alice.post("/accounts/password_change/", form)
    assert response.status_code == 302
    assert get_user_model().objects.get(username="alice").check_password("An0ther-passphrase")


def test_it_validates_agent_voice_settings_in_the_admin(admin_client_logged) -> None:
    form = {
        "name": "Loud",
        "llm": "",
        "stability": "1.5",
        "similarity_boost": "0.5",
        "style": "-0.1",
        "speed": "1.5",
        "language_code": "English",
        "is_active": "on",
    }
    response = admin_client_logged.post("/admin/chat/agent/add/", form)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) >= {"stability", "style", "speed", "language_code"}
    form.update(stability="0.4", style="0.1", speed="1.1", language_code="en")
    assert admin_client_logged.post("/admin/chat/agent/add/", form).status_code == 302
    assert Agent.objects.get(name="Loud").speed == 1.1


def test_it_rejects_an_unknown_llm_alias(admin_client_logged) -> None:
    form = {"name": "X", "llm": "nope", "stability": "0.5", "similarity_boost": "0.5", "style": "0", "speed": "1"}
    response = admin_client_logged.post("/admin/chat/agent/add/", form)
    assert "llm" in response.context["adminform"].form.errors


def test_it_searches_and_filters_transcripts(admin_client_logged, transcript, other_user, agent) -> None:
    Conversation.objects.create(owner=other_user, agent=agent, title="Weather")
    page = admin_client_logged.get("/admin/chat/conversation/", {"q": "quoted"})
    assert page.status_code == 200
    assert list(page.context["cl"].result_list) == [transcript]
    by_owner = admin_client_logged.get("/admin/chat/conversation/", {"q": "mallory"})
    assert [c.title for c in by_owner.context["cl"].result_list] == ["Weather"]
    interrupted = admin_client_logged.get("/admin/chat/conversation/", {"message_status": "interrupted"})
    assert list(interrupted.context["cl"].result_list) == [transcript]
    assert admin_client_logged.get("/admin/chat/conversation/", {"agent__id__exact": agent.id}).status_code == 200
    detail = admin_client_logged.get(f"/admin/chat/conversation/{transcript.id}/change/").content.decode()
    assert detail.index("Price") < detail.index("It is 5")  # the transcript, in order
    assert admin_client_logged.get("/admin/chat/message/", {"status__exact": "interrupted"}).status_code == 200


def test_it_exports_transcripts_as_json(admin_client_logged, transcript) -> None:
    response = admin_client_logged.post(
        "/admin/chat/conversation/", {"action": "export_json", "_selected_action": [str(transcript.id)]}
    )
    data = json.loads(response.content)
    [conversation] = data["conversations"]
    assert conversation["owner"] == "alice" and conversation["title"] == "Billing"
    assert [m["role"] for m in conversation["messages"]] == ["user", "assistant"]
    assert conversation["messages"][1]["text"] == "It is 5 €."


def test_it_exports_transcripts_as_csv(admin_client_logged, transcript) -> None:
    response = admin_client_logged.post(
        "/admin/chat/conversation/", {"action": "export_csv", "_selected_action": [str(transcript.id)]}
    )
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0] == ["conversation_id", "owner", "time", "role", "status", "text"]
    assert rows[1][0] == str(transcript.id) and rows[1][3:] == ["user", "complete", 'Price, "quoted"\nnext line']
    assert rows[2][3:] == ["assistant", "interrupted", "It is 5 €."]
