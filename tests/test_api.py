"""The REST API: the user's own conversations, messages, agents and stored audio — and nobody else's."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from chat.byte_ranges import RangeNotSatisfiable, byte_range
from chat.models import Agent, Conversation, Message
from chat.services import message_create_user
from tests.conftest import wav_bytes

pytestmark = pytest.mark.django_db

MESSAGE_FIELDS = {
    "id",
    "role",
    "text",
    "status",
    "error_code",
    "error_message",
    "created_at",
    "completed_at",
    "audio_status",
    "audio_url",
    "audio_duration_ms",
    "tts_characters",
    "llm_first_token_ms",
    "first_chunk_ms",
    "tts_first_byte_ms",
    "first_audio_sent_ms",
    "client_first_audible_ms",
    "client_underruns",
    "words",
    "heard_text",
}


def add_messages(conversation: Conversation, count: int) -> None:
    for n in range(count):
        Message.objects.create(conversation=conversation, role="user", text=f"m{n}", status="complete")


# --- conversations ---------------------------------------------------------------------------------


def test_it_lists_only_my_conversations_newest_first(client_alice, user, other_user, agent) -> None:
    older = Conversation.objects.create(owner=user, agent=agent, title="older")
    newer = Conversation.objects.create(owner=user, agent=agent, title="newer")
    Conversation.objects.create(owner=other_user, agent=agent, title="theirs")
    body = client_alice.get("/api/conversations/").json()
    assert body["count"] == 2
    assert [c["id"] for c in body["results"]] == [str(newer.id), str(older.id)]
    assert body["results"][0]["agent_name"] == agent.name


def test_it_moves_a_conversation_with_a_new_message_to_the_top(client_alice, user, agent) -> None:
    older = Conversation.objects.create(owner=user, agent=agent, title="older")
    Conversation.objects.create(owner=user, agent=agent, title="newer")
    message_create_user(conversation=older, text="Back to this one")
    titles = [c["title"] for c in client_alice.get("/api/conversations/").json()["results"]]
    assert titles == ["older", "newer"]


def test_it_pages_conversations(client_alice, user, agent) -> None:
    for n in range(31):
        Conversation.objects.create(owner=user, agent=agent, title=f"c{n}")
    first = client_alice.get("/api/conversations/").json()
    assert (first["count"], len(first["results"]), first["results"][0]["title"]) == (31, 30, "c30")
    second = client_alice.get(first["next"]).json()
    assert [c["title"] for c in second["results"]] == ["c0"]


def test_it_creates_a_conversation_with_a_chosen_agent(client_alice, user, agent) -> None:
    poet = Agent.objects.create(name="Poet")
    response = client_alice.post("/api/conversations/", {"agent": str(poet.id), "title": "Verse"}, "application/json")
    assert response.status_code == 201
    assert response.json()["agent_name"] == "Poet"
    created = Conversation.objects.get(pk=response.json()["id"])
    assert (created.owner, created.agent, created.title) == (user, poet, "Verse")


def test_it_creates_a_conversation_with_the_default_agent(client_alice, agent) -> None:
    Agent.objects.create(name="Another")
    response = client_alice.post("/api/conversations/", {}, "application/json")
    assert response.status_code == 201
    assert response.json()["agent"] == str(agent.id) and response.json()["title"] == ""


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"agent": "retired"}, "agent"),
        ({"agent": str(uuid.uuid4())}, "agent"),
        ({"agent": "not-a-uuid"}, "agent"),
        ({"title": "x" * 201}, "title"),
    ],
)
def test_it_rejects_bad_conversations_with_field_errors(client_alice, agent, body, field) -> None:
    if body.get("agent") == "retired":
        body = {"agent": str(Agent.objects.create(name="Retired", is_active=False).id)}
    response = client_alice.post("/api/conversations/", body, "application/json")
    assert response.status_code == 400
    assert list(response.json()) == [field] and response.json()[field][0]
    assert not Conversation.objects.exists()


def test_it_renames_a_conversation(client_alice, conversation) -> None:
    response = client_alice.patch(f"/api/conversations/{conversation.id}/", {"title": "  Renamed "}, "application/json")
    assert response.status_code == 200
    assert response.json()["title"] == "Renamed" and response.json()["id"] == str(conversation.id)
    conversation.refresh_from_db()
    assert conversation.title == "Renamed"


def test_it_accepts_a_title_of_exactly_200_characters(client_alice, conversation) -> None:
    response = client_alice.patch(f"/api/conversations/{conversation.id}/", {"title": "t" * 200}, "application/json")
    assert response.status_code == 200
    conversation.refresh_from_db()
    assert conversation.title == "t" * 200


@pytest.mark.parametrize("body", [{"title": "y" * 201}, {"title": ""}, {"title": "   "}, {}, {"agent": None}])
def test_it_refuses_a_bad_rename_with_a_field_message(client_alice, conversation, body) -> None:
    response = client_alice.patch(f"/api/conversations/{conversation.id}/", body, "application/json")
    assert response.status_code == 400
    assert response.json()["title"][0]
    conversation.refresh_from_db()
    assert conversation.title == "First"


def test_it_changes_nothing_but_the_title_on_patch(client_alice, conversation, agent) -> None:
    poet = Agent.objects.create(name="Poet")
    body = {"title": "New", "agent": str(poet.id), "id": str(uuid.uuid4())}
    assert client_alice.patch(f"/api/conversations/{conversation.id}/", body, "application/json").status_code == 200
    conversation.refresh_from_db()
    assert (conversation.title, conversation.agent) == ("New", agent)


def test_it_does_not_offer_put(client_alice, conversation) -> None:
    response = client_alice.put(f"/api/conversations/{conversation.id}/", {"title": "x"}, "application/json")
    assert response.status_code == 405


def test_it_deletes_a_conversation_with_its_audio_files(
    client_alice, conversation, spoken_reply, django_capture_on_commit_callbacks
) -> None:
    path = spoken_reply.audio.path
    folder = spoken_reply.audio.storage.path(f"audio/{conversation.id}")
    with django_capture_on_commit_callbacks(execute=True):
        response = client_alice.delete(f"/api/conversations/{conversation.id}/")
    assert response.status_code == 204
    assert not Conversation.objects.filter(pk=conversation.id).exists()
    assert not Message.objects.filter(pk=spoken_reply.id).exists()
    with pytest.raises(FileNotFoundError):
        open(path, "rb")  # noqa: SIM115
    with pytest.raises(FileNotFoundError):
        open(folder)  # noqa: SIM115


def test_it_keeps_other_conversations_audio_on_delete(
    client_alice, user, agent, conversation, spoken_reply, django_capture_on_commit_callbacks
) -> None:
    keep = Conversation.objects.create(owner=user, agent=agent, title="keep")
    kept = Message.objects.create(conversation=keep, role="assistant", text="Stay.", status="complete")
    kept.audio.save(f"{kept.id}.wav", spoken_reply.audio.open("rb"))
    with django_capture_on_commit_callbacks(execute=True):
        client_alice.delete(f"/api/conversations/{conversation.id}/")
    with open(kept.audio.path, "rb") as audio:
        assert audio.read() == wav_bytes()


# --- messages and agents ------------------------------------------------------------------------


def test_it_pages_messages_oldest_first(client_alice, conversation) -> None:
    add_messages(conversation, 55)
    first = client_alice.get(f"/api/conversations/{conversation.id}/messages/").json()
    assert first["count"] == 55 and first["previous"] is None
    assert [m["text"] for m in first["results"]] == [f"m{n}" for n in range(50)]
    second = client_alice.get(first["next"]).json()
    assert [m["text"] for m in second["results"]] == [f"m{n}" for n in range(50, 55)]
    assert second["next"] is None


def test_it_opens_the_latest_page_of_messages_in_any_size(client_alice, conversation) -> None:
    add_messages(conversation, 12)
    url = f"/api/conversations/{conversation.id}/messages/"
    last = client_alice.get(url, {"page": "last", "page_size": 5}).json()
    assert [m["text"] for m in last["results"]] == ["m10", "m11"]
    assert client_alice.get(url, {"page": 9}).status_code == 404


def test_it_describes_messages_with_audio_and_timings(client_alice, conversation, spoken_reply) -> None:
    message_create_user(conversation=conversation, text="Hello")
    spoken_reply.first_audio_sent_ms = 321
    spoken_reply.audio_duration_ms = 100
    spoken_reply.save()
    reply, question = client_alice.get(f"/api/conversations/{conversation.id}/messages/").json()["results"]
    assert set(reply) == MESSAGE_FIELDS
    assert reply["audio_url"] == f"/api/messages/{spoken_reply.id}/audio/"
    assert (reply["first_audio_sent_ms"], reply["audio_duration_ms"]) == (321, 100)
    assert question["audio_url"] is None and question["role"] == "user"


def test_it_lists_active_agents_without_secrets(client_alice, agent) -> None:
    Agent.objects.create(name="Retired", is_active=False)
    Agent.objects.create(name="Aardvark", system_prompt="secret persona")
    agents = client_alice.get("/api/agents/").json()
    assert [a["name"] for a in agents] == [agent.name, "Aardvark"]  # the default first
    assert all(set(a) == {"id", "name", "first_message", "language_code", "is_default"} for a in agents)
    assert agents[0]["is_default"] is True


# --- stored audio --------------------------------------------------------------------------------


def test_it_serves_stored_audio_whole(client_alice, spoken_reply) -> None:
    response = client_alice.get(f"/api/messages/{spoken_reply.id}/audio/")
    assert response.status_code == 200 and response.content == wav_bytes()
    assert response["Content-Type"] == "audio/wav" and response["Accept-Ranges"] == "bytes"
    assert response["Content-Length"] == str(len(wav_bytes()))


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [("bytes=0-43", 0, 43), ("bytes=-500", 4344, 4843), ("bytes=100-", 100, 4843), ("bytes=4000-99999", 4000, 4843)],
)
def test_it_answers_a_range_with_206_and_the_exact_bytes(client_alice, spoken_reply, header, first, last) -> None:
    data = wav_bytes()
    assert len(data) == 4844
    response = client_alice.get(f"/api/messages/{spoken_reply.id}/audio/", HTTP_RANGE=header)
    assert response.status_code == 206
    assert response.content == data[first : last + 1]
    assert response["Content-Range"] == f"bytes {first}-{last}/4844"
    assert response["Content-Type"] == "audio/wav"


@pytest.mark.parametrize("header", ["bytes=4844-", "bytes=5000-6000", "bytes=-0"])
def test_it_answers_an_unsatisfiable_range_with_416(client_alice, spoken_reply, header) -> None:
    response = client_alice.get(f"/api/messages/{spoken_reply.id}/audio/", HTTP_RANGE=header)
    assert response.status_code == 416
    assert response["Content-Range"] == "bytes */4844" and response.content == b""


@pytest.mark.parametrize("header", ["bytes=0-1,5-9", "items=0-4", "bytes=9-2", "bytes=-", "nonsense"])
def test_it_ignores_ranges_it_does_not_support(client_alice, spoken_reply, header) -> None:
    response = client_alice.get(f"/api/messages/{spoken_reply.id}/audio/", HTTP_RANGE=header)
    assert response.status_code == 200 and response.content == wav_bytes()


def test_it_serves_audio_whatever_the_player_accepts(client_alice, spoken_reply) -> None:
    response = client_alice.get(f"/api/messages/{spoken_reply.id}/audio/", HTTP_ACCEPT="audio/wav;q=0.9, audio/*")
    assert response.status_code == 200


def test_it_answers_404_for_a_message_without_audio(client_alice, conversation, media_root) -> None:
    silent = Message.objects.create(conversation=conversation, role="assistant", text="…", status="failed")
    assert client_alice.get(f"/api/messages/{silent.id}/audio/").status_code == 404


def test_it_lets_transcript_reviewers_play_anyones_audio(client, spoken_reply, django_user_model) -> None:
    reviewer = django_user_model.objects.create_user("reviewer", is_staff=True)
    client.force_login(reviewer)
    url = f"/api/messages/{spoken_reply.id}/audio/"
    assert client.get(url).status_code == 404  # staff, but not allowed to view messages
    reviewer.user_permissions.add(Permission.objects.get(codename="view_message"))
    assert client.get(url).status_code == 200


def test_it_keeps_audio_from_users_even_with_the_permission(client, other_user, spoken_reply) -> None:
    other_user.user_permissions.add(Permission.objects.get(codename="view_message"))
    client.force_login(other_user)
    assert client.get(f"/api/messages/{spoken_reply.id}/audio/").status_code == 404


@pytest.mark.parametrize(
    ("header", "expected"),
    [("", None), ("bytes=0-0", (0, 0)), ("bytes=-10", (90, 99)), ("bytes=-1000", (0, 99)), ("bytes=99-", (99, 99))],
)
def test_it_parses_byte_ranges(header, expected) -> None:
    assert byte_range(header, 100) == expected


def test_it_refuses_every_range_of_an_empty_file() -> None:
    with pytest.raises(RangeNotSatisfiable):
        byte_range("bytes=-5", 0)
    with pytest.raises(RangeNotSatisfiable):
        byte_range("bytes=0-", 0)


# --- who may see what ------------------------------------------------------------------------------


def test_it_hides_other_users_things_behind_404(client, other_user, conversation, spoken_reply) -> None:
    client.force_login(other_user)
    for url in (
        f"/api/conversations/{conversation.id}/",
        f"/api/conversations/{conversation.id}/messages/",
        f"/api/messages/{spoken_reply.id}/audio/",
        f"/api/conversations/{uuid.uuid4()}/",
        f"/api/conversations/{uuid.uuid4()}/messages/",
        f"/api/messages/{uuid.uuid4()}/audio/",
    ):
        assert client.get(url).status_code == 404, url
    assert client.get("/api/conversations/").json()["count"] == 0


def test_it_refuses_to_change_other_users_conversations_with_404(
    client, other_user, conversation, spoken_reply, django_capture_on_commit_callbacks
) -> None:
    client.force_login(other_user)
    url = f"/api/conversations/{conversation.id}/"
    assert client.patch(url, {"title": "mine now"}, "application/json").status_code == 404
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(url).status_code == 404
    conversation.refresh_from_db()
    assert conversation.title == "First" and Message.objects.filter(pk=spoken_reply.id).exists()
    with open(spoken_reply.audio.path, "rb"):
        pass


def test_it_refuses_anonymous_api_requests(client, conversation, spoken_reply) -> None:
    for url in (
        "/api/conversations/",
        f"/api/conversations/{conversation.id}/",
        f"/api/conversations/{conversation.id}/messages/",
        "/api/agents/",
        f"/api/messages/{spoken_reply.id}/audio/",
    ):
        assert client.get(url).status_code == 403, url
    assert client.post("/api/conversations/", {}, "application/json").status_code == 403
    assert client.patch(f"/api/conversations/{conversation.id}/", {"title": "x"}, "application/json").status_code == 403
    assert client.delete(f"/api/conversations/{conversation.id}/").status_code == 403
    assert Conversation.objects.filter(pk=conversation.id, title="First").exists()


def test_it_requires_csrf_for_session_writes(user, conversation) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post("/api/conversations/", {}, "application/json").status_code == 403
    assert strict.delete(f"/api/conversations/{conversation.id}/").status_code == 403
    token = strict.get("/").cookies["csrftoken"].value
    created = strict.post("/api/conversations/", {}, "application/json", HTTP_X_CSRFTOKEN=token)
    assert created.status_code == 201
