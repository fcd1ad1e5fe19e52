"""The chat page with an agent built on ElevenLabs Agents answering: the same page, protocol and history.

Daphne's default agent is switched to the ElevenLabs-agent backend, pointed at the loopback fake of the
vendor's agents platform; the browser never learns which backend answered.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests import servers
from tests.browser.helpers import messages, player, reply_to, wait_until
from tests.fakes.elevenlabs_agent import AGENTS, FakeElevenLabsAgents

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def fake_agents() -> Iterator[FakeElevenLabsAgents]:
    fake = FakeElevenLabsAgents.start_in_thread(first_response_ms=100, chunk_gap_ms=20)
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, fake_agents: FakeElevenLabsAgents) -> Iterator[servers.App]:
    settings = {
        "TTS_BACKEND": "elevenlabs",
        "ELEVENLABS_API_KEY": fake_agents.api_key,
        "ELEVENLABS_BASE_URL": fake_agents.url,
    }
    with servers.daphne_app(tmp_path_factory.mktemp("agent"), **settings) as app:
        app.manage(
            "shell",
            "-c",
            "from chat.models import Agent; Agent.objects.filter(is_default=True).update("
            f"backend='elevenlabs_agent', elevenlabs_agent_id={AGENTS[0].agent_id!r}, first_message='')",
        )
        yield app


def test_it_streams_and_speaks_an_elevenlabs_agents_reply_like_any_other(
    page: Page, app: servers.App, fake_agents: FakeElevenLabsAgents
) -> None:
    name, value = app.session_cookie("agnes").split("=", 1)
    page.context.add_cookies([{"name": name, "value": value, "url": app.url}])
    page.goto(app.url + "/")
    expect(page.get_by_role("status")).to_have_text("Connected")

    reply = reply_to(page, "Hello agent")
    expect(reply).to_contain_text("You said Hello agent. That is all I have to say about it.")
    heard = player(page)
    assert heard["samplesPlayed"] == heard["samplesQueued"] > 0  # the agent's audio played, all of it
    assert len(fake_agents.conversations) == 1  # one vendor call, opened by the server, not the browser

    stored = messages(page)
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[1]["status"] == "complete" and stored[1]["audio_url"]
    expect(reply.get_by_role("button", name="Replay this reply")).to_be_visible()
    wait_until(lambda: messages(page)[-1]["client_first_audible_ms"] is not None, what="the playback report")
