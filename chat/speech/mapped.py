"""Speech text built piece by piece, each character remembering the displayed offset it came from."""

from __future__ import annotations

import re
from collections.abc import Sequence

_NON_SPACE = re.compile(r"\S+")
_GLUES_LEFT = frozenset(".,;:!?)")  # "<b>Ctrl+V</b>." leaves no space before the period


class Speech:
    """A speech string under construction with a parallel list of displayed offsets (-1 = inserted)."""

    __slots__ = ("offsets", "parts")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.offsets: list[int] = []

    def copy(self, text: str, at: int) -> None:
        """Text taken verbatim from the displayed reply, starting at offset `at`."""
        self.parts.append(text)
        self.offsets.extend(range(at, at + len(text)))

    def insert(self, text: str) -> None:
        """Text the filter says that is not in the displayed reply."""
        self.parts.append(text)
        self.offsets.extend([-1] * len(text))

    def add(self, text: str, offsets: Sequence[int]) -> None:
        self.parts.append(text)
        self.offsets.extend(offsets)

    def __bool__(self) -> bool:
        return bool(self.offsets)

    def take(self) -> tuple[str, list[int]]:
        """The text so far and its offsets; the builder is empty afterwards."""
        if not self.parts:
            return "", []
        text, offsets = "".join(self.parts), self.offsets
        self.parts, self.offsets = [], []
        return text, offsets


def tidy(text: str, offsets: Sequence[int]) -> tuple[str, list[int]]:
    """Whitespace collapsed to single inserted spaces, trimmed, and none before a closing mark; "()" left
    by a dropped link target or code span goes too."""
    if "()" in text:
        text = text.replace("()", "  ")
    parts: list[str] = []
    kept: list[int] = []
    for run in _NON_SPACE.finditer(text):
        if parts and run.group()[0] not in _GLUES_LEFT:
            parts.append(" ")
            kept.append(-1)
        parts.append(run.group())
        kept.extend(offsets[run.start() : run.end()])
    return "".join(parts), kept
