"""LaTeX labels -> canonical token lists (the BTTR/CoMER convention CROHME papers score against).

The canonical form, as in ``bttr/2016/caption.txt``:

- one token per command (``\\alpha``), per character (numbers are split into digits), per brace;
- the argument of ``^``, ``_``, ``\\frac`` and ``\\sqrt`` is always braced:
  ``x^2`` -> ``x ^ { 2 }``, ``\\frac12`` -> ``\\frac { 1 } { 2 }``, ``\\sqrt[3]x`` ->
  ``\\sqrt [ 3 ] { x }``;
- sizing, spacing and text/roman wrappers are dropped: ``\\left(`` -> ``(``, ``\\Bigg``, ``\\,``,
  ``\\nolimits``, ``\\mbox{T}`` -> ``T``, ``\\mathrm{gh}`` -> ``g h``;
- ``\\limits`` is kept where the truth writes it (``\\int \\limits _ { a } ^ { b }``), and an
  ellipsis stays as written: ``...`` -> ``. . .``, ``\\ldots`` -> ``\\ldots`` (the captions
  do both);
- aliases become one token: ``\\lt`` -> ``<``, ``\\to`` -> ``\\rightarrow``, ``\\le`` -> ``\\leq``,
  ``\\lbrack`` -> ``[``, ``\\parallel`` -> ``| |``, ``\\dots`` -> ``\\ldots``, ``f'`` ->
  ``f ^ { \\prime }``, ...;
- everything else is kept as written: explicit braces (``{ + }``), the order of sub- and
  superscripts (``x _ { i } ^ { 2 }`` and ``x ^ { 2 } _ { i }`` both occur in the convention), and
  commands this module does not know (``\\epsilon`` stays ``\\epsilon``).

The convention's own captions are not perfectly consistent: where they leave an argument
unbraced (``\\frac 1 x``) or mis-brace it (``2 ^ { \\frac } { p } { p + 1 }``,
``\\sqrt { [ } 4 ] { - g }``), this module braces it properly.
``benchmarks/bench_latex_agreement.py`` measures the agreement (99.1 % of CROHME 2016).

The way back is :func:`tokens_to_latex`: compact LaTeX (``x^{2}+y``) that reads back to the same
tokens.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from hmer.errors import LatexError

#: Tokens that are replaced by canonical ones (values are canonical: never keys themselves).
ALIASES: dict[str, tuple[str, ...]] = {
    "\\lt": ("<",),
    "\\gt": (">",),
    "\\le": ("\\leq",),
    "\\leqslant": ("\\leq",),
    "\\ge": ("\\geq",),
    "\\geqslant": ("\\geq",),
    "\\ne": ("\\neq",),
    "\\to": ("\\rightarrow",),
    "\\gets": ("\\leftarrow",),
    "\\dots": ("\\ldots",),
    "\\dotsc": ("\\ldots",),
    "\\hdots": ("\\ldots",),
    "\\dotsb": ("\\cdots",),
    "\\cdotp": ("\\cdot",),
    "\\lbrace": ("\\{",),
    "\\rbrace": ("\\}",),
    "\\lbrack": ("[",),
    "\\rbrack": ("]",),
    "\\vert": ("|",),
    "\\lvert": ("|",),
    "\\rvert": ("|",),
    "\\mid": ("|",),
    # A double bar is written as two strokes whatever the markup says (CROHME writes ``| |``).
    "\\|": ("|", "|"),
    "\\Vert": ("|", "|"),
    "\\lVert": ("|", "|"),
    "\\rVert": ("|", "|"),
    "\\parallel": ("|", "|"),
    "\\dfrac": ("\\frac",),
    "\\tfrac": ("\\frac",),
    "\\ast": ("*",),
    "\\colon": (":",),
    "\\lnot": ("\\neg",),
    "\\land": ("\\wedge",),
    "\\lor": ("\\vee",),
    # Bare special characters stand for the symbol they depict (a label is a single formula).
    "%": ("\\%",),
    "#": ("\\#",),
    "&": ("\\&",),
    # Unicode symbols found in hand-made label files.
    "×": ("\\times",),
    "÷": ("\\div",),
    "±": ("\\pm",),
    "·": ("\\cdot",),
    "−": ("-",),
    "≤": ("\\leq",),
    "≥": ("\\geq",),
    "≠": ("\\neq",),
    "→": ("\\rightarrow",),
    "∞": ("\\infty",),
    "…": ("\\ldots",),
    "′": ("\\prime",),
    "π": ("\\pi",),
    "α": ("\\alpha",),
    "β": ("\\beta",),
    "γ": ("\\gamma",),
    "θ": ("\\theta",),
    "λ": ("\\lambda",),
    "μ": ("\\mu",),
    "σ": ("\\sigma",),
    "φ": ("\\phi",),
    "Δ": ("\\Delta",),
    "∑": ("\\sum",),
    "∫": ("\\int",),
    "√": ("\\sqrt",),
}

#: Sizing, spacing and style commands without a visible glyph of their own: dropped.
DROPPED = frozenset(
    {
        "\\left",
        "\\right",
        "\\middle",
        "\\big",
        "\\Big",
        "\\bigg",
        "\\Bigg",
        "\\bigl",
        "\\bigr",
        "\\Bigl",
        "\\Bigr",
        "\\biggl",
        "\\biggr",
        "\\Biggl",
        "\\Biggr",
        "\\nolimits",
        "\\displaystyle",
        "\\textstyle",
        "\\scriptstyle",
        "\\scriptscriptstyle",
        "\\rm",
        "\\quad",
        "\\qquad",
        "\\,",
        "\\!",
        "\\:",
        "\\;",
        "\\>",
        "\\ ",
        "~",
        # Math-mode delimiters: labels come with or without them, and CROHME has stray ones
        # (``$\\left| $\\frac…``), so every unescaped ``$`` is dropped (``\\$`` is a dollar sign).
        "$",
        "\\(",
        "\\)",
        "\\[",
        "\\]",
    }
)

#: Delimiter commands after which a ``.`` means "no delimiter" (dropped with them).
_NULL_DELIMITER_OWNERS = frozenset({"\\left", "\\right", "\\middle"})

#: Commands whose (braced) argument is plain text or upright letters: replaced by their content.
UNWRAPPED = frozenset(
    {
        "\\mbox",
        "\\hbox",
        "\\text",
        "\\textrm",
        "\\textit",
        "\\textnormal",
        "\\mathrm",
        "\\mathit",
        "\\mathnormal",
        "\\operatorname",
    }
)

#: Commands whose argument is invisible: dropped with it.
DROPPED_WITH_ARGUMENT = frozenset({"\\hspace", "\\vspace", "\\phantom", "\\hphantom", "\\vphantom"})

#: Commands taking one argument, always braced in the canonical form.
ONE_ARGUMENT = frozenset(
    {
        "\\hat",
        "\\widehat",
        "\\bar",
        "\\overline",
        "\\underline",
        "\\vec",
        "\\overrightarrow",
        "\\overleftarrow",
        "\\dot",
        "\\ddot",
        "\\tilde",
        "\\widetilde",
        "\\check",
        "\\breve",
        "\\acute",
        "\\grave",
        "\\overbrace",
        "\\underbrace",
        "\\mathbf",
        "\\mathbb",
        "\\mathcal",
        "\\mathfrak",
        "\\mathsf",
        "\\mathtt",
        "\\boldsymbol",
    }
)

#: Commands taking two arguments, both always braced in the canonical form.
TWO_ARGUMENTS = frozenset({"\\frac", "\\binom", "\\overset", "\\underset", "\\stackrel"})

_SCRIPT_NAMES = {"^": "superscript", "_": "subscript"}

#: A command named by letters (``\\alpha``); TeX reads letters after it as part of its name.
_CONTROL_WORD = re.compile(r"\\[A-Za-z]+")

#: Deeper nesting of groups and arguments is refused (real labels stay under 10); it keeps the
#: recursive parser far from Python's recursion limit.
MAX_DEPTH = 100


def normalize_latex(raw: str, source: str | None = None) -> list[str]:
    """Canonical tokens of a LaTeX label, with or without its ``$…$`` (see the module docstring).

    Idempotent: ``normalize_latex(" ".join(t)) == t`` for every output ``t``.

    Raises:
        LatexError: naming ``source`` (file, or file:line) for an empty label, unbalanced braces or
            brackets, a ``^``/``_``/``\\frac``/``\\sqrt`` without its argument, a double
            superscript or subscript, a trailing backslash, or an environment (``\\begin``).
    """
    tokens = _Parser(_lex(raw, source), raw, source).parse()
    if not tokens:
        raise LatexError(f"empty label {_excerpt(raw)}", source=source)
    return tokens


def equivalence_form(tokens: Sequence[str]) -> list[str]:
    """A form in which two token sequences are equal when they render the same formula.

    The agreed equivalences (``hmer evaluate`` reports the ExpRate they give beside the strict
    one): an argument with or without braces (``\\frac 1 2`` = ``\\frac { 1 } { 2 }``,
    ``\\sqrt [ n ] 2`` = ``\\sqrt [ n ] { 2 }``, ``x ^ 2`` = ``x ^ { 2 }``); redundant braces
    (``{ x }`` = ``x``, ``{ { 2 g } }`` = ``2 g``, but ``{ a b } ^ { 2 }`` keeps them); an
    ellipsis written as dots or as a command (``. . .`` = ``\\ldots``); ``\\limits`` (where the
    limits of ``\\int`` / ``\\sum`` sit is a matter of style); and everything
    :func:`normalize_latex` unifies (aliases, spacing, sizing). Sequences that do not parse
    (a decoder's unbalanced output) are compared as they are, less ``\\limits`` and dots.
    """
    # Dots merge before parsing (so ``{ . . . }`` is one symbol in braces, like ``{ \\ldots }``)
    # and again after (flattened braces can bring three dots together).
    tokens = _merge_dots([t for t in tokens if t != "\\limits"])
    with contextlib.suppress(LatexError):  # unparseable: compared as it is
        tokens = _Parser(_lex(" ".join(tokens), None), "", None, flatten_groups=True).parse()
    return _merge_dots(tokens)


def _merge_dots(tokens: Sequence[str]) -> list[str]:
    """Every run of three ``.`` tokens -> ``\\ldots``."""
    out: list[str] = []
    for token in tokens:
        out.append(token)
        if out[-3:] == [".", ".", "."]:
            out[-3:] = ["\\ldots"]
    return out


def tokens_to_latex(tokens: Sequence[str]) -> str:
    """Compact LaTeX math (without ``$``) for a token list: what a person pastes into a document.

    ``x ^ { 2 } + y`` -> ``x^{2}+y``, ``\\frac { a } { b }`` -> ``\\frac{a}{b}``. A space is
    written only where LaTeX needs one: after a control word that a letter follows
    (``\\sin x``, ``\\alpha b``; ``\\alphab`` would be one unknown command). It reads back
    exactly as the space-joined tokens do: ``normalize_latex(tokens_to_latex(t)) == t`` for
    every canonical ``t`` (the spaced form, ``" ".join(t)``, is what captions and evaluation
    files hold).

    For other lists (a decoder's output), braces are balanced first: a ``}`` without its ``{``
    is dropped and missing ``}`` are appended, so that the string at least parses.

    matplotlib mathtext renders every token of ``Vocab.crohme()`` (``tests/test_latex.py`` checks
    it). Of the other tokens this module knows, mathtext lacks ``\\overbrace``, ``\\underbrace``,
    ``\\stackrel``, ``\\&`` and ``\\\\``.
    """
    out: list[str] = []
    depth = 0
    for token in tokens:
        if token == "}":
            if depth == 0:
                continue
            depth -= 1
        elif token == "{":
            depth += 1
        if out and token[:1].isalpha() and _CONTROL_WORD.fullmatch(out[-1]):
            out.append(" ")
        out.append(token)
    out.extend("}" * depth)
    return "".join(out)


def _excerpt(raw: str, limit: int = 80) -> str:
    text = raw if len(raw) <= limit else raw[: limit - 1] + "…"
    return repr(text)


def _lex(raw: str, source: str | None) -> list[str]:
    """Raw LaTeX -> tokens with aliases applied and dropped commands removed."""
    if not isinstance(raw, str):
        raise LatexError(f"label is {type(raw).__name__}, not text", source=source)
    tokens: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        ch = raw[i]
        if ch.isspace():
            i += 1
            continue
        if ch == "\\":
            if i + 1 == n:
                raise LatexError(f"trailing backslash in {_excerpt(raw)}", source=source)
            j = i + 1
            while j < n and raw[j].isascii() and raw[j].isalpha():
                j += 1
            if j == i + 1:  # a control symbol: backslash + one character
                j += 1
            token = raw[i:j]
            if token[1].isspace():
                token = "\\ "
            i = j
        else:
            token = ch
            i += 1
        tokens.extend(ALIASES.get(token, (token,)))
    return _drop_invisible(tokens)


def _drop_invisible(tokens: list[str]) -> list[str]:
    """Remove sizing/spacing commands, and the ``.`` of ``\\left.`` (an invisible delimiter)."""
    visible: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token not in DROPPED:
            visible.append(token)
        elif token in _NULL_DELIMITER_OWNERS and i < len(tokens) and tokens[i] == ".":
            i += 1
    return visible


@dataclass
class _Atom:
    """A base (already canonical tokens, possibly empty) with its scripts in written order."""

    base: list[str]
    scripts: list[tuple[str, list[str]]] = field(default_factory=list)
    #: The superscript holds only primes written as ``'``; a later ``^`` joins it (TeX does too).
    prime_superscript: bool = False

    def tokens(self) -> list[str]:
        out = list(self.base)
        for op, content in self.scripts:
            out += [op, "{", *content, "}"]
        return out


def _serialize(atoms: list[_Atom]) -> list[str]:
    return [token for atom in atoms for token in atom.tokens()]


class _Parser:
    """Recursive descent over lexed tokens, producing canonical atoms."""

    def __init__(
        self, tokens: list[str], raw: str, source: str | None, flatten_groups: bool = False
    ):
        self.tokens = tokens
        #: Drop the braces of explicit groups wherever that renders the same (equivalence).
        self.flatten_groups = flatten_groups
        self.pos = 0
        self.depth = 0
        self.raw = raw
        self.source = source

    def error(self, message: str) -> LatexError:
        return LatexError(f"{message} in {_excerpt(self.raw)}", source=self.source)

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def parse(self) -> list[str]:
        return _serialize(self.parse_list(closing=None))

    def parse_list(self, closing: str | None) -> list[_Atom]:
        """Atoms up to ``closing`` (consumed) or, when ``closing`` is None, to the end."""
        self.enter()
        atoms = self._parse_atoms(closing)
        self.depth -= 1
        return atoms

    def enter(self) -> None:
        """Count one level of nesting (groups and arguments: every path of the recursion)."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"groups or arguments nested more than {MAX_DEPTH} deep")

    def _parse_atoms(self, closing: str | None) -> list[_Atom]:
        atoms: list[_Atom] = []
        while True:
            token = self.peek()
            if token is None:
                if closing is not None:
                    raise self.error(f"missing '{closing}'")
                return atoms
            if token == closing:
                self.pos += 1
                return atoms
            if token == "}":
                raise self.error("'}' without a matching '{'")
            if token in _SCRIPT_NAMES:
                self.pos += 1
                self.attach_script(atoms, token, _serialize(self.parse_argument(token)))
            elif token == "'":
                self.pos += 1
                self.attach_prime(atoms)
            else:
                self.pos += 1
                atoms.extend(self.parse_item(token))

    def attach_script(self, atoms: list[_Atom], op: str, content: list[str]) -> None:
        if not atoms:  # ``{}^{14}C``-style script without a base
            atoms.append(_Atom([]))
        atom = atoms[-1]
        for index, (existing, previous) in enumerate(atom.scripts):
            if existing == op:
                if op == "^" and atom.prime_superscript:
                    atom.scripts[index] = (op, previous + content)
                    atom.prime_superscript = False
                    return
                raise self.error(f"double {_SCRIPT_NAMES[op]}")
        atom.scripts.append((op, content))

    def attach_prime(self, atoms: list[_Atom]) -> None:
        """``f'`` means ``f^{\\prime}``; a ``'`` with nothing before it is the prime symbol."""
        if not atoms:
            atoms.append(_Atom(["\\prime"]))
            return
        atom = atoms[-1]
        if atom.prime_superscript:
            index = next(i for i, (op, _) in enumerate(atom.scripts) if op == "^")
            atom.scripts[index] = ("^", [*atom.scripts[index][1], "\\prime"])
            return
        self.attach_script(atoms, "^", ["\\prime"])
        atom.prime_superscript = True

    def parse_argument(self, owner: str) -> list[_Atom]:
        """The argument of ``owner``: a braced group's content or the next single item."""
        token = self.peek()
        if token is None or token in ("}", "^", "_"):
            raise self.error(f"{owner} without its argument")
        self.pos += 1
        if token == "{":
            return self.parse_list(closing="}")
        if token == "'":
            return [_Atom(["\\prime"])]
        self.enter()
        atoms = self.parse_item(token)
        self.depth -= 1
        return atoms

    def parse_item(self, token: str) -> list[_Atom]:
        """The item ``token`` starts (already consumed), without scripts: a group, a command with
        its arguments, or a symbol."""
        if token == "{":
            group = self.parse_list(closing="}")
            scripted = self.peek() in ("^", "_", "'")
            alone = len(group) == 1 and not group[0].scripts
            if self.flatten_groups and (alone or not scripted):
                return group  # ``{ x }`` -> ``x``; ``{ a b } ^ { 2 }`` keeps its braces
            return [_Atom(["{", *_serialize(group), "}"])]
        if token in TWO_ARGUMENTS:
            first = _serialize(self.parse_argument(token))
            second = _serialize(self.parse_argument(token))
            return [_Atom([token, "{", *first, "}", "{", *second, "}"])]
        if token == "\\sqrt":
            index: list[str] = []
            if self.peek() == "[":
                self.pos += 1
                index = ["[", *_serialize(self.parse_list(closing="]")), "]"]
            argument = _serialize(self.parse_argument(token))
            return [_Atom([token, *index, "{", *argument, "}"])]
        if token in ONE_ARGUMENT:
            return [_Atom([token, "{", *_serialize(self.parse_argument(token)), "}"])]
        if token in UNWRAPPED:
            return self.parse_argument(token)
        if token in DROPPED_WITH_ARGUMENT:
            self.parse_argument(token)
            return []
        if token in ("\\begin", "\\end"):
            raise self.error(f"environments ({token}) are not supported")
        return [_Atom([token])]
