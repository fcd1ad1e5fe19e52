"""The contracts every LLM and TTS provider fulfils, and the one error type they raise."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field


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
    extra: dict[str, str] = field(default_factory=dict)


class TTSProvider(ABC):
    """Turns text into raw PCM s16le mono at `sample_rate`, streamed as it is produced."""

    name: str = "tts"

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
