"""Streaming markdown → speech text, block by block.

The output is plain speech in which "\n" ends a unit (a paragraph, list item, heading or table row); a unit
that lacks terminal punctuation gets a period so that it is spoken as a sentence. The output is a function
of the input text alone: however the deltas are split, the same text comes out, only sooner or later.
Each output character comes with the offset in the input it was derived from (-1 when inserted).

A word ends at whitespace or at the edge of a CJK character, so text in languages written without spaces
flows out character by character instead of waiting for the end of the paragraph.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from chat.speech.inline import InlineSpeech
from chat.speech.mapped import Speech, tidy
from chat.speech.math import math_speech

_LOOKAHEAD = 8  # characters of a line enough to tell what kind of line it is ("###### ", "- [x] ", "123. ")
_WORD_LOOKAHEAD = 16  # characters enough to tell whether a word (or a link definition) starts a URL
_LONG_LINE = 200  # a rule or fence line longer than this is decided from its start, to keep the work linear
_NOT_BLANK = re.compile(r"[^ \t]")
MATH_BLOCK_MAX = 2000  # a $$ or \[ with no closer this far away opened no formula: what follows is read
_WIDE = "\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_WORD_END = re.compile(f"[ \\t\\n{_WIDE}]")
_FENCE = re.compile(r"`{3,}|~{3,}")
_RULE = re.compile(r"([-*_=])(?:[ \t]*\1)*[ \t]*")
_TABLE_SEPARATOR = re.compile(r"[|:\-\s]*-[|:\-\s]*")
_MARKERS = (
    ("heading", re.compile(r"#{1,6}(?=[ \t\n])[ \t]*")),
    ("item", re.compile(r"[-*+•](?=[ \t\n])[ \t]*(?:\[[ xX]\](?=[ \t\n])[ \t]*)?")),
    ("item", re.compile(r"\d{1,9}[.)](?=[ \t\n])[ \t]*")),
)
_LABEL = re.compile(r"\[\^?[^\]\s]{1,12}\]:[ \t]*")  # [1]: or [^note]: at the start of a line
_LINK_TARGET = re.compile(r"<?(?:https?://|www\.|/|#)", re.IGNORECASE)
_CELL = re.compile(r"[^|]+")
_NON_SPACE = re.compile(r"\S+")
_MATH_BLOCKS = (("$$", "$$"), ("\\[", "\\]"))
_BREAK_TAG = re.compile(r"<break [^>]*/>")
_SAFE_START = re.compile(r"([*_]*)([\"'“‘«„(¿¡]*[^\W_])")  # emphasis marks are never spoken
_HIDER = re.compile(r"<!--|!\[")  # what opens text that is not spoken
_MARKER_STARTS = frozenset("#-*+•_=`~|$\\[0123456789")
_URL_STARTS = ("http://", "https://", "www.")
_CONTINUATIONS = frozenset({("text", "text"), ("text", "quote"), ("quote", "quote")})
_CONTINUATIONS |= {("math", "text"), ("text", "math"), ("math", "math")}  # a display formula is in its sentence
_CLOSERS = "\"'”’»)]）」』"
_TERMINAL = frozenset(".!?…。！？．｡।॥؟")
_NO_PERIOD = _TERMINAL | frozenset(":;,—–-")


def _skip_blanks(text: str, pos: int) -> int:
    if pos < len(text) and text[pos] not in " \t":
        return pos  # the usual case, without a regex call
    found = _NOT_BLANK.search(text, pos)
    return found.start() if found else len(text)


def ends_sentence(text: str, marks: frozenset[str] = _NO_PERIOD) -> bool:
    stripped = text.rstrip(_CLOSERS)
    return bool(stripped) and stripped[-1] in marks


def _could_be_url(word: str) -> bool:
    if word[:1] not in "hHwW":
        return False
    word = word.lower()
    return any(start.startswith(word[: len(start)]) for start in _URL_STARTS)


class MarkdownSpeech:
    """Feed markdown deltas, get speech text and the reply offset of each of its characters (-1 when
    inserted); `close()` at the end of the reply. `breaks`: SSML <break> pauses are kept in the speech."""

    def __init__(self, *, breaks: bool = False) -> None:
        self._raw = ""
        self._base = 0  # offset in the reply of self._raw[0]
        self._pos = 0  # everything before it is consumed
        self._mode: Callable[[], bool] = self._line_start  # handlers return False when they need more input
        self._out = Speech()
        self._inline = InlineSpeech(breaks=breaks)
        self._fence = ""  # the open code fence
        self._closer = ""  # what ends the skipped <think>/<details> block or comment
        self._math_closer = ""  # what ends the open display formula
        self._kind = "blank"  # what the current line is
        self._prev_kind = "blank"
        self._quoted = False
        self._in_list = False  # indented lines continue list items instead of being code
        self._unit_open = False  # the unit has spoken text and no end yet
        self._tail = ""  # the unit's last spoken word
        self._released = 0  # characters of the incomplete word already spoken
        self._word_checked = 0  # characters of the incomplete word known to hold no word end
        self._math_checked = 0  # characters of the open display formula known to hold no closer
        self._joined = False  # the last word ended at a CJK character, not at whitespace

    def feed(self, delta: str) -> tuple[str, list[int]]:
        self._raw += delta.replace("\r", " ") if "\r" in delta else delta  # same length: offsets hold
        while self._mode():
            pass
        self._raw, self._base, self._pos = self._raw[self._pos :], self._base + self._pos, 0
        return self._out.take()

    def close(self) -> tuple[str, list[int]]:
        text, offsets = self.feed("\n")  # completes the last word and line; open fences and blocks stay unspoken
        self._end_unit()
        rest, rest_offsets = self._out.take()
        return text + rest, offsets + rest_offsets

    # --- output ---------------------------------------------------------------------------------
    def _speak(self, text: str, offsets: list[int] | None, at: int, raw_word: str, joined: bool = False) -> None:
        """Say `text`: with its `offsets`, or (None) as the reply shows it from offset `at`."""
        glued = joined or (text[0] in ".,;:!?)" and raw_word[:1] != text[0])  # what was before it was not spoken
        if self._unit_open and not glued and not self._released:
            self._out.insert(" ")
        if offsets is None:
            self._out.copy(text[self._released :], at + self._released)
        else:
            self._out.add(text[self._released :], offsets[self._released :])
        self._released = 0
        if "<" in text and not (text := _BREAK_TAG.sub("", text).strip()):  # only a pause makes a "<"
            self._out.insert(" ")  # a pause alone neither opens a sentence nor ends one
            return
        self._tail, self._unit_open = text, True

    def _end_unit(self) -> None:
        if self._unit_open:
            period = "。" if _WORD_END.match(self._tail[-1]) else "."  # 。 after CJK text
            self._out.insert("\n" if ends_sentence(self._tail) else period + "\n")
            self._unit_open = False

    # --- line starts ----------------------------------------------------------------------------
    def _line_start(self) -> bool:
        if self._fence:
            return self._fence_line()
        j = _skip_blanks(self._raw, self._pos)
        if j == len(self._raw):
            return False
        indent = len(self._raw[self._pos : j].expandtabs(4))
        if self._raw[j] == "\n":
            return self._blank_line(j)
        if indent >= 4 and self._prev_kind in ("blank", "code") and not self._in_list and not self._quoted:
            return self._skip_block_line(j, "code")
        if self._raw[j] == ">":
            self._quoted, self._pos = True, j + (2 if self._raw.startswith("> ", j) else 1)
            return True
        return self._classify(j, indent)

    def _blank_line(self, j: int) -> bool:
        self._end_unit()
        self._prev_kind, self._quoted, self._pos = "blank", False, j + 1
        return True

    def _peek(self, j: int, length: int = _LOOKAHEAD) -> str | None:
        """The start of the line (with its "\n" when it ended), or None while too little of it is known."""
        end = self._raw.find("\n", j, j + length)
        if end >= 0:
            return self._raw[j : end + 1]
        head = self._raw[j : j + length]
        return head if len(head) == length else None

    def _classify(self, j: int, indent: int) -> bool:
        first = self._raw[j]
        if first not in _MARKER_STARTS:  # a letter, a quote, a bracket: text, known at once
            self._begin_line("quote" if self._quoted else "text", indent, j)
            return True
        head = self._peek(j)
        if head is None:
            return False
        if head[0] in "`~" and (fence := self._fence_start(j)) is not None:
            return fence
        if head[0] in "-*_=" and (rule := self._rule(j)) is not None:
            return rule
        if head[0] == "|" and not self._quoted:
            self._begin_line("table", indent, j)
            return True
        if head[0] in "$\\" and self._math_block_start(j, indent):
            return True
        if head[0] == "[" and (label := _LABEL.match(head)):
            return self._labelled_line(j, indent, label.end())
        for kind, marker in _MARKERS:
            if found := marker.match(head):
                self._begin_line(kind, indent, j + found.end())
                return True
        self._begin_line("quote" if self._quoted else "text", indent, j)
        return True

    def _begin_line(self, kind: str, indent: int, body: int) -> None:
        # A list item goes on in an indented line; a flush-left line after it is the model's next paragraph.
        lazy_item = kind == "text" and self._prev_kind == "item" and indent > 0
        new_sentence = self._prev_kind == "math" and self._raw[body : body + 1].isupper()
        if ((kind, self._prev_kind) not in _CONTINUATIONS and not lazy_item) or new_sentence:
            self._end_unit()
        if kind == "item":
            self._in_list = True
        elif kind == "heading" or (kind == "text" and indent == 0 and self._prev_kind == "blank"):
            self._in_list = False
        self._kind, self._pos, self._joined = kind, body, False
        self._mode = self._table_row if kind == "table" else self._words

    def _labelled_line(self, j: int, indent: int, body: int) -> bool:
        """`[1]: https://…` defines a link target (not read); `[^1]: …` is a footnote, read as an item."""
        line = self._peek(j, body + _WORD_LOOKAHEAD)
        if line is None:
            return False
        if _LINK_TARGET.match(line, body):
            return self._skip_block_line(j, "rule")
        self._begin_line("item", indent, j + body)
        return True

    def _fence_start(self, j: int) -> bool | None:
        """Opens a code fence (True), waits for the rest of its line (False), or finds no fence (None)."""
        fence = _FENCE.match(self._raw, j)
        if fence is None:
            return None
        end = self._raw.find("\n", fence.end(), fence.end() + _LONG_LINE)
        if end < 0 and len(self._raw) < fence.end() + _LONG_LINE:
            return False
        info = self._raw[fence.end() : end if end >= 0 else fence.end() + _LONG_LINE]
        if fence.group()[0] == "`" and "`" in info:
            return None  # ```inline``` code, not a fence
        self._fence = fence.group()
        return self._skip_block_line(j, "fence")

    def _rule(self, j: int) -> bool | None:
        """Drops a horizontal rule or setext underline (True), waits (False), or finds none (None)."""
        rule = _RULE.match(self._raw, j, j + _LONG_LINE)
        if rule is None or rule.end() == len(self._raw):
            return None if rule is None else False
        ends = rule.end() == j + _LONG_LINE or self._raw[rule.end()] == "\n"
        is_rule = ends and (rule.group(1) == "=" or rule.group().count(rule.group(1)) >= 3)
        return self._skip_block_line(j, "rule") if is_rule else None

    # --- display math ---------------------------------------------------------------------------
    def _math_block_start(self, j: int, indent: int) -> bool:
        for opener, closer in _MATH_BLOCKS:
            if self._raw.startswith(opener, j):
                self._begin_line("math", indent, j + len(opener))
                self._math_closer, self._math_checked, self._mode = closer, 0, self._math_block
                return True
        return False

    def _math_block(self) -> bool:
        """A $$ … $$ or \\[ … \\] formula, possibly over several lines, read (or named) once it is closed."""
        start, closer = self._pos, self._math_closer
        limit = start + MATH_BLOCK_MAX + len(closer)
        end = self._raw.find(closer, start + self._math_checked, limit)
        if end < 0:
            if len(self._raw) < limit:
                self._math_checked = max(0, len(self._raw) - start - len(closer) + 1)
                return False
            self._mode = self._words  # never closed: it was not a formula, so the text after it is read
            return True
        at = self._base + start
        spoken, offsets = math_speech(self._raw[start:end], range(at, at + end - start), display=True)
        if spoken:
            self._speak(spoken, offsets, at, spoken)
        self._pos, self._mode, self._joined = end + len(closer), self._words, False
        return True

    # --- lines that are not spoken --------------------------------------------------------------
    def _skip_block_line(self, j: int, kind: str) -> bool:
        self._end_unit()
        self._prev_kind, self._pos, self._mode = kind, j, self._skip_line
        return True

    def _skip_line(self) -> bool:
        end = self._raw.find("\n", self._pos)
        if end < 0:
            self._pos = len(self._raw)
            return False
        self._pos, self._quoted, self._mode = end + 1, False, self._line_start
        return True

    def _fence_line(self) -> bool:
        j = _skip_blanks(self._raw, self._pos)
        if j == len(self._raw):
            return False
        if self._raw[j] != self._fence[0]:
            self._mode = self._skip_line
            return True
        end = self._raw.find("\n", j)
        if end < 0:
            return False
        line = self._raw[j:end].rstrip(" \t")
        if line.startswith(self._fence) and not line.strip(self._fence[0]):
            self._fence = ""
        self._pos = end + 1
        return True

    def _skipping(self) -> bool:
        closer = re.compile(re.escape(self._closer), re.IGNORECASE).search(self._raw, self._pos)
        if closer is None:
            self._pos = max(self._pos, len(self._raw) - len(self._closer) + 1)
            return False
        self._pos, self._mode = closer.end(), self._words
        self._joined = self._unit_open and _WORD_END.match(self._tail[-1]) is not None  # 晴れ<!-- -->です
        return True

    # --- spoken lines ---------------------------------------------------------------------------
    def _words(self) -> bool:
        k = _skip_blanks(self._raw, self._pos)
        if k > self._pos:
            self._joined = False
        joined = self._joined
        self._pos = k
        if k == len(self._raw):
            return False
        if self._raw[k] == "\n":
            self._pos = k + 1
            self._end_line()
            return True
        end = _WORD_END.search(self._raw, k + self._word_checked)
        if end is None and (hider := _HIDER.match(self._raw, k)):
            self._word(hider.group(), k, joined)  # a comment or an image: no need to wait for its end
            return True
        if end is None:
            self._word_checked = len(self._raw) - k
            self._release_start(self._raw[k : k + _WORD_LOOKAHEAD], k, joined)
            return False
        self._word_checked = 0
        stop = end.start() if end.start() > k else k + 1  # a CJK character is a word of its own
        self._word(self._raw[k:stop], k, joined)
        self._joined = True  # until whitespace or a line end shows otherwise
        return True

    def _word(self, word: str, start: int, joined: bool) -> None:
        self._pos = start + len(word)
        self._inline.spoken_before = self._unit_open
        text, offsets = self._inline.word(word, self._base + start, spaced=not joined)
        if text:
            self._speak(text, offsets, self._base + start, word, joined)
        skip = self._inline.take_skip()
        hidden = skip or self._inline.image or "![" in word
        if hidden and self._unit_open and ends_sentence(self._tail, _TERMINAL):
            self._end_unit()  # what follows the sentence is hidden: it is complete now, not when text resumes
        if skip:
            self._pos, self._closer, self._mode = start + skip.at, skip.closer, self._skipping

    def _release_start(self, partial: str, k: int, joined: bool) -> None:
        """Speak the first letter of an incomplete word early when it cannot change: it may confirm a
        sentence end, and the chunker should not wait a whole word for that."""
        if self._released or not self._inline.idle() or not (safe := _SAFE_START.match(partial)):
            return
        if _could_be_url(partial[safe.end() - 1 :]):
            return
        if self._unit_open and not joined:
            self._out.insert(" ")
        self._out.copy(safe.group(2), self._base + k + safe.start(2))
        self._released = len(safe.group(2))

    def _end_line(self) -> None:
        text, offsets = self._inline.end_line()
        if text:
            self._speak(text, offsets, 0, text)
        if self._unit_open and (self._kind == "heading" or ends_sentence(self._tail)):
            self._end_unit()
        self._prev_kind, self._quoted, self._mode, self._joined = self._kind, False, self._line_start, False

    def _table_row(self) -> bool:
        end = self._raw.find("\n", self._pos)
        if end < 0:
            return False
        row, at = self._raw[self._pos : end], self._base + self._pos
        self._pos = end + 1
        if not _TABLE_SEPARATOR.fullmatch(row.strip()):
            speech = Speech()
            for cell in _CELL.finditer(row):
                text, offsets = self._cell(cell.group(), at + cell.start())
                if text:
                    if speech:
                        speech.insert(", ")
                    speech.add(text, offsets)
            if speech:
                text, offsets = speech.take()
                self._speak(text, offsets, at, text)
                self._end_unit()
        self._prev_kind, self._mode = "table", self._line_start
        return True

    def _cell(self, cell: str, at: int) -> tuple[str, list[int]]:
        speech = Speech()
        for word in _NON_SPACE.finditer(cell):
            text, offsets = self._inline.word(word.group(), at + word.start())
            speech.insert(" ")
            speech.add(text, range(at + word.start(), at + word.start() + len(text)) if offsets is None else offsets)
        speech.insert(" ")
        speech.add(*self._inline.end_line())
        self._inline.take_skip()
        return tidy(*speech.take())
