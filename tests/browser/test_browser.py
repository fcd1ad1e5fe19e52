"""The chat page in a real headless Chromium against a real Daphne, the demo LLM and the fake ElevenLabs.

The tests share one signed-in tab and run in order: sign up and hear a reply, stop one, send over one,
reload and replay, manage conversations, then check the page at phone width and another user's view.
The player's counters are read from `window.__voicechat.player` (frontend/src/hook.ts).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests import servers
from tests.fakes.elevenlabs import FakeElevenLabs

pytestmark = pytest.mark.browser

ARTIFACTS = servers.ROOT / "artifacts"
PASSWORD = "a-long-passphrase-1"


def player(page: Page) -> dict[str, Any]:
    return page.evaluate("() => ({...window.__voicechat.player})")


def conversation_id(page: Page) -> str:
    return page.evaluate("window.__voicechat.connection.conversationId")


def send(page: Page, text: str) -> None:
    page.get_by_label("Message").fill(text)
    page.get_by_label("Message").press("Enter")


def messages(page: Page) -> list[dict[str, Any]]:
    url = f"/api/conversations/{conversation_id(page)}/messages/?page_size=200"
    return page.evaluate(f"fetch('{url}').then(r => r.json())")["results"]


def wait_until(predicate: Callable[[], bool], timeout: float = 20, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def watch_reply_lengths(page: Page) -> None:
    """Record the length of the newest assistant message's text at every DOM change, to prove it streams."""
    page.evaluate(
        """() => {
          window.__lengths = [];
          new MutationObserver(() => {
            const replies = document.querySelectorAll('.message.assistant');
            const last = replies[replies.length - 1];
            if (last) window.__lengths.push(last.textContent.length);
          }).observe(document.body, {subtree: true, childList: true, characterData: true});
        }"""
    )


def test_it_signs_up_streams_and_speaks_a_reply_and_records_what_was_heard(page: Page, app: servers.App) -> None:
    page.goto(app.url + "/accounts/signup/")
    page.locator("#id_username").fill("walter")
    page.locator("#id_password1").fill(PASSWORD)
    page.locator("#id_password2").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("status")).to_have_text("Ready")  # a new conversation connects once you type
    assert player(page)["state"] == "locked"  # no AudioContext before a user gesture

    watch_reply_lengths(page)
    send(page, "Tell me about streaming speech.")
    expect(page.get_by_role("status")).to_have_text("Connected")
    reply = page.locator(".message.assistant").last
    expect(reply).to_contain_text("Good question")
    wait_until(lambda: player(page)["samplesPlayed"] > 0, what="audio to play")
    expect(reply).to_have_attribute("data-status", "complete", timeout=30000)
    lengths = page.evaluate("window.__lengths")
    assert len(set(lengths)) > 5 and lengths[0] < lengths[-1] / 4  # the text grew in many steps
    expect(page).to_have_url(f"{app.url}/c/{conversation_id(page)}/")

    wait_until(lambda: player(page)["state"] == "idle", timeout=30, what="the reply to play out")
    heard = player(page)
    assert heard["underruns"] == 0
    assert heard["samplesPlayed"] == heard["samplesQueued"] > heard["pcmRate"]  # over a second, all of it
    assert heard["firstAudibleMs"] is not None

    wait_until(lambda: messages(page)[-1]["client_first_audible_ms"] is not None, what="the playback_report")
    stored = messages(page)[-1]
    assert stored["client_underruns"] == 0
    assert abs(stored["client_first_audible_ms"] - heard["firstAudibleMs"]) <= 1
    assert "```" not in reply.inner_text() and "**" not in reply.inner_text()  # markdown rendered, not shown
    expect(reply.locator("pre code")).to_have_count(1)
    expect(reply.get_by_role("button", name="Replay this reply")).to_be_visible()
    expect(page.locator("[aria-live=polite]")).to_contain_text("Good question")  # announced to screen readers
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "screenshot.png"))
    page.screenshot(path=str(servers.ROOT / "docs" / "screenshot.png"))


def test_it_stops_speaking_within_100_ms_and_marks_the_reply_interrupted(page: Page) -> None:
    send(page, "Please explain it once more in detail.")
    wait_until(lambda: player(page)["state"] == "playing", what="playback")
    # Measured inside the page, so Playwright's own round trips do not blur the 100 ms.
    after = page.evaluate(
        """async () => {
          const p = window.__voicechat.player;
          const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
          document.querySelector('button.stop').click();
          await sleep(100);
          const at100 = {played: p.samplesPlayed, queued: p.samplesQueued, state: p.state};
          await sleep(500);
          return {at100, at600: {played: p.samplesPlayed, queued: p.samplesQueued, state: p.state}};
        }"""
    )
    assert after["at100"]["state"] == "idle"
    assert after["at600"]["played"] == after["at100"]["played"]  # silent from 100 ms on
    assert after["at600"]["queued"] == after["at100"]["queued"]  # late audio of the stopped turn is dropped
    reply = page.locator(".message.assistant").last
    expect(reply).to_have_attribute("data-status", "interrupted")
    expect(reply.locator(".badge")).to_have_text("interrupted")
    expect(page.get_by_role("button", name="Stop")).to_have_count(0)


def test_it_interrupts_a_running_reply_when_a_new_message_is_sent(page: Page) -> None:
    send(page, "Give me one more long answer, please.")
    wait_until(lambda: player(page)["state"] == "playing", what="playback")
    send(page, "Actually, a different question.")
    replies = page.locator(".message.assistant")
    expect(replies.nth(-2)).to_have_attribute("data-status", "interrupted")
    expect(replies.last).to_have_attribute("data-status", "complete", timeout=30000)
    wait_until(lambda: player(page)["state"] == "idle", timeout=30, what="the reply to play out")
    assert player(page)["turnUnderruns"] == 0


def test_it_shows_the_history_after_a_reload_and_replays_stored_audio(page: Page) -> None:
    page.get_by_label("Auto-play").uncheck()
    page.get_by_label("Volume").fill("0.5")
    page.reload()
    expect(page.get_by_role("status")).to_have_text("Connected")
    expect(page.get_by_label("Auto-play")).not_to_be_checked()  # remembered by this browser
    expect(page.get_by_label("Volume")).to_have_value("0.5")
    page.get_by_label("Auto-play").check()
    expect(page.locator(".message.user")).to_have_count(4)
    expect(page.locator(".message.assistant").first).to_have_attribute("data-status", "complete")
    expect(page.locator(".message.assistant").nth(1).locator(".badge")).to_have_text("interrupted")
    page.locator(".message.assistant").first.get_by_role("button", name="Replay this reply").click()
    wait_until(lambda: player(page)["samplesPlayed"] > player(page)["pcmRate"], what="the replay to play")
    page.get_by_role("button", name="Stop").click()
    wait_until(lambda: player(page)["state"] == "idle", timeout=1, what="the replay to stop")


def test_it_renames_and_deletes_conversations_from_the_sidebar(page: Page, app: servers.App) -> None:
    first = conversation_id(page)
    page.get_by_role("button", name="New conversation").click()
    expect(page).to_have_url(app.url + "/")
    send(page, "A second conversation.")
    expect(page.locator(".message.assistant").last).to_have_attribute("data-status", "complete", timeout=30000)
    second = conversation_id(page)
    sidebar = page.get_by_role("complementary", name="Conversations")
    expect(sidebar.get_by_role("link")).to_have_count(2)
    expect(sidebar.get_by_role("link").first).to_have_attribute("href", f"/c/{second}/")  # newest first

    sidebar.get_by_role("button", name="Rename “A second conversation.”").click()
    sidebar.get_by_label("New title").fill("Renamed inline")
    sidebar.get_by_label("New title").press("Enter")
    expect(sidebar.get_by_role("link", name="Renamed inline")).to_be_visible()

    page.go_back()  # the URL history follows the open conversation
    expect(page).to_have_url(f"{app.url}/c/{first}/")
    expect(page.locator(".message.user")).to_have_count(4)

    page.once("dialog", lambda dialog: dialog.accept())
    sidebar.get_by_role("button", name="Delete “Renamed inline”").click()
    expect(sidebar.get_by_role("link")).to_have_count(1)
    response = page.request.get(f"{app.url}/api/conversations/{second}/")
    assert response.status == 404


def test_it_fits_a_phone_screen(browser: Browser, page: Page) -> None:
    phone = browser.new_context(viewport={"width": 390, "height": 760}, storage_state=page.context.storage_state())
    tab = phone.new_page()
    tab.goto(page.url)
    expect(tab.get_by_role("status")).to_have_text("Connected")
    assert tab.evaluate("document.documentElement.scrollWidth") <= 390  # nothing sticks out sideways
    expect(tab.get_by_label("Message")).to_be_visible()
    expect(tab.get_by_role("button", name="Send")).to_be_visible()
    tab.get_by_label("Message").fill("typed on a phone")
    tab.keyboard.press("Tab")  # keyboard reachable: from the message to its Send button
    assert tab.evaluate("document.activeElement.textContent") == "Send"
    tab.screenshot(path=str(ARTIFACTS / "screenshot-phone.png"))
    phone.close()


def test_it_shows_a_vendor_error_as_a_dismissible_notice(page: Page, fake_vendor: FakeElevenLabs) -> None:
    fake_vendor.fail_always("quota_exceeded")
    try:
        before = page.locator(".message.assistant").count()
        send(page, "Will this be spoken?")
        reply = page.locator(".message.assistant").nth(before)
        expect(reply).to_have_attribute("data-status", "complete", timeout=30000)  # the text still arrives
    finally:
        fake_vendor.clear_faults()
    expect(reply.locator(".badge")).to_have_text("audio failed")
    notice = page.get_by_role("alert")
    expect(notice).to_have_count(1)
    expect(notice).to_have_attribute("data-code", "tts_quota_exceeded")
    notice.get_by_role("button", name="Dismiss this notice").click()
    expect(page.get_by_role("alert")).to_have_count(0)


def test_it_shows_not_found_for_another_users_conversation(browser: Browser, page: Page, app: servers.App) -> None:
    name, value = app.session_cookie("eve").split("=", 1)
    context = browser.new_context()
    context.add_cookies([{"name": name, "value": value, "url": app.url}])
    intruder = context.new_page()
    response = intruder.goto(f"{app.url}/c/{conversation_id(page)}/")
    assert response is not None and response.status == 404
    expect(intruder.get_by_role("heading", name="Not found")).to_be_visible()
    context.close()
