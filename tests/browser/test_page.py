"""The chat page's first screen, on-demand speech and small screens, in headless Chromium against Daphne.

Each test signs in a user of its own (a fresh app per module), so the greeting's one-time synthesis is
seen from the start.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect

from tests import servers
from tests.browser.helpers import ARTIFACTS, conversation_id, player, record_activity, reply_to, send, wait_until
from tests.fakes.elevenlabs import FakeElevenLabs

pytestmark = pytest.mark.browser


@pytest.fixture
def signed_in(browser: Browser, app: servers.App, request: pytest.FixtureRequest) -> Iterator[BrowserContext]:
    """A new browser profile signed in as a user of its own, at desktop size unless a test says otherwise."""
    size = cast(ViewportSize, getattr(request, "param", {"width": 1200, "height": 800}))
    context = browser.new_context(viewport=size)
    name, value = app.session_cookie(f"user-{request.node.name[-40:]}").split("=", 1)
    context.add_cookies([{"name": name, "value": value, "url": app.url}])
    context.set_default_timeout(20000)
    yield context
    context.close()


def vendor_texts(fake_vendor: FakeElevenLabs) -> list[str]:
    return [str(r.body.get("text", "")) for r in fake_vendor.tts_requests()]


def open_chat(context: BrowserContext, app: servers.App, path: str = "/") -> Page:
    page = context.new_page()
    page.goto(app.url + path)
    expect(page.get_by_role("status")).to_have_text("Connected")
    return page


def test_it_greets_a_new_conversation_aloud_and_synthesises_the_greeting_once(
    signed_in: BrowserContext, app: servers.App, fake_vendor: FakeElevenLabs
) -> None:
    page = open_chat(signed_in, app)
    greeting = page.get_by_role("article", name="Assistant's greeting")
    expect(greeting).to_contain_text("Hi!")
    expect(page.locator(".message")).to_have_count(1)  # the greeting is the first bubble
    wait_until(lambda: player(page)["samplesPlayed"] > 0, what="the greeting to be heard")
    wait_until(lambda: player(page)["state"] == "idle", timeout=30, what="the greeting to play out")
    expect(greeting.get_by_role("button", name="Replay this reply")).to_be_visible()
    said = [t for t in vendor_texts(fake_vendor) if "voice assistant" in t]
    assert said, "the greeting was synthesised"
    page.screenshot(path=str(servers.ROOT / "docs" / "screenshot-greeting.png"))

    again = signed_in.new_page()  # another new conversation: the stored greeting plays, nothing is billed
    again.goto(app.url + "/")
    expect(again.get_by_role("article", name="Assistant's greeting")).to_be_visible()
    wait_until(lambda: player(again)["samplesPlayed"] > 0, what="the greeting to be heard again")
    assert [t for t in vendor_texts(fake_vendor) if "voice assistant" in t] == said


def test_it_speaks_a_reply_on_demand_once_and_replays_it_from_storage(
    signed_in: BrowserContext, app: servers.App, fake_vendor: FakeElevenLabs
) -> None:
    page = open_chat(signed_in, app)
    page.get_by_label("Auto-play").uncheck()
    billed = len(fake_vendor.tts_requests())
    reply = reply_to(page, "Say this only when I ask.", played_out=False)
    page.wait_for_timeout(300)
    assert len(fake_vendor.tts_requests()) == billed  # auto-play off: no speech was made
    assert player(page)["state"] in ("idle", "locked")

    record_activity(page)
    reply.get_by_role("button", name="Speak this reply").click()
    wait_until(lambda: player(page)["samplesPlayed"] > player(page)["pcmRate"] // 2, what="the reply to be spoken")
    wait_until(lambda: player(page)["state"] == "idle", timeout=40, what="the reply to play out")
    made = len(fake_vendor.tts_requests())
    assert made > billed
    voices = [c["voice"] for c in page.evaluate("window.__activity")]
    assert voices.index("waiting") < voices.index("speaking")  # honest while the voice is made
    expect(reply.get_by_role("button", name="Replay this reply")).to_be_visible()

    played = player(page)["samplesPlayed"]
    reply.get_by_role("button", name="Replay this reply").click()  # from storage now
    wait_until(lambda: player(page)["samplesPlayed"] > played + player(page)["pcmRate"] // 2, what="the replay")
    page.get_by_role("button", name="Stop").click()
    assert len(fake_vendor.tts_requests()) == made  # billed once
    page.get_by_label("Auto-play").check()


def test_it_grows_the_composer_and_says_why_send_is_off(signed_in: BrowserContext, app: servers.App) -> None:
    page = open_chat(signed_in, app)
    box = page.get_by_label("Message")
    one_line = box.bounding_box()
    assert one_line is not None
    box.fill("first line\nsecond line\nthird line")
    grown = box.bounding_box()
    assert grown is not None and grown["height"] > one_line["height"] * 2
    assert grown["width"] == one_line["width"]
    box.fill("\n".join(f"line {n}" for n in range(60)))
    tallest = box.bounding_box()
    assert tallest is not None and tallest["height"] <= 800 * 0.4 + 1  # grows to a limit, then scrolls
    assert box.evaluate("el => el.scrollHeight > el.clientHeight")

    limit = page.evaluate("JSON.parse(document.getElementById('voicechat-config').textContent).max_message_chars")
    box.fill("x" * (limit + 7))
    expect(page.get_by_role("button", name="Send")).to_be_disabled()
    expect(page.locator("#composer-why")).to_have_text("Too long by 7 characters: shorten it to send.")
    expect(box).to_have_attribute("aria-invalid", "true")
    box.press("Enter")
    expect(box).to_have_value("x" * (limit + 7))  # nothing typed is lost
    box.fill("short again")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(page.locator("#composer-why")).to_have_text("Enter sends · Shift+Enter adds a line")


@pytest.mark.parametrize("signed_in", [{"width": 390, "height": 760}], indirect=True)
def test_it_makes_the_conversation_list_a_drawer_on_a_phone(signed_in: BrowserContext, app: servers.App) -> None:
    page = open_chat(signed_in, app)
    greeting = page.get_by_role("article", name="Assistant's greeting")
    expect(greeting.get_by_role("button", name="Replay this reply")).to_be_visible()
    wait_until(lambda: player(page)["state"] == "idle", timeout=30, what="the greeting to play out")
    page.get_by_label("Message").fill("A conversation typed on a phone.")
    page.keyboard.press("Tab")  # keyboard reachable: from the message to its Send button
    assert page.evaluate("document.activeElement.textContent") == "Send"
    reply_to(page, "A conversation typed on a phone.", played_out=False)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing sticks out, not even a long name
    sidebar = page.get_by_role("complementary", name="Conversations")
    expect(sidebar).to_be_hidden()  # the chat gets the whole screen
    transcript = page.locator(".transcript").bounding_box()
    assert transcript is not None and transcript["height"] > 760 * 0.6
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(servers.ROOT / "docs" / "screenshot-phone.png"))

    toggle = page.get_by_role("button", name="Conversations")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(sidebar).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    sidebar.evaluate("el => Promise.all(el.getAnimations().map((a) => a.finished))")  # slid in, for the picture
    page.screenshot(path=str(servers.ROOT / "docs" / "screenshot-drawer.png"))
    sidebar.get_by_role("button", name="New conversation").press("Escape")
    expect(sidebar).to_be_hidden()

    toggle.click()
    sidebar.get_by_role("link", name="A conversation typed on a phone.").click()  # choosing closes it
    expect(sidebar).to_be_hidden()
    expect(page.locator(".message.user .body")).to_have_text(["A conversation typed on a phone."])


SAMPLE_LIT_WORDS = """async () => {
  const out = [];
  for (let i = 0; i < 30; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const lit = document.querySelector('.w.now');
    out.push({lit: lit ? Number(lit.dataset.w) : null, heard: window.__voicechat.player.turnPlayedMs});
  }
  return out;
}"""


def assert_in_step(samples: list[dict[str, Any]], words: list[list[int]]) -> None:
    """The lit word moves forwards with the audio and is the one being heard (within the ~40 ms reports)."""
    lit = [s["lit"] for s in samples if s["lit"] is not None]
    assert len(set(lit)) > 5, samples
    assert lit == sorted(lit), samples
    for sample in samples:
        if sample["lit"] is not None:
            start, end = words[sample["lit"]][2], words[sample["lit"]][3]
            assert start - 150 <= sample["heard"] <= end + 400, (sample, start, end)


def test_it_lights_the_word_being_heard_live_and_on_replay_and_seeks_to_a_clicked_word(
    signed_in: BrowserContext, app: servers.App
) -> None:
    page = open_chat(signed_in, app)
    expect(
        page.get_by_role("article", name="Assistant's greeting").get_by_role("button", name="Replay this reply")
    ).to_be_visible()
    wait_until(lambda: player(page)["state"] == "idle", timeout=30, what="the greeting to play out")
    send(page, "Light up my words.")
    live = page.evaluate(SAMPLE_LIT_WORDS)
    reply = page.locator(".message.assistant").last
    expect(reply).to_have_attribute("data-status", "complete", timeout=30000)
    reply_id = reply.get_attribute("data-message-id")
    stored = page.request.get(f"{app.url}/api/conversations/{conversation_id(page)}/messages/").json()["results"]
    words = next(m for m in stored if m["id"] == reply_id)["words"]
    assert len(words) > 20
    assert_in_step(live, words)
    wait_until(lambda: player(page)["state"] == "idle", timeout=40, what="the reply to play out")

    page.reload()  # the stored reply, its timings from the API
    reply = page.locator(f'.message[data-message-id="{reply_id}"]')
    expect(reply.locator(".w").first).to_be_visible()
    reply.get_by_role("button", name="Replay this reply").click()
    assert_in_step(page.evaluate(SAMPLE_LIT_WORDS), words)
    expect(reply.locator(".w.now").first).to_be_visible()
    reply.screenshot(path=str(servers.ROOT / "docs" / "screenshot-words.png"))
    page.get_by_role("button", name="Stop").click()

    target = reply.locator(".w").nth(reply.locator(".w").count() * 2 // 3)
    index = int(target.get_attribute("data-w") or 0)
    target.click()  # seeks: plays from that word
    expect(reply.get_by_role("button", name="Pause this reply")).to_be_visible()
    page.wait_for_timeout(400)
    now = page.evaluate("Number(document.querySelector('.w.now')?.dataset.w ?? -1)")
    assert index <= now <= index + 4, (index, now)
    page.get_by_role("button", name="Stop").click()
