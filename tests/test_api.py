"""The REST API: the user's own conversations, messages, agents and stored audio — and nobody else's."""

from __future__ import annotations

import io
import uuid
import wave

import pytest
from django.core.files.base import ContentFile

from chat.models import Agent, Conversation, Message
from chat.services import message_create_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def wav_bytes(samples: int = 2400) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(24000)
        wav.writeframes(bytes(range(256)) * (samples * 2 // 256))
    return out.getvalue()


@pytest.fixture
def spoken_reply(conversation) -> Message:
    reply = Message.objects.create(conversation=conversation, role="assistant", text="Hi.", status="complete")
    reply.audio.save(f"{reply.id}.wav", ContentFile(wav_bytes()))
    return reply


def test_it_lists_only_my_conversations_newest_first(client_alice, user, other_user, agent) -> None:
    older = Conversation.objects.create(owner=user, agent=agent, title="older")
    newer = Conversation.objects.create(owner=user, agent=agent, title="newer")
    Conversation.objects.create(owner=other_user, agent=agent, title="theirs")
    body = client_alice.get("/api/conversations/").json()
    assert body["count"] == 2
    assert [c["id"] for c in body["results"]] == [str(newer.id), str(older.id)]
    assert body["results"][0]["agent_name"] == agent.name


def test_it_creates_a_conversation_with_a_chosen_agent(client_alice, user) -> None:
    other = Agent.objects.create(name="Poet")
    response = client_alice.post("/api/conversations/", {"agent": str(other.id), "title": "Verse"}, "application/json")
    assert response.status_code == 201
    created = Conversation.objects.get(pk=response.json()["id"])
    assert (created.owner, created.agent, created.title) == (user, other, "Verse")


def test_it_refuses_an_inactive_agent_and_oversized_titles(client_alice) -> None:
    hidden = Agent.objects.create(name="Retired", is_active=False)
    response = client_alice.post("/api/conversations/", {"agent": str(hidden.id)}, "application/json")
    assert response.status_code == 400 and "agent" in response.json()
    response = client_alice.post("/api/conversations/", {"title": "x" * 201}, "application/json")
    assert response.status_code == 400 and "title" in response.json()


def test_it_renames_a_conversation(client_alice, conversation) -> None:
    response = client_alice.patch(f"/api/conversations/{conversation.id}/", {"title": "  Renamed "}, "application/json")
    assert response.status_code == 200
    assert response.json()["title"] == "Renamed"
    conversation.refresh_from_db()
    assert conversation.title == "Renamed"
    too_long = client_alice.patch(f"/api/conversations/{conversation.id}/", {"title": "y" * 201}, "application/json")
    assert too_long.status_code == 400 and "title" in too_long.json()
    empty = client_alice.patch(f"/api/conversations/{conversation.id}/", {"title": ""}, "application/json")
    assert empty.status_code == 400


def test_it_deletes_a_conversation_with_its_audio_files(client_alice, conversation, spoken_reply) -> None:
    path = spoken_reply.audio.path
    with open(path, "rb"):
        pass
    response = client_alice.delete(f"/api/conversations/{conversation.id}/")
    assert response.status_code == 204
    assert not Conversation.objects.filter(pk=conversation.id).exists()
    assert not Message.objects.filter(pk=spoken_reply.id).exists()
    with pytest.raises(FileNotFoundError):
        open(path, "rb")  # noqa: SIM115


def test_it_pages_messages_oldest_first(client_alice, conversation) -> None:
    for n in range(55):
        Message.objects.create(conversation=conversation, role="user", text=f"m{n}", status="complete")
    first = client_alice.get(f"/api/conversations/{conversation.id}/messages/").json()
    assert first["count"] == 55
    assert [m["text"] for m in first["results"][:2]] == ["m0", "m1"]
    second = client_alice.get(first["next"]).json()
    assert [m["text"] for m in second["results"]] == [f"m{n}" for n in range(50, 55)]


def test_it_describes_messages_with_audio_and_timings(client_alice, conversation, spoken_reply) -> None:
    spoken_reply.first_audio_sent_ms = 321
    spoken_reply.save()
    body = client_alice.get(f"/api/conversations/{conversation.id}/messages/").json()
    message = body["results"][0]
    assert message["audio_url"] == f"/api/messages/{spoken_reply.id}/audio/"
    assert message["first_audio_sent_ms"] == 321
    assert "tts_request_ids" not in message


def test_it_lists_active_agents_without_secrets(client_alice, agent) -> None:
    Agent.objects.create(name="Retired", is_active=False)
    agents = client_alice.get("/api/agents/").json()
    assert [a["name"] for a in agents] == [agent.name]
    assert set(agents[0]) == {"id", "name", "first_message", "language_code", "is_default"}


def test_it_serves_stored_audio_with_ranges(client_alice, spoken_reply) -> None:
    url = f"/api/messages/{spoken_reply.id}/audio/"
    data = wav_bytes()
    whole = client_alice.get(url)
    assert whole.status_code == 200 and whole["Content-Type"] == "audio/wav"
    assert whole["Accept-Ranges"] == "bytes" and whole.content == data
    head = client_alice.get(url, HTTP_RANGE="bytes=0-43")
    assert head.status_code == 206 and head.content == data[:44]
    assert head["Content-Range"] == f"bytes 0-43/{len(data)}"
    tail = client_alice.get(url, HTTP_RANGE="bytes=-100")
    assert tail.status_code == 206 and tail.content == data[-100:]
    rest = client_alice.get(url, HTTP_RANGE="bytes=4000-")
    assert rest.status_code == 206 and rest.content == data[4000:]
    beyond = client_alice.get(url, HTTP_RANGE=f"bytes={len(data)}-")
    assert beyond.status_code == 416 and beyond["Content-Range"] == f"bytes */{len(data)}"


def test_it_hides_other_users_things_behind_404(client, other_user, conversation, spoken_reply) -> None:
    client.force_login(other_user)
    for url in (
        f"/api/conversations/{conversation.id}/",
        f"/api/conversations/{conversation.id}/messages/",
        f"/api/messages/{spoken_reply.id}/audio/",
        f"/c/{conversation.id}/",
        f"/api/conversations/{uuid.uuid4()}/",
    ):
        assert client.get(url).status_code == 404, url
    assert client.patch(f"/api/conversations/{conversation.id}/", {"title": "x"}, "application/json").status_code == 404
    assert client.delete(f"/api/conversations/{conversation.id}/").status_code == 404
    assert Conversation.objects.filter(pk=conversation.id, title="First").exists()


def test_it_refuses_anonymous_api_requests(client, conversation) -> None:
    for url in ("/api/conversations/", f"/api/conversations/{conversation.id}/messages/", "/api/agents/"):
        assert client.get(url).status_code == 403, url
    assert client.post("/api/conversations/", {}, "application/json").status_code == 403


def test_it_requires_csrf_for_session_writes(user) -> None:
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post("/api/conversations/", {}, "application/json").status_code == 403


def test_it_titles_a_conversation_from_its_first_message(conversation) -> None:
    conversation.title = ""
    conversation.save()
    message_create_user(conversation=conversation, text="  What is   the capital\nof France?")
    message_create_user(conversation=conversation, text="And Spain?")
    conversation.refresh_from_db()
    assert conversation.title == "What is the capital"


def test_it_shortens_long_titles_at_a_word(conversation) -> None:
    conversation.title = ""
    conversation.save()
    message_create_user(conversation=conversation, text="word " * 40)
    conversation.refresh_from_db()
    assert conversation.title.endswith("…") and len(conversation.title) <= 81


def test_it_generates_the_openapi_schema_without_warnings() -> None:
    from django.core.management import call_command

    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    assert "/api/conversations/{id}/messages/" in out.getvalue()
