"""Fixtures for the browser tests: a real Daphne with the demo LLM and the loopback fake ElevenLabs, and
Debian's headless Chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests import servers
from tests.fakes.elevenlabs import FakeElevenLabs

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Without Chromium the browser tests skip locally, but on CI a missing browser is a failure.
    if CHROMIUM.exists() or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason="Debian's chromium is not installed (apt-get install chromium)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def fake_vendor() -> Iterator[FakeElevenLabs]:
    # Audio paced at real time, like the vendor: underruns would show if the player could not keep up.
    fake = FakeElevenLabs.start_in_thread(first_byte_ms=50, realtime=True)
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def app_settings() -> dict[str, str]:
    """Settings a test module gives its app on top of the defaults below (limits, for instance)."""
    return {}


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, fake_vendor: FakeElevenLabs, app_settings: dict[str, str]
) -> Iterator[servers.App]:
    settings = {
        "TTS_BACKEND": "elevenlabs",
        "ELEVENLABS_API_KEY": fake_vendor.api_key,
        "ELEVENLABS_BASE_URL": fake_vendor.url,
        "DEMO_LLM_TOKENS_PER_SECOND": "200",
        **app_settings,
    }
    with servers.daphne_app(tmp_path_factory.mktemp("browser"), **settings) as app:
        yield app


# Module scope, not session: Playwright's sync API keeps an event loop of its own running while it is
# open, and the asyncio tests that run after this directory need theirs.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is required on CI for the browser tests (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

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
    """One signed-in user's tab, shared by the module's tests in order (they build on each other)."""
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"the page threw: {errors}"  # an uncaught error in the page fails the module
