"""The contracts every LLM and TTS provider fulfils, and the one error type they raise."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
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
class Alignment:
    """When each character is heard: parallel tuples, one entry per character, times in milliseconds.

    From a TTS provider the characters are consecutive characters of the request's text and the times are
    relative to the start of that request's audio; in an AudioPart they are relative to that part's start.
    """

    chars: tuple[str, ...]
    char_start_times_ms: tuple[int, ...]
    char_durations_ms: tuple[int, ...]


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


@dataclass(frozen=True)
class Voice:
    """One voice of a TTS provider's library, as an operator or a user picks it."""

    voice_id: str
    name: str
    category: str = ""  # the vendor's grouping: premade, cloned, generated, professional; eSpeak: its language
    description: str = ""
    language: str = ""
    preview_url: str = ""  # the vendor's sample; never sent to a browser as is (served through our server)


@dataclass(frozen=True)
class TTSModel:
    """One text-to-speech model a provider offers."""

    model_id: str
    name: str
    description: str = ""
    languages: tuple[str, ...] = ()
    max_characters: int | None = None  # per request, as the vendor enforces it


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

    @property
    def default_voice_id(self) -> str:
        """The voice used when a request names none."""
        return ""

    @property
    def default_model_id(self) -> str:
        """The model used when a request names none ("" for a provider without models)."""
        return ""

    def list_voices(self, *, limit: int) -> list[Voice]:
        """The voices this provider can speak with, at most `limit`; [] when it has no library.

        Blocking (it may call the vendor); raise ProviderError with a message an operator can act on.
        """
        return []

    def list_models(self) -> list[TTSModel]:
        """The text-to-speech models this provider offers; [] when it has no choice of model. Blocking."""
        return []

    def supports_breaks(self, model_id: str = "") -> bool:
        """Whether SSML `<break time="…"/>` tags in the text become pauses with `model_id` (blank: the default)."""
        return False

    @abstractmethod
    def synthesize(self, request: SpeechRequest, receipt: SpeechReceipt) -> AsyncGenerator[bytes | Alignment, None]:
        """Yield PCM bytes (any split, not necessarily whole samples) as they arrive, and timing when known.

        An `Alignment` item, when the provider has one, comes before the PCM whose characters it times, so
        a consumer can attach it to the audio that follows. Taken together the alignments of one request
        list the characters of `request.text` in order, each once (eSpeak exactly; a vendor's own alignment
        may differ slightly, so consumers match it to the text); their times are milliseconds from the
        start of this request's audio. A provider may yield no alignment at all.

        Raise ProviderError for failures. Closing the iterator (aclose or task cancellation) must
        close the upstream request at once.
        """


# --- whole-reply backends ----------------------------------------------------------------------
# The events every reply backend yields to the turn lifecycle, whichever produced them: the LLM + TTS
# pipeline in chat/turns, or a vendor agent (chat/providers/elevenlabs_agent.py) that writes and
# speaks the reply itself.


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


# --- streaming TTS -----------------------------------------------------------------------------
class SpeechStream(ABC):
    """One reply's speech over a streaming TTS connection: text goes in as it is written, audio comes out.

    Iterate it for `AudioPart`s (PCM, any split, each with the vendor's alignment relative to that part
    when it sent one); iteration ends once the audio of everything sent has arrived after `end()`, and
    raises ProviderError when the vendor fails. Waiting for the next part may be cut short (a timeout
    around `anext`) without losing anything. `receipt` fills in as it runs (characters sent, first byte).
    """

    receipt: SpeechReceipt

    @abstractmethod
    async def send(self, text: str) -> None:
        """Speak `text` after what was sent before; the vendor starts on it at once (a flush)."""

    @abstractmethod
    async def end(self) -> None:
        """No more text comes: the audio of what was sent still follows, then iteration ends."""

    @abstractmethod
    async def close(self) -> None:
        """Stop now (interrupt, cancel, failure): the upstream stream is closed and no more audio is
        yielded, whatever the vendor still sends. Safe to call more than once, and after `end()`."""

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[AudioPart]: ...


class StreamingTTSProvider(TTSProvider):
    """A TTS provider that keeps one stream open per reply (the vendor's WebSocket) rather than making a
    request per chunk. It is still a TTSProvider: `synthesize` speaks one text over a stream of its own,
    for callers that have the whole text (Play, greetings)."""

    @abstractmethod
    async def open_stream(self, request: SpeechRequest, receipt: SpeechReceipt | None = None) -> SpeechStream:
        """A stream in `request`'s voice, model and settings (its text is not sent) that fills `receipt`
        as it runs; raise ProviderError when it cannot be opened."""

    async def synthesize(self, request: SpeechRequest, receipt: SpeechReceipt) -> AsyncGenerator[bytes, None]:
        # PCM only, as the TTSProvider contract says; callers that want the vendor's timing use open_stream.
        stream = await self.open_stream(request, receipt)
        try:
            await stream.send(request.text)
            await stream.end()
            async for part in stream:
                yield part.pcm
        finally:
            await stream.close()
