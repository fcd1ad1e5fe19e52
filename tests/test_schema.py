"""The OpenAPI schema: generated without a single warning, describing what the API really does."""

from __future__ import annotations

import io

import pytest
import yaml
from django.core.management import call_command

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema() -> dict:
    out = io.StringIO()
    # --fail-on-warn turns every drf-spectacular warning (an unresolvable field, a missing type) into an error.
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    return yaml.safe_load(out.getvalue())


def test_it_describes_every_endpoint(schema) -> None:
    assert set(schema["paths"]) == {
        "/api/agents/",
        "/api/agents/{id}/voices/",
        "/api/agents/{id}/voices/{voice_id}/preview/",
        "/api/conversations/",
        "/api/conversations/{id}/",
        "/api/conversations/{id}/messages/",
        "/api/messages/{id}/audio/",
        "/api/greetings/{id}/audio/",
        "/api/usage/",
        "/v1/convai/conversation/get-signed-url",
        "/v1/convai/conversations",
        "/v1/convai/conversations/{conversation_id}",
    }
    assert set(schema["paths"]["/api/conversations/{id}/"]) - {"parameters"} == {"get", "patch", "delete"}


def test_it_documents_patch_as_a_new_title_a_new_voice_or_both(schema) -> None:
    body = schema["paths"]["/api/conversations/{id}/"]["patch"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["minProperties"] == 1 and "required" not in body["schema"]
    assert body["schema"]["properties"]["title"]["maxLength"] == 200
    assert body["schema"]["properties"]["voice_id"]["maxLength"] == 100


def test_it_documents_the_voices_an_agent_offers_and_their_previews(schema) -> None:
    listing = schema["paths"]["/api/agents/{id}/voices/"]["get"]["responses"]["200"]["content"]["application/json"]
    voice = schema["components"]["schemas"]["VoiceChoice"]
    assert listing["schema"]["items"]["$ref"].endswith("/VoiceChoice")
    assert set(voice["properties"]) == {
        "voice_id", "name", "category", "description", "language", "is_default", "preview_url"
    }  # fmt: skip
    assert voice["properties"]["preview_url"]["nullable"] is True
    preview = schema["paths"]["/api/agents/{id}/voices/{voice_id}/preview/"]["get"]
    assert set(preview["responses"]) == {"200", "403", "404", "502"}
    assert set(preview["responses"]["200"]["content"]) == {"audio/mpeg", "audio/wav"}


def test_it_documents_audio_as_wav_with_ranges(schema) -> None:
    audio = schema["paths"]["/api/messages/{id}/audio/"]["get"]
    assert set(audio["responses"]) == {"200", "206", "404", "416"}
    assert "audio/wav" in audio["responses"]["206"]["content"]
    assert any(p["name"] == "Range" and p["in"] == "header" for p in audio["parameters"])


def test_it_exposes_no_agent_secrets(schema) -> None:
    assert set(schema["components"]["schemas"]["Agent"]["properties"]) == {
        "id",
        "name",
        "first_message",
        "language_code",
        "is_default",
    }


def test_it_serves_the_schema_to_logged_in_users_only(client, client_alice) -> None:
    response = client_alice.get("/api/schema/")
    assert response.status_code == 200 and b"/api/conversations/" in response.content
    client.logout()
    assert client.get("/api/schema/").status_code == 403
