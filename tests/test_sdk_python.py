"""The unmodified official Python SDK (`elevenlabs` 2.78.0 `Conversation`) against a real Daphne.

The SDK authenticates with a voicechat API key (`xi-api-key`), fetches a signed URL, opens the socket
with no cookie and no Origin, and gets text and audio through its own callbacks and AudioInterface.
The docs/sdk.md snippet is run as written, in its own process.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from elevenlabs import ElevenLabs
from elevenlabs.conversational_ai.conversation import AudioInterface, Conversation, DisconnectionDetails
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests import servers
from tests.fakes.elevenlabs import FakeElevenLabs

pytestmark = pytest.mark.daphne

DOCS = servers.ROOT / "docs" / "sdk.md"
PCM_16000_CHUNK = bytes(8000)  # 250 ms of 16 kHz silence, what DefaultAudioInterface sends per callback


@dataclass
class Developer:
    """A voicechat user with an API key, as a developer would set one up, plus the app and the fake vendor."""

    app: servers.App
    fake: FakeElevenLabs
    api_key: str
    agent_id: str  # the default agent, which greets a new conversation with its first message
    quiet_agent_id: str  # an agent without a first message, so only the reply is heard

    def client(self) -> ElevenLabs:
        return ElevenLabs(base_url=self.app.url, api_key=self.api_key)


@pytest.fixture(scope="module")
def developer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Developer]:
    fake = FakeElevenLabs.start_in_thread()
    settings = {
        "TTS_BACKEND": "elevenlabs",
        "ELEVENLABS_API_KEY": fake.api_key,
        "ELEVENLABS_BASE_URL": fake.url,
        "ELEVENLABS_OUTPUT_FORMAT": "pcm_16000",  # what the Python SDK's default audio interface plays
        "DEMO_LLM_TOKENS_PER_SECOND": "400",
    }
    try:
        with servers.daphne_app(tmp_path_factory.mktemp("sdk-python"), **settings) as app:
            script = (
                "from django.contrib.auth import get_user_model\n"
                "from chat.api_keys import api_key_create\n"
                "from chat.services import agent_default\n"
                "user = get_user_model().objects.create_user('devon', password='a-long-passphrase-1')\n"
                "from chat.models import Agent\n"
                "quiet = Agent.objects.create(name='Quiet')\n"
                "print(api_key_create(user=user, name='sdk test')[1], agent_default().pk, quiet.pk)"
            )
            api_key, agent_id, quiet_id = app.manage("shell", "-c", script).split()[-3:]
            yield Developer(app=app, fake=fake, api_key=api_key, agent_id=agent_id, quiet_agent_id=quiet_id)
    finally:
        fake.stop()


class RecordingAudioInterface(AudioInterface):
    """An AudioInterface that records what the SDK plays and feeds it microphone-sized silence."""

    def __init__(self) -> None:
        self.played: list[bytes] = []
        self.interrupted = 0
        self.stopped = False
        self.input_callback: Callable[[bytes], None] | None = None

    def start(self, input_callback: Callable[[bytes], None]) -> None:
        self.input_callback = input_callback

    def stop(self) -> None:
        self.stopped = True

    def output(self, audio: bytes) -> None:
        self.played.append(audio)

    def interrupt(self) -> None:
        self.interrupted += 1


@dataclass
class Callbacks:
    """What the SDK delivered through its own callbacks."""

    responses: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    transcripts: list[str] = field(default_factory=list)
    disconnects: list[DisconnectionDetails] = field(default_factory=list)
    replied: threading.Event = field(default_factory=threading.Event)

    def keywords(self) -> dict[str, Any]:
        def on_response(text: str) -> None:
            self.responses.append(text)
            if self.transcripts:  # an answer, not the greeting that opens a new conversation
                self.replied.set()

        return {
            "callback_agent_response": on_response,
            "callback_agent_chat_response_part": lambda text, part_type: self.parts.append(text),
            "callback_user_transcript": self.transcripts.append,
            "callback_disconnect": self.disconnects.append,
        }


def send_when_open(conversation: Conversation, text: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            conversation.send_user_message(text)
            return
        except RuntimeError:  # the socket opens in the SDK's thread; it has no "connected" callback
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def wait_until(predicate: Callable[[], bool], timeout: float = 20, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def sdk_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("elevenlabs") and r.levelno >= logging.ERROR]


def test_it_holds_a_text_only_session_through_the_sdks_callbacks(developer: Developer, caplog) -> None:
    caplog.set_level(logging.ERROR)
    developer.fake.reset()
    seen = Callbacks()
    conversation = Conversation(
        client=developer.client(), agent_id=developer.agent_id, requires_auth=True, **seen.keywords()
    )
    conversation.start_session()
    send_when_open(conversation, "Tell me about streaming speech.")
    assert seen.replied.wait(20), "no agent_response"
    conversation.end_session()
    conversation_id = conversation.wait_for_session_end()

    greeting, answer = seen.responses
    assert greeting.startswith("Hi!") and seen.transcripts == ["Tell me about streaming speech."]
    assert answer and "".join(seen.parts).strip() == answer
    assert [d.reason for d in seen.disconnects] == ["user"] and not sdk_errors(caplog)
    assert developer.fake.tts_requests() == []  # text only: nothing synthesised, nothing billed
    stored = developer.client().conversational_ai.conversations.get(conversation_id)
    assert [(t.role, t.message) for t in stored.transcript] == [
        ("agent", greeting),
        ("user", "Tell me about streaming speech."),
        ("agent", answer),
    ]


def test_it_plays_the_replys_audio_through_the_sdks_audio_interface(developer: Developer, caplog) -> None:
    caplog.set_level(logging.ERROR)
    developer.fake.reset()
    seen = Callbacks()
    speaker = RecordingAudioInterface()
    conversation = Conversation(
        client=developer.client(),
        agent_id=developer.quiet_agent_id,
        requires_auth=True,
        audio_interface=speaker,
        **seen.keywords(),
    )
    conversation.start_session()
    wait_until(lambda: speaker.input_callback is not None, what="the SDK to start its audio interface")
    assert speaker.input_callback is not None
    for _ in range(4):  # the microphone's audio is ignored, silently
        speaker.input_callback(PCM_16000_CHUNK)
    send_when_open(conversation, "Tell me about streaming speech.")
    assert seen.replied.wait(20), "no agent_response"
    wait_until(
        lambda: b"".join(speaker.played) == b"".join(developer.fake.sent_pcm()) and developer.fake.open_streams == 0,
        what="all synthesised audio to reach the audio interface",
    )
    conversation.end_session()
    conversation_id = conversation.wait_for_session_end()

    requests = developer.fake.tts_requests()
    assert requests and {r.query.get("output_format") for r in requests} == {"pcm_16000"}
    assert len(b"".join(speaker.played)) > 16000 and speaker.stopped
    assert [d.reason for d in seen.disconnects] == ["user"] and not sdk_errors(caplog)
    # As with the vendor's API, a transcript is final once the conversation's status says so; the reply's
    # last write can trail the end of its audio by a moment.
    conversations = developer.client().conversational_ai.conversations
    wait_until(lambda: conversations.get(conversation_id).status == "done", 10, what="the conversation to be done")
    stored = conversations.get(conversation_id)
    assert seen.responses == [stored.transcript[1].message] and stored.has_audio


def test_it_refuses_a_signed_url_spent_by_another_process(developer: Developer) -> None:
    signed = developer.client().conversational_ai.conversations.get_signed_url(agent_id=developer.agent_id).signed_url
    token = parse_qs(urlparse(signed).query)["conversation_signature"][0]
    spend = f"from chat.signing import signed_url_verify; signed_url_verify({token!r})"
    developer.app.manage("shell", "-c", spend)  # a manage.py process, not the Daphne that will be asked
    with connect(signed) as ws:
        error = json.loads(ws.recv(timeout=5))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert error["error_event"]["code"] == "signed_url_reused"
    # Daphne sends no close reason; the error frame above carries it.
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4003


def test_it_runs_the_python_snippet_of_the_docs_as_written(developer: Developer) -> None:
    snippet = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)[0]
    env = {
        **developer.app.env,
        "VOICECHAT_URL": developer.app.url,
        "VOICECHAT_API_KEY": developer.api_key,
        "VOICECHAT_AGENT_ID": developer.agent_id,
    }
    done = subprocess.run([sys.executable, "-c", snippet], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("agent: Hi!")  # the agent's greeting opens a new conversation
    assert lines[1] == "you: Hello! What can you do?" and lines[2].startswith("agent: ") and len(lines[2]) > 10
    assert re.fullmatch(r"conversation: [0-9a-f-]{36}", lines[-1])
    assert "Error" not in done.stderr
