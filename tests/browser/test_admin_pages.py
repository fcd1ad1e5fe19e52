"""The admin and the plain pages in a real Chromium at a laptop's 1366 px: nothing overflows, nothing
is missing (no 404 for an icon), nothing in a message runs. Saves the admin screenshots in docs/."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Dialog, Page, Response, ViewportSize, expect

from tests import servers

pytestmark = pytest.mark.browser

LAPTOP: ViewportSize = {"width": 1366, "height": 768}
ADMIN_PASSWORD = "a-long-passphrase-1"
SEED = (
    "from django.contrib.auth import get_user_model\n"
    "from chat.models import Agent\n"
    "from tests.admin_data import review_conversation\n"
    "User = get_user_model()\n"
    f"User.objects.create_superuser('root', password={ADMIN_PASSWORD!r})\n"
    f"alice = User.objects.create_user('alice', password={ADMIN_PASSWORD!r})\n"
    "print(review_conversation(owner=alice, agent=Agent.objects.get(is_default=True)).id)\n"
)


@pytest.fixture(scope="module")
def conversation_id(app: servers.App) -> str:
    return app.manage("shell", "-c", SEED).strip().splitlines()[-1]


@pytest.fixture(scope="module")
def laptop(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.set_default_timeout(20000)
    yield page
    context.close()


class Watch:
    """What the page asked for that failed, and any dialog a message's text managed to open."""

    def __init__(self, page: Page) -> None:
        self.failures: list[str] = []
        self.dialogs: list[str] = []
        page.on("response", self._response)
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.failures.append(f"{response.status} {response.url}")


def overflow_px(page: Page) -> int:
    """How far the widest scrolling box (the page, or a table's own scroller) is wider than its view."""
    return int(
        page.evaluate(
            """() => Math.max(...[document.documentElement, ...document.querySelectorAll('.results, .module')]
                 .map(e => e.scrollWidth - e.clientWidth))"""
        )
    )


def test_it_logs_in_to_the_admin_without_a_missing_icon(laptop: Page, app: servers.App, conversation_id: str) -> None:
    watch = Watch(laptop)
    laptop.goto(app.url + "/admin/")
    laptop.locator("#id_username").fill("root")
    laptop.locator("#id_password").fill(ADMIN_PASSWORD)
    laptop.get_by_role("button", name="Log in").click()
    expect(laptop.get_by_role("link", name="Messages").first).to_be_visible()
    laptop.wait_for_load_state("networkidle")
    assert watch.failures == []
    icon = laptop.locator('link[rel="icon"]').get_attribute("href")
    assert icon == "/static/site/favicon.svg"


def test_it_shows_the_conversation_as_a_readable_transcript(
    laptop: Page, app: servers.App, conversation_id: str
) -> None:
    watch = Watch(laptop)
    laptop.goto(f"{app.url}/admin/chat/conversation/{conversation_id}/change/")
    turns = laptop.locator(".vc-turn")
    expect(turns).to_have_count(6)
    expect(turns.nth(1).locator(".vc-turn-heading")).to_contain_text("Assistant")
    expect(turns.nth(1).locator("h3")).to_have_text("Streaming speech")  # markdown, rendered
    expect(turns.nth(1).locator("pre code")).to_contain_text("if chunk < limit:")
    expect(turns.nth(1).locator(".vc-turn-details")).to_contain_text("LLM 212 ms · first chunk 268 ms")
    expect(turns.nth(2)).to_contain_text("<script>alert('x')</script>")  # shown as typed, not run
    expect(turns.nth(5).locator(".vc-badge")).to_have_text("Failed")
    assert turns.nth(0).locator("audio, .vc-turn-details").count() == 0
    # The details line of a reply fits on one line of the page: no timings wrapped down the screen.
    line = turns.nth(1).locator(".vc-line").first
    assert line.bounding_box()["height"] < 24  # type: ignore[index]
    laptop.wait_for_load_state("networkidle")
    assert overflow_px(laptop) <= 0
    assert (watch.failures, watch.dialogs) == ([], [])
    laptop.screenshot(path=str(servers.ROOT / "docs" / "admin-conversation.png"), full_page=True)


def test_it_lists_messages_newest_first_within_a_laptop_screen(laptop: Page, app: servers.App) -> None:
    watch = Watch(laptop)
    laptop.goto(f"{app.url}/admin/chat/message/")
    rows = laptop.locator("#result_list tbody tr")
    expect(rows).to_have_count(6)
    expect(rows.first.locator(".field-status_badge")).to_have_text("Failed")  # the last message, on top
    preview = rows.nth(3).locator(".vc-preview").first
    assert preview.get_attribute("title", timeout=1000).startswith("What does <script>")  # type: ignore[union-attr]
    for row in range(6):
        assert rows.nth(row).bounding_box()["height"] < 40  # type: ignore[index]
    assert overflow_px(laptop) <= 0
    assert (watch.failures, watch.dialogs) == ([], [])
    laptop.screenshot(path=str(servers.ROOT / "docs" / "admin-messages.png"))


def test_it_shows_sign_up_errors_in_red(browser: Browser, app: servers.App) -> None:
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    watch = Watch(page)
    page.goto(app.url + "/accounts/signup/")
    page.locator("#id_username").fill("bob")
    page.locator("#id_password1").fill("a-long-passphrase-1")
    page.locator("#id_password2").fill("a-different-passphrase")
    page.get_by_role("button", name="Sign up").click()
    error = page.locator(".errorlist").first
    expect(error).to_be_visible()
    # The answer's DOM can be read before its stylesheet applies (it did under CI load): wait for the colour.
    expect(error).to_have_css("color", "rgb(176, 0, 32)")
    page.wait_for_load_state("load")
    assert [f for f in watch.failures if "/accounts/signup/" not in f] == []
    context.close()
