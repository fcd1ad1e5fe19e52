"""Cuts streaming speech text into the pieces sent to the TTS vendor, as soon as each one is certain.

A cut is certain when the character after a sentence end shows that a new sentence starts (in CJK text,
the character after 。！？ is enough); every decision looks only at text already seen and never changes,
so any split of the deltas gives the same chunks. A run of text with no sentence end is cut at a clause
or a word once it grows past `run_on_chars`. Each chunk carries, per character, the offset in the
displayed reply it was derived from.
"""

from __future__ import annotations

import re

from chat.speech.chunk import Chunker, SpeechChunk
from chat.speech.markdown import MarkdownSpeech

_CANDIDATE = re.compile(r"\n|[.!?…]+|[。！？．｡।॥؟]+|[,;:،؛](?=\s)|[，、；：]|\s[-–—](?=\s)|—")
_LATIN_END = re.compile(r"[.!?…]+(?:[\"”’')\]）」』«»]| ?[»›])*")
_HARD_END = re.compile(r"[。！？．｡।॥؟!?.…]+[」』）》〉】\"”’)\]]*")
_BREAK = re.compile(r"(?:[.!?…,;:،؛](?=\s)|[，、；：。！？．]|\s[-–—](?=\s))")
_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
_WIDE = re.compile(r"[\u3040-\u9fff\uac00-\ud7af]")
_PAUSE = re.compile(r"<break [^>]*/>")
_IRREGULAR_SPACE = re.compile(r"\s{2,}|[^\S ]")
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
    if "<" in text:
        text = _PAUSE.sub(" ", text)
    return any(char.isalnum() for char in text)


def wide_chars(text: str) -> int:
    """CJK characters: a sentence of them holds as much speech as a Latin one twice as long."""
    return len(_WIDE.findall(text))


def _confirms(char: str) -> bool:
    """Does this character, after a sentence mark and a space, start a new sentence (or a pause)?"""
    return char.isdigit() or char in _OPENERS or char == "<" or (char.isalpha() and not char.islower())


def _collapsed(text: str, offsets: list[int]) -> SpeechChunk:
    """The chunk for this speech: whitespace runs become one inserted space, ends trimmed."""
    start, end = len(text) - len(text.lstrip()), len(text.rstrip())
    parts: list[str] = []
    kept: list[int] = []
    for run in _IRREGULAR_SPACE.finditer(text, start, end):  # most spaces are single already
        parts.append(text[start : run.start()])
        kept += offsets[start : run.start()]
        parts.append(" ")
        kept.append(-1)
        start = run.end()
    parts.append(text[start:end])
    kept += offsets[start:end]
    return SpeechChunk("".join(parts), tuple(kept))


class SpeechChunker(Chunker):
    """Feed LLM text deltas, get speakable chunks: sentences (or a long first clause), merged when too
    short, split when too long, with markdown, code, URLs, emoji and reasoning blocks filtered out and
    math read aloud. `breaks`: SSML <break time="…"/> pauses pass through (clamped, normalised)."""

    def __init__(
        self,
        *,
        first_min_chars: int = 40,
        min_words: int = 4,
        min_chars: int = 50,
        max_chars: int = 400,
        run_on_chars: int = 160,
        breaks: bool = False,
    ):
        self.first_min_chars = first_min_chars
        self.min_words = min_words
        self.min_chars = min_chars
        self.max_chars = max_chars
        self.run_on_chars = run_on_chars  # CJK characters count twice, as in the merge rule
        self.breaks = breaks
        self.reset()

    def reset(self) -> None:
        self._filter = MarkdownSpeech(breaks=self.breaks)
        self._text = ""  # speech since the last chunk
        self._offsets: list[int] = []  # the displayed offset of each character of _text
        self._scan = 0  # no cut is possible before it
        self._piece = 0  # where the piece after the last (held) cut starts
        self._sent = 0
        self._closing = False

    def feed(self, delta: str) -> list[SpeechChunk]:
        """Take the next LLM text delta (any split); return the speakable chunks completed by it."""
        return self._take(*self._filter.feed(delta))

    def flush(self) -> list[SpeechChunk]:
        """End of the reply: return whatever speakable text remains; the next delta starts a new reply."""
        self._closing = True  # the rest is known: only the hard cap splits it, no tiny last chunk
        chunks = self._take(*self._filter.close())
        while self._over(len(self._text.rstrip())):
            chunks += self._split()
        chunks += self._emit(len(self._text), len(self._text))
        self.reset()
        return chunks

    def too_short(self, chunk: str) -> bool:
        """The merge rule: a chunk this short (after the first) waits to be joined with the next one."""
        if "<" in chunk:
            chunk = " ".join(_PAUSE.sub(" ", chunk).split())
        wide = wide_chars(chunk)
        return len(chunk) + wide < self.min_chars or len(chunk.split()) + wide < self.min_words

    def _over(self, end: int) -> bool:
        """Is the speech before `end` longer than one chunk may be?"""
        if end > self.max_chars:
            return True
        if self._closing or end <= self.run_on_chars // 2:  # a run-on cut only helps while text still arrives
            return False
        return end + wide_chars(self._text[:end]) > self.run_on_chars

    def _take(self, speech: str, offsets: list[int]) -> list[SpeechChunk]:
        if not speech:
            return []  # every decision depends on the text alone: no new text, no new cut
        self._text += speech
        self._offsets += offsets
        chunks: list[SpeechChunk] = []
        while True:
            found = _CANDIDATE.search(self._text, self._scan)
            known = found.start() if found else len(self._text) - 2  # text before it holds no cut
            if self._over(known):
                chunks += self._split()
                continue
            if found is None or (cut := self._judge(found))[0] == _WAIT:
                return chunks
            if cut[0] >= 0 and self._over(cut[0]):  # a run of marks ("...", "!!!") that crosses the limit
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
            after_cjk = found.start() > 0 and _CJK.match(self._text, found.start() - 1)
            return self._judge_hard(found) if after_cjk else self._judge_latin(found.start())
        if mark in "。！？．｡।॥؟":
            return self._judge_hard(found)
        return self._judge_clause(found.end())

    def _judge_hard(self, found: re.Match[str]) -> tuple[int, int]:
        """An end mark of a language written without spaces: the next character settles it."""
        end = _HARD_END.match(self._text, found.start()).end()  # type: ignore[union-attr]  # always matches
        if end >= len(self._text):
            return _WAIT, _WAIT
        following = self._text[end]
        if following.isascii() and following.isalnum():
            return _NO, end  # 東京.com, not an end
        if self._text[end - 1] in _CLOSERS and "\u3040" <= following <= "\u309f":
            return _NO, end  # 「…。」と言った: a particle after the quote carries the sentence on
        return end, end

    def _judge_clause(self, end: int) -> tuple[int, int]:
        """A comma, colon, semicolon or dash ends the first chunk, when it is long enough, outside brackets."""
        head = self._text[:end]
        long_enough = len(clean(head)) + wide_chars(head) >= self.first_min_chars
        if self._sent or not long_enough or head.count("(") > head.count(")"):
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

    def _cut(self, end: int, resume: int) -> list[SpeechChunk]:
        piece = self._text[self._piece : end]
        if not speakable(piece):
            if "<" in piece:  # a pause alone goes with the next sentence
                self._piece = resume
                return []
            # an emoji-only line, a lone dash: nothing to say
            self._text = self._text[: self._piece] + self._text[resume:]
            del self._offsets[self._piece : resume]
            self._scan = self._piece
            return []
        if self._sent and self.too_short(clean(self._text[:end])):
            self._piece = resume
            return []
        return self._emit(end, resume)

    def _emit(self, end: int, resume: int) -> list[SpeechChunk]:
        chunk = _collapsed(self._text[:end], self._offsets[:end])
        self._text, self._scan, self._piece = self._text[resume:], 0, 0
        del self._offsets[:resume]
        if not speakable(chunk.text):
            return []
        self._sent += 1
        return [chunk]

    def _window(self) -> int:
        """The longest start of the speech that fits in one chunk."""
        if self._closing:
            return min(len(self._text), self.max_chars)
        end = min(len(self._text), self.max_chars, self.run_on_chars)
        wide = wide_chars(self._text[:end])
        while end + wide > self.run_on_chars:
            end -= 1
            wide -= bool(_WIDE.match(self._text, end))
        return end

    def _split(self) -> list[SpeechChunk]:
        """Too long with no sentence end: cut at the last clause break that leaves a chunk long enough,
        else at the last space, else (CJK) at the limit — never inside a pause tag."""
        limit = self._window()
        window = self._text[: limit + 1]
        breaks = [b.end() for b in _BREAK.finditer(window) if b.end() <= limit]
        fitting = next((end for end in reversed(breaks) if not self.too_short(clean(window[:end]))), None)
        space = max(window.rfind(" "), window.rfind("\n"))
        end = fitting or (space if space > 0 else limit)
        if (tag := self._text.rfind("<", 0, end)) >= 0 and self._text.find(">", tag, end) < 0:
            end = tag or self._text.find(">", end) + 1
        end = max(end, 1)  # always progress, whatever the options
        return self._emit(end, end)
