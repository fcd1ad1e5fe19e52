"""The voice library against the fake vendor: listing and caching, the agent's offered voices over REST,
the conversation's voice, previews through our server, the admin's choices, and SSML pauses."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.test import AsyncClient

from chat import voices
from chat.models import Agent, Conversation
from chat.providers.base import ProviderError
from chat.providers.elevenlabs import ElevenLabsTTS
from chat.providers.espeak import EspeakTTS
from tests.conftest import User
from tests.fakes.elevenlabs import API_KEY, FakeElevenLabs, preview_for

pytestmark = pytest.mark.django_db

GEORGE, RACHEL, SARAH = "JBFqnCBsd6RMkjVDRZzb", "21m00Tcm4TlvDq8ikWAM", "EXAVITQu4vr4xnxnyYXq"
AGENT_FORM = {
    "name": "Narrator",
    "llm": "",
    "stability": "0.5",
    "similarity_boost": "0.75",
    "style": "0",
    "speed": "1",
    "language_code": "en",
    "is_active": "on",
    "tts_transport": "http",
}


@pytest.fixture
def espeak_library(settings) -> Iterator[None]:
    settings.TTS_BACKEND = "espeak"
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def narrator(agent: Agent) -> Agent:
    agent.voice_id, agent.user_voice_ids = GEORGE, [RACHEL, "not-in-the-library"]
    agent.save()
    return agent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def voices_of(client: Any, agent: Agent) -> list[dict[str, Any]]:
    response = client.get(f"/api/agents/{agent.id}/voices/")
    assert response.status_code == 200
    return list(response.json())


# --- the library: pages, limits, cache, errors -----------------------------------------------------


def test_it_reads_every_page_of_the_accounts_voices(elevenlabs_library: FakeElevenLabs) -> None:
    elevenlabs_library.voices = tuple(f"voice{i:03}" for i in range(250))
    library = voices.voice_library()
    assert [v.voice_id for v in library] == list(elevenlabs_library.voices)
    calls = [query for path, query in elevenlabs_library.library_calls if path == "/v2/voices"]
    assert [(q["page_size"], q.get("next_page_token")) for q in calls] == [
        ("100", None),
        ("100", "100"),
        ("100", "200"),
    ]


def test_it_stops_reading_at_the_voice_limit(settings, elevenlabs_library: FakeElevenLabs) -> None:
    settings.VOICE_LIBRARY_MAX_VOICES = 150
    elevenlabs_library.voices = tuple(f"voice{i:03}" for i in range(250))
    assert len(voices.voice_library()) == 150
    assert [q["page_size"] for _, q in elevenlabs_library.library_calls] == ["100", "50"]


def test_it_keeps_what_the_vendor_says_of_each_voice(elevenlabs_library: FakeElevenLabs) -> None:
    george = next(v for v in voices.voice_library() if v.voice_id == GEORGE)
    assert (george.name, george.category, george.language) == ("George", "premade", "en")
    assert george.preview_url.startswith(elevenlabs_library.url) and george.description


def test_it_caches_the_library_for_minutes(settings, elevenlabs_library: FakeElevenLabs) -> None:
    voices.voice_library(), voices.voice_library(), voices.model_library(), voices.model_library()
    assert [path for path, _ in elevenlabs_library.library_calls] == ["/v2/voices", "/v1/models"]
    voices.voice_library(refresh=True)
    assert len(elevenlabs_library.library_calls) == 3
    settings.VOICE_LIBRARY_CACHE_SECONDS = 0
    cache.clear()
    voices.voice_library(), voices.voice_library()
    assert len(elevenlabs_library.library_calls) == 5


def test_it_lists_only_models_that_can_speak(elevenlabs_library: FakeElevenLabs) -> None:
    models = voices.model_library()
    assert [m.model_id for m in models] == ["eleven_flash_v2_5", "eleven_multilingual_v2", "eleven_v3"]
    assert models[0].max_characters == 40000 and models[0].languages == ("en", "de")


@pytest.mark.parametrize(
    ("fault", "code", "words"),
    [
        ("forbidden", "tts_forbidden", "missing the permission voices_read"),
        ("rate_limited", "rate_limited", "rate limiting"),
        ("server_error", "tts_unavailable", "HTTP 500"),
        ("garbage", "tts_unavailable", "cannot read"),
    ],
)
def test_it_explains_why_the_library_cannot_be_read(
    elevenlabs_library: FakeElevenLabs, fault: str, code: str, words: str
) -> None:
    elevenlabs_library.fail_library_next(fault)
    with pytest.raises(ProviderError) as caught:
        voices.voice_library()
    assert caught.value.code == code and words in caught.value.message
    assert len(elevenlabs_library.library_calls) == 1  # not retried: an admin page is waiting


def test_it_explains_a_rejected_key_without_showing_it(settings, elevenlabs_library: FakeElevenLabs) -> None:
    settings.TTS_PROVIDERS["elevenlabs"]["OPTIONS"]["api_key"] = "sk-wrong-key"
    with pytest.raises(ProviderError) as caught:
        voices.model_library()
    assert "check ELEVENLABS_API_KEY" in caught.value.message and "sk-wrong-key" not in caught.value.message
    assert not any("sk-wrong-key" in str(key) for key in cache._cache)  # type: ignore[attr-defined]


def test_it_explains_an_unreachable_vendor(settings, elevenlabs_library: FakeElevenLabs) -> None:
    settings.TTS_PROVIDERS["elevenlabs"]["OPTIONS"]["base_url"] = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ProviderError, match="cannot be reached"):
        voices.voice_library()


def test_it_remembers_a_failure_briefly_instead_of_asking_again(elevenlabs_library: FakeElevenLabs) -> None:
    elevenlabs_library.fail_library_next("server_error")
    for _ in range(3):
        with pytest.raises(ProviderError):
            voices.voice_library()
    assert len(elevenlabs_library.library_calls) == 1
    assert voices.voice_find(GEORGE) is None  # still the remembered failure, not an exception
    assert voices.voice_library(refresh=True)


def test_it_lists_espeaks_voices_offline(espeak_library: None) -> None:
    library = {v.voice_id: v for v in voices.voice_library()}
    assert library["en-us"].name == "English (America)" and library["de"].name == "German"
    assert len(library) > 100 and all(not v.preview_url for v in library.values())
    assert voices.model_library() == []


# --- the voices an agent offers, over REST -----------------------------------------------------------


def test_it_lists_the_agents_voices_with_previews_through_our_server(
    client_alice: Any, narrator: Agent, elevenlabs_library: FakeElevenLabs
) -> None:
    response = client_alice.get(f"/api/agents/{narrator.id}/voices/")
    listed = response.json()
    assert [(v["voice_id"], v["name"], v["is_default"]) for v in listed] == [
        (GEORGE, "George", True),
        (RACHEL, "Rachel", False),
        ("not-in-the-library", "not-in-the-library", False),
    ]
    assert listed[0]["preview_url"] == f"/api/agents/{narrator.id}/voices/{GEORGE}/preview/"
    assert listed[2]["preview_url"] is None
    assert listed[0]["category"] == "premade" and listed[0]["language"] == "en"
    body = response.content.decode()
    assert elevenlabs_library.url not in body and "storage.googleapis" not in body and API_KEY not in body


def test_it_offers_the_default_voice_when_the_agent_names_none(
    client_alice: Any, agent: Agent, elevenlabs_library
) -> None:
    assert [(v["voice_id"], v["is_default"]) for v in voices_of(client_alice, agent)] == [(GEORGE, True)]


def test_it_still_lists_the_ids_when_the_vendor_is_down(
    client_alice: Any, narrator: Agent, elevenlabs_library: FakeElevenLabs
) -> None:
    elevenlabs_library.fail_library_next("server_error")
    listed = voices_of(client_alice, narrator)
    assert [v["name"] for v in listed] == [GEORGE, RACHEL, "not-in-the-library"]
    assert all(v["preview_url"] is None for v in listed)


def test_it_hides_preview_urls_from_hosts_we_do_not_fetch_from(
    settings, client_alice: Any, narrator: Agent, elevenlabs_library: FakeElevenLabs
) -> None:
    settings.VOICE_PREVIEW_ORIGINS = ["https://storage.googleapis.com"]
    assert all(v["preview_url"] is None for v in voices_of(client_alice, narrator))


def test_it_answers_404_for_an_unknown_or_inactive_agent(client_alice: Any, agent: Agent, espeak_library) -> None:
    agent.is_active = False
    agent.save()
    assert client_alice.get(f"/api/agents/{agent.id}/voices/").status_code == 404
    assert client_alice.get("/api/agents/00000000-0000-0000-0000-000000000000/voices/").status_code == 404


def test_it_lists_voices_to_logged_in_users_only(client: Any, agent: Agent, espeak_library) -> None:
    assert client.get(f"/api/agents/{agent.id}/voices/").status_code == 403


# --- the conversation's voice --------------------------------------------------------------------


def patch(client: Any, conversation: Conversation, body: dict[str, Any]) -> Any:
    return client.patch(f"/api/conversations/{conversation.id}/", body, "application/json")


def test_it_stores_a_voice_the_agent_offers(client_alice: Any, narrator: Agent, elevenlabs_library) -> None:
    conversation = Conversation.objects.create(owner=User.objects.get(username="alice"), agent=narrator)
    response = patch(client_alice, conversation, {"voice_id": RACHEL})
    assert response.status_code == 200 and response.json()["voice_id"] == RACHEL
    conversation.refresh_from_db()
    assert conversation.voice_id == RACHEL
    assert patch(client_alice, conversation, {"voice_id": "", "title": "Back to George"}).status_code == 200
    conversation.refresh_from_db()
    assert (conversation.voice_id, conversation.title) == ("", "Back to George")


def test_it_refuses_a_voice_the_agent_does_not_offer(client_alice: Any, conversation: Conversation, narrator) -> None:
    response = patch(client_alice, conversation, {"voice_id": SARAH, "title": "Not applied either"})
    assert response.status_code == 400 and "does not offer" in response.json()["voice_id"][0]
    conversation.refresh_from_db()
    assert (conversation.voice_id, conversation.title) == ("", "First")


def test_it_does_not_let_another_user_pick_a_voice(client: Any, other_user: Any, conversation: Conversation) -> None:
    client.force_login(other_user)
    assert patch(client, conversation, {"voice_id": ""}).status_code == 404


def test_it_takes_a_voice_when_a_conversation_is_created(
    client_alice: Any, narrator: Agent, elevenlabs_library
) -> None:
    created = client_alice.post(
        "/api/conversations/", {"agent": str(narrator.id), "voice_id": RACHEL}, "application/json"
    )
    assert created.status_code == 201 and Conversation.objects.get(pk=created.json()["id"]).voice_id == RACHEL
    refused = client_alice.post(
        "/api/conversations/", {"agent": str(narrator.id), "voice_id": SARAH}, "application/json"
    )
    assert refused.status_code == 400 and "voice_id" in refused.json()


def test_it_knows_which_voices_a_conversation_may_use(narrator: Agent, elevenlabs_library) -> None:
    assert voices.voice_allowed(narrator, "") and voices.voice_allowed(narrator, GEORGE)
    assert voices.voice_allowed(narrator, RACHEL) and not voices.voice_allowed(narrator, SARAH)


def test_it_checks_the_voices_an_operator_offers(settings, agent: Agent) -> None:
    settings.AGENT_USER_VOICES_MAX = 2
    agent.user_voice_ids = [" a ", "b", "a", ""]
    agent.full_clean()
    assert agent.user_voice_ids == ["a", "b"]
    for bad in (["a", "b", "c"], "a,b", [1], ["x" * 101]):
        agent.user_voice_ids = bad
        with pytest.raises(ValidationError) as caught:
            agent.full_clean()
        assert "user_voice_ids" in caught.value.message_dict


# --- previews through our server -----------------------------------------------------------------


@pytest.fixture
async def alice_async(transactional_db: None) -> AsyncClient:
    alice = await User.objects.acreate(username="alice-async")
    client = AsyncClient()
    await client.aforce_login(alice)
    return client


async def offering(**fields: Any) -> Agent:
    return await Agent.objects.acreate(name="Narrator", voice_id=GEORGE, user_voice_ids=[RACHEL], **fields)


async def body_of(response: Any) -> bytes:
    return b"".join([part async for part in response.streaming_content])


async def test_it_streams_a_preview_without_sending_the_key_upstream(alice_async, elevenlabs_library) -> None:
    agent = await offering()
    response = await alice_async.get(f"/api/agents/{agent.id}/voices/{RACHEL}/preview/")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "audio/mpeg" and response["Content-Length"] == str(len(preview_for(RACHEL)))
    assert response["Cache-Control"].startswith("private")
    assert await body_of(response) == preview_for(RACHEL)
    (upstream,) = elevenlabs_library.preview_requests
    assert "xi-api-key" not in upstream and "cookie" not in upstream


async def test_it_serves_previews_of_offered_voices_only(alice_async, elevenlabs_library) -> None:
    agent = await offering()
    assert (await alice_async.get(f"/api/agents/{agent.id}/voices/{SARAH}/preview/")).status_code == 404
    inactive = await offering(is_active=False)
    assert (await alice_async.get(f"/api/agents/{inactive.id}/voices/{RACHEL}/preview/")).status_code == 404
    assert (await AsyncClient().get(f"/api/agents/{agent.id}/voices/{RACHEL}/preview/")).status_code == 403
    assert elevenlabs_library.preview_requests == []


async def test_it_never_fetches_a_preview_from_a_host_off_the_list(settings, alice_async, elevenlabs_library) -> None:
    settings.VOICE_PREVIEW_ORIGINS = ["https://storage.googleapis.com"]
    agent = await offering()
    response = await alice_async.get(f"/api/agents/{agent.id}/voices/{RACHEL}/preview/")
    assert response.status_code == 404 and "VOICE_PREVIEW_ORIGINS" in response.json()["detail"]
    assert elevenlabs_library.preview_requests == []


async def test_it_reports_a_failing_preview_host_as_502(alice_async, elevenlabs_library: FakeElevenLabs) -> None:
    agent = await offering()
    assert await sync_to_async(voices.voice_library)()  # cached with Rachel in it
    elevenlabs_library.voices = (GEORGE,)  # the file host no longer has her sample
    response = await alice_async.get(f"/api/agents/{agent.id}/voices/{RACHEL}/preview/")
    assert response.status_code == 502 and "HTTP 404" in response.json()["detail"]


async def test_it_cuts_a_preview_at_the_size_limit(settings, alice_async, elevenlabs_library) -> None:
    settings.VOICE_PREVIEW_MAX_BYTES = 10_000
    agent = await offering()
    response = await alice_async.get(f"/api/agents/{agent.id}/voices/{RACHEL}/preview/")
    assert not response.has_header("Content-Length")
    assert await body_of(response) == preview_for(RACHEL)[:10_000]


async def test_it_synthesises_previews_of_espeak_voices(alice_async, espeak_library) -> None:
    agent = await Agent.objects.acreate(name="Offline", user_voice_ids=["de"])
    response = await alice_async.get(f"/api/agents/{agent.id}/voices/de/preview/")
    assert response.status_code == 200 and response["Content-Type"] == "audio/wav"
    wav = await body_of(response)
    assert wav[:4] == b"RIFF" and len(wav) > 22050  # about a second or more of 22 kHz speech


async def test_it_lets_staff_preview_any_voice_in_the_admin(transactional_db, elevenlabs_library) -> None:
    url = f"/admin/chat/agent/voices/{SARAH}/preview/"
    staff = await User.objects.acreate_superuser(username="root", password="x" * 12)
    plain = await User.objects.acreate(username="bob", is_staff=False)
    client = AsyncClient()
    assert (await client.get(url)).status_code == 403
    await client.aforce_login(plain)
    assert (await client.get(url)).status_code == 403
    await client.aforce_login(staff)
    response = await client.get(url)
    assert response.status_code == 200 and await body_of(response) == preview_for(SARAH)
    assert (await client.get("/admin/chat/agent/voices/nobody/preview/")).status_code == 404


# --- the admin's agent form ------------------------------------------------------------------------


def options(page: str, name: str) -> list[str]:
    select = re.search(rf'<select name="{name}".*?</select>', page, re.S)
    assert select, f"no select {name}"
    return re.findall(r'<option value="([^"]*)"', select.group(0))


def test_it_offers_the_accounts_voices_and_models_in_the_agent_form(
    admin_client: Any, elevenlabs_library: FakeElevenLabs
) -> None:
    page = admin_client.get("/admin/chat/agent/add/").content.decode()
    adam = "pNInz6obpgDQGcFmaJgB"
    assert options(page, "voice_id") == ["", adam, GEORGE, RACHEL, SARAH]  # grouped, then by name
    assert '<optgroup label="Premade">' in page and ">George — en</option>" in page
    assert options(page, "tts_model_id") == ["", "eleven_flash_v2_5", "eleven_multilingual_v2", "eleven_v3"]
    assert "Eleven Flash v2.5 (eleven_flash_v2_5) · pauses" in page and "Eleven v3 (eleven_v3)<" in page
    assert options(page, "user_voice_ids") == [adam, GEORGE, RACHEL, SARAH]
    assert 'data-preview-url="/admin/chat/agent/voices/__voice__/preview/"' in page
    assert page.count('data-preview="1"') == 8  # every voice in both selects has a sample
    assert "site/voice-preview.js" in page
    assert elevenlabs_library.url not in page and API_KEY not in page


def test_it_saves_the_voices_users_may_pick_and_the_pause_setting(admin_client: Any, elevenlabs_library) -> None:
    form = {**AGENT_FORM, "voice_id": GEORGE, "tts_model_id": "eleven_multilingual_v2", "allow_breaks": "on"}
    response = admin_client.post("/admin/chat/agent/add/", {**form, "user_voice_ids": [SARAH, RACHEL]})
    assert response.status_code == 302
    saved = Agent.objects.get(name="Narrator")
    assert (saved.voice_id, saved.tts_model_id, saved.allow_breaks) == (GEORGE, "eleven_multilingual_v2", True)
    assert saved.user_voice_ids == [SARAH, RACHEL]


def test_it_keeps_a_voice_the_library_does_not_list(admin_client: Any, agent: Agent, elevenlabs_library) -> None:
    agent.voice_id, agent.tts_model_id = "my-cloned-voice", "eleven_turbo_v2"
    agent.save()
    page = admin_client.get(f"/admin/chat/agent/{agent.id}/change/").content.decode()
    assert '<option value="my-cloned-voice" selected>my-cloned-voice (not in the library)</option>' in page
    assert '<option value="eleven_turbo_v2" selected>' in page


def test_it_falls_back_to_typed_ids_when_the_vendor_is_unreachable(
    settings, admin_client: Any, elevenlabs_library: FakeElevenLabs
) -> None:
    settings.TTS_PROVIDERS["elevenlabs"]["OPTIONS"]["base_url"] = f"http://127.0.0.1:{free_port()}"
    page = admin_client.get("/admin/chat/agent/add/").content.decode()
    assert re.search(r'<input type="text" name="voice_id"', page)
    assert re.search(r'<textarea name="user_voice_ids"', page)
    assert page.count("cannot be reached") >= 3  # voice, allowed voices and model each say why
    response = admin_client.post("/admin/chat/agent/add/", {**AGENT_FORM, "user_voice_ids": f"{RACHEL}, {SARAH}\nx"})
    assert response.status_code == 302
    assert Agent.objects.get(name="Narrator").user_voice_ids == [RACHEL, SARAH, "x"]


def test_it_offers_espeaks_voices_in_the_admin_offline(admin_client: Any, espeak_library) -> None:
    page = admin_client.get("/admin/chat/agent/add/").content.decode()
    assert "en-us" in options(page, "voice_id") and "de" in options(page, "user_voice_ids")
    assert "offers no choice of model" in page


# --- SSML pauses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allow", "model_id", "expected"),
    [
        (True, "", True),  # the provider's default, Flash v2.5
        (True, "eleven_multilingual_v2", True),
        (True, "eleven_v3", False),
        (False, "eleven_flash_v2_5", False),
    ],
)
def test_it_passes_pauses_only_when_the_agent_allows_and_the_model_honours(
    agent: Agent, allow: bool, model_id: str, expected: bool
) -> None:
    agent.allow_breaks, agent.tts_model_id = allow, model_id
    tts = ElevenLabsTTS(api_key="k", voice_id=GEORGE)
    assert voices.agent_speaks_breaks(agent, tts) is expected
    assert voices.agent_speaks_breaks(agent, EspeakTTS()) is False
