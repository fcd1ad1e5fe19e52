"""HTTP `Range: bytes=…` for stored audio (RFC 9110 §14), so Safari can play and every browser can seek."""

from __future__ import annotations

import re

# ASCII digits only: `\d` would also take other scripts' digits, which int() accepts.
_SINGLE_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")
# More significant digits than any file size has: read as "past the end" instead of converted, so a
# header of thousands of digits costs nothing (int() refuses over 4300 digits, and is quadratic below).
_MAX_DIGITS = 18
_HUGE = 10**_MAX_DIGITS


class RangeNotSatisfiable(Exception):
    """A well-formed range that lies wholly outside the file: answered with 416."""


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single `bytes=` range; None means send the whole file.

    Headers we do not support (other units, several ranges, bad syntax) are ignored, which RFC 9110
    allows; a valid range that starts past the end raises RangeNotSatisfiable.
    """
    match = _SINGLE_RANGE.match(header.strip())
    if match is None or not (match.group(1) or match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:
        return _suffix(_position(last), size)
    start = _position(first)
    end = _position(last) if last else None
    if end is not None and end < start:  # an invalid range: ignored
        return None
    if start >= size:
        raise RangeNotSatisfiable
    return start, size - 1 if end is None else min(end, size - 1)


def _position(digits: str) -> int:
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= _MAX_DIGITS else _HUGE


def _suffix(length: int, size: int) -> tuple[int, int]:
    """The last `length` bytes (`bytes=-500`)."""
    if length == 0 or size == 0:
        raise RangeNotSatisfiable
    return max(0, size - length), size - 1
