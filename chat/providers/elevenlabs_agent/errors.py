"""Vendor refusals, close codes and error events as ProviderErrors with codes and messages people can act on."""

from __future__ import annotations

from typing import Any

from elevenlabs.core import ApiError

from chat.providers.base import ProviderError
from chat.providers.elevenlabs import _detail
from chat.providers.elevenlabs_agent.wire import Closed


def signed_url_error(exc: ApiError, agent_id: str) -> ProviderError:
    """A refused signed-URL request; the key and the vendor's headers stay out of it."""
    status = exc.status_code or 0
    code, message = _detail(exc.body)
    if code == "quota_exceeded":  # a 401, but not a bad key
        return ProviderError("tts_quota_exceeded", "The ElevenLabs account is out of credits.", status=status)
    if status == 401:
        return ProviderError(
            "agent_unavailable", "The ElevenLabs API key was rejected; check ELEVENLABS_API_KEY.", status=401
        )
    if status == 403:
        return ProviderError(
            "agent_unavailable", f"The ElevenLabs API key may not use agent {agent_id}: {message}", status=403
        )
    if status == 404:
        return ProviderError(
            "agent_not_found",
            f"ElevenLabs has no agent {agent_id}; check the agent's ElevenLabs agent id in the admin.",
            status=404,
        )
    if status == 429:
        return ProviderError(
            "rate_limited",
            "ElevenLabs is at the plan's limit of simultaneous agent conversations; please try again shortly.",
            retryable=True,
            status=429,
        )
    return ProviderError(
        "agent_unavailable", f"ElevenLabs is unavailable (HTTP {status}).", retryable=status >= 500, status=status
    )


def close_error(closed: Closed, *, before_reply: bool) -> ProviderError:
    """The vendor ending the call (ELEVENLABS.md §5.3 close codes)."""
    reason = closed.reason[:160]
    if closed.code == 1008:
        if "override" in reason:
            message = (
                f"The ElevenLabs agent refused voicechat's overrides ({reason}). Enable them in the agent's "
                "Security tab, or remove them from ELEVENLABS_AGENT_OVERRIDES."
            )
        elif "dynamic_variable" in reason:
            message = f"The ElevenLabs agent needs a dynamic variable voicechat does not send ({reason})."
        else:
            message = f"The ElevenLabs agent refused the conversation ({reason or 'policy violation'})."
        return ProviderError("agent_refused", message, status=1008)
    if closed.code == 1002 and "timeout" in reason:
        return ProviderError("agent_timeout", f"The ElevenLabs agent timed out ({reason}); try again.", status=1002)
    if closed.code == 1011:
        message = "ElevenLabs had an internal error and ended the conversation; try again."
        return ProviderError("agent_unavailable", message, retryable=True, status=1011)
    if closed.code in (1000, 1001):
        when = "before it started" if before_reply else "in the middle of a reply"
        message = f"The ElevenLabs agent ended the conversation {when} ({reason or 'no reason given'})."
        return ProviderError("agent_unavailable", message, status=closed.code)
    return ProviderError(
        "agent_unavailable", "The connection to the ElevenLabs agent broke off; try again.", retryable=True
    )


def event_error(body: dict[str, Any]) -> ProviderError:
    """An `error` event the vendor sent before (or instead of) closing."""
    detail = str(body.get("message") or body.get("reason") or body.get("code") or "unknown error")[:200]
    return ProviderError("agent_unavailable", f"The ElevenLabs agent reported an error: {detail}")


def timeout_error(*, started: bool, response_timeout: float, stall_seconds: float) -> ProviderError:
    if not started:
        return ProviderError(
            "agent_timeout", f"The ElevenLabs agent did not answer within {response_timeout:g} s; try again."
        )
    return ProviderError("agent_timeout", f"The ElevenLabs agent stopped responding for over {stall_seconds:g} s.")
