"""Speech for the words of one markdown line: link text and short code kept; URLs, tags, emoji and syntax gone.

Words arrive whole (the block filter waits for the whitespace after them, or the edge of a CJK character),
so only constructs that span words — code spans, math, HTML tags, link targets, image alt text — need state
between calls. Every character of speech carries the displayed offset it came from (-1 when inserted).
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass

from chat.speech.mapped import Speech, tidy
from chat.speech.math import math_speech

SKIPPED_BLOCKS = frozenset({"think", "thinking", "reasoning", "reflection", "details"})
CODE_SPAN_MAX = 40  # longer inline code is a command or a snippet: shown, not read
MATH_SPAN_MAX = 300  # an "opening" $ with no closer this far away was a dollar sign after all
BREAK_MAX_S = 3.0  # the vendor's limit for one pause
_URL = re.compile(r"https?://|(?<![^\W_])www\.", re.IGNORECASE)
_URL_TAIL = re.compile(r"[.,;:!?)'\"’”»。、，]*$")  # punctuation after a URL belongs to the sentence
_URL_ANYWHERE = re.compile(r"(?:https?://|www\.)\S*", re.IGNORECASE)
_TAG_START = re.compile(r"</?([A-Za-z][A-Za-z0-9-]*)(?=[\s/>]|$)")
_INLINE_TAG = re.compile(r"</?(?:a|b|i|u|s|br|em|strong|sup|sub|span|code|kbd|mark|small|del|ins)\s*/?>", re.I)
# After a letter "<" may be a generic (List<str>); a closing tag or an SSML tag cannot be.
_TAG_AFTER_LETTER = re.compile(
    r"</[A-Za-z]|<(?:break|emphasis|phoneme|prosody|say-as|speak|voice|lang)(?=[\s/>]|$)", re.I
)
_BREAK_TIME = re.compile(r"""time\s*=\s*["']?\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s)\s*["']?""", re.I)
_CITATION = re.compile(r"\[(?:\^[^\]\s]*|\d{1,3})\](?!\()")
_ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_PLAIN = re.compile(r"(?:[^\W_]|[.,;:!?'\"()%€£¥@/+=’‘“”«»¿¡…。！？、，：；।؟،-])+")
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
_POWER = re.compile(  # x^2, 10^-3, e^{ix} written as plain text
    r"([(\[]?)((?:[A-Za-z]|\d+(?:\.\d+)?)\^(?:-?\d+(?:\.\d+)?|[A-Za-z]|\{[^{}\s]{1,12}\}))([.,;:!?)\]]*)"
)
_MATH_OPENERS = (("$$", "$$", True), ("\\(", "\\)", False), ("\\[", "\\]", True))
THE_LINK = "the link"


@dataclass(frozen=True)
class Skip:
    """A reasoning/details block or comment opened inside a word: everything up to `closer` is dropped."""

    at: int  # index in the word just after the opening tag
    closer: str  # lower case


@dataclass
class _Math:
    closer: str
    display: bool
    source: Speech  # the LaTeX so far, with its displayed offsets


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


def break_tag(attributes: str) -> str | None:
    """The normalised SSML pause for a <break …> tag's attributes, clamped to the vendor's limit."""
    found = _BREAK_TIME.search(attributes)
    if found is None:
        return None
    seconds = float(found.group(1)) / (1000 if found.group(2).lower() == "ms" else 1)
    seconds = min(round(seconds, 1), BREAK_MAX_S)
    return f'<break time="{seconds:.1f}s" />' if seconds > 0 else None


def _char_speech(text: str, i: int) -> str:
    char = text[i]
    if char == "_":  # snake_case and items__product read as two words; _emphasis_ as none
        start, end = i, i + 1
        while start > 0 and text[start - 1] == "_":
            start -= 1
        while end < len(text) and text[end] == "_":
            end += 1
        inside = start > 0 and end < len(text) and text[start - 1].isalnum() and text[end].isalnum()
        return " " if inside and start == i else ""
    if char in _SYNTAX or is_emoji(char):
        return ""
    return char


def _add_char(text: str, i: int, at: int, out: Speech) -> None:
    spoken = _char_speech(text, i)
    if spoken == text[i]:
        out.copy(spoken, at + i)
    elif spoken:
        out.insert(spoken)


def _plain_speech(text: str, offsets: list[int], out: Speech) -> None:
    """Speech of text that has no markdown meaning (code span content, decoded entities)."""
    if "/" in text:
        text = _URL_ANYWHERE.sub(lambda url: " " * len(url.group()), text)
    for i, char in enumerate(text):
        if (spoken := _char_speech(text, i)) == char:
            out.add(char, offsets[i : i + 1])
        elif spoken:
            out.insert(spoken)


class InlineSpeech:
    """Turns the complete words of a line into speech, one call per word."""

    def __init__(self, *, breaks: bool = False) -> None:
        self.breaks = breaks  # let SSML <break time="…"/> pauses through to the TTS
        self.code: Speech | None = None  # an open code span
        self.math: _Math | None = None  # an open formula
        self.tag = ""  # name of an open HTML tag
        self.tag_text: list[str] = []  # the attributes of an open <break> tag
        self.closing_tag = False
        self.target_depth = 0  # open parentheses of a link target being dropped
        self.image = False  # inside an image's alt text, which is dropped
        self.skip: Skip | None = None
        self.spoken_before = False  # set by the caller: the sentence has words already ("lives at" a URL)

    def idle(self) -> bool:
        return self.code is None and self.math is None and not self.tag and not self.target_depth and not self.image

    def word(self, word: str, at: int, *, spaced: bool = True) -> tuple[str, list[int] | None]:
        """The speech of one word found at displayed offset `at`, and its offsets (None: the word as is).
        `spaced`: whitespace came before it (not so for the pieces of a run of CJK characters)."""
        if self.idle() and _PLAIN.fullmatch(word) and not _URL.search(word):
            return word, None
        if self.idle() and word in _COMPARISONS:
            spoken = _COMPARISONS[word]
            return spoken, [-1] * len(spoken)
        if "^" in word and self.idle() and (power := _POWER.fullmatch(word)):
            return self._power(power, at)
        out = Speech()
        if spaced:
            if self.code is not None:
                self.code.insert(" ")
            elif self.math is not None:
                self.math.source.insert(" ")
        i = 0
        while i < len(word) and self.skip is None:
            i = self._step(word, i, at, out)
        return tidy(*out.take())

    def end_line(self) -> tuple[str, list[int]]:
        """Close what cannot span lines; an unclosed backtick or $ was literal, so its text is spoken."""
        out = Speech()
        if self.code is not None:
            _plain_speech(*self.code.take(), out)
        if self.math is not None:
            _plain_speech(*self.math.source.take(), out)
        self.code, self.math, self.tag, self.target_depth, self.image = None, None, "", 0, False
        return tidy(*out.take())

    def take_skip(self) -> Skip | None:
        skip, self.skip = self.skip, None
        return skip

    def _step(self, word: str, i: int, at: int, out: Speech) -> int:
        if self.code is not None:
            return self._in_code(word, i, at, out)
        if self.math is not None:
            return self._in_math(word, i, at, out)
        if self.tag:
            return self._in_tag(word, i, out)
        if self.target_depth:
            return self._in_target(word, i)
        if self.image:
            return self._in_image(word, i)
        return self._text(word, i, at, out)

    def _text(self, word: str, i: int, at: int, out: Speech) -> int:
        char = word[i]
        if char == "`":
            self.code = Speech()
            return len(word) - len(word[i:].lstrip("`"))
        if char in "$\\":
            return self._math_or_escape(word, i, at, out)
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
            return self._entity(word, i, at, out)
        if char in "hHwW" and _URL.match(word, i):
            return self._url(word, i, at, out)
        if char == "#" and i and _SHARP.match(word, i - 1):
            out.insert(" sharp")
            return i + 1
        _add_char(word, i, at, out)
        return i + 1

    def _power(self, power: re.Match[str], at: int) -> tuple[str, list[int]]:
        out = Speech()
        out.copy(power.group(1), at)
        out.insert(" ")
        out.add(*math_speech(power.group(2), range(at + power.start(2), at + power.end(2)), display=False))
        out.copy(power.group(3), at + power.start(3))
        return tidy(*out.take())

    def _url(self, word: str, i: int, at: int, out: Speech) -> int:
        """A bare URL is not read; where the sentence needs an object ("lives at …") it becomes "the link"."""
        tail = _URL_TAIL.search(word, i).start()  # type: ignore[union-attr]  # always matches
        bracketed = i > 0 and word[i - 1] in "([<"
        if (self.spoken_before or out) and not (bracketed and word[i - 1] != "<"):
            out.insert(f" {THE_LINK}")
        out.copy(word[tail:], at + tail)
        return len(word)

    def _math_or_escape(self, word: str, i: int, at: int, out: Speech) -> int:
        for opener, closer, display in _MATH_OPENERS:
            if word.startswith(opener, i):
                self.math = _Math(closer, display, Speech())
                return i + len(opener)
        if word.startswith("\\$", i):
            out.copy("$", at + i + 1)
            return i + 2
        if word[i] == "\\":
            return i + 1  # a markdown escape: the escaped character is read (or not) on its own
        rest = word[i + 1 :]
        opens = bool(rest) and not rest[0].isspace()
        if opens and rest[0].isdigit():
            opens = _closing_dollar(word, i + 1) >= 0  # $5 is a price, $5$ and $2^n$ are math
        if not opens:
            out.copy("$", at + i)
            return i + 1
        self.math = _Math("$", False, Speech())
        return i + 1

    def _in_math(self, word: str, i: int, at: int, out: Speech) -> int:
        assert self.math is not None
        math = self.math
        end = _closing_dollar(word, i) if math.closer == "$" else word.find(math.closer, i)
        math.source.copy(word[i:] if end < 0 else word[i:end], at + i)
        if end < 0:
            if len(math.source.offsets) > MATH_SPAN_MAX:
                self.math = None
                _plain_speech(*math.source.take(), out)
            return len(word)
        self.math = None
        source, offsets = math.source.take()
        spoken, places = math_speech(source, offsets, display=math.display)
        out.insert(" ")
        out.add(spoken, places)
        out.insert(" ")
        return end + len(math.closer)

    def _in_code(self, word: str, i: int, at: int, out: Speech) -> int:
        assert self.code is not None
        end = word.find("`", i)
        self.code.copy(word[i:] if end < 0 else word[i:end], at + i)
        if end < 0:
            return len(word)
        content, offsets = self.code.take()
        self.code = None
        if len(content.strip()) <= CODE_SPAN_MAX:
            _plain_speech(content, offsets, out)
        else:
            out.insert(" ")
        return len(word) - len(word[end:].lstrip("`"))

    def _open_tag(self, word: str, i: int, out: Speech) -> int:
        if word.startswith("<!--", i):
            self.skip = Skip(i + 4, "-->")
            return len(word)
        after_letter = i > 0 and word[i - 1].isalnum()
        if after_letter and (inline := _INLINE_TAG.match(word, i)):
            out.insert(" ")
            return inline.end()
        found = _TAG_START.match(word, i) if not after_letter or _TAG_AFTER_LETTER.match(word, i) else None
        if found is None:
            out.insert(" ")  # a lone "<" is a comparison sign or a generic (List<str>); it is not read
            return i + 1
        self.tag, self.closing_tag = found.group(1).lower(), word.startswith("</", i)
        self.tag_text = []
        out.insert(" ")
        return found.end()

    def _in_tag(self, word: str, i: int, out: Speech) -> int:
        end = word.find(">", i)
        if self.tag == "break" and self.breaks:
            self.tag_text.append(" " + (word[i:] if end < 0 else word[i:end]))
        if end < 0:
            return len(word)
        if self.tag in SKIPPED_BLOCKS and not self.closing_tag:
            self.skip = Skip(end + 1, f"</{self.tag}>")
        if self.tag == "break" and self.breaks and (pause := break_tag("".join(self.tag_text))):
            out.insert(f" {pause} ")
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

    def _entity(self, word: str, i: int, at: int, out: Speech) -> int:
        entity = _ENTITY.match(word, i)
        if entity is None:
            out.copy("&", at + i)
            return i + 1
        decoded = html.unescape(entity.group())
        _plain_speech(decoded, [at + i] * len(decoded), out)  # "&amp;" → "&", shown where the entity is
        return entity.end()


def _closing_dollar(word: str, start: int) -> int:
    """Where a single-$ formula closes in this word: a $ after something, not followed by a digit."""
    end = word.find("$", start)
    while end >= 0:
        if end > 0 and not word[end - 1].isspace() and not word[end + 1 : end + 2].isdigit():
            return end
        end = word.find("$", end + 1)
    return -1
