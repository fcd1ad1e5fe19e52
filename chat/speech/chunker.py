"""Cuts streaming speech text into the pieces sent to the TTS vendor, as soon as each one is certain.

A cut is certain when the character after a sentence end shows that a new sentence starts; every decision
looks only at text already seen and never changes, so any split of the deltas gives the same chunks.
"""

from __future__ import annotations

import re

from chat.speech.markdown import MarkdownSpeech

_CANDIDATE = re.compile(r"\n|[.!?…]+|[。！？｡।॥؟]+|[,;:،؛](?=\s)|[，、；：]|\s[-–—](?=\s)|—")
_LATIN_END = re.compile(r"[.!?…]+(?:[\"”’')\]）」』«»]| ?[»›])*")
_HARD_END = re.compile(r"[。！？｡।॥؟!?]+[」』）》〉】\"”’)\]]*")
_BREAK = re.compile(r"(?:[.!?…,;:،؛](?=\s)|[，、；：。！？]|\s[-–—](?=\s))")
_CLOSERS = '」』）》〉】"”’)]'
_OPENERS = "\"'“‘«„‚‹(（[¿¡「『"
_ABBREVIATIONS = frozenset(  # not ends even before a capital: Mr. Smith, vs. Rust
    {"mr", "mrs", "ms", "mx", "dr", "prof", "st", "sr", "jr", "vs", "v", "mt", "gen", "col", "lt", "sgt", "capt"}
    | {"rev", "hon", "fr", "approx", "ca", "cf", "al", "viz"}
)
_BEFORE_NUMBERS = frozenset(["no", "nos", "nr", "vol", "fig", "p", "pp", "ch", "sec", "art"])
_INITIALS = re.compile(r"(?:[^\W\d_]\.)*[^\W\d_]")  # e.g, i.e, U.S, J
_WAIT, _NO = -1, -2


def clean(text: str) -> str:
    return " ".join(text.split())


def speakable(text: str) -> bool:
    return any(char.isalnum() for char in text)


def wide_chars(text: str) -> int:
    """CJK characters: a sentence of them holds as much speech as a Latin one twice as long."""
    return sum(1 for char in text if "\u3040" <= char <= "\u9fff" or "\uac00" <= char <= "\ud7af")


def _confirms(char: str) -> bool:
    """Does this character, after a sentence mark and a space, start a new sentence?"""
    return char.isdigit() or char in _OPENERS or (char.isalpha() and not char.islower())


class SpeechChunker:
    """Feed LLM text deltas, get speakable chunks: sentences (or a long first clause), merged when too
    short, split when too long, with markdown, code, URLs, emoji and reasoning blocks filtered out."""

    def __init__(self, *, first_min_chars: int = 40, min_words: int = 4, min_chars: int = 50, max_chars: int = 400):
        self.first_min_chars = first_min_chars
        self.min_words = min_words
        self.min_chars = min_chars
        self.max_chars = max_chars
        self._filter = MarkdownSpeech()
        self._text = ""  # speech since the last chunk
        self._scan = 0  # no cut is possible before it
        self._piece = 0  # where the piece after the last (held) cut starts
        self._sent = 0

    def feed(self, delta: str) -> list[str]:
        """Take the next LLM text delta (any split); return the speakable chunks completed by it."""
        return self._take(self._filter.feed(delta))

    def flush(self) -> list[str]:
        """End of the reply: return whatever speakable text remains."""
        chunks = self._take(self._filter.close())
        while len(clean(self._text)) > self.max_chars:
            chunks += self._split()
        chunks += self._emit(len(self._text), len(self._text))
        self._filter = MarkdownSpeech()
        return chunks

    def too_short(self, chunk: str) -> bool:
        """The merge rule: a chunk this short (after the first) waits to be joined with the next one."""
        wide = wide_chars(chunk)
        return len(chunk) + wide < self.min_chars or len(chunk.split()) + wide < self.min_words

    def _take(self, speech: str) -> list[str]:
        self._text += speech
        chunks: list[str] = []
        while True:
            found = _CANDIDATE.search(self._text, self._scan)
            known = found.start() if found else len(self._text) - 2  # text before it holds no cut
            if known > self.max_chars:
                chunks += self._split()
                continue
            if found is None or (cut := self._judge(found))[0] == _WAIT:
                return chunks
            if cut[0] > self.max_chars:  # a run of marks ("...", "!!!") that crosses the limit
                chunks += self._split()
                continue
            self._scan = cut[1]
            if cut[0] != _NO:
                chunks += self._cut(*cut)

    def _judge(self, found: re.Match[str]) -> tuple[int, int]:
        """(end of the piece, where scanning goes on); _WAIT when the text so far cannot tell, _NO for no cut."""
        mark = found.group()[0]
        if mark == "\n":
            return found.start(), found.end()
        if mark in ".!?…":
            return self._judge_latin(found.start())
        if mark in "。！？｡।॥؟":
            return self._judge_hard(found)
        return self._judge_clause(found.end())

    def _judge_hard(self, found: re.Match[str]) -> tuple[int, int]:
        end = _HARD_END.match(self._text, found.start()).end()  # type: ignore[union-attr]  # always matches
        if end >= len(self._text):
            return _WAIT, _WAIT
        quoted = self._text[end - 1] in _CLOSERS
        if quoted and "\u3040" <= self._text[end] <= "\u309f":
            return _NO, end  # 「…。」と言った: a particle after the quote carries the sentence on
        return end, end

    def _judge_clause(self, end: int) -> tuple[int, int]:
        """A comma, colon, semicolon or dash ends the first chunk, when it is long enough, outside brackets."""
        head = self._text[:end]
        if self._sent or len(clean(head)) < self.first_min_chars or head.count("(") > head.count(")"):
            return _NO, end
        return end, end

    def _judge_latin(self, start: int) -> tuple[int, int]:
        end = _LATIN_END.match(self._text, start).end()  # type: ignore[union-attr]  # always matches
        if self._text.startswith("\n", end):
            return end, end + 1
        if end + 1 >= len(self._text):
            return _WAIT, _WAIT
        if not self._text[end].isspace():
            return _NO, end  # 3.14, $29.99, e.g., U.S.A
        following = self._text[end + 1]
        if _confirms(following) and not self._abbreviation(start, end, following):
            return end, end + 1
        return _NO, end

    def _abbreviation(self, start: int, end: int, following: str) -> bool:
        if self._text[start:end].rstrip(_OPENERS + "\"”’')]»›«") != ".":
            return False
        begin = max(self._text.rfind(" ", 0, start), self._text.rfind("\n", 0, start)) + 1
        word = self._text[begin:start].lstrip(_OPENERS).lower()
        if word in _BEFORE_NUMBERS:
            return following.isdigit()
        return word in _ABBREVIATIONS or bool(_INITIALS.fullmatch(word))

    def _cut(self, end: int, resume: int) -> list[str]:
        if not speakable(self._text[self._piece : end]):  # an emoji-only line, a lone dash: nothing to say
            self._text = self._text[: self._piece] + self._text[resume:]
            self._scan = self._piece
            return []
        chunk = clean(self._text[:end])
        if self._sent and self.too_short(chunk):
            self._piece = resume
            return []
        return self._emit(end, resume)

    def _emit(self, end: int, resume: int) -> list[str]:
        chunk = clean(self._text[:end])
        self._text, self._scan, self._piece = self._text[resume:], 0, 0
        if not speakable(chunk):
            return []
        self._sent += 1
        return [chunk]

    def _split(self) -> list[str]:
        """Over max_chars with no sentence end: cut at the last clause break that leaves a chunk long enough,
        else at the last space."""
        window = self._text[: self.max_chars + 1]
        breaks = [b.end() for b in _BREAK.finditer(window) if b.end() <= self.max_chars]
        fitting = next((end for end in reversed(breaks) if not self.too_short(clean(window[:end]))), None)
        space = max(window.rfind(" "), window.rfind("\n"))
        end = fitting or (space if space > 0 else self.max_chars)
        return self._emit(end, end)
