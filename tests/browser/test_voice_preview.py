"""The admin agent form's voice preview in Chromium: choosing a voice points the player at our own
server, the sample plays from there, and the page never talks to the vendor or its file host."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, expect

from tests import servers
from tests.fakes.elevenlabs import FakeElevenLabs

pytestmark = pytest.mark.browser

RACHEL = "21m00Tcm4TlvDq8ikWAM"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, fake_vendor: FakeElevenLabs) -> Iterator[servers.App]:
    settings = {
        "TTS_BACKEND": "elevenlabs",
        "ELEVENLABS_API_KEY": fake_vendor.api_key,
        "ELEVENLABS_BASE_URL": fake_vendor.url,
        "VOICE_PREVIEW_ORIGINS": fake_vendor.url,
    }
    with servers.daphne_app(tmp_path_factory.mktemp("voices"), **settings) as app:
        yield app


def test_it_previews_the_chosen_voice_through_our_server(
    browser: Browser, app: servers.App, fake_vendor: FakeElevenLabs
) -> None:
    script = (
        "from django.contrib.auth import get_user_model; from tests.wsclient import session_cookie_for\n"
        "print(session_cookie_for(get_user_model().objects.create_superuser('voices', password='x-long-pass-9')))"
    )
    name, value = app.manage("shell", "-c", script).strip().splitlines()[-1].split("=", 1)
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.add_cookies([{"name": name, "value": value, "url": app.url}])
    page = context.new_page()
    origins: set[str] = set()
    page.on("request", lambda request: origins.add(f"{urlsplit(request.url).scheme}://{urlsplit(request.url).netloc}"))
    try:
        page.goto(app.url + "/admin/chat/agent/add/")
        player = page.locator("#id_voice_id + audio.vc-voice-preview")
        expect(player).to_be_hidden()  # the default voice: nothing chosen yet
        page.select_option("#id_voice_id", RACHEL)
        expect(player).to_be_visible()
        assert player.get_attribute("src") == f"/admin/chat/agent/voices/{RACHEL}/preview/"
        with page.expect_response(lambda r: r.url.endswith(f"/voices/{RACHEL}/preview/")) as fetched:
            player.evaluate("audio => audio.play()")
        assert fetched.value.status == 200
        deadline = time.monotonic() + 10  # polled: wait_for_function would eval, which the CSP forbids
        while player.evaluate("audio => audio.currentTime") < 0.1:
            assert time.monotonic() < deadline, "the preview did not play"
            time.sleep(0.05)
        page.select_option("#id_voice_id", "")
        expect(player).to_be_hidden()
        assert origins == {app.url}  # the vendor's API and file host are the server's business only
        assert fake_vendor.preview_requests and "xi-api-key" not in fake_vendor.preview_requests[-1]
    finally:
        context.close()
