"""What of an LLM reply is spoken, and in which pieces — streaming, as the deltas arrive.

`SpeechChunker.feed(delta)` filters markdown out of the speech (`markdown`, `inline`), reads LaTeX math
aloud (`math`) and cuts what is left into TTS-sized chunks at sentence ends confirmed by the next
character (`chunker`). Each `SpeechChunk` knows, per character, where in the displayed reply it came
from, so `timing.word_timings` can turn the vendor's character alignment into word timings of the
displayed text. The displayed text is never touched; only what goes to the TTS vendor is.
"""

from __future__ import annotations

from chat.speech.chunk import Chunker, SpeechChunk, join_chunks
from chat.speech.chunker import SpeechChunker
from chat.speech.timing import ChunkTiming, WordTiming, estimate_alignment, word_timings
from chat.speech.whole import WholeReplyChunker

__all__ = [
    "ChunkTiming",
    "Chunker",
    "SpeechChunk",
    "SpeechChunker",
    "WholeReplyChunker",
    "WordTiming",
    "estimate_alignment",
    "join_chunks",
    "speakable_text",
    "word_timings",
]


def speakable_text(text: str, *, breaks: bool = False) -> str:
    """Whole-text convenience: the speech of a complete reply (its chunks joined with spaces)."""
    chunker = SpeechChunker(breaks=breaks)
    return " ".join(chunk.text for chunk in chunker.feed(text) + chunker.flush())
