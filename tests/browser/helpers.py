"""What the browser tests do to a page and read from it (the page's counters: frontend/src/counters.ts)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Locator, Page, expect

from tests import servers

ARTIFACTS = servers.ROOT / "artifacts"
PASSWORD = "a-long-passphrase-1"


def player(page: Page) -> dict[str, Any]:
    return page.evaluate("() => ({...window.__voicechat.player})")


def conversation_id(page: Page) -> str:
    return page.evaluate("window.__voicechat.connection.conversationId")


def send(page: Page, text: str) -> None:
    page.get_by_label("Message").fill(text)
    page.get_by_label("Message").press("Enter")


def reply_to(page: Page, text: str, *, played_out: bool = True) -> Locator:
    """Send `text` and wait for its reply to be complete (and, unless told not to, to have played out)."""
    asked = page.locator(".message.user")
    before = asked.count()
    send(page, text)
    expect(asked).to_have_count(before + 1)
    # The bubble right after the user's message (a greeting that arrives meanwhile sits before it).
    reply = asked.nth(before).locator("xpath=following-sibling::article[1]")
    expect(reply).to_have_class(re.compile(r"\bassistant\b"))
    expect(reply).to_have_attribute("data-status", "complete", timeout=30000)
    if played_out:
        wait_until(lambda: player(page)["state"] == "idle", timeout=30, what="the reply to play out")
    return page.locator(f'.message[data-message-id="{reply.get_attribute("data-message-id")}"]')


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


def record_activity(page: Page) -> None:
    """Record every change of the toolbar's indicator with the samples played at that moment."""
    page.evaluate(
        """() => {
          const read = () => {
            const activity = document.querySelector('.activity');
            return {
              voice: activity.dataset.voice ?? null,
              writing: activity.dataset.writing === 'true',
              played: window.__voicechat.player.samplesPlayed,
            };
          };
          window.__activity = [read()];
          window.__activityObserver?.disconnect();
          window.__activityObserver = new MutationObserver(() => {
            const now = read();
            const last = window.__activity[window.__activity.length - 1];
            if (now.voice !== last.voice || now.writing !== last.writing) window.__activity.push(now);
          });
          const toolbar = document.querySelector('.toolbar');
          window.__activityObserver.observe(toolbar, {attributes: true, subtree: true, childList: true});
        }"""
    )
