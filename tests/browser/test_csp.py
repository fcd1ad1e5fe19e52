"""The pages work under their Content-Security-Policy: no violation while a reply streams, plays and replays,
nor on the account and admin pages. Violations are caught in the page (`securitypolicyviolation`) and in
the console, so a blocked worklet, socket, style or script fails the test."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests import servers

pytestmark = pytest.mark.browser

RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push({directive: e.effectiveDirective, blocked: e.blockedURI, source: e.sourceFile, line: e.lineNumber});
});
"""


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    context.add_init_script(RECORD_VIOLATIONS)
    yield context
    context.close()


def watched(context: BrowserContext) -> tuple[Page, list[str]]:
    page = context.new_page()
    page.set_default_timeout(20000)
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if "Content Security Policy" in m.text else None)
    return page, console


def violations(page: Page) -> list[dict[str, Any]]:
    return list(page.evaluate("window.__csp"))


def log_in(context: BrowserContext, app: servers.App, cookie: str) -> None:
    name, value = cookie.split("=", 1)
    context.add_cookies([{"name": name, "value": value, "url": app.url}])


def test_it_sends_the_policies_and_the_chat_page_runs_under_them(context: BrowserContext, app: servers.App) -> None:
    log_in(context, app, app.session_cookie("cspuser"))
    page, console = watched(context)
    response = page.goto(app.url + "/")
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "'unsafe-inline'" not in policy
    assert "microphone=()" in response.headers["permissions-policy"]

    page.get_by_label("Message").fill("Tell me about streaming speech.")
    page.get_by_label("Message").press("Enter")
    expect(page.get_by_role("status")).to_have_text("Connected")  # the WebSocket: connect-src
    deadline = time.monotonic() + 30
    while page.evaluate("window.__voicechat.player.samplesPlayed") == 0:  # the AudioWorklet module: script-src
        assert time.monotonic() < deadline, "no audio played"
        time.sleep(0.05)
    replay = page.locator(".message.assistant").last.get_by_role("button", name="Replay this reply")
    expect(replay).to_be_enabled(timeout=40000)  # the stored WAV, fetched from the audio endpoint
    replay.click()
    time.sleep(0.5)
    page.reload()
    expect(page.locator(".message.assistant").last).to_contain_text("Good question")
    assert violations(page) == [] and console == []


def test_it_keeps_the_account_and_admin_pages_working_under_the_policy(
    context: BrowserContext, app: servers.App
) -> None:
    script = (
        "from django.contrib.auth import get_user_model; from tests.wsclient import session_cookie_for\n"
        "print(session_cookie_for(get_user_model().objects.create_superuser('cspadmin', password='x-long-pass-9')))"
    )
    log_in(context, app, app.manage("shell", "-c", script).strip().splitlines()[-1])
    page, console = watched(context)
    seen: list[dict[str, Any]] = []
    for path in (
        "/accounts/password_change/",
        "/admin/",
        "/admin/chat/agent/",
        "/admin/chat/agent/add/",
        "/admin/chat/conversation/",
        "/admin/chat/message/",
        "/admin/auth/user/",
    ):
        response = page.goto(app.url + path)
        assert response is not None and response.status == 200, path
        page.wait_for_load_state("networkidle")
        seen += violations(page)
    # The transcript with its audio players (media-src), from the conversation the test above had.
    page.goto(app.url + "/admin/chat/conversation/")
    conversation = page.locator("#result_list tbody a").first
    if conversation.count():
        conversation.click()
        expect(page.locator("audio").first).to_be_attached()
        page.wait_for_load_state("networkidle")
        seen += violations(page)
    assert seen == [] and console == []
