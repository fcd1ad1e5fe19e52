"""The unmodified `@elevenlabs/client` 1.25.0 in a real Chromium against a real Daphne.

The test plays the developer: a small web server of its own (another origin than voicechat) serves a
test page with the SDK's published browser bundle and a `/signed-url` route that asks voicechat for a
signed URL with the developer's API key. The page then runs `Conversation.startSession({signedUrl})`
in text-only and voice mode (Chromium's fake microphone), and the docs/sdk.md snippet as written.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tests import servers
from tests.browser.conftest import CHROMIUM
from tests.fakes.elevenlabs import FakeElevenLabs

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

CLIENT_BUNDLE = servers.ROOT / "frontend" / "node_modules" / "@elevenlabs" / "client" / "dist" / "lib.iife.js"
DOCS = servers.ROOT / "docs" / "sdk.md"

HARNESS = """<!doctype html><meta charset="utf-8"><title>SDK harness</title>
<script src="/client.js"></script>
<script>
// Everything the SDK reports through its own callbacks, for the test to read.
window.runSession = async (textOnly, agentId) => {
  const seen = {connected: null, messages: [], errors: [], modes: [], disconnect: null};
  seen.audioBytes = seen.microphoneChunks = 0;
  window.seen = seen;
  const {signed_url} = await fetch("/signed-url?agent_id=" + agentId).then((r) => r.json());
  let replied;
  const reply = new Promise((resolve) => { replied = resolve; });
  const conversation = await ElevenLabsClient.Conversation.startSession({
    signedUrl: signed_url,
    textOnly,
    onConnect: ({conversationId}) => { seen.connected = conversationId; },
    onMessage: ({source, message}) => {
      seen.messages.push([source, message]);
      if (source === "ai" && seen.messages.some(([from]) => from === "user")) replied();  // not the greeting
    },
    onAudio: (base64) => { seen.audioBytes += atob(base64).length; },
    onModeChange: ({mode}) => seen.modes.push(mode),
    onOutgoingEvent: (event) => { if ("user_audio_chunk" in event) seen.microphoneChunks += 1; },
    onError: (message) => seen.errors.push(String(message)),
    onDisconnect: (details) => { seen.disconnect = details.reason; },
  });
  window.conversation = conversation;
  conversation.sendUserMessage("Tell me about streaming speech.");
  await reply;
  return seen;
};
</script>"""


@dataclass
class DeveloperSite:
    url: str
    api_key: str
    agent_id: str  # the default agent, which greets a new conversation
    quiet_agent_id: str  # one without a first message: only the reply's audio is heard


@pytest.fixture(scope="module")
def developer_site(app: servers.App, fake_vendor: FakeElevenLabs) -> Iterator[DeveloperSite]:
    if not CLIENT_BUNDLE.exists():
        pytest.fail(f"{CLIENT_BUNDLE} is missing: run `npm ci` in frontend/ (it is a pinned devDependency)")
    script = (
        "from django.contrib.auth import get_user_model\n"
        "from chat.api_keys import api_key_create\n"
        "from chat.services import agent_default\n"
        "user = get_user_model().objects.create_user('jess', password='a-long-passphrase-1')\n"
        "from chat.models import Agent\n"
        "quiet = Agent.objects.create(name='Quiet')\n"
        "print(api_key_create(user=user, name='browser test')[1], agent_default().pk, quiet.pk)"
    )
    api_key, agent_id, quiet_id = app.manage("shell", "-c", script).split()[-3:]
    pages = {"/": HARNESS, "/snippet": _snippet_page()}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/client.js":
                self._send(CLIENT_BUNDLE.read_bytes(), "text/javascript")
            elif self.path.startswith("/signed-url"):  # what the developer's server does, key kept server-side
                wanted = parse_qs(urlparse(self.path).query).get("agent_id", [agent_id])[0]
                request = urllib.request.Request(
                    f"{app.url}/v1/convai/conversation/get-signed-url?agent_id={wanted}",
                    headers={"xi-api-key": api_key},
                )
                with urllib.request.urlopen(request, timeout=10) as response:
                    self._send(response.read(), "application/json")
            elif self.path in pages:
                self._send(pages[self.path].encode(), "text/html; charset=utf-8")
            else:
                self.send_error(404)

        def _send(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # localhost, not 127.0.0.1: another origin than voicechat's, and still a secure context for the microphone.
    url = f"http://localhost:{server.server_address[1]}"
    yield DeveloperSite(url=url, api_key=api_key, agent_id=agent_id, quiet_agent_id=quiet_id)
    server.shutdown()
    thread.join(timeout=5)


def _snippet_page() -> str:
    """The docs' @elevenlabs/client snippet as written, its import bound to the SDK's browser bundle."""
    snippet = re.findall(r"```js\n(.*?)```", DOCS.read_text(), re.S)[0]
    module = snippet.replace(
        'import { Conversation } from "@elevenlabs/client";', "const { Conversation } = ElevenLabsClient;"
    )
    assert module != snippet, "the snippet's import line changed; update this test's binding"
    head = '<!doctype html><meta charset="utf-8"><script src="/client.js"></script>'
    return f'{head}<script type="module">{module}</script>'


@pytest.fixture(scope="module")
def sdk_browser() -> Iterator[Browser]:
    """Chromium with a fake microphone, which the SDK's voice mode opens."""
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is required on CI for the browser tests (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--autoplay-policy=no-user-gesture-required",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                "--no-sandbox",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def sdk_page(sdk_browser: Browser, developer_site: DeveloperSite, fake_vendor: FakeElevenLabs) -> Iterator[Page]:
    fake_vendor.reset()
    context = sdk_browser.new_context(permissions=["microphone"])
    page = context.new_page()
    page.set_default_timeout(30000)
    yield page
    context.close()


def wait_until(page: Page, predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        page.wait_for_timeout(50)


def finish(page: Page, seen: dict[str, Any], fake: FakeElevenLabs, *, heard: bool = False) -> dict[str, Any]:
    """Wait until every byte the fake vendor synthesised reached the SDK's onAudio (and, when `heard`,
    until the SDK says it is speaking it: its output reports that a little after the bytes arrive), then
    end the session."""

    def all_audio_arrived() -> bool:
        expected = sum(len(pcm) for pcm in fake.sent_pcm())
        return fake.open_streams == 0 and page.evaluate("window.seen.audioBytes") == expected

    wait_until(page, all_audio_arrived, "the reply's audio")
    if heard:
        wait_until(page, lambda: "speaking" in page.evaluate("window.seen.modes"), "the SDK to play the reply")
    page.evaluate("window.conversation.endSession()")
    wait_until(page, lambda: page.evaluate("window.seen.disconnect") is not None, "the session to end")
    return page.evaluate("window.seen")


def stored_transcript(app: servers.App, site: DeveloperSite, conversation_id: str) -> list[tuple[str, str]]:
    response = httpx.get(f"{app.url}/v1/convai/conversations/{conversation_id}", headers={"xi-api-key": site.api_key})
    response.raise_for_status()
    return [(t["role"], t["message"]) for t in response.json()["transcript"]]


def test_it_holds_a_text_only_session(sdk_page: Page, developer_site: DeveloperSite, app, fake_vendor) -> None:
    sdk_page.goto(developer_site.url + "/")
    seen = finish(sdk_page, sdk_page.evaluate("([a]) => runSession(true, a)", [developer_site.agent_id]), fake_vendor)
    assert seen["errors"] == [] and seen["disconnect"] == "user"
    greeting, question, answer = seen["messages"]
    assert greeting[0] == "ai" and greeting[1].startswith("Hi!")  # the agent speaks first
    assert question == ["user", "Tell me about streaming speech."] and answer[0] == "ai" and answer[1]
    assert (
        seen["audioBytes"] == seen["microphoneChunks"] == 0 and fake_vendor.tts_requests() == []
    )  # no speech billed for text only
    assert stored_transcript(app, developer_site, seen["connected"]) == [
        ("agent", greeting[1]),
        ("user", "Tell me about streaming speech."),
        ("agent", answer[1]),
    ]


def test_it_holds_a_voice_session_and_plays_the_reply(
    sdk_page: Page, developer_site: DeveloperSite, app, fake_vendor
) -> None:
    sdk_page.goto(developer_site.url + "/")
    quiet = developer_site.quiet_agent_id
    seen = finish(sdk_page, sdk_page.evaluate("([a]) => runSession(false, a)", [quiet]), fake_vendor, heard=True)
    # The SDK streamed the fake microphone the whole time (user_audio_chunk every few ms): never an error.
    assert seen["errors"] == [] and seen["disconnect"] == "user"
    assert "speaking" in seen["modes"] and seen["microphoneChunks"] > 10
    assert seen["audioBytes"] == sum(len(p) for p in fake_vendor.sent_pcm()) > 0
    transcript = stored_transcript(app, developer_site, seen["connected"])
    assert transcript[0] == ("user", "Tell me about streaming speech.") and transcript[1][0] == "agent"


def test_it_runs_the_browser_snippet_of_the_docs_as_written(sdk_page: Page, developer_site: DeveloperSite) -> None:
    logs: list[tuple[str, str]] = []
    sdk_page.on("console", lambda message: logs.append((message.type, message.text)))
    sdk_page.goto(developer_site.url + "/snippet")

    def logged(prefix: str) -> bool:
        return any(text.startswith(prefix) for _, text in logs)

    def answered() -> bool:
        texts = [text for _, text in logs]
        asked = next((i for i, text in enumerate(texts) if text == "user Hello! What can you do?"), None)
        return asked is not None and any(text.startswith("ai ") for text in texts[asked:])

    wait_until(sdk_page, lambda: answered() and logged("mode speaking"), "the snippet's answer and its audio")
    assert logged("connected ") and logged("ai Hi!")  # the greeting came first
    assert [text for kind, text in logs if kind == "error"] == []
