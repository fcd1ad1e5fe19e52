"""The WebSocket protocol v1 on the wire (DESIGN.md §5, docs/protocol.md).

Server frames are one union of TypedDicts (`ServerFrame`) that the consumer's `emit` takes, so mypy
checks every key at every call site. Client frames are parsed into typed values by `parse_client_frame`
before anyone matches on them; a frame that does not parse is a `FrameError` with the sentence to send.

Every frame is `{"type": T, "<T>_event": {...}}`, the vocabulary of the ElevenLabs Conversational AI
WebSocket; our extensions use the same envelope (marked ext).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict, cast

# One word of the displayed reply text: [display_start, display_end, start_ms, end_ms], times from the
# start of the reply's audio.
from chat.speech.timing import WordTiming

PROTOCOL_VERSION = 1
# Binary audio frames (ext, negotiated): one kind byte, the event id, then raw PCM.
BINARY_AUDIO_KIND = 0x01


# --- server → client payloads --------------------------------------------------------------------
# `event_id` is filled in by the transport when the frame is sent, hence NotRequired here.
class SpeechBudget(TypedDict):
    remaining_chars: int | None
    limit_chars: int | None
    resets_at: str | None
    site_exhausted: bool


class ConversationInitiationMetadata(TypedDict):
    conversation_id: str
    agent_output_audio_format: str
    user_input_audio_format: str
    agent_id: str
    max_message_chars: int
    protocol_version: int
    conversation_exists: bool  # ext: false until the first user_message creates it
    speak: bool  # ext: whether replies on this socket are spoken
    binary_audio: bool  # ext: audio travels as binary frames
    speech_budget: NotRequired[SpeechBudget]


class UserTranscription(TypedDict):
    user_transcript: str
    message_id: str
    event_id: NotRequired[int]


class TextResponsePart(TypedDict):
    text: str
    type: Literal["start", "delta", "stop"]
    message_id: str
    event_id: NotRequired[int]


class AlignmentPayload(TypedDict):
    chars: list[str]
    char_start_times_ms: list[int]
    char_durations_ms: list[int]


class AgentResponse(TypedDict):
    agent_response: str
    message_id: str | None
    greeting: NotRequired[bool]
    event_id: NotRequired[int]


class InterruptionEvent(TypedDict):
    message_id: str
    event_id: NotRequired[int]


class AgentResponseCorrection(TypedDict):
    original_agent_response: str
    corrected_agent_response: str
    message_id: str
    event_id: NotRequired[int]


class TurnMetrics(TypedDict):
    llm_first_token_ms: int | None
    first_chunk_ms: int | None
    tts_first_byte_ms: int | None
    first_audio_sent_ms: int | None
    audio_duration_ms: int | None
    tts_characters: int


class AgentResponseComplete(TypedDict):
    message_id: str | None
    status: str
    audio_status: str
    audio_url: str | None
    metrics: TurnMetrics
    words: NotRequired[list[WordTiming]]
    greeting: NotRequired[bool]
    event_id: NotRequired[int]


class QueuedEvent(TypedDict):
    message_id: str
    reason: Literal["tts_slots"]
    position: int | None
    event_id: NotRequired[int]


class BudgetEvent(SpeechBudget):
    event_id: NotRequired[int]


class PingEvent(TypedDict):
    ping_ms: int | None
    event_id: NotRequired[int]


class ErrorEvent(TypedDict):
    code: str
    message: str


# --- server frames ------------------------------------------------------------------------------
class MetadataFrame(TypedDict):
    type: Literal["conversation_initiation_metadata"]
    conversation_initiation_metadata_event: ConversationInitiationMetadata


class UserTranscriptFrame(TypedDict):
    type: Literal["user_transcript"]
    user_transcription_event: UserTranscription


class ResponsePartFrame(TypedDict):
    type: Literal["agent_chat_response_part"]
    text_response_part: TextResponsePart


class AgentResponseFrame(TypedDict):
    type: Literal["agent_response"]
    agent_response_event: AgentResponse


class InterruptionFrame(TypedDict):
    type: Literal["interruption"]
    interruption_event: InterruptionEvent


class CorrectionFrame(TypedDict):
    type: Literal["agent_response_correction"]
    agent_response_correction_event: AgentResponseCorrection


class CompleteFrame(TypedDict):
    type: Literal["agent_response_complete"]
    agent_response_complete_event: AgentResponseComplete


class QueuedFrame(TypedDict):
    type: Literal["queued"]
    queued_event: QueuedEvent


class BudgetFrame(TypedDict):
    type: Literal["budget"]
    budget_event: BudgetEvent


class PingFrame(TypedDict):
    type: Literal["ping"]
    ping_event: PingEvent


class ErrorFrame(TypedDict):
    type: Literal["error"]
    error_event: ErrorEvent


# Audio goes through its own cheaper path (`audio_frame_json` / `audio_frame_binary`), not this union.
ServerFrame = (
    MetadataFrame
    | UserTranscriptFrame
    | ResponsePartFrame
    | AgentResponseFrame
    | InterruptionFrame
    | CorrectionFrame
    | CompleteFrame
    | QueuedFrame
    | BudgetFrame
    | PingFrame
    | ErrorFrame
)


def payload_of(frame: ServerFrame) -> dict[str, Any]:
    """The `<type>_event` body of a server frame (two vendor events name it differently)."""
    return cast(dict[str, Any], next(value for key, value in frame.items() if key != "type"))


def error_frame(code: str, message: str) -> ErrorFrame:
    return {"type": "error", "error_event": {"code": code, "message": message}}


def encode(frame: ServerFrame) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def audio_frame_json(
    audio_base_64: str, event_id: int, *, alignment: AlignmentPayload | None, words: list[WordTiming] | None
) -> str:
    """The vendor's `audio` frame, formatted without json.dumps of the base64 (it needs no escaping)."""
    extra = ""
    if alignment is not None:
        extra += ',"alignment":' + json.dumps(alignment, separators=(",", ":"), ensure_ascii=False)
    if words:
        extra += ',"words":' + json.dumps(words, separators=(",", ":"))
    return f'{{"type":"audio","audio_event":{{"audio_base_64":"{audio_base_64}","event_id":{event_id}{extra}}}}}'


def audio_frame_binary(pcm: bytes, event_id: int) -> bytes:
    return bytes((BINARY_AUDIO_KIND,)) + (event_id & 0xFFFFFFFF).to_bytes(4, "little") + pcm


def alignment_frame(
    event_id: int, message_id: str, *, alignment: AlignmentPayload | None, words: list[WordTiming] | None
) -> str:
    """(ext) The timing of the binary audio frame that follows, which has no room for it."""
    body: dict[str, Any] = {"event_id": event_id, "message_id": message_id, "alignment": alignment, "words": words}
    return json.dumps({"type": "audio_alignment", "audio_alignment_event": body}, separators=(",", ":"))


# --- client → server ------------------------------------------------------------------------------
@dataclass(frozen=True)
class UserMessage:
    text: object  # checked by limits.message_check, which knows the rules


@dataclass(frozen=True)
class Interrupt:
    pass


@dataclass(frozen=True)
class Pong:
    event_id: int


@dataclass(frozen=True)
class UserActivity:
    pass


@dataclass(frozen=True)
class PlaybackReport:
    message_id: str
    first_audible_ms: int | None
    underruns: int
    heard_ms: int | None


@dataclass(frozen=True)
class ClientData:
    """`conversation_initiation_client_data`: overrides and our own session options."""

    text_only: bool | None
    voice_id: str | None
    first_message: str | None
    language: str | None
    dynamic_variables: dict[str, str | int | float | bool]
    speak: bool | None
    binary_audio: bool
    # Vendor override fields voicechat has no switch for (e.g. "agent.prompt"), when sent non-null.
    unsupported_overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    speak: bool


@dataclass(frozen=True)
class Speak:
    message_id: str


@dataclass(frozen=True)
class ContextualUpdate:
    text: str


@dataclass(frozen=True)
class Feedback:
    score: Literal["like", "dislike"] | None
    event_id: int | None


@dataclass(frozen=True)
class UserAudioChunk:
    pass


ClientFrame = (
    UserMessage
    | Interrupt
    | Pong
    | UserActivity
    | PlaybackReport
    | ClientData
    | Settings
    | Speak
    | ContextualUpdate
    | Feedback
    | UserAudioChunk
)


class FrameError(ValueError):
    """A client frame that does not parse; `message` is what the client is told."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# Parsing stops at this depth: a 2 KB frame nested 1,000 deep must not reach the recursion limit.
MAX_JSON_DEPTH = 32


def parse_client_frame(text: str) -> ClientFrame:
    """One client text frame as a typed value, or FrameError saying what is wrong with it."""
    brackets = text.count("[") + text.count("{")  # C-speed pre-check: most frames have a handful
    if brackets > MAX_JSON_DEPTH and _nesting_depth(text) > MAX_JSON_DEPTH:
        raise FrameError(f"That frame is nested more than {MAX_JSON_DEPTH} levels deep.")
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        raise FrameError("That frame is not valid JSON.") from None
    if not isinstance(message, dict):
        raise FrameError('Each frame must be a JSON object with a "type".')
    if "user_audio_chunk" in message:  # the vendor's audio frames carry no type
        return UserAudioChunk()
    return _parse_typed(message)


def _parse_typed(message: dict[str, Any]) -> ClientFrame:
    match message.get("type"):
        case "user_message":
            return UserMessage(text=message.get("text"))
        case "interrupt":
            return Interrupt()
        case "pong":
            return Pong(event_id=_whole(message.get("event_id"), "event_id", default=-1))
        case "user_activity":
            return UserActivity()
        case "playback_report":
            return _playback_report(message)
        case "conversation_initiation_client_data":
            return _client_data(message)
        case "settings":
            return Settings(speak=_flag(message.get("speak"), "speak", default=True))
        case "speak":
            return Speak(message_id=_string(message.get("message_id"), "message_id"))
        case "contextual_update":
            return ContextualUpdate(text=_string(message.get("text"), "text"))
        case "feedback":
            return _feedback(message)
        case other:
            raise FrameError(f"Unknown message type {str(other)[:40]!r}.")


def _playback_report(message: dict[str, Any]) -> PlaybackReport:
    limit = 3_600_000
    first = message.get("first_audible_ms")
    heard = message.get("heard_ms")
    return PlaybackReport(
        message_id=_string(message.get("message_id"), "message_id"),
        first_audible_ms=None if first is None else _whole(first, "first_audible_ms", maximum=limit),
        underruns=_whole(message.get("underruns", 0), "underruns", maximum=1_000_000),
        heard_ms=None if heard is None else _whole(heard, "heard_ms", maximum=limit),
    )


def _client_data(message: dict[str, Any]) -> ClientData:
    override = _object(message.get("conversation_config_override"), "conversation_config_override")
    conversation = _object(override.get("conversation"), "conversation_config_override.conversation")
    tts = _object(override.get("tts"), "conversation_config_override.tts")
    agent = _object(override.get("agent"), "conversation_config_override.agent")
    ours = _object(message.get("voicechat"), "voicechat")
    variables = _object(message.get("dynamic_variables"), "dynamic_variables")
    if not all(isinstance(v, str | int | float | bool) for v in variables.values()):
        raise FrameError("dynamic_variables values must be strings, numbers or booleans.")
    text_only = conversation.get("text_only", override.get("text_only"))  # the Python SDK sends both forms
    return ClientData(
        text_only=None if text_only is None else _flag(text_only, "text_only", default=False),
        voice_id=_optional_string(tts.get("voice_id"), "tts.voice_id"),
        first_message=_optional_string(agent.get("first_message"), "agent.first_message"),
        language=_optional_string(agent.get("language"), "agent.language"),
        dynamic_variables={str(k)[:100]: v for k, v in variables.items()},
        speak=None if ours.get("speak") is None else _flag(ours.get("speak"), "voicechat.speak", default=True),
        binary_audio=_flag(ours.get("binary_audio", False), "voicechat.binary_audio", default=False),
        unsupported_overrides=tuple(
            f"{section}.{name}"
            for section, part, names in (("agent", agent, UNSUPPORTED_AGENT), ("tts", tts, UNSUPPORTED_TTS))
            for name in names
            if part.get(name) is not None
        ),
    )


# Vendor overrides without a voicechat counterpart: refused (chat/overrides.py), never silently ignored.
UNSUPPORTED_AGENT = ("prompt",)
UNSUPPORTED_TTS = ("stability", "speed", "similarity_boost")


def _feedback(message: dict[str, Any]) -> Feedback:
    score = message.get("score")
    if score not in ("like", "dislike", None):
        raise FrameError('feedback "score" must be "like", "dislike" or null.')
    event_id = message.get("event_id")
    return Feedback(score=score, event_id=None if event_id is None else _whole(event_id, "event_id"))


def _whole(value: object, name: str, *, maximum: int = 2**53, default: int | None = None) -> int:
    # bool is an int in Python; a client sending `true` as a number is wrong, not 1.
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < maximum:
        raise FrameError(f'"{name}" must be a whole number from 0 to {maximum - 1}.')
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise FrameError(f'"{name}" must be a whole number.')
    return int(value)


def _flag(value: object, name: str, *, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise FrameError(f'"{name}" must be true or false.')
    return value


def _string(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise FrameError(f'"{name}" must be a non-empty string.')
    return value


def _optional_string(value: object, name: str) -> str | None:
    return None if value is None else _string(value, name)


def _object(value: object, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FrameError(f'"{name}" must be a JSON object.')
    return value


def _nesting_depth(text: str) -> int:
    """How deep brackets nest outside strings: cheap, and bounded before json.loads recurses."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    return deepest
        elif char in "]}":
            depth -= 1
    return deepest
