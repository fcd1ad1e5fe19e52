"""The WebSocket protocol v1 on the wire (DESIGN.md §5): one TypedDict per event, and their builders.

Every frame is `{"type": T, "<T>_event": {...}}`, the vocabulary of the ElevenLabs Conversational AI
WebSocket; our extensions (interrupt, playback_report, agent_response_complete) use the same envelope.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

PROTOCOL_VERSION = 1


# --- client → server -------------------------------------------------------------------------
class UserMessage(TypedDict):
    type: Literal["user_message"]
    text: str


class Interrupt(TypedDict):
    type: Literal["interrupt"]


class Pong(TypedDict):
    type: Literal["pong"]
    event_id: int


class UserActivity(TypedDict):
    type: Literal["user_activity"]


class PlaybackReport(TypedDict):
    type: Literal["playback_report"]
    message_id: str
    first_audible_ms: NotRequired[int | None]
    underruns: NotRequired[int]


# --- server → client payloads ---------------------------------------------------------------
class ConversationInitiationMetadata(TypedDict):
    conversation_id: str
    agent_output_audio_format: str
    user_input_audio_format: str
    agent_id: str
    max_message_chars: int
    protocol_version: int


class UserTranscription(TypedDict):
    user_transcript: str
    event_id: int
    message_id: str


class TextResponsePart(TypedDict):
    text: str
    type: Literal["start", "delta", "stop"]
    event_id: int
    message_id: str


class AudioEvent(TypedDict):
    audio_base_64: str
    event_id: int


class AgentResponse(TypedDict):
    agent_response: str
    event_id: int
    message_id: str


class InterruptionEvent(TypedDict):
    event_id: int
    message_id: str


class AgentResponseCorrection(TypedDict):
    original_agent_response: str
    corrected_agent_response: str
    event_id: int
    message_id: str


class TurnMetrics(TypedDict):
    llm_first_token_ms: int | None
    first_chunk_ms: int | None
    tts_first_byte_ms: int | None
    first_audio_sent_ms: int | None
    audio_duration_ms: int | None
    tts_characters: int


class AgentResponseComplete(TypedDict):
    event_id: int
    message_id: str
    status: str
    audio_status: str
    audio_url: str | None
    metrics: TurnMetrics


class PingEvent(TypedDict):
    event_id: int
    ping_ms: int | None


class ErrorEvent(TypedDict):
    code: str
    message: str


def frame(event_type: str, payload: Any) -> dict[str, Any]:
    """Wrap a payload in the protocol envelope; the payload key is `<type>_event` except for the
    two vendor events whose key differs (user_transcription_event, text_response_part)."""
    key = _PAYLOAD_KEYS.get(event_type, f"{event_type}_event")
    return {"type": event_type, key: payload}


_PAYLOAD_KEYS = {
    "user_transcript": "user_transcription_event",
    "agent_chat_response_part": "text_response_part",
}
