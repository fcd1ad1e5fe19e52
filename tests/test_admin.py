"""The operator's admin: agents with validated voice settings, and transcripts to search, filter and export."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re

import pytest
from django.utils import timezone

from chat.models import Agent, Conversation, Message

pytestmark = pytest.mark.django_db

TRICKY_TEXT = 'Price, "quoted"\nnext line'
AGENT_FORM = {
    "name": "Loud",
    "llm": "",
    "stability": "0.5",
    "similarity_boost": "0.75",
    "style": "0",
    "speed": "1",
    "language_code": "en",
    "is_active": "on",
}


@pytest.fixture
def transcript(user, agent) -> Conversation:
    conversation = Conversation.objects.create(owner=user, agent=agent, title="Billing")
    Message.objects.create(conversation=conversation, role="user", text=TRICKY_TEXT, status="complete")
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        text="It is 5 €.",
        status="interrupted",
        llm_first_token_ms=120,
        first_audio_sent_ms=480,
        client_underruns=2,
    )
    return conversation


@pytest.fixture
def weather(other_user, agent) -> Conversation:
    conversation = Conversation.objects.create(owner=other_user, agent=agent, title="Weather")
    Message.objects.create(conversation=conversation, role="user", text="Rain tomorrow?", status="complete")
    return conversation


def changelist(admin_client, model: str, **params: object) -> list:
    response = admin_client.get(f"/admin/chat/{model}/", params)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def export(admin_client, action: str, *conversations: Conversation):
    selected = [str(c.id) for c in conversations]
    return admin_client.post("/admin/chat/conversation/", {"action": action, "_selected_action": selected})


# --- agents --------------------------------------------------------------------------------------


def test_it_lists_agents_with_their_voice(admin_client, agent) -> None:
    response = admin_client.get("/admin/chat/agent/")
    assert response.status_code == 200
    columns = response.context["cl"].list_display[1:]  # after the selection checkbox
    assert columns == ["name", "is_default", "is_active", "llm", "voice_id", "tts_model_id", "language_code"]
    assert list(response.context["cl"].result_list) == [agent]
    form_page = admin_client.get("/admin/chat/agent/add/").content.decode()
    assert re.findall(r'class="fieldset-heading">([^<]+)</h2>', form_page) == ["Persona", "Backend", "LLM", "Voice"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stability", "1.01"),
        ("stability", "-0.1"),
        ("similarity_boost", "1.5"),
        ("similarity_boost", "-1"),
        ("style", "2"),
        ("style", "-0.01"),
        ("speed", "0.69"),
        ("speed", "1.21"),
        ("language_code", "English"),
        ("llm", "nope"),
    ],
)
def test_it_rejects_out_of_range_agent_settings(admin_client, field, value) -> None:
    response = admin_client.post("/admin/chat/agent/add/", {**AGENT_FORM, field: value})
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == [field]
    assert not Agent.objects.filter(name="Loud").exists()


@pytest.mark.parametrize(
    "values",
    [
        {"stability": "0", "similarity_boost": "0", "style": "0", "speed": "0.7"},
        {"stability": "1", "similarity_boost": "1", "style": "1", "speed": "1.2"},
    ],
)
def test_it_accepts_agent_settings_at_the_edges(admin_client, values) -> None:
    response = admin_client.post("/admin/chat/agent/add/", {**AGENT_FORM, **values, "llm": "demo"})
    assert response.status_code == 302
    assert Agent.objects.get(name="Loud").speed == float(values["speed"])


def test_it_refuses_a_second_default_agent_with_a_message(admin_client, agent) -> None:
    response = admin_client.post("/admin/chat/agent/add/", {**AGENT_FORM, "is_default": "on"})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "is_default": ["Assistant is the default agent; untick it there first."]
    }
    assert Agent.objects.filter(is_default=True).count() == 1


def test_it_lets_the_default_agent_be_edited(admin_client, agent) -> None:
    form = {**AGENT_FORM, "name": "Assistant 2", "is_default": "on"}
    assert admin_client.post(f"/admin/chat/agent/{agent.id}/change/", form).status_code == 302
    agent.refresh_from_db()
    assert (agent.name, agent.is_default) == ("Assistant 2", True)


# --- transcripts ---------------------------------------------------------------------------------


def test_it_lists_conversations_with_message_counts(admin_client, transcript, weather) -> None:
    rows = changelist(admin_client, "conversation", o="4")  # sorted by the message count column
    assert [(c.title, c.num_messages) for c in rows] == [("Weather", 1), ("Billing", 2)]
    rows = changelist(admin_client, "conversation", o="-4")
    assert [c.title for c in rows] == ["Billing", "Weather"]


@pytest.mark.parametrize(
    ("query", "titles"), [("quoted", ["Billing"]), ("mallory", ["Weather"]), ("bill", ["Billing"])]
)
def test_it_searches_transcripts_by_text_owner_and_title(admin_client, transcript, weather, query, titles) -> None:
    assert [c.title for c in changelist(admin_client, "conversation", q=query)] == titles


def test_it_lists_a_conversation_once_when_several_messages_match(admin_client, transcript) -> None:
    Message.objects.create(conversation=transcript, role="user", text="quoted again", status="complete")
    rows = changelist(admin_client, "conversation", q="quoted")
    assert [(c.title, c.num_messages) for c in rows] == [("Billing", 3)]


def test_it_filters_by_message_status_without_inflating_counts(admin_client, transcript, weather) -> None:
    Message.objects.create(conversation=transcript, role="assistant", text="again", status="interrupted")
    rows = changelist(admin_client, "conversation", message_status="interrupted")
    assert [(c.title, c.num_messages) for c in rows] == [("Billing", 3)]
    assert changelist(admin_client, "conversation", message_status="failed") == []
    assert [c.title for c in changelist(admin_client, "conversation", message_status="complete")] == [
        "Weather",
        "Billing",
    ]


def test_it_filters_by_agent_and_date(admin_client, transcript, weather) -> None:
    poet = Agent.objects.create(name="Poet")
    Conversation.objects.filter(pk=weather.pk).update(agent=poet, created_at=timezone.now() - dt.timedelta(days=40))
    assert changelist(admin_client, "conversation", agent__id__exact=poet.id) == [weather]
    midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    today = {"created_at__gte": str(midnight), "created_at__lt": str(midnight + dt.timedelta(days=1))}
    assert changelist(admin_client, "conversation", **today) == [transcript]  # the "Today" link


def test_it_shows_the_transcript_in_order_with_audio_and_timings(admin_client, transcript, spoken_reply) -> None:
    spoken_reply.conversation = transcript
    spoken_reply.save()
    response = admin_client.get(f"/admin/chat/conversation/{transcript.id}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.index("Price, &quot;quoted&quot;") < html.index("It is 5 €.") < html.index("Hi.")
    assert f'<audio controls preload="none" src="/api/messages/{spoken_reply.id}/audio/">' in html
    assert "LLM first token 120 ms · first audio sent 480 ms · 2 underruns" in html
    assert admin_client.get(f"/api/messages/{spoken_reply.id}/audio/").status_code == 200


def test_it_deletes_conversations_with_their_audio_from_the_admin(
    admin_client, conversation, spoken_reply, django_capture_on_commit_callbacks
) -> None:
    path = spoken_reply.audio.path
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/chat/conversation/",
            {"action": "delete_selected", "_selected_action": [str(conversation.id)], "post": "yes"},
        )
    assert response.status_code == 302
    assert not Conversation.objects.exists()
    with pytest.raises(FileNotFoundError):
        open(path, "rb")  # noqa: SIM115


# --- exports -------------------------------------------------------------------------------------


def test_it_exports_transcripts_as_json(admin_client, transcript, weather) -> None:
    response = export(admin_client, "export_json", transcript, weather)
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert 'filename="conversations.json"' in response["Content-Disposition"]
    data = json.loads(response.content)
    by_title = {c["title"]: c for c in data["conversations"]}
    assert set(by_title) == {"Billing", "Weather"}
    billing = by_title["Billing"]
    assert (billing["id"], billing["owner"], billing["agent"]) == (str(transcript.id), "alice", "Assistant")
    assert [(m["role"], m["status"], m["text"]) for m in billing["messages"]] == [
        ("user", "complete", TRICKY_TEXT),
        ("assistant", "interrupted", "It is 5 €."),
    ]
    assert billing["messages"][1]["first_audio_sent_ms"] == 480
    assert dt.datetime.fromisoformat(billing["messages"][0]["time"]).tzinfo is not None


def test_it_exports_transcripts_as_csv(admin_client, transcript, weather) -> None:
    response = export(admin_client, "export_csv", transcript)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="conversations.csv"' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"), newline="")))
    assert rows[0] == ["conversation_id", "owner", "time", "role", "status", "text"]
    assert len(rows) == 3  # the header and one row per message of the selected conversation only
    assert rows[1][:2] == [str(transcript.id), "alice"]
    assert rows[1][3:] == ["user", "complete", TRICKY_TEXT]
    assert rows[2][3:] == ["assistant", "interrupted", "It is 5 €."]
    first = transcript.messages.order_by("created_at").first()
    assert first is not None and dt.datetime.fromisoformat(rows[1][2]) == first.created_at


# --- messages ------------------------------------------------------------------------------------


def test_it_lists_filters_and_searches_messages(admin_client, transcript, weather) -> None:
    assert len(changelist(admin_client, "message")) == 3
    assert [m.text for m in changelist(admin_client, "message", status__exact="interrupted")] == ["It is 5 €."]
    assert [m.text for m in changelist(admin_client, "message", role__exact="user", q="rain")] == ["Rain tomorrow?"]
    assert changelist(admin_client, "message", audio_status__exact="failed") == []
    html = admin_client.get("/admin/chat/message/").content.decode()
    assert "first audio sent ms" in html.lower() and "client underruns" in html.lower()


def test_it_shows_a_message_read_only_with_its_player(admin_client, spoken_reply) -> None:
    response = admin_client.get(f"/admin/chat/message/{spoken_reply.id}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'<audio controls preload="none" src="/api/messages/{spoken_reply.id}/audio/">' in html
    assert 'name="_save"' not in html
    before = spoken_reply.text
    admin_client.post(f"/admin/chat/message/{spoken_reply.id}/change/", {"text": "rewritten"})
    spoken_reply.refresh_from_db()
    assert spoken_reply.text == before


def test_it_keeps_the_admin_from_ordinary_users(client_alice, transcript) -> None:
    response = client_alice.get("/admin/chat/conversation/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
