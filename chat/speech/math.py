"""LaTeX math as a person reads it aloud: "x equals minus b plus or minus the square root of …".

Common school and textbook notation is read (fractions, powers, roots, sub- and superscripts, Greek
letters, relations, sums, integrals, limits, \\text{}); anything else — environments, alignment, an
unknown command, or a formula too long to follow by ear — is replaced by "(formula shown on screen)"
rather than read as the residue of stripped syntax. Variables and numbers keep the displayed offsets
of their characters, so the page can highlight them as they are spoken; the words said for commands
and operators are inserted (-1).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

SHOWN = "(formula shown on screen)"
DISPLAY_WORDS_MAX = 30  # a display formula longer than this, read aloud, is lost on a listener
INLINE_WORDS_MAX = 40

_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|\d+(?:\.\d+)?|\s+|.", re.DOTALL)
Word = tuple[str, tuple[int, ...]]

_RELATIONS = {
    "=": "equals", "<": "is less than", ">": "is greater than", "lt": "is less than", "gt": "is greater than",
    "le": "is less than or equal to", "leq": "is less than or equal to", "leqslant": "is less than or equal to",
    "ge": "is greater than or equal to", "geq": "is greater than or equal to",
    "geqslant": "is greater than or equal to", "ne": "is not equal to", "neq": "is not equal to",
    "approx": "is approximately", "simeq": "is approximately", "sim": "is similar to",
    "cong": "is congruent to", "equiv": "is equivalent to", "propto": "is proportional to",
    "ll": "is much less than", "gg": "is much greater than", "perp": "is perpendicular to",
    "parallel": "is parallel to", "in": "in", "notin": "is not in", "subset": "is a subset of",
    "subseteq": "is a subset of or equal to", "supset": "is a superset of", "mid": "given",
    "to": "to", "rightarrow": "to", "longrightarrow": "to", "mapsto": "maps to", "Rightarrow": "implies",
    "implies": "implies", "Leftarrow": "is implied by", "iff": "if and only if",
    "Leftrightarrow": "if and only if",
}  # fmt: skip
_OPERATORS = {
    "+": "plus", "-": "minus", "\u2212": "minus", "*": "times", "/": "over", "pm": "plus or minus",
    "mp": "minus or plus", "times": "times", "cdot": "times", "ast": "times", "div": "divided by",
    "cup": "union", "cap": "intersection", "setminus": "minus", "circ": "composed with", "mod": "mod",
    "bmod": "mod", "pmod": "mod", "land": "and", "wedge": "and", "lor": "or", "vee": "or",
}  # fmt: skip
_SYMBOLS = {
    "infty": "infinity", "partial": "partial", "nabla": "nabla", "degree": "degrees", "prime": "prime",
    "emptyset": "the empty set", "varnothing": "the empty set", "angle": "angle", "triangle": "triangle",
    "cdots": "dot dot dot", "ldots": "dot dot dot", "dots": "dot dot dot", "dotsc": "dot dot dot",
    "dotsb": "dot dot dot", "vdots": "dot dot dot", "ddots": "dot dot dot", "hbar": "h bar", "ell": "l",
    "forall": "for all", "exists": "there exists", "neg": "not", "lnot": "not",
    "%": "percent", "!": "factorial", "'": "prime", "\\%": "percent", "\\$": "dollars", "\\&": "and",
    "\\#": "number",
    "sin": "sine", "cos": "cosine", "tan": "tangent", "cot": "cotangent", "sec": "secant", "csc": "cosecant",
    "arcsin": "arc sine", "arccos": "arc cosine", "arctan": "arc tangent", "sinh": "hyperbolic sine",
    "cosh": "hyperbolic cosine", "tanh": "hyperbolic tangent", "log": "log", "ln": "natural log",
    "lg": "log", "exp": "exp", "max": "max", "min": "min", "sup": "sup", "inf": "inf", "det": "determinant",
    "gcd": "gcd", "arg": "arg", "deg": "degree", "dim": "dimension", "ker": "kernel",
}  # fmt: skip
_SAID = _RELATIONS | _OPERATORS | _SYMBOLS
_INFIX = frozenset(_RELATIONS.values()) | frozenset(_OPERATORS.values()) | {"all over"}
_UNICODE = {
    "±": "pm", "∓": "mp", "×": "times", "·": "cdot", "⋅": "cdot", "÷": "div", "≤": "le", "≥": "ge",
    "≠": "ne", "≈": "approx", "≡": "equiv", "∝": "propto", "→": "to", "⇒": "implies", "⇔": "iff",
    "∞": "infty", "∂": "partial", "∇": "nabla", "∈": "in", "∉": "notin", "⊂": "subset", "⊆": "subseteq",
    "∪": "cup", "∩": "cap", "∀": "forall", "∃": "exists", "°": "degree", "′": "prime", "…": "dots",
    "⋯": "cdots", "∅": "emptyset",
}  # fmt: skip


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


_GREEK = _names(
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
    "upsilon phi chi psi omega"
)
_VARIANTS = {"varepsilon": "epsilon", "vartheta": "theta", "varphi": "phi", "varrho": "rho", "varsigma": "sigma"}
_VARIANTS |= {"varpi": "pi", "varkappa": "kappa", "digamma": "digamma"}
_SILENT = _names(  # sizing, spacing and grouping: seen, not heard
    "left right big Big bigg Bigg bigl bigr Bigl Bigr biggl biggr Biggl Biggr displaystyle textstyle "
    r"scriptstyle limits nolimits quad qquad \, \; \: \! \{ \} \| \_ ~ ( ) [ ]"
) | {"\\ "}
_TEXT = _names("text textrm textit textbf textsf texttt mbox mathrm operatorname")
_STYLE = _names("mathbf mathit mathsf mathtt mathcal mathbb mathfrak mathscr boldsymbol bm")
_AFTER = {"hat": "hat", "bar": "bar", "overline": "bar", "tilde": "tilde", "dot": "dot", "ddot": "double dot"}
_BEFORE = {"vec": "vector", "overrightarrow": "vector"}
_BIG = {"sum": "the sum", "prod": "the product", "int": "the integral", "iint": "the double integral"}
_BIG |= {"iiint": "the triple integral", "oint": "the contour integral", "bigcup": "the union"}
_BIG |= {"bigcap": "the intersection"}
_FRACTIONS = ("", "", "half", "third", "quarter", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_APPLIED = frozenset("fghpPFGH")  # f(x) is "f of x"; 2(x + 1) is not "2 of"
_GLUED = frozenset(",.;:")


class Unreadable(Exception):
    """The formula uses notation this reader does not say aloud."""


def math_speech(source: str, offsets: Sequence[int], *, display: bool) -> tuple[str, list[int]]:
    """The spoken form of one formula's LaTeX source, or SHOWN when it is not worth reading aloud."""
    try:
        words = _Reader(source, offsets).read()
    except (Unreadable, RecursionError):
        words = None
    limit = DISPLAY_WORDS_MAX if display else INLINE_WORDS_MAX
    if not words or sum(len(text.split()) for text, _ in words) > limit:
        return (SHOWN, [-1] * len(SHOWN)) if source.strip() else ("", [])
    parts: list[str] = []
    kept: list[int] = []
    for text, places in words:
        if parts and text[0] not in _GLUED:
            parts.append(" ")
            kept.append(-1)
        parts.append(text)
        kept.extend(places)
    return "".join(parts), kept


def _said(text: str) -> Word:
    return text, (-1,) * len(text)


def _simple(words: list[Word]) -> bool:
    return len(words) == 1 and " " not in words[0][0]


def _compound(words: list[Word]) -> bool:
    """Holds an operator, so that "over" after it would be heard as applying to its last term only."""
    return any(text in _INFIX for text, _ in words)


class _Reader:
    """Recursive descent over LaTeX tokens; each method returns the words of what it read."""

    def __init__(self, source: str, offsets: Sequence[int]) -> None:
        self.source = source
        self.offsets = offsets
        self.tokens = [(m.group(), m.start()) for m in _TOKEN.finditer(source) if not m.group().isspace()]
        self.i = 0
        self.open_bars = 0

    def read(self) -> list[Word]:
        words = self.sequence(None)
        if self.i < len(self.tokens):
            raise Unreadable(self.tokens[self.i][0])
        return words

    def sequence(self, end: str | None) -> list[Word]:
        words: list[Word] = []
        while self.i < len(self.tokens) and self.tokens[self.i][0] != end:
            words += self.item(words)
        if end is not None:
            self.expect(end)
        return words

    def expect(self, token: str) -> None:
        if self.i >= len(self.tokens) or self.tokens[self.i][0] != token:
            raise Unreadable(f"expected {token}")
        self.i += 1

    def peek(self) -> str:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else ""

    def copied(self, start: int, end: int) -> Word:
        return self.source[start:end], tuple(self.offsets[start:end])

    def argument(self) -> list[Word]:
        """One argument of a command or script: a {group} or a single item."""
        if self.peek() == "{":
            self.i += 1
            return self.sequence("}")
        if self.i >= len(self.tokens) or self.peek() in ("}", "^", "_", "&"):
            raise Unreadable("missing argument")
        return self.item([])

    def item(self, before: list[Word]) -> list[Word]:
        token, start = self.tokens[self.i]
        self.i += 1
        if token == "{":
            return self.sequence("}")
        if token in ("^", "_"):
            return self.script(token, before)
        if token.startswith("\\"):
            return self.command(token[1:], start) if token[1:].isalpha() else self.escape(token)
        if token[0].isdigit():
            return [self.copied(start, start + len(token))]
        if token == "|":
            return self.bar(before)
        if token == "(":
            return self.parenthesis(before)
        if token in _SILENT:
            return []
        if token in _GLUED:
            return [self.copied(start, start + 1)]
        if token in _SAID:
            return [_said(_SAID[token])]
        return self.character(token, start)

    def escape(self, token: str) -> list[Word]:
        if token in _SILENT:
            return []
        if token in _SAID:
            return [_said(_SAID[token])]
        raise Unreadable(token)  # \\ (a new row) and the like: laid out for the eye

    def parenthesis(self, before: list[Word]) -> list[Word]:
        """f(x) is "f of x", n(n+1) "n times the quantity n plus 1"; an unmatched "(" is not heard."""
        depth, j = 1, self.i
        while j < len(self.tokens) and depth:
            depth += {"(": 1, ")": -1}.get(self.tokens[j][0], 0)
            j += 1
        if depth:
            return []
        inside = self.sequence(")")
        if _applied(before):
            return [_said("of"), *inside]
        if not _compound(inside):
            return inside
        times = [_said("times")] if before and before[-1][0] not in _INFIX else []
        return [*times, _said("the quantity"), *inside]

    def character(self, char: str, start: int) -> list[Word]:
        if char in _UNICODE:
            return [_said(_SAID[_UNICODE[char]])]
        if char == "√":
            return [_said("the square root of"), *self.argument()]
        if "GREEK" in unicodedata.name(char, ""):
            return [_said(unicodedata.name(char).split()[-1].lower())]
        if char.isalpha():
            return [self.copied(start, start + 1)]
        raise Unreadable(char)  # &, \\, #: alignment and macros are for the eye

    def command(self, name: str, start: int) -> list[Word]:
        if name in _GREEK or name.lower() in _GREEK:
            return [_said(name.lower())]
        if name in _VARIANTS:
            return [_said(_VARIANTS[name])]
        if name in _SILENT:
            if name in ("left", "right") and self.peek() == ".":
                self.i += 1  # \left. is an invisible delimiter
            return []
        if name in _SAID:
            return [_said(_SAID[name])]
        if name in _TEXT:
            return self.text()
        if name in _STYLE:
            return self.argument()
        if name in _AFTER:
            return [*self.argument(), _said(_AFTER[name])]
        if name in _BEFORE:
            return [_said(_BEFORE[name]), *self.argument()]
        if name in _BIG or name == "lim":
            return self.big(name)
        reader = {"frac": self.fraction, "dfrac": self.fraction, "tfrac": self.fraction, "cfrac": self.fraction}
        reader |= {"sqrt": self.root, "binom": self.binomial}
        if name in reader:
            return reader[name]()
        raise Unreadable(name)

    def text(self) -> list[Word]:
        """\\text{…}: the words inside, as written."""
        if self.peek() != "{":
            return self.argument()
        first = self.tokens[self.i][1] + 1
        depth = 0
        while self.i < len(self.tokens):
            token, at = self.tokens[self.i]
            self.i += 1
            depth += {"{": 1, "}": -1}.get(token, 0)
            if depth == 0:
                return [
                    self.copied(m.start() + first, m.end() + first) for m in re.finditer(r"\S+", self.source[first:at])
                ]
        raise Unreadable("unclosed text")

    def fraction(self) -> list[Word]:
        top, bottom = self.argument(), self.argument()
        if _simple(top) and _simple(bottom) and (spoken := _common_fraction(top[0][0], bottom[0][0])):
            return [_said(spoken)]
        over = [_said(","), _said("all over")] if _compound(top) else [_said("over")]
        return [*top, *over, *([_said("the quantity"), *bottom] if _compound(bottom) else bottom)]

    def root(self) -> list[Word]:
        index: list[Word] = []
        if self.peek() == "[":
            self.i += 1
            index = self.sequence("]")
        radicand = self.argument()
        if not index or [text for text, _ in index] == ["2"]:
            return [_said("the square root of"), *radicand]
        if [text for text, _ in index] == ["3"]:
            return [_said("the cube root of"), *radicand]
        if not _simple(index):
            raise Unreadable("root index")
        return [_said("the"), index[0], _said("th root of"), *radicand]

    def binomial(self) -> list[Word]:
        top, bottom = self.argument(), self.argument()
        return [*top, _said("choose"), *bottom]

    def script(self, mark: str, before: list[Word]) -> list[Word]:
        argument = self.argument()  # 30$^\circ$C has no base: the script still reads
        texts = [text for text, _ in argument]
        if mark == "_":
            return [_said("sub"), *argument]
        if texts == ["2"]:
            return [_said("squared")]
        if texts == ["3"]:
            return [_said("cubed")]
        if texts in (["composed with"], ["degrees"]):
            return [_said("degrees")]
        if texts and all(text == "prime" for text in texts):
            return [_said(" ".join(texts))]
        if _simple(argument) and argument[0][0].isalpha() and len(argument[0][0]) == 1:
            return [_said("to the"), *argument]
        return [_said("to the power of"), *argument]

    def big(self, name: str) -> list[Word]:
        """\\sum, \\int, \\lim with their limits: "the sum from i equals 1 to n of"."""
        lower: list[Word] = []
        upper: list[Word] = []
        while self.peek() in ("_", "^") or self.peek() in ("\\limits", "\\nolimits"):
            mark = self.peek()
            self.i += 1
            if mark == "_":
                lower = self.argument()
            elif mark == "^":
                upper = self.argument()
        if name == "lim":
            lower = [_said("approaches") if text == "to" else (text, places) for text, places in lower]
            return [_said("the limit as"), *lower, _said("of")] if lower else [_said("the limit of")]
        words = [_said(_BIG[name])]
        if lower and upper:
            words += [_said("from"), *lower, _said("to"), *upper]
        elif lower:
            words += [_said("over"), *lower]
        return [*words, _said("of")]

    def bar(self, before: list[Word]) -> list[Word]:
        if self.open_bars:
            self.open_bars -= 1
            return []
        if before and before[-1][0] not in _SAID.values():
            return [_said("given")]  # P(A|B)
        self.open_bars += 1
        return [_said("the absolute value of")]


def _applied(before: list[Word]) -> bool:
    """f(x), f'(x), P(A): a function applied to its argument."""
    names = [text for text, _ in before[-3:] if text != "prime"]
    return bool(names) and before[-1][0] in (names[-1], "prime") and names[-1] in _APPLIED


def _common_fraction(top: str, bottom: str) -> str | None:
    """1/2 is "one half", 3/4 "three quarters": small fractions as people say them."""
    if not (top.isdigit() and bottom.isdigit() and 0 < int(top) < 10 and 1 < int(bottom) <= 10):
        return None
    name = _FRACTIONS[int(bottom)]
    if int(top) > 1:
        name = "halves" if name == "half" else name + "s"
    return f"{_NUMBERS[int(top)]} {name}"
