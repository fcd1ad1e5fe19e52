"""The vendor's convai messages as voicechat sends and reads them (ELEVENLABS.md §5)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from chat.providers.base import Alignment, ChatMessage

logger = logging.getLogger(__name__)

# The overrides voicechat can fill from its own agent settings, by their path in the vendor's override
# object. Each must also be enabled in the vendor agent's Security tab, or the vendor refuses the call.
OVERRIDES = ("agent.language", "agent.first_message", "agent.prompt.prompt", "tts.voice_id")
AUDIO_FORMAT = re.compile(r"(pcm|ulaw)_(\d+)")
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # what the SDK's own Conversation allows
SOURCE_INFO = {"source": "voicechat", "version": "1"}
HISTORY_PREAMBLE = (
    "Earlier in this conversation (restored after the connection was reopened; continue it, do not greet again):"
)
USER_ACTIVITY = {"type": "user_activity"}


class _RedactSignature(logging.Filter):
    """The signed URL opens a call on our account: keep its signature out of the socket's debug log."""

    pattern = re.compile(r"(conversation_signature|token)=[^&\s'\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "=" in message:
            record.msg, record.args = self.pattern.sub(r"\1=[redacted]", message), ()
        return True


socket_logger = logging.getLogger("chat.providers.elevenlabs_agent.socket")
socket_logger.addFilter(_RedactSignature())


@dataclass(frozen=True)
class Closed:
    """How the vendor's socket ended."""

    code: int
    reason: str

    @classmethod
    def of(cls, exc: ConnectionClosed) -> Closed:
        return cls(exc.rcvd.code, exc.rcvd.reason) if exc.rcvd is not None else cls(1006, "")

    @classmethod
    def of_socket(cls, ws: ClientConnection) -> Closed:
        return cls(ws.close_code or 1006, ws.close_reason or "")


def overrides(allowed: Collection[str], values: Mapping[str, str | None]) -> dict[str, Any]:
    """The conversation_config_override object: only what the operator allowed and voicechat has a value for.

    An empty first message is a value: it asks the vendor agent not to greet (voicechat greets, or not)."""
    override: dict[str, Any] = {}
    for path, value in values.items():
        if path in allowed and value is not None and (value or path == "agent.first_message"):
            *parents, leaf = path.split(".")
            node = override
            for name in parents:
                node = node.setdefault(name, {})
            node[leaf] = value
    return override


def initiation(override: dict[str, Any], dynamic_variables: dict[str, Any], user_id: str) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "conversation_initiation_client_data",
        "conversation_config_override": override,
        "dynamic_variables": dynamic_variables,
        "source_info": SOURCE_INFO,
    }
    if user_id:
        message["user_id"] = user_id
    return message


def history_text(history: Sequence[ChatMessage], limit: int) -> str:
    """The most recent turns that fit in `limit` characters, as a contextual update for a new call."""
    speakers = {"user": "User", "assistant": "Agent"}  # a system prompt is the vendor agent's business
    lines = [f"{speakers[m.role]}: {m.content}" for m in history if m.content and m.role in speakers]
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        size += len(line) + 1
        if size > limit:
            break
        kept.append(line)
    return "\n".join([HISTORY_PREAMBLE, *reversed(kept)])


def parse(raw: str | bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(raw)
    except ValueError:
        logger.warning("ElevenLabs agent sent a frame that is not JSON; skipped")
        return None
    return message if isinstance(message, dict) else None


def payload(message: dict[str, Any]) -> dict[str, Any]:
    """The event body of a server message: `<type>_event`, with the vendor's few irregular names."""
    kind = message.get("type")
    key = {"agent_chat_response_part": "text_response_part", "user_transcript": "user_transcription_event"}.get(
        str(kind), f"{kind}_event"
    )
    body = message.get(key)
    return body if isinstance(body, dict) else {}


def pong(ping: dict[str, Any]) -> dict[str, Any]:
    return {"type": "pong", "event_id": as_int(payload(ping).get("event_id"))}


def tool_refusal(call: dict[str, Any]) -> dict[str, Any]:
    tool = call.get("client_tool_call") or {}
    return {
        "type": "client_tool_result",
        "tool_call_id": tool.get("tool_call_id"),
        "result": "This client runs no client tools.",
        "is_error": True,
    }


def as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def alignment(value: Any) -> Alignment | None:
    """The vendor's per-character timing of one audio event, or None when absent or malformed."""
    if not isinstance(value, dict):
        return None
    chars, starts, durations = (value.get(k) for k in ("chars", "char_start_times_ms", "char_durations_ms"))
    if not (isinstance(chars, list) and isinstance(starts, list) and isinstance(durations, list)):
        return None
    if not len(chars) == len(starts) == len(durations):
        return None
    return Alignment(tuple(map(str, chars)), tuple(map(as_int, starts)), tuple(map(as_int, durations)))
