"""When each chunk is released, fed token by token as an LLM streams (30 tokens/s on a simulated clock).

A chunk should leave as soon as the text seen so far settles it: the token that completes it, or the one
after it that confirms the sentence ended — never the end of the paragraph or of the reply.
"""

from __future__ import annotations

import random

import pytest

from chat.speech import SpeechChunker
from chat.speech.markdown import MarkdownSpeech
from tests.speech_corpus import CORPUS, Case, Release, llm_tokens, releases, token_at

CASES = [pytest.param(case, id=case.name) for case in CORPUS]
SLACK_CHARS = 20  # at most this many displayed characters may arrive after a chunk's last one before it leaves


def case(name: str) -> Case:
    return next(case for case in CORPUS if case.name == name)


def released(reply: str, **options: object) -> tuple[list[str], list[Release]]:
    tokens = llm_tokens(reply)
    return tokens, releases(tokens, **options)


def test_it_releases_the_first_japanese_sentence_with_the_next_token() -> None:
    reply = case("japanese_long").reply
    tokens, out = released(reply)
    first_end = reply.index("。")
    assert out[0].chunk.text == reply[: first_end + 1]
    assert out[0].token == token_at(tokens, first_end + 1)
    assert out[0].ms < 600  # pipecat: 570 ms on these tokens; the reply takes 2.5 s
    second_end = reply.index("。", first_end + 1)
    assert out[1].token == token_at(tokens, second_end + 1) < len(tokens)


def test_it_releases_a_chinese_sentence_at_a_full_width_mark() -> None:
    reply = "你好！我是你的语音助手，今天我们来谈谈人工智能。"
    tokens, out = released(reply)
    assert [r.chunk.text for r in out] == ["你好！", "我是你的语音助手，今天我们来谈谈人工智能。"]
    assert out[0].token == token_at(tokens, reply.index("！") + 1)


@pytest.mark.parametrize(
    ("reply", "first"),
    [
        ("準備はできていますか．もう少し勉強しなければならないと思っているところです。", "準備はできていますか．"),
        ("そうですね…それは難しい質問ですが、一緒に考えてみましょう。", "そうですね…"),
        ("はい!次の手順に進みましょう。", "はい!"),
        ("本当ですか？はい、本当です。", "本当ですか？"),
    ],
)
def test_it_ends_a_cjk_sentence_at_full_width_and_ascii_marks(reply: str, first: str) -> None:
    tokens, out = released(reply)
    assert out[0].chunk.text == first
    assert out[0].token == token_at(tokens, len(first))


def test_it_waits_for_the_closing_quote_and_the_particle_after_it() -> None:
    reply = "先生は「明日はテストです。」と言いました。本当ですか？"
    tokens, out = released(reply)
    assert out[0].chunk.text == "先生は「明日はテストです。」と言いました。"
    assert out[0].token == token_at(tokens, reply.index("。本") + 1)


def test_it_ends_a_sentence_after_its_closing_bracket() -> None:
    reply = "（これは例です。）次の文です。"
    tokens, out = released(reply)
    assert out[0].chunk.text == "（これは例です。）"
    assert out[0].token == token_at(tokens, reply.index("）") + 1)


def test_it_passes_cjk_characters_on_without_waiting_for_whitespace() -> None:
    speech = MarkdownSpeech()
    assert speech.feed("今日は")[0] == "今日は"
    assert speech.feed("Pythonの")[0] == "Pythonの"  # a Latin word ends where CJK text resumes
    text, offsets = speech.feed("**勉強**")
    assert (text, offsets) == ("勉強", [12, 13])


def test_it_releases_a_sentence_before_an_html_comment_without_waiting_for_the_comment_to_end() -> None:
    reply = case("comment_after_sentence").reply
    tokens, out = released(reply)
    assert out[0].chunk.text == "Your order has shipped and should arrive soon."
    assert out[0].token == token_at(tokens, reply.index("<!--") + 3)  # the token that completes "<!--"


def test_it_releases_a_sentence_before_an_image_at_once() -> None:
    reply = "The server sits between the browser and the vendor. ![diagram of it all](arch.png) Icons too."
    tokens, out = released(reply)
    assert out[0].token == token_at(tokens, reply.index("![") + 1)


def test_it_cuts_a_run_on_reply_near_160_characters_not_at_the_400_cap() -> None:
    reply = case("run_on_clauses").reply
    tokens, out = released(reply)
    first = out[0].chunk.text
    assert 120 <= len(first) <= 160 and reply.startswith(first)
    assert out[0].token <= token_at(tokens, 165)
    assert out[0].ms < 1500  # the 400-character cap would have waited 2.7 s


def test_it_cuts_a_run_on_reply_at_its_last_clause_before_the_limit() -> None:
    reply = " ".join(["we kept on walking along the river for a while"] * 2 + ["and then"] + ["we talked"] * 30)
    reply = reply.replace("a while and", "a while, and", 1)
    tokens, out = released(reply)
    assert out[0].chunk.text == reply[: reply.index(",") + 1]
    assert out[0].token <= token_at(tokens, 165)


def test_it_releases_a_sentence_ending_in_inline_math_with_the_next_word() -> None:
    reply = "The area of a circle is $A = \\pi r^2$. Its circumference is $2 \\pi r$ in the same units."
    tokens, out = released(reply)
    assert out[0].chunk.text == "The area of a circle is A equals pi r squared."
    assert out[0].token == token_at(tokens, reply.index("Its"))


def test_it_releases_a_display_formula_when_its_block_ends() -> None:
    reply = case("latex_display").reply
    tokens, out = released(reply)
    closer = reply.index("$$", reply.index("$$") + 2)
    formula = next(r for r in out if r.chunk.text.startswith("x equals"))
    assert formula.token == token_at(tokens, closer + 3)  # the blank line after the closing $$


def test_it_does_not_hold_a_line_back_for_dollar_prices() -> None:
    reply = case("prices_not_math").reply
    tokens, out = released(reply)
    assert out[0].chunk.text == "The basic plan is $5 and the pro plan is $10 per month."
    assert out[0].token == token_at(tokens, reply.index(" A yearly") + 1)


def test_it_releases_a_sentence_before_a_pause_with_the_pause_tag() -> None:
    reply = 'Let me think about that. <break time="1.5s"/> Okay, here is what I found out for you.'
    tokens, out = released(reply, breaks=True)
    assert [r.chunk.text for r in out] == [
        "Let me think about that.",
        '<break time="1.5s" /> Okay, here is what I found out for you.',
    ]
    assert out[0].token == token_at(tokens, reply.index("/>") + 2)


def test_it_releases_a_sentence_before_a_bare_url_at_the_next_sentence() -> None:
    reply = case("url_after_preposition").reply
    tokens, out = released(reply)
    assert out[0].chunk.text == "The documentation lives at the link."
    assert out[0].token == token_at(tokens, reply.index("You"))


def test_it_releases_a_sentence_before_a_footnote_definition_at_the_line_end() -> None:
    reply = "It is visible only under ideal conditions, so most people who look for it from a plane window "
    reply += "never see it.[^1]\n\n[^1]: At dusk."
    tokens, out = released(reply)
    assert out[0].chunk.text == "It is visible only under ideal conditions,"
    assert out[1].chunk.text == "so most people who look for it from a plane window never see it."
    assert out[1].token == token_at(tokens, reply.index("\n"))
    assert out[2].chunk.text == "At dusk."


@pytest.mark.parametrize("case", CASES)
def test_it_releases_every_corpus_chunk_soon_after_its_last_displayed_character(case: Case) -> None:
    tokens = llm_tokens(case.reply)
    out = releases(tokens)
    assert [r.chunk.text for r in out] == case.chunks
    for release in out:
        shown = [offset for offset, char in zip(release.chunk.offsets, release.chunk.text, strict=True) if offset >= 0]
        ends_inserted = release.chunk.offsets[-2] < 0 and not release.chunk.text[-2].isalnum()
        if release.token == len(tokens) or not shown or ends_inserted:
            continue  # the last chunks, or one ending in "(formula shown on screen)"
        deadline = min(max(shown) + SLACK_CHARS, len(case.reply) - 1)
        assert release.token <= token_at(tokens, deadline), release.chunk.text


@pytest.mark.parametrize("case", CASES)
def test_it_releases_at_the_same_characters_however_the_tokens_are_split(case: Case) -> None:
    """A chunk's release depends on the text seen, not on how it was split: fed char by char, each
    chunk leaves at a character no later than the one that released it from whole tokens."""
    tokens = llm_tokens(case.reply)
    by_token = releases(tokens)
    by_char = releases(list(case.reply))
    assert [r.chunk for r in by_char] == [r.chunk for r in by_token]
    ends = [sum(len(token) for token in tokens[: i + 1]) - 1 for i in range(len(tokens))]
    for char_release, token_release in zip(by_char, by_token, strict=True):
        if token_release.token < len(tokens):
            assert char_release.token <= ends[token_release.token]


def test_it_gives_the_same_chunks_and_offsets_for_random_token_splits() -> None:
    rng = random.Random(13)
    for case in CORPUS:
        tokens = llm_tokens(case.reply)
        regrouped: list[str] = []
        while tokens:
            take = rng.randint(1, 4)
            regrouped.append("".join(tokens[:take]))
            tokens = tokens[take:]
        whole = SpeechChunker()
        assert [r.chunk for r in releases(regrouped)] == whole.feed(case.reply) + whole.flush()
