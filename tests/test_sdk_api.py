"""The ElevenLabs-shaped HTTP API (chat/convai_api.py) and the API keys that authenticate it.

Every shape is also read by the official `elevenlabs` SDK against a live server, so a field the SDK
requires cannot go missing unnoticed.
"""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from django.core.management import call_command
from django.utils import timezone
from elevenlabs import ElevenLabs
from elevenlabs.core import ApiError

from chat.api_keys import api_key_create, api_key_user
from chat.models import Agent, ApiKey, Conversation, Message
from chat.signing import signed_url_verify

pytestmark = pytest.mark.django_db

SIGNED_URL = "/v1/convai/conversation/get-signed-url"
CONVERSATIONS = "/v1/convai/conversations"


@pytest.fixture
def api_key(user) -> str:
    return api_key_create(user=user, name="script")[1]


def at(conversation: Conversation, seconds: float) -> Any:
    return conversation.created_at + timedelta(seconds=seconds)


@pytest.fixture
def transcript(conversation: Conversation) -> Conversation:
    """alice's conversation: a question, a liked complete reply, a question, an interrupted reply."""
    rows = [
        ("user", "Hello?", "complete", "", 0),
        ("assistant", "Hi there.", "complete", "like", 2),
        ("user", "Tell me more.", "complete", "", 10),
        ("assistant", "Well, it all", "interrupted", "", 12),
    ]
    for role, text, status, feedback, secs in rows:
        message = Message.objects.create(
            conversation=conversation, role=role, text=text, status=status, feedback=feedback, tts_characters=5
        )
        Message.objects.filter(pk=message.pk).update(
            created_at=at(conversation, secs), completed_at=at(conversation, secs + 1)
        )
    return conversation


# --- get-signed-url -----------------------------------------------------------------------------
def test_it_signs_a_url_for_a_logged_in_user(client_alice, user, agent) -> None:
    response = client_alice.get(SIGNED_URL, {"agent_id": str(agent.pk)})
    assert response.status_code == 200 and set(response.json()) == {"signed_url"}
    url = urlparse(response.json()["signed_url"])
    assert (url.scheme, url.netloc, url.path) == ("ws", "testserver", "/v1/convai/conversation")
    query = parse_qs(url.query)
    assert query["agent_id"] == [str(agent.pk)]
    session = signed_url_verify(query["conversation_signature"][0], agent_id=str(agent.pk))
    assert (session.user, session.agent, session.conversation) == (user, agent, None)


def test_it_signs_wss_urls_behind_https(client_alice, agent) -> None:
    response = client_alice.get(SIGNED_URL, {"agent_id": str(agent.pk)}, secure=True)
    assert response.json()["signed_url"].startswith("wss://testserver/v1/convai/conversation?")


def test_it_signs_for_the_default_agent_and_for_a_conversation_to_resume(client_alice, agent, conversation) -> None:
    query = parse_qs(urlparse(client_alice.get(SIGNED_URL).json()["signed_url"]).query)
    assert query["agent_id"] == [str(agent.pk)]
    url = client_alice.get(SIGNED_URL, {"conversation_id": str(conversation.pk)}).json()["signed_url"]
    query = parse_qs(urlparse(url).query)
    assert query["conversation_id"] == [str(conversation.pk)]
    assert signed_url_verify(query["conversation_signature"][0]).conversation == conversation


def test_it_refuses_to_sign_for_unknown_agents_and_foreign_conversations(client_alice, other_user, agent) -> None:
    assert client_alice.get(SIGNED_URL, {"agent_id": "agent_123"}).json()["detail"]["status"] == "agent_not_found"
    inactive = Agent.objects.create(name="Retired", is_active=False)
    assert client_alice.get(SIGNED_URL, {"agent_id": str(inactive.pk)}).status_code == 404
    theirs = Conversation.objects.create(owner=other_user, agent=agent)
    foreign = client_alice.get(SIGNED_URL, {"conversation_id": str(theirs.pk)})
    assert foreign.status_code == 404 and foreign.json()["detail"]["status"] == "conversation_not_found"


def test_it_refuses_to_sign_when_agent_and_conversation_disagree(client_alice, conversation) -> None:
    second = Agent.objects.create(name="Second")
    mismatch = client_alice.get(SIGNED_URL, {"agent_id": str(second.pk), "conversation_id": str(conversation.pk)})
    assert mismatch.status_code == 422 and mismatch.json()["detail"]["status"] == "invalid_parameters"


def test_it_signs_urls_for_an_api_key_without_a_session(client, user, agent, api_key) -> None:
    response = client.get(SIGNED_URL, {"agent_id": str(agent.pk)}, headers={"xi-api-key": api_key})
    assert response.status_code == 200
    token = parse_qs(urlparse(response.json()["signed_url"]).query)["conversation_signature"][0]
    assert signed_url_verify(token).user == user


def test_it_answers_401_in_the_vendors_shape_without_valid_credentials(client, agent, api_key) -> None:
    anonymous = client.get(SIGNED_URL)
    assert anonymous.status_code == 401
    wrong = client.get(SIGNED_URL, headers={"xi-api-key": api_key[:-2] + "zz"})
    assert wrong.status_code == 401 and wrong.json()["detail"]["status"] == "invalid_api_key"
    assert client.get(CONVERSATIONS, headers={"xi-api-key": "sk_an_elevenlabs_key"}).status_code == 401


# --- API keys -----------------------------------------------------------------------------------
def test_it_stores_only_a_hash_of_an_api_key(user, api_key) -> None:
    key = ApiKey.objects.get(user=user)
    assert api_key.startswith("vc_") and len(api_key) > 40 and key.prefix == api_key[:10]
    assert api_key not in (key.digest, key.prefix) and len(key.digest) == 64
    assert api_key_user(api_key) == user


def test_it_records_when_a_key_was_last_used_and_refuses_keys_of_inactive_users(user, api_key) -> None:
    assert ApiKey.objects.get().last_used_at is None
    api_key_user(api_key)
    assert ApiKey.objects.get().last_used_at is not None
    user.is_active = False
    user.save()
    assert api_key_user(api_key) is None


def test_it_lets_a_user_create_see_once_and_revoke_keys_on_the_page(client_alice, user, other_user, settings) -> None:
    page = client_alice.get("/accounts/api-keys/")
    assert page.status_code == 200 and b"Create key" in page.content
    created = client_alice.post("/accounts/api-keys/", {"action": "create", "name": "laptop"})
    raw = created.context["new_key"]
    assert raw.encode() in created.content and "no-cache" in created["Cache-Control"]
    assert api_key_user(raw) == user
    again = client_alice.get("/accounts/api-keys/")
    assert raw.encode() not in again.content and raw[:10].encode() in again.content
    theirs, _ = api_key_create(user=other_user, name="theirs")
    client_alice.post("/accounts/api-keys/", {"action": "revoke", "key_id": str(theirs.pk)})
    assert ApiKey.objects.filter(pk=theirs.pk).exists()
    mine = ApiKey.objects.get(user=user)
    assert client_alice.post("/accounts/api-keys/", {"action": "revoke", "key_id": str(mine.pk)}).status_code == 302
    assert api_key_user(raw) is None


def test_it_limits_the_keys_a_user_holds(client_alice, user, settings) -> None:
    settings.MAX_API_KEYS_PER_USER = 1
    client_alice.post("/accounts/api-keys/", {"action": "create", "name": "one"})
    refused = client_alice.post("/accounts/api-keys/", {"action": "create", "name": "two"})
    assert refused.context["new_key"] is None and b"revoke one" in refused.content
    assert ApiKey.objects.filter(user=user).count() == 1


def test_it_keeps_the_api_keys_page_for_logged_in_users(client) -> None:
    assert client.get("/accounts/api-keys/").status_code == 302


def test_it_shows_an_admins_new_key_once(admin_client, user) -> None:
    response = admin_client.post("/admin/chat/apikey/add/", {"user": user.pk, "name": "ci"}, follow=True)
    notice = next(str(m) for m in response.context["messages"])
    raw = notice.split(" is ", 1)[1].split(" ")[0]
    assert api_key_user(raw) == user
    change = admin_client.get(f"/admin/chat/apikey/{ApiKey.objects.get().pk}/change/")
    assert raw.encode() not in change.content


# --- transcript API -------------------------------------------------------------------------------
def test_it_returns_a_conversation_in_the_vendors_shape(client_alice, transcript, agent) -> None:
    body = client_alice.get(f"{CONVERSATIONS}/{transcript.pk}").json()
    assert body["conversation_id"] == str(transcript.pk) and body["agent_id"] == str(agent.pk)
    assert body["status"] == "done" and body["user_id"] == "alice" and body["agent_name"] == agent.name
    assert [(t["role"], t["message"], t["time_in_call_secs"]) for t in body["transcript"]] == [
        ("user", "Hello?", 0),
        ("agent", "Hi there.", 2),
        ("user", "Tell me more.", 10),
        ("agent", "Well, it all", 12),
    ]
    assert [t["interrupted"] for t in body["transcript"]] == [False, False, False, True]
    assert body["transcript"][1]["feedback"] == {"score": "like", "time_in_call_secs": 2}
    metadata = body["metadata"]
    assert metadata["start_time_unix_secs"] == int(transcript.created_at.timestamp())
    assert metadata["call_duration_secs"] == 13 and metadata["main_language"] == "en"
    assert metadata["feedback"] == {"overall_score": "like", "likes": 1, "dislikes": 0}
    assert metadata["tts_characters"] == 20
    assert (body["user_message_count"], body["agent_message_count"], body["has_audio"]) == (2, 2, False)


def test_it_reports_a_running_reply_as_in_progress(client_alice, conversation) -> None:
    assert client_alice.get(f"{CONVERSATIONS}/{conversation.pk}").json()["status"] == "initiated"
    Message.objects.create(conversation=conversation, role="assistant", status="streaming")
    assert client_alice.get(f"{CONVERSATIONS}/{conversation.pk}").json()["status"] == "in-progress"
    listed = client_alice.get(CONVERSATIONS).json()["conversations"]
    assert listed[0]["status"] == "in-progress"


def test_it_hides_other_users_conversations_as_not_found(client, other_user, transcript) -> None:
    client.force_login(other_user)
    response = client.get(f"{CONVERSATIONS}/{transcript.pk}")
    assert response.status_code == 404 and response.json()["detail"]["status"] == "conversation_not_found"
    assert client.get(f"{CONVERSATIONS}/not-a-uuid").status_code == 404
    assert client.get(CONVERSATIONS).json() == {"conversations": [], "next_cursor": None, "has_more": False}


def test_it_lists_your_conversations_newest_first_in_the_vendors_page_shape(client_alice, transcript, agent) -> None:
    older = Conversation.objects.create(owner=transcript.owner, agent=agent, title="Older")
    Conversation.objects.filter(pk=older.pk).update(created_at=transcript.created_at - timedelta(days=1))
    body = client_alice.get(CONVERSATIONS).json()
    assert body["has_more"] is False and body["next_cursor"] is None
    first = body["conversations"][0]
    assert [c["conversation_id"] for c in body["conversations"]] == [str(transcript.pk), str(older.pk)]
    assert first["message_count"] == 4 and first["call_duration_secs"] == 13 and first["status"] == "done"
    assert first["call_summary_title"] == "First" and first["call_successful"] == "unknown"
    assert (first["user_message_count"], first["agent_message_count"]) == (2, 2)


def test_it_pages_with_an_opaque_cursor_until_every_conversation_was_seen(client_alice, user, agent) -> None:
    start = timezone.now()
    made = []
    for i in range(7):
        conversation = Conversation.objects.create(owner=user, agent=agent)
        # Two share each timestamp, so the id has to break ties for the cursor to be exact.
        Conversation.objects.filter(pk=conversation.pk).update(created_at=start - timedelta(minutes=i // 2))
        made.append(str(conversation.pk))
    seen: list[str] = []
    cursor = None
    while True:
        params = {"page_size": 3, **({"cursor": cursor} if cursor else {})}
        body = client_alice.get(CONVERSATIONS, params).json()
        seen += [c["conversation_id"] for c in body["conversations"]]
        if not body["has_more"]:
            break
        cursor = body["next_cursor"]
    assert sorted(seen) == sorted(made) and len(seen) == 7


def test_it_filters_by_agent_and_start_time(client_alice, user, agent, transcript) -> None:
    second = Agent.objects.create(name="Second")
    other = Conversation.objects.create(owner=user, agent=second)
    by_agent = client_alice.get(CONVERSATIONS, {"agent_id": str(second.pk)}).json()["conversations"]
    assert [c["conversation_id"] for c in by_agent] == [str(other.pk)]
    started = int(transcript.created_at.timestamp())
    Conversation.objects.filter(pk=other.pk).update(created_at=transcript.created_at + timedelta(hours=1))
    early = client_alice.get(CONVERSATIONS, {"call_start_before_unix": started + 60}).json()["conversations"]
    late = client_alice.get(CONVERSATIONS, {"call_start_after_unix": started + 60}).json()["conversations"]
    assert [c["conversation_id"] for c in early] == [str(transcript.pk)]
    assert [c["conversation_id"] for c in late] == [str(other.pk)]


@pytest.mark.parametrize(
    "params",
    [
        {"page_size": 0},
        {"page_size": 101},
        {"page_size": "ten"},
        {"cursor": "%%%"},
        {"cursor": "bm9wZQ"},
        {"agent_id": "x"},
    ],
)
def test_it_answers_422_for_bad_list_parameters(client_alice, params) -> None:
    response = client_alice.get(CONVERSATIONS, params)
    assert response.status_code == 422 and response.json()["detail"]["status"] == "invalid_parameters"


def test_it_describes_the_vendor_api_and_its_key_in_the_schema() -> None:
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    schema = yaml.safe_load(out.getvalue())
    for path in (SIGNED_URL, CONVERSATIONS, CONVERSATIONS + "/{conversation_id}"):
        assert path in schema["paths"]
        assert {"xiApiKey": []} in schema["paths"][path]["get"]["security"]
    assert schema["components"]["securitySchemes"]["xiApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "xi-api-key",
    }
    detail = schema["components"]["schemas"]["ConversationDetail"]["properties"]
    assert {"conversation_id", "agent_id", "status", "transcript", "metadata"} <= set(detail)


# --- the official SDK reads it ------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_it_is_read_by_the_official_sdk_with_an_api_key(live_server, user, agent) -> None:
    conversation = Conversation.objects.create(owner=user, agent=agent, title="From the SDK")
    Message.objects.create(conversation=conversation, role="user", text="Hi", status="complete")
    Message.objects.create(
        conversation=conversation, role="assistant", text="Hello!", status="complete", feedback="dislike"
    )
    raw = api_key_create(user=user, name="sdk")[1]
    client = ElevenLabs(base_url=live_server.url, api_key=raw)

    page = client.conversational_ai.conversations.list(page_size=10)
    assert [c.conversation_id for c in page.conversations] == [str(conversation.pk)] and not page.has_more
    got = client.conversational_ai.conversations.get(str(conversation.pk))
    assert got.status == "done" and [(t.role, t.message) for t in got.transcript] == [
        ("user", "Hi"),
        ("agent", "Hello!"),
    ]
    assert got.transcript[1].feedback is not None and got.transcript[1].feedback.score == "dislike"
    signed = client.conversational_ai.conversations.get_signed_url(agent_id=str(agent.pk))
    assert signed.signed_url.startswith(live_server.url.replace("http", "ws") + "/v1/convai/conversation?")

    with pytest.raises(ApiError) as missing:
        client.conversational_ai.conversations.get("00000000-0000-0000-0000-000000000000")
    assert missing.value.status_code == 404
    with pytest.raises(ApiError) as refused:
        ElevenLabs(base_url=live_server.url, api_key="vc_wrong").conversational_ai.conversations.list()
    assert refused.value.status_code == 401
