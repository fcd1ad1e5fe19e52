"""What a chunker hands to the TTS side: speech text that knows where in the displayed reply it came from."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SpeechChunk:
    """One TTS request's text, and for each of its characters the offset in the displayed reply (the
    concatenation of the deltas fed since the last flush or reset) that it was derived from, or -1 for
    characters the filter inserted (joining spaces, added periods, spoken math, "the link", break tags)."""

    text: str
    offsets: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.offsets) != len(self.text):
            raise ValueError(f"{len(self.offsets)} offsets for {len(self.text)} characters")

    def display_span(self) -> tuple[int, int] | None:
        """The displayed text this chunk speaks, as [start, end), or None when it maps to nothing shown."""
        shown = [offset for offset in self.offsets if offset >= 0]
        return (min(shown), max(shown) + 1) if shown else None


def join_chunks(chunks: Sequence[SpeechChunk]) -> SpeechChunk:
    """Several chunks as one, joined by inserted spaces."""
    text = " ".join(chunk.text for chunk in chunks)
    offsets: list[int] = []
    for i, chunk in enumerate(chunks):
        if i:
            offsets.append(-1)
        offsets.extend(chunk.offsets)
    return SpeechChunk(text, tuple(offsets))


class Chunker(ABC):
    """Streaming text in, TTS chunks out: one reply at a time (after pipecat's base text aggregator)."""

    @abstractmethod
    def feed(self, delta: str) -> list[SpeechChunk]:
        """Take the next LLM text delta (any split); return the chunks it completed."""

    @abstractmethod
    def flush(self) -> list[SpeechChunk]:
        """End of the reply: return what remains, and start afresh for the next reply."""

    @abstractmethod
    def reset(self) -> None:
        """Forget the reply in progress (it was interrupted); the next delta starts a new reply."""
