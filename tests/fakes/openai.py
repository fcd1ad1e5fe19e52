"""A fake OpenAI-compatible `/v1/chat/completions` on loopback, streaming SSE like the real one."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

API_KEY = "test-openai-key"
FAULTS = ("unauthorized", "rate_limited", "server_error", "disconnect")


class FakeOpenAI:
    def __init__(self, *, api_key: str = API_KEY, reply: str = "Hello there. This is the fake model speaking.",
                 token_delay: float = 0.0) -> None:  # fmt: skip
        self.api_key = api_key
        self.reply = reply
        self.token_delay = token_delay
        self.requests: list[dict[str, Any]] = []
        self.faults: list[str] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, kind: str, times: int = 1) -> None:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}")
        self.faults.extend([kind] * times)

    async def __aenter__(self) -> FakeOpenAI:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.completions)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @staticmethod
    def _error(status: int, message: str, kind: str) -> web.Response:
        return web.json_response({"error": {"message": message, "type": kind, "code": kind}}, status=status)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        fault = self.faults.pop(0) if self.faults else ""
        if request.headers.get("Authorization") != f"Bearer {self.api_key}" or fault == "unauthorized":
            return self._error(401, "Incorrect API key provided.", "invalid_api_key")
        if fault == "rate_limited":
            return self._error(429, "Rate limit reached.", "rate_limit_exceeded")
        if fault == "server_error":
            return self._error(500, "The server had an error.", "server_error")
        tokens = [t + " " for t in self.reply.split(" ")]
        tokens[-1] = tokens[-1].rstrip()
        if not body.get("stream"):
            return web.json_response(self._completion(body, self.reply))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index, token in enumerate(tokens):
            if fault == "disconnect" and index == 2:
                assert request.transport is not None
                request.transport.abort()
                return response
            await asyncio.sleep(self.token_delay)
            await response.write(f"data: {json.dumps(self._chunk(body, token))}\n\n".encode())
        await response.write(f"data: {json.dumps(self._chunk(body, None, finish='stop'))}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    @staticmethod
    def _chunk(body: dict[str, Any], content: str | None, finish: str | None = None) -> dict[str, Any]:
        delta = {"content": content} if content is not None else {}
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    @staticmethod
    def _completion(body: dict[str, Any], text: str) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
