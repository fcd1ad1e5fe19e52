"""Any OpenAI-compatible chat server (OpenAI, Ollama, vLLM, llama.cpp) through the official `openai` SDK."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any, cast

import httpx
import openai

from chat.providers.base import ChatMessage, LLMProvider, ProviderError


class OpenAILLM(LLMProvider):
    """Streams `chat.completions` deltas; every vendor failure becomes `llm_unavailable`."""

    def __init__(self, *, base_url: str, api_key: str = "", model: str, timeout: float = 30.0, max_retries: int = 1):
        self.base_url = base_url
        self.api_key = api_key
        self.model = model
        self.timeout = timeout
        self.max_retries = max_retries

    def __repr__(self) -> str:  # never show the key
        return f"OpenAILLM(base_url={self.base_url!r}, model={self.model!r})"

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncGenerator[str, None]:
        # Local servers (Ollama, llama.cpp) need no key, but the SDK insists on one.
        client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self.api_key or "not-needed",
            timeout=self.timeout,
            max_retries=self.max_retries,
        )
        try:
            stream = await client.chat.completions.create(
                model=self.model,
                messages=cast(Any, [{"role": m.role, "content": m.content} for m in messages]),
                stream=True,
            )
            async with stream:
                async for event in stream:
                    if event.choices and (content := event.choices[0].delta.content):
                        yield content
        except openai.APIStatusError as exc:
            raise ProviderError("llm_unavailable", _status_message(exc), status=exc.status_code) from None
        except (openai.APIError, httpx.TransportError) as exc:  # connect errors, timeouts, broken streams
            raise ProviderError("llm_unavailable", _network_message(exc)) from None
        finally:
            await client.close()


def _network_message(exc: Exception) -> str:
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException):
        return "The language model did not answer in time; check OPENAI_BASE_URL or raise OPENAI_TIMEOUT."
    if isinstance(exc, openai.APIConnectionError | httpx.ConnectError):
        return "The language model cannot be reached; check OPENAI_BASE_URL and that the server is running."
    return "The language model's reply broke off; please try again."


def _status_message(exc: openai.APIStatusError) -> str:
    if exc.status_code == 401:
        return "The language model rejected our API key; check OPENAI_API_KEY."
    if exc.status_code == 429:
        return "The language model is rate limiting us; please try again shortly."
    if exc.status_code == 404:
        return "The language model does not know the configured OPENAI_MODEL."
    if exc.status_code >= 500:
        return f"The language model's server failed (HTTP {exc.status_code}); please try again shortly."
    return f"The language model refused the request (HTTP {exc.status_code}): {_error_text(exc)}"


def _error_text(exc: openai.APIStatusError) -> str:
    """The server's own explanation, cut short; it never contains our key."""
    body = exc.body if isinstance(exc.body, dict) else {}
    return str(body.get("message") or exc.message)[:200]
