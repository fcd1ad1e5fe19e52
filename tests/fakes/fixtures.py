"""Pytest fixtures that start the loopback vendor fakes and point the settings at them.

* `fake_elevenlabs` — an in-process FakeElevenLabs on the test's event loop (async tests); stalls last 5 s.
  On teardown the provider's pooled keep-alive connections of this loop are closed too.
* `fake_elevenlabs_thread` — the same in a background thread with its own loop (sync tests, subprocesses).
* `elevenlabs_settings` — TTS_BACKEND="elevenlabs", its OPTIONS pointed at `fake_elevenlabs` (api_key,
  base_url), timeout 1 s, retry_base_delay 0.01 s; returns the fake.
* `elevenlabs_library` — TTS_BACKEND="elevenlabs" pointed at `fake_elevenlabs_thread` (for sync views and
  the admin), previews allowed from the fake's origin, and an empty cache; returns the fake.
* `fake_elevenlabs_ws` — an in-process FakeElevenLabsWS (the HTTP fake plus the TTS WebSockets); on teardown
  the TTS WebSocket provider's sockets of this loop are closed.
* `elevenlabs_ws_settings` — the `elevenlabs_ws` alias pointed at `fake_elevenlabs_ws` (timeout 2 s, idle
  sockets closed after 0.5 s), TTS_WEBSOCKET_BACKEND="elevenlabs_ws", and the `elevenlabs` alias at the same
  fake as TTS_BACKEND, so agents of either transport speak through it; returns the fake.
* `fake_agents` — an in-process FakeElevenLabsAgents (signed URLs, the convai socket, transcripts) pinging
  every 50 ms; `fake_agents_thread` the same in a background thread.
* `fake_openai`, `fake_openai_thread`, `openai_settings` — the same for the OpenAI-compatible LLM
  (LLM_BACKEND="openai", base_url `fake.url + "/v1"`, model "fake-1"); `openai_settings` returns the fake.

Fault names, recorded requests and counters are documented in tests/fakes/elevenlabs.py and openai.py.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterator

import pytest
from django.core.cache import cache

from chat.providers.elevenlabs import aclose_shared_clients
from chat.providers.elevenlabs_ws import aclose_sockets
from tests.fakes.elevenlabs import FakeElevenLabs
from tests.fakes.elevenlabs_agent import FakeElevenLabsAgents
from tests.fakes.elevenlabs_ws import FakeElevenLabsWS
from tests.fakes.openai import FakeOpenAI


@pytest.fixture
async def fake_elevenlabs() -> AsyncIterator[FakeElevenLabs]:
    async with FakeElevenLabs(stall_seconds=5) as fake:
        yield fake
        await aclose_shared_clients()


@pytest.fixture
def fake_elevenlabs_thread() -> Iterator[FakeElevenLabs]:
    fake = FakeElevenLabs.start_in_thread()
    yield fake
    fake.stop()


@pytest.fixture
def elevenlabs_settings(settings, fake_elevenlabs: FakeElevenLabs) -> FakeElevenLabs:
    providers = copy.deepcopy(settings.TTS_PROVIDERS)
    options = providers["elevenlabs"]["OPTIONS"]
    options.update(api_key=fake_elevenlabs.api_key, base_url=fake_elevenlabs.url, timeout=1.0, retry_base_delay=0.01)
    settings.TTS_PROVIDERS = providers
    settings.TTS_BACKEND = "elevenlabs"
    return fake_elevenlabs


@pytest.fixture
def elevenlabs_library(settings, fake_elevenlabs_thread: FakeElevenLabs) -> Iterator[FakeElevenLabs]:
    providers = copy.deepcopy(settings.TTS_PROVIDERS)
    providers["elevenlabs"]["OPTIONS"].update(
        api_key=fake_elevenlabs_thread.api_key, base_url=fake_elevenlabs_thread.url, timeout=2.0
    )
    settings.TTS_PROVIDERS = providers
    settings.TTS_BACKEND = "elevenlabs"
    settings.VOICE_PREVIEW_ORIGINS = [fake_elevenlabs_thread.url]
    cache.clear()
    yield fake_elevenlabs_thread
    cache.clear()


@pytest.fixture
async def fake_elevenlabs_ws() -> AsyncIterator[FakeElevenLabsWS]:
    async with FakeElevenLabsWS(stall_seconds=5) as fake:
        yield fake
        await aclose_sockets()
        await aclose_shared_clients()


@pytest.fixture
async def fake_agents() -> AsyncIterator[FakeElevenLabsAgents]:
    async with FakeElevenLabsAgents(ping_interval=0.05, slow_seconds=5) as fake:
        yield fake
        await aclose_shared_clients()


@pytest.fixture
def elevenlabs_ws_settings(settings, fake_elevenlabs_ws: FakeElevenLabsWS) -> FakeElevenLabsWS:
    providers = copy.deepcopy(settings.TTS_PROVIDERS)
    fake = fake_elevenlabs_ws
    providers["elevenlabs_ws"]["OPTIONS"].update(
        api_key=fake.api_key, base_url=fake.url, timeout=2.0, retry_base_delay=0.01, idle_seconds=0.5
    )
    providers["elevenlabs"]["OPTIONS"].update(
        api_key=fake.api_key, base_url=fake.url, timeout=1.0, retry_base_delay=0.01
    )
    settings.TTS_PROVIDERS = providers
    settings.TTS_BACKEND = "elevenlabs"
    settings.TTS_WEBSOCKET_BACKEND = "elevenlabs_ws"
    return fake


@pytest.fixture
def fake_agents_thread() -> Iterator[FakeElevenLabsAgents]:
    fake = FakeElevenLabsAgents.start_in_thread(ping_interval=0.05, slow_seconds=5)
    yield fake
    fake.stop()


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake_openai_thread() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI.start_in_thread()
    yield fake
    fake.stop()


@pytest.fixture
def openai_settings(settings, fake_openai: FakeOpenAI) -> FakeOpenAI:
    providers = copy.deepcopy(settings.LLM_PROVIDERS)
    providers["openai"]["OPTIONS"].update(base_url=fake_openai.url + "/v1", api_key=fake_openai.api_key, model="fake-1")
    settings.LLM_PROVIDERS = providers
    settings.LLM_BACKEND = "openai"
    return fake_openai
