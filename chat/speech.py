"""What of an LLM reply is spoken, and in which pieces — streaming, as the deltas arrive.

`SpeechChunker.feed(delta)` turns markdown deltas into speakable chunks: the filter drops markdown
syntax, code, URLs, HTML, emoji and reasoning blocks line by line, and the chunker cuts the speech at
sentence ends that the next character confirms, merging short sentences and splitting long ones.
The displayed text is never touched; only what goes to the TTS vendor is.
"""

from __future__ import annotations

import html
import re
import unicodedata

# --- the markdown filter ------------------------------------------------------------------------
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^#{1,6}(?:[ \t]+|$)")
_BULLET = re.compile(r"^[-*+][ \t]+")
_ORDERED = re.compile(r"^\d{1,3}[.)][ \t]+")
_QUOTE = re.compile(r"^(?:>[ \t]?)+")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_TABLE_SEPARATOR = re.compile(r"^\|?[\s:|-]*-[\s:|-]*$")
_BLOCK_TAG = re.compile(r"^\s*<(think|thinking|details|reasoning)\b[^>]*>", re.IGNORECASE)
_MAYBE_MARKER = re.compile(r"^(?:`{1,2}|~{1,2}|#{1,6}|[-*+_]|\d{1,3}[.)]?|<[^>\n]*|[-*_ \t]+)$")

_IMAGE = re.compile(r"!\[[^\]\n]*\]\([^)\n]*\)")
_LINK = re.compile(r"\[([^\]\n]*)\]\([^)\n]*\)")
_CODE_SPAN = re.compile(r"`+([^`\n]*)`+")
_TAG = re.compile(r"</?[A-Za-z][^>\n]*>|<https?://[^>\s]*>")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_EMPHASIS = re.compile(r"\*+|~~|(?<!\w)_+|_+(?!\w)")
_SYMBOLS = re.compile(r"[#*`|<>\[\]{}^\\]+")
_KEEP_SYMBOLS = set("°©®™€£¥$%&§")
_TERMINAL = ".!?…。！？।؟:;"


def _is_emoji(char: str) -> bool:
    if char in _KEEP_SYMBOLS:
        return False
    code = ord(char)
    return (
        unicodedata.category(char) in ("So", "Sk", "Cs", "Co")
        or char in "\u200d\ufe0f\ufe0e\u20e3"
        or 0x1F000 <= code <= 0x1FAFF
        or 0xE0000 <= code <= 0xE007F
    )


def _inline(text: str) -> str:
    """Speech for a piece of a line: link text kept, code spans unwrapped, the rest of the syntax gone."""
    text = _IMAGE.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _CODE_SPAN.sub(r"\1", text)
    text = _TAG.sub("", text)
    text = _URL.sub("", text)
    text = _EMPHASIS.sub("", text)
    text = html.unescape(text)
    text = "".join(" " if _is_emoji(c) else c for c in text)
    return _SYMBOLS.sub(" ", text)


def _unclosed(text: str) -> int | None:
    """Where an inline construct that may still close (code span, link, tag) starts, if any."""
    if text.count("`") % 2:
        return text.rfind("`")
    stripped = _LINK.sub("", _IMAGE.sub("", text))
    opening = stripped.rfind("[")
    if opening > stripped.rfind("]") or ("](" in stripped[opening:] and ")" not in stripped[stripped.rfind("](") :]):
        return text.rfind("[") - (1 if text[text.rfind("[") - 1 : text.rfind("[")] == "!" else 0)
    angle = text.rfind("<")
    if angle > text.rfind(">") and angle + 1 < len(text) + 1:
        return angle
    return None


class MarkdownSpeechFilter:
    """Streaming markdown → speech text. Lines are classified from their start; a line's text is
    released word by word as soon as no construct that could still change it is open."""

    def __init__(self) -> None:
        self.raw = ""
        self.fence = ""  # the open code fence's marker, or ""
        self.block_tag = ""  # the open <think>/<details> tag name, or ""
        self.previous_blank = True
        self.line_sent = 0  # characters of the current line's speech already released

    def feed(self, delta: str, *, final: bool = False) -> str:
        self.raw += delta
        out: list[str] = []
        while True:
            if self.block_tag:
                if not self._skip_block_tag(final):
                    break
                continue
            newline = self.raw.find("\n")
            if newline < 0:
                if self.raw and (final or not self.fence):
                    out.append(self._line(self.raw, complete=final))
                if final:
                    self.raw = ""
                break
            line, self.raw = self.raw[:newline], self.raw[newline + 1 :]
            out.append(self._line(line, complete=True))
        return "".join(out)

    def _skip_block_tag(self, final: bool) -> bool:
        closing = re.search(rf"</{self.block_tag}\s*>", self.raw, re.IGNORECASE)
        if closing is None:
            self.raw = "" if final else self.raw[-(len(self.block_tag) + 4) :]
            return False
        self.raw, self.block_tag = self.raw[closing.end() :], ""
        return True

    def _line(self, line: str, *, complete: bool) -> str:
        """Speech of the current line (only the part not released yet); `complete` when it has ended."""
        if self.fence:
            if complete and line.strip().startswith(self.fence) and not line.strip().strip(self.fence[0]):
                self.fence = ""
            return self._end_line(blank=False) if complete else ""
        speech = self._line_speech(line, complete)
        if speech is None:
            return ""
        new, self.line_sent = speech[self.line_sent :], len(speech)
        if complete:
            return new + self._end_line(blank=not line.strip())
        return new

    def _end_line(self, *, blank: bool) -> str:
        self.previous_blank = blank
        self.line_sent = 0
        return "\n"

    def _line_speech(self, line: str, complete: bool) -> str | None:
        """The whole line's speech so far, or None while its kind is still undecided."""
        body = line.lstrip(" ")
        if (len(line) - len(body) >= 4 or line.startswith("\t")) and self.previous_blank and body:
            return "" if complete else None  # an indented code block
        if (fence := _FENCE.match(line)) is not None:
            if complete:
                self.fence = fence.group(1)
            return "" if complete else None
        if tag := _BLOCK_TAG.match(line):
            self.block_tag = tag.group(1).lower()
            self.raw = line[tag.end() :] + ("\n" if complete else "") + self.raw
            return ""
        if not complete and _MAYBE_MARKER.match(body):
            return None
        if _RULE.match(line):
            return ""
        if body.startswith("|"):
            return _table_row(body) if complete else None
        return self._text_line(body, complete)

    def _text_line(self, body: str, complete: bool) -> str:
        listed = False
        for marker in (_QUOTE, _HEADING, _BULLET, _ORDERED):
            if found := marker.match(body):
                body, listed = body[found.end() :], listed or marker is not _QUOTE
        if not complete:
            cut = max(body.rfind(" "), body.rfind("\t"))
            body = body[: cut + 1] if cut >= 0 else ""
            if (open_at := _unclosed(body)) is not None:
                body = body[:open_at]
        speech = _inline(body)
        if complete and listed and speech.strip() and speech.rstrip()[-1] not in _TERMINAL:
            speech = speech.rstrip() + "."
        return speech


def _table_row(row: str) -> str:
    if _TABLE_SEPARATOR.match(row):
        return ""
    cells = [_inline(cell).strip() for cell in row.strip().strip("|").split("|")]
    spoken = ", ".join(cell for cell in cells if cell)
    return spoken + "." if spoken else ""


# --- the chunker ----------------------------------------------------------------------------------
_SENTENCE_END = re.compile(r"(?:\.{3}|[.!?…]+|[。！？]+|[।؟])[\"'”’»)\]」』）]*(?:\s+|(?<=[。！？」』）])(?=\S))")
_CLAUSE_BREAK = re.compile(r"(?:[,;:]|\s[–—-])\s+")
_ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "st",
        "sr",
        "jr",
        "prof",
        "vs",
        "e.g",
        "i.e",
        "approx",
        "fig",
        "no",
        "nos",
        "vol",
        "inc",
        "ltd",
        "co",
        "corp",
        "dept",
        "est",
        "mt",
        "ft",
        "u.s",
        "a.m",
        "p.m",
    ]
)


def _confirms(char: str) -> bool:
    """Does the character after a sentence-ending mark show that a new sentence starts?"""
    if char.isalpha():
        return not char.islower()
    return char.isdigit() or char in "\"'“‘«(¿¡[—–-*"


def _is_abbreviation(text: str, dot: int) -> bool:
    word = text[:dot].rsplit(None, 1)[-1].lower() if text[:dot].strip() else ""
    word = word.lstrip("(\"'“")
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def _clean(text: str) -> str:
    return " ".join(text.split())


def _speakable(text: str) -> bool:
    return any(c.isalnum() for c in text)


class SpeechChunker:
    """Filter + sentence chunker: feed LLM deltas, get speakable chunks as soon as they are certain."""

    def __init__(self, *, first_min_chars: int = 40, min_words: int = 4, min_chars: int = 50, max_chars: int = 400):
        self.first_min_chars = first_min_chars
        self.min_words = min_words
        self.min_chars = min_chars
        self.max_chars = max_chars
        self.filter = MarkdownSpeechFilter()
        self.buffer = ""  # speech not yet cut
        self.held = ""  # cut, but too short to send alone: merged into the next piece
        self.sent = 0

    def feed(self, delta: str) -> list[str]:
        self.buffer += self.filter.feed(delta)
        return self._cut()

    def flush(self) -> list[str]:
        self.buffer += self.filter.feed("", final=True)
        chunks = self._cut()
        rest = _clean(f"{self.held} {self.buffer}")
        self.held = self.buffer = ""
        while rest:
            piece, rest = self._split_long(rest, final=True)
            if _speakable(piece):
                chunks.append(piece)
        return chunks

    def _cut(self) -> list[str]:
        chunks: list[str] = []
        while (end := self._next_end()) is not None:
            piece, self.buffer = self.buffer[:end], self.buffer[end:]
            candidate = _clean(f"{self.held} {piece}")
            if not _speakable(candidate):
                self.held = ""
                continue
            if self.sent and self._too_short(candidate):
                self.held = candidate
                continue
            self.held = ""
            chunks.append(candidate)
            self.sent += 1
        return chunks

    def _too_short(self, text: str) -> bool:
        return len(text) < self.min_chars or len(text.split()) < self.min_words

    def _next_end(self) -> int | None:
        """Where the next piece of the buffer ends, or None when that is not certain yet."""
        text = self.buffer
        for match in _SENTENCE_END.finditer(text):
            if "\n" in text[: match.start()]:
                break
            after = match.end()
            if after >= len(text):
                return None if not match.group().endswith("\n") else after
            if (
                "\n" in match.group()
                or text[match.start()] in "。！？"
                or (
                    _confirms(text[after])
                    and not (text[match.start()] == "." and _is_abbreviation(text, match.start()))
                )
            ):
                return after
        newline = text.find("\n")
        if newline >= 0:
            return newline + 1
        if not self.sent and not self.held and (clause := self._first_clause(text)) is not None:
            return clause
        if len(self.held) + len(text) > self.max_chars:
            piece, _ = self._split_long(text, final=False, room=self.max_chars - len(self.held))
            return len(piece) if piece else None
        return None

    def _first_clause(self, text: str) -> int | None:
        for match in _CLAUSE_BREAK.finditer(text):
            if match.start() >= self.first_min_chars and match.end() < len(text):
                return match.end()
        return None

    def _split_long(self, text: str, *, final: bool, room: int | None = None) -> tuple[str, str]:
        """Split text longer than max_chars at its last clause break, else its last space."""
        room = room if room is not None else self.max_chars
        if len(text) <= room:
            return (text, "") if final else ("", text)
        window = text[: room + 1]
        breaks = [m.end() for m in _CLAUSE_BREAK.finditer(window) if m.end() > room // 3]
        cut = breaks[-1] if breaks else (window.rfind(" ") + 1 or room)
        return text[:cut], text[cut:]


def speakable_text(text: str) -> str:
    """The speech of a complete reply: all of its chunks, joined."""
    chunker = SpeechChunker()
    return " ".join(chunker.feed(text) + chunker.flush())
