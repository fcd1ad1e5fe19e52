"""Word timings of the displayed reply from the vendor's per-character alignment of each chunk's speech."""

from __future__ import annotations

import itertools
import random

import pytest

from chat.providers.base import Alignment
from chat.speech import ChunkTiming, SpeechChunk, SpeechChunker, estimate_alignment, word_timings
from tests.speech_corpus import CORPUS


def chunks_of(reply: str, **options: bool) -> list[SpeechChunk]:
    chunker = SpeechChunker(**options)
    return chunker.feed(reply) + chunker.flush()


def aligned(text: str, ms: int = 50, start: int = 0) -> Alignment:
    """What the vendor sends for `text`: every character, `ms` each, from `start`."""
    return Alignment(tuple(text), tuple(start + i * ms for i in range(len(text))), (ms,) * len(text))


def shown(reply: str, timings: list[tuple[int, int, int, int]]) -> list[str]:
    return [reply[start:end] for start, end, _, _ in timings]


def test_it_times_the_displayed_words_of_a_chunk() -> None:
    reply = "Hello **world**, see [the docs](https://example.com) now."
    (chunk,) = chunks_of(reply)
    assert chunk.text == "Hello world, see the docs now."
    timings = word_timings(chunk, aligned(chunk.text), 1000)
    assert shown(reply, timings) == ["Hello", "world", "see", "the", "docs", "now"]
    assert timings[0] == (0, 5, 1000, 1250)  # shifted by where the chunk's audio starts
    assert timings[1] == (8, 13, 1300, 1600)  # "world," : the comma is heard with it


def test_it_leaves_out_words_the_filter_inserted() -> None:
    reply = "See $x^2$ at https://example.com now."
    (chunk,) = chunks_of(reply)
    assert chunk.text == "See x squared at the link now."
    timings = word_timings(chunk, aligned(chunk.text), 0)
    assert shown(reply, timings) == ["See", "x", "at", "now"]  # "squared", "the link": nothing to point at


def test_it_times_each_cjk_character_with_its_punctuation() -> None:
    reply = "今日は「晴れ」です。"
    (chunk,) = chunks_of(reply)
    timings = word_timings(chunk, aligned(chunk.text), 0)
    assert shown(reply, timings) == ["今", "日", "は", "晴", "れ", "で", "す"]
    assert timings[3][2:] == (150, 250)  # 「晴: the bracket is heard as part of the character after it
    assert timings[-1][2:] == (400, 500)  # す。


def test_it_matches_an_alignment_that_differs_from_the_text_sent() -> None:
    reply = "It’s 42 — really, truly done."
    (chunk,) = chunks_of(reply)
    vendor = "it's 42 - realy, truly done!!"  # case, apostrophe and dash normalised, a letter lost, marks added
    timings = word_timings(chunk, aligned(vendor), 0)
    assert shown(reply, timings) == ["It’s", "42", "really", "truly", "done"]
    assert [start for _, _, start, _ in timings] == sorted(start for _, _, start, _ in timings)
    assert timings[3][2] == vendor.index("truly") * 50


def test_it_skips_a_pause_tag_the_vendor_does_not_align() -> None:
    reply = 'Wait <break time="1s"/> now we go on with it.'
    (chunk,) = chunks_of(reply, breaks=True)
    assert chunk.text == 'Wait <break time="1.0s" /> now we go on with it.'
    vendor = "Wait  now we go on with it."
    timings = word_timings(chunk, aligned(vendor), 0)
    assert shown(reply, timings) == ["Wait", "now", "we", "go", "on", "with", "it"]
    assert timings[1][2] == vendor.index("now") * 50


def test_it_emits_words_as_the_parts_of_one_request_arrive() -> None:
    reply = "One two three four."
    (chunk,) = chunks_of(reply)
    timing = ChunkTiming(chunk, audio_offset_ms=500)
    first = timing.add(aligned("One tw", start=0), offset_ms=0)
    assert shown(reply, first) == ["One"]  # "two" is not complete yet
    assert timing.add(None, offset_ms=300) == []  # a part with no alignment
    second = timing.add(aligned("o three four.", start=0), offset_ms=300)
    assert shown(reply, second) == ["two", "three", "four"]
    assert second[0][2:] == (500 + 200, 500 + 300 + 50)  # started in the first part, ended in the second
    assert timing.finish(1000) == []


def test_it_spreads_words_the_vendor_never_timed_between_their_neighbours() -> None:
    reply = "Alpha beta gamma delta."
    (chunk,) = chunks_of(reply)
    starts = (0, 10, 20, 30, 40, 400, 410, 420, 430, 440)
    vendor = Alignment(tuple("Alphadelta"), starts, (10,) * 10)  # "beta" and "gamma" were not timed
    timings = word_timings(chunk, vendor, 0)
    assert shown(reply, timings) == ["Alpha", "beta", "gamma", "delta"]
    assert timings[1][2:] == (50, 206) and timings[2][2:] == (206, 400)  # shared by length, in the gap


def test_it_guesses_word_times_without_any_alignment() -> None:
    reply = "No timing at all here."
    (chunk,) = chunks_of(reply)
    timings = word_timings(chunk, None, 2000)
    assert shown(reply, timings) == ["No", "timing", "at", "all", "here"]
    assert timings[0][2] == 2000 and all(a[3] <= b[2] for a, b in itertools.pairwise(timings))
    timing = ChunkTiming(chunk, 2000)
    assert timing.add(None) == []
    assert timing.finish(1000)[-1][3] == 3000  # spread over the chunk's audio when its length is known


def test_it_times_every_corpus_chunk_with_an_estimated_alignment() -> None:
    for case in CORPUS:
        start = 0
        for chunk in chunks_of(case.reply):
            duration = 60 * len(chunk.text)
            timings = word_timings(chunk, estimate_alignment(chunk.text, duration), start)
            assert all(start <= begin <= end <= start + duration for _, _, begin, end in timings)
            assert [t[2] for t in timings] == sorted(t[2] for t in timings)
            for display_start, display_end, _, _ in timings:
                assert case.reply[display_start:display_end].strip() == case.reply[display_start:display_end]
            start += duration


def test_it_estimates_an_alignment_over_the_whole_duration() -> None:
    text = 'Hi there. <break time="1.0s" /> Next.'
    alignment = estimate_alignment(text, 3000)
    assert alignment.chars == tuple(text)
    assert alignment.char_start_times_ms[0] == 0
    assert alignment.char_start_times_ms[-1] + alignment.char_durations_ms[-1] == 3000
    assert list(alignment.char_start_times_ms) == sorted(alignment.char_start_times_ms)
    pause = text.index("<")
    assert alignment.char_durations_ms[pause] == 1000  # the pause gets its own length
    assert alignment.char_durations_ms[text.index(".")] > alignment.char_durations_ms[1]  # a stop is longer
    assert estimate_alignment("", 500) == Alignment((), (), ())


def test_it_never_raises_on_odd_alignments() -> None:
    rng = random.Random(5)
    (chunk,) = chunks_of("A short reply, with some words, for the fuzzing of it.")
    for _ in range(300):
        size = rng.randint(0, 80)
        chars = tuple(rng.choice("A short reply wth sme wrds  ,.xyz") for _ in range(size))
        starts = tuple(rng.randint(-50, 5000) for _ in range(size))
        durations = tuple(rng.randint(-5, 300) for _ in range(rng.randint(0, size)))  # even mismatched lengths
        timings = word_timings(chunk, Alignment(chars, starts, durations), 100)
        assert all(end >= start for _, _, start, end in timings)
        assert [t[2] for t in timings] == sorted(t[2] for t in timings)


@pytest.mark.parametrize("reply", [case.reply for case in CORPUS if case.name in ("japanese_long", "html", "table")])
def test_it_maps_every_timed_word_to_displayed_text(reply: str) -> None:
    for chunk in chunks_of(reply):
        for display_start, display_end, _, _ in word_timings(chunk, aligned(chunk.text), 0):
            assert 0 <= display_start < display_end <= len(reply)
            assert any(char.isalnum() for char in reply[display_start:display_end])
