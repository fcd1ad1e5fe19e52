"""LaTeX in replies: read the way a person says it, or named — never the residue of stripped syntax."""

from __future__ import annotations

import random

import pytest

from chat.speech import SpeechChunker, speakable_text
from chat.speech.math import SHOWN, math_speech
from tests.speech_corpus import CORPUS, Case

MATH_CASES = [case for case in CORPUS if case.name.startswith("latex_")]
RESIDUE = ("frac", "sqrt", "\\", "^", "_", "{", "}", "$", "pm ", "cdot", "begin", "aligned", "&")


@pytest.mark.parametrize(
    ("latex", "spoken"),
    [
        ("A = \\pi r^2", "A equals pi r squared"),
        (
            "x = \\frac{-b \\pm \\sqrt{b^2-4ac}}{2a}",
            "x equals minus b plus or minus the square root of b squared minus 4 a c, all over 2 a",
        ),
        ("E = mc^2", "E equals m c squared"),
        ("V = \\frac{4}{3} \\pi r^3", "V equals four thirds pi r cubed"),
        ("\\frac{a}{b}", "a over b"),
        ("\\frac{1}{x+1}", "1 over the quantity x plus 1"),
        ("\\frac{1}{2}", "one half"),
        ("\\tfrac{3}{4}", "three quarters"),
        ("x^n", "x to the n"),
        ("2^{10}", "2 to the power of 10"),
        ("e^{i\\pi} + 1 = 0", "e to the power of i pi plus 1 equals 0"),
        ("\\sqrt{2}", "the square root of 2"),
        ("\\sqrt[3]{27} = 3", "the cube root of 27 equals 3"),
        ("\\sqrt[n]{x}", "the n th root of x"),
        ("a_1 + a_{n+1}", "a sub 1 plus a sub n plus 1"),
        ("\\alpha + \\beta \\neq \\Gamma", "alpha plus beta is not equal to gamma"),
        ("x \\le 3 \\text{ and } y \\ge 4", "x is less than or equal to 3 and y is greater than or equal to 4"),
        ("a \\times b \\cdot c \\div d", "a times b times c divided by d"),
        ("\\pi \\approx 3.14", "pi is approximately 3.14"),
        ("90^\\circ", "90 degrees"),
        ("\\left( \\frac{a}{b} \\right)^2", "the quantity a over b squared"),
        ("f(x) = x^2", "f of x equals x squared"),
        ("f'(x)", "f prime of x"),
        ("n(n+1)", "n times the quantity n plus 1"),
        ("|x| < 1", "the absolute value of x is less than 1"),
        ("P(A|B)", "P of A given B"),
        ("\\sum_{i=1}^{n} i", "the sum from i equals 1 to n of i"),
        ("\\int_0^1 x\\,dx", "the integral from 0 to 1 of x d x"),
        ("\\lim_{x \\to \\infty} \\frac{1}{x} = 0", "the limit as x approaches infinity of 1 over x equals 0"),
        ("\\binom{n}{k}", "n choose k"),
        ("\\text{speed} = \\frac{\\text{distance}}{\\text{time}}", "speed equals distance over time"),
        ("\\hat{y} = \\vec{v}", "y hat equals vector v"),
        ("x_1, x_2, \\ldots, x_n", "x sub 1, x sub 2, dot dot dot, x sub n"),
        ("α + β = 90°", "alpha plus beta equals 90 degrees"),
        ("\\mathbf{F} = m\\mathbf{a}", "F equals m a"),
    ],
)
def test_it_reads_common_math_as_a_person_would(latex: str, spoken: str) -> None:
    assert math_speech(latex, range(len(latex)), display=False)[0] == spoken


@pytest.mark.parametrize(
    "latex",
    [
        "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
        "\\begin{aligned} x &= 1 \\\\ y &= 2 \\end{aligned}",
        "\\unknowncommand{x}",
        "\\frac{1}{",
        "x}",
        " + ".join(f"a_{{{i}}} x^{{{i}}}" for i in range(12)),  # readable, but too long to follow
    ],
)
def test_it_names_a_display_formula_it_would_not_read_well(latex: str) -> None:
    assert math_speech(latex, range(len(latex)), display=True) == (SHOWN, [-1] * len(SHOWN))


def test_it_reads_inline_formulas_longer_than_display_ones() -> None:
    latex = " + ".join(f"x_{i}" for i in range(9))  # 35 words
    assert math_speech(latex, range(len(latex)), display=True)[0] == SHOWN
    assert math_speech(latex, range(len(latex)), display=False)[0].startswith("x sub 0 plus x sub 1")


def test_it_keeps_the_displayed_offsets_of_variables_and_numbers() -> None:
    reply = "So $x + 42 = y$ holds."
    chunker = SpeechChunker()
    (chunk,) = chunker.feed(reply) + chunker.flush()
    assert chunk.text == "So x plus 42 equals y holds."
    mapped = {chunk.text[i]: reply[offset] for i, offset in enumerate(chunk.offsets) if offset >= 0}
    assert all(key == value for key, value in mapped.items())
    plus = chunk.text.index("plus")
    assert chunk.offsets[plus : plus + 4] == (-1, -1, -1, -1)  # the words said for operators are inserted
    assert reply[chunk.offsets[chunk.text.index("y h")]] == "y"


@pytest.mark.parametrize("case", MATH_CASES, ids=[case.name for case in MATH_CASES])
def test_it_never_speaks_latex_residue(case: Case) -> None:
    for chunk in speakable_text(case.reply).split(". "):
        assert not [residue for residue in RESIDUE if residue in chunk], chunk


@pytest.mark.parametrize(
    ("reply", "spoken"),
    [
        ("The basic plan is $5 and the pro plan is $10.", "The basic plan is $5 and the pro plan is $10."),
        ("Prices range from $5-$10.", "Prices range from $5-$10."),
        ("It costs $29.99, or US$30.", "It costs $29.99, or US$30."),
        ("Write \\$x to mean dollars.", "Write $x to mean dollars."),
        ("Exactly $5$ of them.", "Exactly 5 of them."),
        ("The power $2^n$ grows.", "The power 2 to the n grows."),
        ("It was 30$^\\circ$C outside.", "It was 30 degrees C outside."),
        ("Set $HOME to your folder.\nThen restart.", "Set HOME to your folder. Then restart."),
    ],
)
def test_it_tells_prices_from_math(reply: str, spoken: str) -> None:
    assert speakable_text(reply) == spoken


@pytest.mark.parametrize(
    ("reply", "spoken"),
    [
        ("Inline \\(a^2\\) works.", "Inline a squared works."),
        ("Display \\[a^2 + b^2 = c^2\\] inline.", "Display a squared plus b squared equals c squared inline."),
        ("So\n\n\\[\nE = mc^2\n\\]\n\nas Einstein wrote.", "So. E equals m c squared. as Einstein wrote."),
        ("Hence\n$$\nx^2\n$$\nwhere x is real.", "Hence x squared where x is real."),
        ("Hence\n$$\nx^2\n$$\nThis is new.", "Hence x squared. This is new."),
        ("The sum $$\\sum_{k=1}^{n} k$$ is small.", "The sum the sum from k equals 1 to n of k is small."),
        ("Unclosed $$\nx^2 and more", "Unclosed x squared and more."),
    ],
)
def test_it_reads_display_math_in_its_sentence(reply: str, spoken: str) -> None:
    assert speakable_text(reply) == spoken


@pytest.mark.parametrize(
    ("reply", "spoken"),
    [
        ("The area grows with r^2, not r.", "The area grows with r squared, not r."),
        ("About 10^-3 of it (or 2^{10}).", "About 10 to the power of minus 3 of it (or 2 to the power of 10)."),
        ("Press Ctrl^C to stop.", "Press CtrlC to stop."),
    ],
)
def test_it_reads_powers_written_as_plain_text(reply: str, spoken: str) -> None:
    assert speakable_text(reply) == spoken


def test_it_reads_a_display_formula_that_never_closes_as_text_after_a_limit() -> None:
    reply = "A $$ sign. " + "word " * 500
    assert speakable_text(reply).startswith("A sign. word word")


def test_it_never_raises_on_malformed_latex() -> None:
    rng = random.Random(7)
    alphabet = [*"{}^_\\$()[]|&+-=xyz123 ,.'", "\\frac", "\\sqrt", "\\left", "\\right", "\\sum", "\\text"]
    for _ in range(500):
        latex = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        text, offsets = math_speech(latex, range(len(latex)), display=rng.random() < 0.5)
        assert len(text) == len(offsets)
        assert speakable_text(f"Try ${latex}$ now.")
