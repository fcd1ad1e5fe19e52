"""Helpers to drive the real ASGI application's WebSocket route in-process, as a browser would."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore

from voicechat.asgi import application

WS_PATH = "/v1/convai/conversation"


def session_cookie_for(user: Any) -> str:
    """A logged-in session for `user`, the way django.contrib.auth.login would store it."""
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


async def connect(
    user: Any | None, *, query: str = "", origin: str = "http://localhost:8000", timeout: float = 5
) -> tuple[WebsocketCommunicator, bool]:
    headers = [(b"origin", origin.encode()), (b"host", b"localhost:8000")]
    if user is not None:
        cookie = await sync_to_async(session_cookie_for)(user)
        headers.append((b"cookie", cookie.encode()))
    path = f"{WS_PATH}?{query}" if query else WS_PATH
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect(timeout=timeout)
    return communicator, connected


def payload(frame: dict[str, Any]) -> dict[str, Any]:
    """The `<type>_event` body of a frame, whatever its key."""
    return next(v for k, v in frame.items() if k != "type")


@dataclass
class TurnLog:
    frames: list[dict[str, Any]] = field(default_factory=list)

    def of(self, event_type: str) -> list[dict[str, Any]]:
        return [payload(f) for f in self.frames if f["type"] == event_type]

    @property
    def types(self) -> list[str]:
        return [f["type"] for f in self.frames]

    @property
    def audio(self) -> bytes:
        return b"".join(base64.b64decode(p["audio_base_64"]) for p in self.of("audio"))

    @property
    def text(self) -> str:
        return "".join(p["text"] for p in self.of("agent_chat_response_part"))


async def receive_until(
    communicator: WebsocketCommunicator, last_type: str = "agent_response_complete", timeout: float = 20
) -> TurnLog:
    """Collect frames up to and including the first `last_type` frame."""
    log = TurnLog()
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await communicator.receive_from(timeout=timeout))
            log.frames.append(frame)
            if frame["type"] == last_type:
                return log


async def send(communicator: WebsocketCommunicator, message: dict[str, Any]) -> None:
    await communicator.send_to(text_data=json.dumps(message))
