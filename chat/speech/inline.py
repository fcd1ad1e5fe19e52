"""Speech for the words of one markdown line: link text and short code kept; URLs, tags, emoji and syntax gone.

Words arrive whole (the block filter waits for the whitespace after them), so only constructs that span
words — code spans, HTML tags, link targets, image alt text — need state between calls.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass

SKIPPED_BLOCKS = frozenset({"think", "thinking", "reasoning", "reflection", "details"})
CODE_SPAN_MAX = 40  # longer inline code is a command or a snippet: shown, not read
_URL = re.compile(r"https?://|(?<![^\W_])www\.", re.IGNORECASE)
_URL_TAIL = re.compile(r"[.,;:!?)'\"’”»]*$")  # punctuation after a URL belongs to the sentence
_URL_ANYWHERE = re.compile(r"(?:https?://|www\.)\S*", re.IGNORECASE)
_TAG_START = re.compile(r"</?([A-Za-z][A-Za-z0-9-]*)(?=[\s/>]|$)")
_INLINE_TAG = re.compile(r"</?(?:a|b|i|u|s|br|em|strong|sup|sub|span|code|kbd|mark|small|del|ins)\s*/?>", re.I)
_CITATION = re.compile(r"\[(?:\^[^\]\s]*|\d{1,3})\](?!\()")
_ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_PLAIN = re.compile(r"(?:[^\W_]|[.,;:!?'\"()%$€£¥@/+=’‘“”«»¿¡…。！？、，：；।؟،-])+")
_SYNTAX = frozenset("*~#|<>[]`\\^{}•")
_KEPT_SYMBOLS = frozenset("°©®™№")
_EMOJI_JOINERS = frozenset("\u200d\ufe0e\ufe0f\u20e3")
_COMPARISONS = {
    "<": "less than",
    ">": "greater than",
    "<=": "at most",
    ">=": "at least",
    "≤": "at most",
    "≥": "at least",
}
_SHARP = re.compile(r"(?<![\w#])([A-G])#(?![\w#])")  # C#, F#: languages and notes
_SPACE_BEFORE_MARK = re.compile(r"\s+(?=[.,;:!?)])")


@dataclass(frozen=True)
class Skip:
    """A reasoning/details block or comment opened inside a word: everything up to `closer` is dropped."""

    at: int  # index in the word just after the opening tag
    closer: str  # lower case


def is_emoji(char: str) -> bool:
    """Pictographs, their modifiers and joiners, and other symbols a voice would read out as names."""
    if char in _KEPT_SYMBOLS:
        return False
    code = ord(char)
    return (
        unicodedata.category(char) in ("So", "Sk", "Cs", "Co")
        or char in _EMOJI_JOINERS
        or 0x1F000 <= code <= 0x1FAFF  # includes skin tones and regional indicators (flags)
        or 0xE0000 <= code <= 0xE007F  # tag characters of subdivision flags
        or 0x2190 <= code <= 0x21FF  # arrows
    )


def _char_speech(text: str, i: int) -> str:
    char = text[i]
    if char == "_":  # snake_case reads as two words; _emphasis_ as none
        inside = 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()
        return " " if inside else ""
    if char in _SYNTAX or is_emoji(char):
        return ""
    return char


def _plain_speech(text: str) -> str:
    """Speech of text that has no markdown meaning (code span content, decoded entities)."""
    text = _URL_ANYWHERE.sub(" ", text)
    return "".join(_char_speech(text, i) for i in range(len(text)))


def tidy(text: str) -> str:
    return " ".join(text.replace("()", " ").split())


class InlineSpeech:
    """Turns the complete words of a line into speech, one call per word."""

    def __init__(self) -> None:
        self.code: list[str] | None = None  # pieces of an open code span
        self.tag = ""  # name of an open HTML tag
        self.closing_tag = False
        self.target_depth = 0  # open parentheses of a link target being dropped
        self.image = False  # inside an image's alt text, which is dropped
        self.skip: Skip | None = None

    def idle(self) -> bool:
        return self.code is None and not self.tag and not self.target_depth and not self.image

    def word(self, word: str) -> str:
        if self.idle() and _PLAIN.fullmatch(word) and not _URL.search(word):
            return word
        if self.idle() and word in _COMPARISONS:
            return _COMPARISONS[word]
        if "#" in word and self.idle():
            word = _SHARP.sub(r"\1 sharp", word)
        out: list[str] = []
        i = 0
        while i < len(word) and self.skip is None:
            i = self._step(word, i, out)
        if self.code is not None:
            self.code.append(" ")
        return _SPACE_BEFORE_MARK.sub("", tidy("".join(out)))  # "<b>Ctrl+V</b>." left a space

    def end_line(self) -> str:
        """Close what cannot span lines; an unclosed backtick was literal, so its text is spoken after all."""
        pending, self.code = self.code, None
        self.tag, self.target_depth, self.image = "", 0, False
        return tidy(_plain_speech("".join(pending))) if pending else ""

    def take_skip(self) -> Skip | None:
        skip, self.skip = self.skip, None
        return skip

    def _step(self, word: str, i: int, out: list[str]) -> int:
        if self.code is not None:
            return self._in_code(word, i, out)
        if self.tag:
            return self._in_tag(word, i)
        if self.target_depth:
            return self._in_target(word, i)
        if self.image:
            return self._in_image(word, i)
        return self._text(word, i, out)

    def _text(self, word: str, i: int, out: list[str]) -> int:
        char = word[i]
        if char == "`":
            self.code = []
            return len(word) - len(word[i:].lstrip("`"))
        if char == "<":
            return self._open_tag(word, i, out)
        if char == "!" and word.startswith("[", i + 1):
            self.image = True
            return i + 2
        if char == "[":
            return (citation.end()) if (citation := _CITATION.match(word, i)) else i + 1
        if char == "]":
            self.target_depth = 1 if word.startswith("(", i + 1) else 0
            return i + 1 + self.target_depth
        if char == "&":
            return self._entity(word, i, out)
        if char in "hHwW" and _URL.match(word, i):
            out.append(_URL_TAIL.search(word, i).group())  # type: ignore[union-attr]  # always matches
            return len(word)
        out.append(_char_speech(word, i))
        return i + 1

    def _in_code(self, word: str, i: int, out: list[str]) -> int:
        assert self.code is not None
        end = word.find("`", i)
        self.code.append(word[i:] if end < 0 else word[i:end])
        if end < 0:
            return len(word)
        content, self.code = "".join(self.code), None
        out.append(_plain_speech(content) if len(content.strip()) <= CODE_SPAN_MAX else " ")
        return len(word) - len(word[end:].lstrip("`"))

    def _open_tag(self, word: str, i: int, out: list[str]) -> int:
        if word.startswith("<!--", i):
            self.skip = Skip(i + 4, "-->")
            return len(word)
        after_letter = i > 0 and word[i - 1].isalnum()
        if after_letter and (inline := _INLINE_TAG.match(word, i)):
            out.append(" ")
            return inline.end()
        found = None if after_letter else _TAG_START.match(word, i)
        if found is None:
            out.append(" ")  # a lone "<" is a comparison sign or a generic (List<str>); it is not read
            return i + 1
        self.tag, self.closing_tag = found.group(1).lower(), word.startswith("</", i)
        out.append(" ")
        return found.end()

    def _in_tag(self, word: str, i: int) -> int:
        end = word.find(">", i)
        if end < 0:
            return len(word)
        if self.tag in SKIPPED_BLOCKS and not self.closing_tag:
            self.skip = Skip(end + 1, f"</{self.tag}>")
        self.tag = ""
        return end + 1

    def _in_target(self, word: str, i: int) -> int:
        for j in range(i, len(word)):
            self.target_depth += {"(": 1, ")": -1}.get(word[j], 0)
            if not self.target_depth:
                return j + 1
        return len(word)

    def _in_image(self, word: str, i: int) -> int:
        end = word.find("]", i)
        if end < 0:
            return len(word)
        self.image = False
        self.target_depth = 1 if word.startswith("(", end + 1) else 0
        return end + 1 + self.target_depth

    def _entity(self, word: str, i: int, out: list[str]) -> int:
        entity = _ENTITY.match(word, i)
        if entity is None:
            out.append("&")
            return i + 1
        out.append(_plain_speech(html.unescape(entity.group())))
        return entity.end()
