"""The whole-reply baseline: nothing is spoken until the reply is complete, then all of it in one request."""

from __future__ import annotations

from chat.speech.chunk import Chunker, SpeechChunk, join_chunks
from chat.speech.chunker import SpeechChunker


class WholeReplyChunker(Chunker):
    """Holds everything back and speaks the whole reply as one chunk at the end (the benchmark's
    baseline, SPEECH_MODE=whole_reply): the same speech text as SpeechChunker's chunks, joined."""

    def __init__(self, *, breaks: bool = False) -> None:
        self._chunker = SpeechChunker(breaks=breaks)
        self._chunks: list[SpeechChunk] = []

    def feed(self, delta: str) -> list[SpeechChunk]:
        self._chunks += self._chunker.feed(delta)
        return []

    def flush(self) -> list[SpeechChunk]:
        chunks = self._chunks + self._chunker.flush()
        self._chunks = []
        return [join_chunks(chunks)] if chunks else []

    def reset(self) -> None:
        self._chunker.reset()
        self._chunks = []
