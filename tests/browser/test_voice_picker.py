"""The conversation's voice picker in Chromium: a pick reaches the vendor's TTS requests (on the socket
for a new conversation, by PATCH after that), survives a reload, and its preview plays from our origin."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import cast
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect

from tests import servers
from tests.browser.helpers import conversation_id, player, send, wait_until
from tests.fakes.elevenlabs import KNOWN_VOICES, FakeElevenLabs

pytestmark = pytest.mark.browser

GEORGE, RACHEL, SARAH, ADAM = KNOWN_VOICES  # George is the agent's own voice (ELEVENLABS_VOICE_ID)


@pytest.fixture(scope="module")
def app_settings(fake_vendor: FakeElevenLabs) -> dict[str, str]:
    return {"VOICE_PREVIEW_ORIGINS": fake_vendor.url}


@pytest.fixture(scope="module", autouse=True)
def _agent_offers_voices(app: servers.App) -> None:
    offered = [RACHEL, SARAH, ADAM]
    app.manage("shell", "-c", f"from chat.models import Agent; Agent.objects.update(user_voice_ids={offered!r})")


@pytest.fixture
def signed_in(browser: Browser, app: servers.App, request: pytest.FixtureRequest) -> Iterator[BrowserContext]:
    size = cast(ViewportSize, getattr(request, "param", {"width": 1200, "height": 800}))
    context = browser.new_context(viewport=size)
    name, value = app.session_cookie(f"voices-{request.node.name[-40:]}").split("=", 1)
    context.add_cookies([{"name": name, "value": value, "url": app.url}])
    context.set_default_timeout(20000)
    errors: list[str] = []
    context.on("page", lambda page: page.on("pageerror", lambda error: errors.append(str(error))))
    yield context
    context.close()
    assert not errors, f"the page threw: {errors}"


def open_new(context: BrowserContext, app: servers.App, origins: set[str]) -> Page:
    """A new conversation, its greeting heard (in the agent's own voice, before any pick)."""
    page = context.new_page()
    page.on("request", lambda r: origins.add(f"{urlsplit(r.url).scheme}://{urlsplit(r.url).netloc}"))
    page.goto(app.url + "/")
    expect(page.get_by_role("status")).to_have_text("Connected")
    expect(page.get_by_role("article", name="Assistant's greeting")).to_be_visible()
    wait_until(lambda: player(page)["state"] == "idle" and player(page)["samplesPlayed"] > 0, timeout=30)
    return page


def voices_heard(page: Page, fake: FakeElevenLabs, text: str) -> set[str]:
    """Send `text`, stop its reply once it is heard, and return the voices its speech was asked for in."""
    fake.reset()
    played = player(page)["samplesPlayed"]
    send(page, text)
    # A few seconds of it: a reply stopped sooner keeps little text (only what was heard is kept).
    wait_until(lambda: player(page)["samplesPlayed"] > played + 3 * 24000, timeout=30, what="the reply to be heard")
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.locator(".message.assistant").last).not_to_have_attribute("data-status", "streaming")
    return {r.voice_id for r in fake.tts_requests()}


def stored_voice(page: Page) -> str:
    return page.evaluate(f"fetch('/api/conversations/{conversation_id(page)}/').then(r => r.json())")["voice_id"]


def test_it_speaks_in_the_picked_voice_previews_it_from_our_origin_and_keeps_it_after_a_reload(
    signed_in: BrowserContext, app: servers.App, fake_vendor: FakeElevenLabs
) -> None:
    origins: set[str] = set()
    page = open_new(signed_in, app, origins)
    voice = page.get_by_role("combobox", name="Voice")
    expect(voice).to_have_value(GEORGE)
    expect(voice.locator("option")).to_have_text(
        [
            "George (agent's voice) · premade · en",
            "Rachel · premade · en",
            "Sarah · premade · en",
            "Adam · premade · en",
        ]
    )

    # A new conversation: the pick goes on the open socket and is stored when the first message creates it.
    voice.select_option(RACHEL)
    assert voices_heard(page, fake_vendor, "Say something in the voice I picked.") == {RACHEL}
    assert stored_voice(page) == RACHEL

    # Now it exists: a pick is a PATCH, and the next reply on the same socket follows it.
    with page.expect_response(lambda r: r.request.method == "PATCH") as patched:
        voice.select_option(SARAH)
    assert patched.value.status == 200
    expect(voice).not_to_have_attribute("aria-busy", "true")
    assert voices_heard(page, fake_vendor, "And now in the other one.") == {SARAH}

    # The preview of the chosen voice, from our server only; it stops whatever else was playing.
    preview = page.get_by_role("button", name="Preview Sarah")
    with page.expect_response(re.compile(rf"/api/agents/[0-9a-f-]+/voices/{SARAH}/preview/$")) as fetched:
        preview.click()
    assert fetched.value.status == 200
    audio = page.locator("audio.voice-preview-audio")
    wait_until(lambda: audio.evaluate("a => a.currentTime") > 0.1, what="the preview to play")
    stop = page.get_by_role("button", name="Stop the preview of Sarah")
    expect(stop).to_have_attribute("data-state", "playing")
    assert player(page)["state"] in ("idle", "locked")  # nothing else sounds meanwhile
    page.screenshot(path=str(servers.ROOT / "docs" / "screenshot-voice-picker.png"))
    stop.click()
    expect(page.get_by_role("button", name="Preview Sarah")).to_have_attribute("data-state", "idle")
    assert audio.evaluate("a => a.paused")
    assert origins == {app.url}  # the vendor's API and file host are the server's business only
    assert fake_vendor.preview_requests and "xi-api-key" not in fake_vendor.preview_requests[-1]

    page.reload()
    expect(page.get_by_role("status")).to_have_text("Connected")
    expect(page.get_by_role("combobox", name="Voice")).to_have_value(SARAH)


def test_it_says_why_a_preview_did_not_play(
    signed_in: BrowserContext, app: servers.App, fake_vendor: FakeElevenLabs
) -> None:
    origins: set[str] = set()
    page = open_new(signed_in, app, origins)
    page.get_by_role("combobox", name="Voice").select_option(ADAM)
    known = fake_vendor.voices
    fake_vendor.voices = tuple(v for v in known if v != ADAM)  # the file host lost the sample: our server says 502
    try:
        page.get_by_role("button", name="Preview Adam").click()
        notice = page.locator(".notice", has_text="Adam")
        expect(notice).to_contain_text("The preview of Adam could not be fetched from the voice service.")
    finally:
        fake_vendor.voices = known
    expect(page.get_by_role("button", name="Preview Adam")).to_have_attribute("data-state", "idle")


@pytest.mark.parametrize("signed_in", [{"width": 390, "height": 760}], indirect=True)
def test_it_picks_a_voice_with_the_keyboard_on_a_phone(
    signed_in: BrowserContext, app: servers.App, fake_vendor: FakeElevenLabs
) -> None:
    origins: set[str] = set()
    page = open_new(signed_in, app, origins)
    voice = page.get_by_role("combobox", name="Voice")
    expect(voice).to_be_visible()
    box = voice.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390
    voice.focus()
    page.keyboard.press("ArrowDown")  # a closed select steps to the next voice
    expect(voice).to_have_value(RACHEL)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Preview Rachel"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing sticks out
    assert voices_heard(page, fake_vendor, "Typed on a phone, spoken by Rachel.") == {RACHEL}
    page.screenshot(path=str(servers.ROOT / "docs" / "screenshot-voice-picker-phone.png"))
