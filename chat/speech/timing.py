"""From the vendor's per-character timing of a chunk's speech text to word timings of the displayed reply.

A word is a run of non-space characters of the chunk text that maps to displayed letters or digits
(spoken math words, "the link" and pause tags map to nothing and get no timing). In CJK text, which has
no spaces, every CJK character is a word of its own, with the punctuation after it (and an opening
bracket before it): one character is one or two syllables, the granularity a reader follows anyway.

The alignment is matched to the chunk text greedily and forgivingly: the vendor may normalise a
character, drop a pause tag, add or omit characters, send no alignment for some audio parts, or split
one request's alignment over several parts. Characters it does not time are spread between their
neighbours. Nothing here raises on odd input.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from chat.providers.base import Alignment
from chat.speech.chunk import SpeechChunk

WordTiming = tuple[int, int, int, int]  # (display_start, display_end, start_ms, end_ms)
GUESS_MS_PER_CHAR = 70  # how long an untimed character at the end of a chunk is taken to last
_NEAR = 4  # how far ahead a lone character is looked for
_FAR = 64  # how far ahead three characters in a row are looked for
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_PAUSE = re.compile(r"<break time=\"(\d+(?:\.\d+)?)s\" />")
_SAME = str.maketrans("‘’‚‛“”„‟–—−", "''''\"\"\"\"---")


@dataclass
class _Word:
    first: int  # index in the chunk text
    last: int
    display: tuple[int, int]


def _same(a: str, b: str) -> bool:
    return a == b or a.casefold().translate(_SAME) == b.casefold().translate(_SAME)


def _opens(char: str) -> bool:
    return unicodedata.category(char) in ("Ps", "Pi")


def _word_runs(text: str) -> list[tuple[int, int]]:
    """[first, end) of each word: non-space runs, CJK ones split per character."""
    runs: list[tuple[int, int]] = []
    for run in re.finditer(r"\S+", text):
        start = run.start()
        for i in range(run.start() + 1, run.end()):
            char, before = text[i], text[i - 1]
            if unicodedata.category(char)[0] == "P" and not _opens(char):
                continue  # closing and ending marks stay with what they close
            if _opens(before):
                continue
            if _CJK.match(char) or _CJK.match(before):
                runs.append((start, i))
                start = i
        runs.append((start, run.end()))
    return runs


def _words(chunk: SpeechChunk) -> list[_Word]:
    words: list[_Word] = []
    for first, end in _word_runs(chunk.text):
        shown = [chunk.offsets[i] for i in range(first, end) if chunk.offsets[i] >= 0 and chunk.text[i].isalnum()]
        if shown:
            words.append(_Word(first, end - 1, (min(shown), max(shown) + 1)))
    return words


class ChunkTiming:
    """Word timings for one chunk's audio, fed the vendor's alignment as its audio parts arrive.

    `audio_offset_ms` is where the chunk's audio starts in the reply's audio; each `add` gives the
    offset (in the chunk's audio) that its alignment's times are relative to. `add` returns the words
    its alignment completed, `finish` the rest once the chunk's audio has ended.
    """

    def __init__(self, chunk: SpeechChunk, audio_offset_ms: int = 0) -> None:
        self._text = chunk.text
        self._words = _words(chunk)
        self._start: list[int | None] = [None] * len(chunk.text)
        self._end: list[int | None] = [None] * len(chunk.text)
        self._origin = audio_offset_ms
        self._cursor = 0  # characters before it are settled: timed, or passed over by the alignment
        self._next = 0  # the first word not yet returned
        self._last_start = self._last_end = audio_offset_ms

    def add(self, alignment: Alignment | None, offset_ms: int = 0) -> list[WordTiming]:
        if alignment is not None:
            self._match(alignment, self._origin + offset_ms)
        return self._ready(self._cursor, None)

    def finish(self, duration_ms: int | None = None) -> list[WordTiming]:
        """The words not returned yet; those the vendor never timed end by `duration_ms` when known."""
        end = None if duration_ms is None else self._origin + duration_ms
        return self._ready(len(self._text), end)

    def _match(self, alignment: Alignment, base: int) -> None:
        chars = alignment.chars
        count = min(len(chars), len(alignment.char_start_times_ms), len(alignment.char_durations_ms))
        i = self._cursor
        for j in range(count):
            char = chars[j]
            if not char or char.isspace():
                if i < len(self._text) and self._text[i].isspace():
                    i += 1
                continue
            found = self._find(chars, j, i)
            if found < 0:
                continue  # a character the vendor added
            start = base + max(0, int(alignment.char_start_times_ms[j]))
            self._start[found] = start
            self._end[found] = start + max(0, int(alignment.char_durations_ms[j]))
            i = found + 1
        self._cursor = i

    def _find(self, chars: tuple[str, ...], j: int, i: int) -> int:
        """Where in the text (from `i`) alignment character `j` is, or -1."""
        char = chars[j]
        for p in range(i, min(i + _NEAR, len(self._text))):
            if _same(self._text[p], char):
                return p
        following = "".join(c for c in chars[j : j + 6] if c and not c.isspace())[:3]
        if len(following) < 3:
            return -1
        window = self._text[i : i + _FAR].casefold().translate(_SAME)
        found = window.find(following.casefold().translate(_SAME))
        return i + found if found >= 0 else -1

    def _ready(self, upto: int, end_ms: int | None) -> list[WordTiming]:
        """The words wholly before `upto`, in order; untimed ones wait for the next timed word (or the end)."""
        done: list[WordTiming] = []
        untimed: list[_Word] = []
        while self._next < len(self._words) and self._words[self._next].last < upto:
            word = self._words[self._next]
            self._next += 1
            starts = [t for t in self._start[word.first : word.last + 1] if t is not None]
            if not starts:
                untimed.append(word)
                continue
            ends = [t for t in self._end[word.first : word.last + 1] if t is not None]
            start = max(min(starts), self._last_start)  # words never go back in time
            if untimed:
                gap = max(self._last_start, min(self._last_end, start))
                done += self._spread(untimed, gap, max(gap, start))
                start, untimed = max(start, gap), []
            end = max(start, *ends)
            self._last_start, self._last_end = start, max(self._last_end, end)
            done.append((*word.display, start, end))
        if untimed and upto >= len(self._text):
            guess = self._last_end + GUESS_MS_PER_CHAR * sum(w.last - w.first + 1 for w in untimed)
            done += self._spread(untimed, self._last_end, max(guess if end_ms is None else end_ms, self._last_end))
        elif untimed:
            self._next -= len(untimed)  # a later part may time the words after them, to spread them up to
        return done

    def _spread(self, words: list[_Word], start: int, end: int) -> list[WordTiming]:
        """Words the vendor did not time, shared out over the gap they were spoken in, by length."""
        total = sum(w.last - w.first + 1 for w in words)
        timed: list[WordTiming] = []
        at = float(start)
        for word in words:
            step = (end - start) * (word.last - word.first + 1) / total
            timed.append((*word.display, round(at), round(at + step)))
            at += step
        if words:
            self._last_start, self._last_end = max(self._last_start, round(at - step)), max(self._last_end, end)
        return timed


def word_timings(chunk: SpeechChunk, alignment: Alignment | None, audio_offset_ms: int) -> list[WordTiming]:
    """Word timings of the displayed reply for one chunk whose whole alignment is known: (display_start,
    display_end, start_ms, end_ms), times in the reply's audio (the chunk's audio starts at audio_offset_ms)."""
    timing = ChunkTiming(chunk, audio_offset_ms)
    return timing.add(alignment) + timing.finish(_duration(alignment))


def _duration(alignment: Alignment | None) -> int | None:
    if alignment is None or not alignment.char_start_times_ms or not alignment.char_durations_ms:
        return None
    return max(s + d for s, d in zip(alignment.char_start_times_ms, alignment.char_durations_ms, strict=False))


def _weight(char: str) -> float:
    if char.isspace():
        return 0.5
    if _CJK.match(char):
        return 2.0
    if char in ".!?。！？…":
        return 3.0
    if char in ",;:、，；：":
        return 2.0
    return 1.0 if char.isalnum() else 0.3


def estimate_alignment(text: str, duration_ms: int) -> Alignment:
    """A plausible alignment for speech whose audio length is known but whose timing is not (providers
    that report none): characters share the duration by how long they take to say, pauses their own."""
    weights = [_weight(char) for char in text]
    pauses = 0.0
    for pause in _PAUSE.finditer(text):
        weights[pause.start() : pause.end()] = [0.0] * (pause.end() - pause.start())
        weights[pause.start()] = -float(pause.group(1)) * 1000  # marked: a fixed length, not a share
        pauses -= weights[pause.start()]
    scale_pauses = min(1.0, duration_ms / 2 / pauses) if pauses else 1.0
    fixed = [-w * scale_pauses if w < 0 else 0.0 for w in weights]
    shared = sum(w for w in weights if w > 0)
    rest = max(0.0, duration_ms - sum(fixed))
    starts: list[int] = []
    durations: list[int] = []
    at = 0.0
    for weight, pause_ms in zip(weights, fixed, strict=True):
        step = pause_ms or (rest * weight / shared if shared and weight > 0 else 0.0)
        starts.append(round(at))
        durations.append(round(at + step) - round(at))
        at += step
    return Alignment(chars=tuple(text), char_start_times_ms=tuple(starts), char_durations_ms=tuple(durations))
