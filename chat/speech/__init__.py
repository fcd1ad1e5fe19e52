"""What of an LLM reply is spoken, and in which pieces — streaming, as the deltas arrive.

`SpeechChunker.feed(delta)` filters markdown out of the speech (`markdown`, `inline`) and cuts what is
left into TTS-sized chunks at sentence ends confirmed by the next character (`chunker`). The displayed
text is never touched; only what goes to the TTS vendor is.
"""

from __future__ import annotations

from chat.speech.chunker import SpeechChunker

__all__ = ["SpeechChunker", "WholeReplyChunker", "speakable_text"]


def speakable_text(text: str) -> str:
    """Whole-text convenience: the speech of a complete reply (its chunks joined with spaces)."""
    chunker = SpeechChunker()
    return " ".join(chunker.feed(text) + chunker.flush())


class WholeReplyChunker:
    """The peers' baseline: hold everything back and speak the whole reply in one request at the end."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def feed(self, delta: str) -> list[str]:
        self.parts.append(delta)
        return []

    def flush(self) -> list[str]:
        text = speakable_text("".join(self.parts))
        return [text] if text else []
