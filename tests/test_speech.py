"""The speech filter and chunker: the pinned corpus, the properties every reply must keep, and streaming."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from chat.speech import Chunker, SpeechChunk, SpeechChunker, WholeReplyChunker, join_chunks, speakable_text
from tests.speech_corpus import CORPUS, Case

CASES = [pytest.param(case, id=case.name) for case in CORPUS]
SEVERAL = [pytest.param(case, id=case.name) for case in CORPUS if len(case.chunks) > 1]
TERMINAL = ".!?…。！？।؟"
_PAUSE = re.compile(r"<break [^>]*/>")
CLAUSE = ",;:—–-"


def chunks_of(parts: list[str], **options: Any) -> list[str]:
    chunker = SpeechChunker(**options)
    chunks: list[SpeechChunk] = []
    for part in parts:
        chunks += chunker.feed(part)
    return texts(chunks + chunker.flush())


def texts(chunks: list[SpeechChunk]) -> list[str]:
    return [chunk.text for chunk in chunks]


def random_split(text: str, seed: int) -> list[str]:
    rng = random.Random(seed)
    cuts = sorted({rng.randrange(1, len(text)) for _ in range(len(text) // 4)}) if len(text) > 1 else []
    return [text[start:end] for start, end in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def token_split(text: str) -> list[str]:
    """Roughly how an LLM streams: words with their trailing space, markup split off as its own token."""
    return re.findall(r"\s+|\w+|[^\w\s]{1,3}", text)


def test_it_has_a_corpus_of_at_least_forty_distinct_replies() -> None:
    assert len(CORPUS) >= 40
    assert len({case.name for case in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CASES)
def test_it_speaks_each_corpus_reply_as_pinned(case: Case) -> None:
    assert chunks_of([case.reply]) == case.chunks


@pytest.mark.parametrize("case", CASES)
def test_it_gives_the_same_chunks_however_the_reply_is_split(case: Case) -> None:
    assert chunks_of(list(case.reply)) == case.chunks
    assert chunks_of(token_split(case.reply)) == case.chunks
    for seed in range(3):
        assert chunks_of(random_split(case.reply, seed)) == case.chunks


@pytest.mark.parametrize("case", CASES)
def test_it_never_speaks_markdown_syntax_or_urls(case: Case) -> None:
    for chunk in case.chunks:
        assert not set(chunk) & set("#*`|<>[]"), chunk
        assert "http" not in chunk and "www." not in chunk


@pytest.mark.parametrize("case", CASES)
def test_it_emits_stripped_collapsed_speakable_chunks(case: Case) -> None:
    for chunk in case.chunks:
        assert chunk == " ".join(chunk.split()) and chunk
        assert any(char.isalnum() for char in chunk)


@pytest.mark.parametrize("case", CASES)
def test_it_keeps_every_chunk_within_max_chars(case: Case) -> None:
    assert all(len(chunk) <= 400 for chunk in case.chunks)
    assert all(len(chunk) <= 120 for chunk in chunks_of([case.reply], max_chars=120))


@pytest.mark.parametrize("case", CASES)
def test_it_merges_short_chunks_after_the_first_into_the_next(case: Case) -> None:
    chunker = SpeechChunker()
    assert not [chunk for chunk in case.chunks[1:-1] if chunker.too_short(chunk)]


@pytest.mark.parametrize("case", SEVERAL)
def test_it_starts_with_a_sentence_or_a_long_clause_or_a_split(case: Case) -> None:
    first = case.chunks[0]
    last_mark = first.rstrip("\"'”’»)」』").rstrip()[-1]
    if last_mark in CLAUSE:  # a clause is long enough, unless the line ended there ("Steps:\n- …")
        assert len(first) >= 40 or re.search(re.escape(first[-10:]) + r"[*_]*\n", case.reply)
    elif last_mark not in TERMINAL:
        assert 120 <= len(first) <= 160  # only a run-on without punctuation is cut elsewhere


def test_it_matches_speakable_text_with_the_joined_chunks() -> None:
    for case in CORPUS:
        assert speakable_text(case.reply) == " ".join(case.chunks)


def test_it_emits_a_chunk_as_soon_as_the_next_character_confirms_it() -> None:
    chunker = SpeechChunker()
    assert texts(chunker.feed("This is the first sentence of the reply.")) == []
    assert texts(chunker.feed(" ")) == []
    assert texts(chunker.feed("T")) == ["This is the first sentence of the reply."]
    assert texts(chunker.feed("he second one is long enough to be sent on its own, surely. Ne")) == [
        "The second one is long enough to be sent on its own, surely."
    ]
    assert texts(chunker.feed("xt")) == []
    assert texts(chunker.flush()) == ["Next."]


def test_it_emits_a_sentence_as_soon_as_its_line_ends() -> None:
    chunker = SpeechChunker()
    assert texts(chunker.feed("## Results\n")) == ["Results."]
    assert texts(chunker.feed("- The first item ends here, with enough words to stand alone.\n")) == [
        "The first item ends here, with enough words to stand alone."
    ]


@pytest.mark.parametrize(
    "parts",
    [
        ["It costs $29.", "99 today, which is a fair price for what you get. Thanks."],
        ["Ask Mr.", " Smith or Dr.", " Jones about it, e.", "g. tomorrow. Thanks."],
        ["Pi is 3.", "14 and that is close enough for most uses. Thanks."],
        ["Wait.", "..", " then it works, as long as you are patient enough with it. Thanks."],
    ],
)
def test_it_does_not_cut_until_the_text_after_a_period_confirms_an_end(parts: list[str]) -> None:
    chunker = SpeechChunker()
    early = [texts(chunker.feed(part)) for part in parts[:-1]]
    assert early == [[]] * len(early)
    assert len(chunker.feed(parts[-1]) + chunker.flush()) == 2


def test_it_drops_a_code_fence_split_across_deltas() -> None:
    parts = ["Here is the code that you asked for earlier today, as promised.\n\n", "``", "`py", "thon\n"]
    parts += ["print('Hi. There')\n`", "``\n", "Done."]
    assert chunks_of(parts) == ["Here is the code that you asked for earlier today,", "as promised. Done."]


def test_it_drops_a_reasoning_block_split_across_deltas() -> None:
    parts = ["<thi", "nk>I should say hello. Then stop.</th", "ink", ">Hello there, it is good to see you."]
    assert chunks_of(parts) == ["Hello there, it is good to see you."]


def test_it_drops_an_unclosed_reasoning_block_and_fence_at_the_end() -> None:
    assert chunks_of(["Fine. <think>Still thinking. Hmm"]) == ["Fine."]
    assert chunks_of(["Fine.\n\n```\nprint('never closed')"]) == ["Fine."]


def test_it_speaks_nothing_for_a_reply_of_only_code_emoji_or_markup() -> None:
    for reply in [
        "```sh\nls -la\n```",
        "🎉👍🏽🇫🇷",
        "---\n\n***",
        "<br>",
        "",
        "   \n\n",
        "...",
        "![x](https://a.b/c.png)",
    ]:
        assert chunks_of([reply]) == [], reply


def test_it_reads_crlf_line_endings_like_newlines() -> None:
    assert chunks_of(["Title\r\n=====\r\n\r\n- one\r", "\n- two\r\n"]) == ["Title.", "one. two."]


def test_it_uses_the_clause_rule_only_for_the_first_chunk() -> None:
    reply = "Before we start with all of the interesting details, let me explain. " * 2
    assert chunks_of([reply]) == [
        "Before we start with all of the interesting details,",
        "let me explain. Before we start with all of the interesting details, let me explain.",
    ]


def test_it_follows_the_size_options() -> None:
    reply = "One two three. Four five six seven eight. Nine ten eleven twelve thirteen fourteen."
    assert chunks_of([reply], min_words=5, min_chars=10) == [
        "One two three.",
        "Four five six seven eight.",
        "Nine ten eleven twelve thirteen fourteen.",
    ]
    assert chunks_of([reply], max_chars=30) == [
        "One two three.",
        "Four five six seven eight.",
        "Nine ten eleven twelve",
        "thirteen fourteen.",
    ]


def test_it_splits_a_long_run_without_spaces_at_max_chars() -> None:
    chunks = chunks_of(["字" * 250], max_chars=100, run_on_chars=400)
    assert [len(chunk) for chunk in chunks] == [100, 100, 51]  # the last one gains a 。


def test_it_counts_cjk_characters_twice_towards_the_run_on_limit() -> None:
    chunks = chunks_of(["字" * 250])
    assert [len(chunk) for chunk in chunks] == [80, 80, 80, 11]


@pytest.mark.parametrize("case", CASES)
def test_it_maps_every_spoken_character_back_to_the_displayed_one(case: Case) -> None:
    chunker = SpeechChunker()
    chunks = chunker.feed(case.reply) + chunker.flush()
    shown = [offset for chunk in chunks for offset in chunk.offsets if offset >= 0]
    assert shown == sorted(shown)  # speech follows the displayed text in order
    for chunk in chunks:
        assert len(chunk.offsets) == len(chunk.text)
        for char, offset in zip(chunk.text, chunk.offsets, strict=True):
            assert offset < 0 or case.reply[offset] in (char, "&"), char  # "&amp;" is said "&"
        assert all(offset < 0 for char, offset in zip(chunk.text, chunk.offsets, strict=True) if char == " ")


def test_it_marks_inserted_speech_with_no_displayed_offset() -> None:
    reply = "## Plan\n\nSee $x < 1$ at https://example.com"
    chunker = SpeechChunker()
    chunks = chunker.feed(reply) + chunker.flush()
    assert texts(chunks) == ["Plan.", "See x is less than 1 at the link."]
    plan, see = chunks
    assert plan.offsets == (3, 4, 5, 6, -1)  # the added period
    inserted = "".join(char if offset < 0 else "_" for char, offset in zip(see.text, see.offsets, strict=True))
    assert inserted == "___ _ is less than _ __ the link."


def test_it_counts_offsets_from_the_start_of_each_reply() -> None:
    chunker = SpeechChunker()
    first = chunker.feed("One sentence here. ") + chunker.flush()
    assert first[0].offsets[0] == 0
    second = chunker.feed("Two.") + chunker.flush()
    assert second == [SpeechChunk("Two.", (0, 1, 2, 3))]


def test_it_forgets_an_interrupted_reply_on_reset() -> None:
    chunker = SpeechChunker()
    assert chunker.feed("This reply was cut short before its sentence could") == []
    chunker.reset()
    assert chunker.feed("Fresh start. ") == []
    assert chunker.flush() == [SpeechChunk("Fresh start.", (0, 1, 2, 3, 4, -1, 6, 7, 8, 9, 10, 11))]


def test_it_rejects_a_chunk_whose_offsets_do_not_fit_its_text() -> None:
    with pytest.raises(ValueError):
        SpeechChunk("abc", (0, 1))
    assert SpeechChunk("ab", (-1, -1)).display_span() is None
    assert join_chunks([SpeechChunk("a", (3,)), SpeechChunk("b", (7,))]) == SpeechChunk("a b", (3, -1, 7))


@pytest.mark.parametrize("case", CASES)
def test_it_speaks_the_whole_reply_at_once_as_the_baseline(case: Case) -> None:
    whole: Chunker = WholeReplyChunker()
    assert [whole.feed(part) for part in token_split(case.reply)] == [[]] * len(token_split(case.reply))
    spoken = whole.flush()
    chunker = SpeechChunker()
    assert spoken == ([join_chunks(chunker.feed(case.reply) + chunker.flush())] if case.chunks else [])
    whole.feed("Left over from an interrupted reply")
    whole.reset()
    assert whole.flush() == []


@pytest.mark.parametrize(
    ("reply", "spoken"),
    [
        ('Wait <break time="1.5s"/> here.', 'Wait <break time="1.5s" /> here.'),
        ("Wait <break time='750ms' /> here.", 'Wait <break time="0.8s" /> here.'),
        ('Wait<break time="10s"/>here.', 'Wait <break time="3.0s" /> here.'),  # the vendor's 3 s limit
        ('Wait <BREAK time = "2 s"/> here.', 'Wait <break time="2.0s" /> here.'),
        ('Wait <break/> <break time="0s"/> <break strength="x"/> here.', "Wait here."),
        ('Say <emphasis>this</emphasis> <phoneme ph="x">that</phoneme>.', "Say this that."),
    ],
)
def test_it_lets_ssml_pauses_through_when_asked_and_strips_every_other_tag(reply: str, spoken: str) -> None:
    assert speakable_text(reply, breaks=True) == spoken
    assert speakable_text(reply) == " ".join(_PAUSE.sub(" ", spoken).replace(" .", ".").split())


def test_it_keeps_a_pause_with_the_sentence_after_it() -> None:
    reply = 'This is the first sentence of it.\n\n<break time="1s"/>\n\nAnd this one comes after the pause.'
    assert chunks_of([reply], breaks=True) == [
        "This is the first sentence of it.",
        '<break time="1.0s" /> And this one comes after the pause.',
    ]
    chunker = SpeechChunker(breaks=True)
    (*_, last) = chunker.feed(reply) + chunker.flush()
    assert last.offsets[: len('<break time="1.0s" />')] == (-1,) * len('<break time="1.0s" />')


def test_it_never_cuts_inside_a_pause_tag() -> None:
    reply = " ".join(["word"] * 30) + ' <break time="1s"/> ' + " ".join(["word"] * 30)
    for chunk in chunks_of([reply], breaks=True):
        assert chunk.count("<") == chunk.count("/>")


def test_it_says_nothing_for_a_reply_of_only_a_pause() -> None:
    assert chunks_of(['<break time="1s"/>'], breaks=True) == []


@pytest.mark.parametrize(
    "reply",
    [
        'One. <break time="1.5s"/> Two words here.<break time="300ms"/>Three, <break time = "9s" /> four.',
        "See ![a](b.png)text and <!--x-->more. Then ![alt text](c.png) **bold**![x](y) end.",
        "今日は![図](a.png)晴れ<!--メモ-->です。`code`と$x^2$、**太字**。",
        "Use $x$ and $$y$$ and \\(z\\) and \\[w\\] and $5 and US$5, 30$^\\circ$C, r^2.",
        "Line one\r\nline two\r\n\r\n[^1]: note\r\n[2]: https://a.b\r\n",
    ],
)
def test_it_gives_the_same_chunks_and_offsets_for_any_split_of_tricky_replies(reply: str) -> None:
    for breaks in (False, True):
        whole = SpeechChunker(breaks=breaks)
        expected = whole.feed(reply) + whole.flush()
        for parts in [list(reply), token_split(reply), *(random_split(reply, seed) for seed in range(20))]:
            chunker = SpeechChunker(breaks=breaks)
            chunks = [chunk for part in parts for chunk in chunker.feed(part)]
            assert chunks + chunker.flush() == expected, parts


def test_it_always_makes_progress_with_tiny_limits() -> None:
    for reply in ["字字字字字字", 'ab <break time="1s"/> cd ef', "a b c d e f g"]:
        chunks = chunks_of([reply], max_chars=1, run_on_chars=1, breaks=True)
        assert "".join(chunks).replace(" ", "")
