"""The contracts every LLM and TTS provider fulfils, and the one error type they raise."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass


class ProviderError(Exception):
    """A vendor problem translated to a stable protocol error code and a message a person can act on.

    `retryable` is True for failures worth another attempt (429, 5xx, connect errors before the first
    byte); providers retry those themselves and raise only when giving up.
    """

    def __init__(self, code: str, message: str, *, retryable: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.status = status


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


class LLMProvider(ABC):
    """Streams a reply to a conversation as text deltas."""

    @abstractmethod
    def stream(self, messages: Sequence[ChatMessage]) -> AsyncGenerator[str, None]:
        """Yield the reply's text deltas; raise ProviderError("llm_unavailable", ...) on failure."""


@dataclass(frozen=True)
class VoiceSettings:
    stability: float = 0.5
    similarity_boost: float = 0.75
    style: float = 0.0
    speed: float = 1.0
    use_speaker_boost: bool = True


@dataclass(frozen=True)
class SpeechRequest:
    """One chunk of speakable text plus the context that keeps prosody continuous across chunks."""

    text: str
    voice_id: str = ""
    model_id: str = ""
    voice_settings: VoiceSettings = VoiceSettings()
    language_code: str = ""
    previous_text: str = ""
    next_text: str = ""
    previous_request_ids: tuple[str, ...] = ()


@dataclass
class SpeechReceipt:
    """Filled in by the provider while a request runs: what the vendor said it billed and called it."""

    request_id: str = ""
    characters: int = 0
    first_byte_at: float | None = None  # time.monotonic() of the first audio byte


class TTSProvider(ABC):
    """Turns text into raw PCM s16le mono at `sample_rate`, streamed as it is produced."""

    name: str = "tts"
    metered: bool = True  # the vendor bills per character, so speech budgets apply (chat/limits)

    @property
    @abstractmethod
    def sample_rate(self) -> int:
        """Samples per second of the PCM this provider yields."""

    @property
    def output_format(self) -> str:
        return f"pcm_{self.sample_rate}"

    @abstractmethod
    def synthesize(self, request: SpeechRequest, receipt: SpeechReceipt) -> AsyncGenerator[bytes, None]:
        """Yield PCM bytes (any split, not necessarily whole samples) as they arrive.

        Raise ProviderError for failures. Closing the iterator (aclose or task cancellation) must
        close the upstream request at once.
        """


# --- whole-reply backends ----------------------------------------------------------------------
# The events every reply backend yields to the turn lifecycle, whichever produced them: the LLM + TTS
# pipeline in chat/turns, or a vendor agent (chat/providers/elevenlabs_agent.py) that writes and
# speaks the reply itself.


@dataclass(frozen=True)
class Alignment:
    """Per character of the speech text of one audio part; milliseconds relative to that part's start."""

    chars: tuple[str, ...]
    char_start_times_ms: tuple[int, ...]
    char_durations_ms: tuple[int, ...]


@dataclass(frozen=True)
class TextDelta:
    text: str  # displayed reply text, in order


@dataclass(frozen=True)
class AudioPart:
    pcm: bytes  # s16le mono at the session's sample rate, any split
    alignment: Alignment | None = None
    text: str = ""  # the speech text this audio says, when known


@dataclass(frozen=True)
class Correction:
    text: str  # the reply text that was kept; replaces what was streamed


ReplyEvent = TextDelta | AudioPart | Correction


@dataclass(frozen=True)
class ReplyUsage:
    """What a whole-reply backend billed for its last reply, for the message's record."""

    characters: int = 0  # characters of speech the vendor spoke
    call_seconds: float | None = None  # vendor call time the reply accounts for (agents bill per minute)
    vendor_ids: tuple[str, ...] = ()  # the vendor's ids for it (an agent's conversation id)


class ReplySession(ABC):
    """One open conversation's connection to a backend that writes and speaks whole replies."""

    name: str = ""  # recorded as the reply's backend

    @property
    @abstractmethod
    def sample_rate(self) -> int:
        """Samples per second of the PCM in the AudioParts it yields."""

    @abstractmethod
    def reply(self, text: str) -> AsyncGenerator[ReplyEvent, None]:
        """One user turn: yield the reply's events in order; raise ProviderError on failure."""

    @abstractmethod
    async def interrupt(self) -> None:
        """The current reply was cut short by the user; no more of its events may follow."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close the upstream connection."""

    def usage(self) -> ReplyUsage:
        """What the last reply billed; backends that know override this."""
        return ReplyUsage()
