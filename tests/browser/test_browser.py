"""The chat page in a real headless Chromium against a real Daphne, the demo LLM and the fake ElevenLabs."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import servers
from tests.fakes.elevenlabs import FakeElevenLabs

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = servers.ROOT / "artifacts"
pytestmark = pytest.mark.browser

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        raise RuntimeError("/usr/bin/chromium is required on CI (apt-get install chromium)")
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeElevenLabs]:
    fake = FakeElevenLabs.start_in_thread(first_byte_ms=50, realtime=True)
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, fake: FakeElevenLabs) -> Iterator[servers.App]:
    overrides = {"TTS_BACKEND": "elevenlabs", "ELEVENLABS_API_KEY": fake.api_key, "ELEVENLABS_BASE_URL": fake.url}
    with servers.daphne_app(tmp_path_factory.mktemp("browser"), DEMO_LLM_TOKENS_PER_SECOND="60", **overrides) as app:
        yield app


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--autoplay-policy=no-user-gesture-required", "--no-sandbox"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser: Browser, app: servers.App) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20000)
    yield page
    context.close()


def player(page: Page) -> dict[str, Any]:
    return page.evaluate("() => ({...window.__voicechat.player})")


def send(page: Page, text: str) -> None:
    page.get_by_label("Message").fill(text)
    page.get_by_label("Message").press("Enter")


def wait_until(predicate: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def test_it_signs_up_speaks_a_reply_and_records_what_was_heard(page: Page, app: servers.App) -> None:
    page.goto(app.url + "/accounts/signup/")
    page.locator("#id_username").fill("walter")
    page.locator("#id_password1").fill("a-long-passphrase-1")
    page.locator("#id_password2").fill("a-long-passphrase-1")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("status")).to_have_text("Connected")

    send(page, "Tell me about streaming speech.")
    reply = page.locator(".message.assistant").last
    expect(reply).to_contain_text("Good question")  # the text streams in
    wait_until(lambda: player(page)["samplesPlayed"] > 0)
    expect(reply).to_have_attribute("data-status", "complete", timeout=30000)
    expect(page).to_have_url(f"{app.url}/c/{page.evaluate('window.__voicechat.conversationId()')}/")
    wait_until(lambda: player(page)["state"] == "idle", timeout=30)
    assert player(page)["underruns"] == 0

    conversation_id = page.evaluate("window.__voicechat.conversationId()")
    url = f"/api/conversations/{conversation_id}/messages/"

    def reported() -> bool:
        messages = page.evaluate(f"fetch('{url}').then(r => r.json())")["results"]
        return messages[-1]["client_first_audible_ms"] is not None

    wait_until(reported)
    assert "```" not in reply.inner_text()  # the code block is rendered, not shown as markdown
    expect(reply.locator("pre code")).to_have_count(1)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "screenshot.png"))
    page.screenshot(path=str(servers.ROOT / "docs" / "screenshot.png"))


def test_it_stops_speaking_at_once_and_marks_the_reply_interrupted(page: Page) -> None:
    send(page, "Please explain it once more in detail.")
    wait_until(lambda: player(page)["samplesPlayed"] > 0 and player(page)["state"] == "playing")
    page.get_by_role("button", name="Stop").click()
    time.sleep(0.1)
    after_100_ms = player(page)["samplesPlayed"]
    time.sleep(0.4)
    assert player(page)["samplesPlayed"] == after_100_ms  # silent within 100 ms of the click
    expect(page.locator(".message.assistant").last).to_have_attribute("data-status", "interrupted")
    expect(page.locator(".message.assistant").last).to_contain_text("interrupted")


def test_it_shows_history_after_a_reload_and_replays_stored_audio(page: Page) -> None:
    page.reload()
    expect(page.get_by_role("status")).to_have_text("Connected")
    expect(page.locator(".message.user")).to_have_count(2)
    expect(page.locator(".message.assistant").first).to_have_attribute("data-status", "complete")
    before = player(page)["samplesPlayed"]
    page.locator(".message.assistant").first.get_by_role("button", name="Replay this reply").click()
    wait_until(lambda: player(page)["samplesPlayed"] > before + 24000)


def test_it_shows_not_found_for_another_users_conversation(browser: Browser, page: Page, app: servers.App) -> None:
    conversation_id = page.evaluate("window.__voicechat.conversationId()")
    cookie = app.session_cookie("eve")
    name, value = cookie.split("=", 1)
    context = browser.new_context()
    context.add_cookies([{"name": name, "value": value, "url": app.url}])
    intruder = context.new_page()
    response = intruder.goto(f"{app.url}/c/{conversation_id}/")
    assert response is not None and response.status == 404
    expect(intruder.get_by_role("heading", name="Not found")).to_be_visible()
    context.close()
