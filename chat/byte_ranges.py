"""HTTP `Range: bytes=…` for stored audio (RFC 9110 §14), so Safari can play and every browser can seek."""

from __future__ import annotations

import re

_SINGLE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


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
        return _suffix(int(last), size)
    start = int(first)
    if last and int(last) < start:  # an invalid range: ignored
        return None
    if start >= size:
        raise RangeNotSatisfiable
    return start, min(int(last), size - 1) if last else size - 1


def _suffix(length: int, size: int) -> tuple[int, int]:
    """The last `length` bytes (`bytes=-500`)."""
    if length == 0 or size == 0:
        raise RangeNotSatisfiable
    return max(0, size - length), size - 1
