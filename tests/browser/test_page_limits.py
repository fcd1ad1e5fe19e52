"""The chat page at the limits, in headless Chromium against Daphne: the speech allowance, too many tabs,
and a session that ends while the page is open. The app runs with small limits so they are reached."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, WebSocket, expect

from tests import servers
from tests.browser.helpers import reply_to, wait_until

pytestmark = pytest.mark.browser

DAILY_CHARS = 600
SOCKETS = 2


@pytest.fixture(scope="module")
def app_settings() -> dict[str, str]:
    return {"SPEECH_DAILY_CHARS": str(DAILY_CHARS), "MAX_SOCKETS_PER_USER": str(SOCKETS)}


@pytest.fixture
def signed_in(browser: Browser, app: servers.App, request: pytest.FixtureRequest) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    name, value = app.session_cookie(f"limits-{request.node.name[-40:]}").split("=", 1)
    context.add_cookies([{"name": name, "value": value, "url": app.url}])
    context.set_default_timeout(20000)
    yield context
    context.close()


def open_chat(context: BrowserContext, app: servers.App, sockets: list[WebSocket] | None = None) -> Page:
    page = context.new_page()
    if sockets is not None:
        page.on("websocket", lambda ws: sockets.append(ws))
    page.goto(app.url + "/")
    expect(page.get_by_role("status")).to_have_text("Connected")
    return page


def remaining(page: Page) -> int:
    return int(page.locator(".budget").get_attribute("data-remaining") or -1)


def test_it_shows_the_speech_allowance_and_says_when_it_is_used_up(signed_in: BrowserContext, app: servers.App) -> None:
    page = open_chat(signed_in, app)
    budget = page.locator(".budget")
    expect(budget).to_be_visible()
    expect(budget).to_contain_text("chars left")
    assert (budget.get_attribute("title") or "").startswith(f"{remaining(page):,} of {DAILY_CHARS:,} characters")
    before = remaining(page)
    reply_to(page, "Speak one reply, please.", played_out=False)
    wait_until(lambda: remaining(page) < before, what="the allowance to go down after a spoken reply")
    for _ in range(6):  # each reply bills a few hundred characters
        if page.locator('[role=alert][data-code="budget_exhausted"]').count():
            break
        reply_to(page, "And another one.", played_out=False)
    notice = page.locator('[role=alert][data-code="budget_exhausted"]')
    expect(notice).to_contain_text("Your speech allowance is used up")
    expect(notice).to_contain_text("Replies still arrive as text")
    expect(budget).to_contain_text("Speech allowance used up")
    reply = reply_to(page, "Still there?", played_out=False)
    expect(reply).to_contain_text("Good question")  # the text still arrives


def test_it_offers_to_reconnect_when_too_many_tabs_are_open_instead_of_looping(
    signed_in: BrowserContext, app: servers.App
) -> None:
    sockets: list[WebSocket] = []
    first = open_chat(signed_in, app, sockets)
    others = [open_chat(signed_in, app) for _ in range(SOCKETS)]  # one more than allowed: the oldest goes
    notice = first.locator('[role=alert][data-code="too_many_connections"]')
    expect(notice).to_contain_text("open in too many tabs")
    expect(first.get_by_role("status")).to_have_text("Disconnected")
    first.wait_for_timeout(3000)
    assert len(sockets) == 1  # it did not reconnect by itself (that would close another tab, in a loop)
    notice.get_by_role("button", name="Reconnect").click()
    expect(first.get_by_role("status")).to_have_text("Connected")
    assert len(sockets) == 2
    expect(notice).to_have_count(0)
    expect(others[0].locator('[role=alert][data-code="too_many_connections"]')).to_be_visible()  # now the oldest


def test_it_goes_to_the_login_page_when_the_session_ends_elsewhere(signed_in: BrowserContext, app: servers.App) -> None:
    page = open_chat(signed_in, app)
    other = signed_in.new_page()
    other.goto(app.url + "/accounts/password_change/")
    other.get_by_role("button", name="Log out").click()  # the same session, logged out in another tab
    expect(page.locator('[role=alert][data-code="session_ended"]')).to_contain_text("signed out")
    expect(page).to_have_url(f"{app.url}/accounts/login/?next=/", timeout=10000)
