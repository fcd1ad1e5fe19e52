"""A fake OpenAI-compatible `POST /v1/chat/completions` on loopback, streaming SSE like the real one.

`async with FakeOpenAI(reply=..., token_delay=...) as fake:` or `FakeOpenAI.start_in_thread()`; the
SDK's base URL is `fake.url + "/v1"`. Faults: `fake.fail_next(kind, times)` with a kind from FAULTS,
or `POST /_fake/faults {"kind", "times"}`. `fake.requests` holds every JSON body received.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from tests.fakes.loopback import LoopbackServer

API_KEY = "test-openai-key"
FAULTS = (
    "unauthorized",  # 401 invalid_api_key
    "rate_limited",  # 429 rate_limit_exceeded
    "server_error",  # 500 server_error
    "disconnect",  # 200, two tokens of SSE, then the connection is cut
)
_DISCONNECT_AFTER_TOKENS = 2


class FakeOpenAI(LoopbackServer):
    def __init__(
        self,
        *,
        api_key: str = API_KEY,
        reply: str = "Hello there. This is the fake model speaking.",
        token_delay: float = 0.0,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.api_key = api_key
        self.reply = reply
        self.token_delay = token_delay
        self.requests: list[dict[str, Any]] = []
        self.faults: list[str] = []
        self.open_streams = 0

    def fail_next(self, kind: str, times: int = 1) -> None:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")
        self.faults.extend([kind] * times)

    def tokens(self) -> list[str]:
        """The reply split the way the fake streams it: words with their trailing space."""
        words = self.reply.split(" ")
        return [w + " " for w in words[:-1]] + [words[-1]]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.completions)
        app.router.add_post("/_fake/faults", self.control_faults)
        return app

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        fault = self.faults.pop(0) if self.faults else ""
        if request.headers.get("Authorization") != f"Bearer {self.api_key}" or fault == "unauthorized":
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        if fault == "rate_limited":
            return _error(429, "Rate limit reached.", "rate_limit_exceeded")
        if fault == "server_error":
            return _error(500, "The server had an error while processing your request.", "server_error")
        if not body.get("stream"):
            return web.json_response(_completion(body, self.reply))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        self.open_streams += 1
        try:
            await self._send_tokens(request, response, body, fault)
        finally:
            self.open_streams -= 1
        return response

    async def _send_tokens(self, request: web.Request, response: web.StreamResponse, body: Any, fault: str) -> None:
        await response.write(_event(_chunk(body, {"role": "assistant", "content": ""})))
        for index, token in enumerate(self.tokens()):
            if fault == "disconnect" and index == _DISCONNECT_AFTER_TOKENS:
                assert request.transport is not None
                request.transport.abort()
                return
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
            await response.write(_event(_chunk(body, {"content": token})))
        await response.write(_event(_chunk(body, {}, finish="stop")))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()

    async def control_faults(self, request: web.Request) -> web.Response:
        data = await request.json()
        self.fail_next(data["kind"], int(data.get("times", 1)))
        return web.json_response({"queued": self.faults})


def _error(status: int, message: str, code: str) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return web.json_response(body, status=status)


def _event(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def _chunk(body: dict[str, Any], delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _completion(body: dict[str, Any], text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
