"""Specification of hmer.data.latex: raw LaTeX labels -> canonical tokens of the BTTR convention."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hmer.data.latex import (
    ALIASES,
    DROPPED,
    equivalence_form,
    normalize_latex,
    tokens_to_latex,
)
from hmer.data.vocab import CROHME_SYMBOLS
from hmer.errors import LatexError
from hmer.viz import mathtext_source

FAST = settings(max_examples=200, deadline=None)


def norm(raw: str) -> str:
    return " ".join(normalize_latex(raw))


# --- the canonical form ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        # tokens: commands, single characters (numbers split), braces, scripts
        ("$\\sin\\theta \\neq 0$", "\\sin \\theta \\neq 0"),
        ("1 + 16 = 17", "1 + 1 6 = 1 7"),
        ("\\{ a \\}", "\\{ a \\}"),
        ("$$x$$", "x"),
        ("\\(x\\)", "x"),
        # scripts and \frac / \sqrt arguments always braced
        ("x^2", "x ^ { 2 }"),
        ("x^{2}", "x ^ { 2 }"),
        ("E^\\alpha", "E ^ { \\alpha }"),
        ("x^{10}", "x ^ { 1 0 }"),
        ("\\frac12", "\\frac { 1 } { 2 }"),
        ("\\frac1{192}", "\\frac { 1 } { 1 9 2 }"),
        ("\\frac \\theta {2i}", "\\frac { \\theta } { 2 i }"),
        ("\\dfrac{a}{b}", "\\frac { a } { b }"),
        ("\\sqrt 3", "\\sqrt { 3 }"),
        ("\\sqrt\\pi", "\\sqrt { \\pi }"),
        ("\\sqrt[3]{x}", "\\sqrt [ 3 ] { x }"),
        ("\\sqrt[n+1]x", "\\sqrt [ n + 1 ] { x }"),
        # a script's argument is a whole construct, as in TeX
        ("2^\\frac{p}{p+1}", "2 ^ { \\frac { p } { p + 1 } }"),
        ("r^{\\sqrt 5}", "r ^ { \\sqrt { 5 } }"),
        ("x^\\mbox{ab}", "x ^ { a b }"),
        # the order of sub/superscripts is kept (the convention keeps it)
        ("x_i^2", "x _ { i } ^ { 2 }"),
        ("x^2_i", "x ^ { 2 } _ { i }"),
        ("{}^{14}C", "{ } ^ { 1 4 } C"),
        ("^2", "^ { 2 }"),
        # explicit braces are kept
        ("x=[x]{+}f_x", "x = [ x ] { + } f _ { x }"),
        ("\\frac{{2g}}{a}", "\\frac { { 2 g } } { a }"),
        ("\\tan{\\alpha}", "\\tan { \\alpha }"),
        # sizing, spacing and wrappers dropped
        ("\\left( \\frac{1}{2} \\right)", "( \\frac { 1 } { 2 } )"),
        ("\\left\\{ x \\right\\}", "\\{ x \\}"),
        ("\\left. x \\right|", "x |"),
        ("\\Bigg( a \\Bigg)", "( a )"),
        ("299\\ 792\\,458\\!\\;\\quad 1", "2 9 9 7 9 2 4 5 8 1"),
        ("\\int\\limits_a^b", "\\int \\limits _ { a } ^ { b }"),  # kept, as the captions do
        ("\\sum\\nolimits_i", "\\sum _ { i }"),
        ("\\mbox{T}^4", "T ^ { 4 }"),
        ("\\mbox{Tr} A", "T r A"),
        ("\\mathrm{gh}_{1}", "g h _ { 1 }"),
        ("x\\hspace{1cm}y", "x y"),
        # aliases unified
        ("a \\lt b \\gt c", "a < b > c"),
        ("x \\to 0", "x \\rightarrow 0"),
        ("a \\ne b \\le c \\ge d", "a \\neq b \\leq c \\geq d"),
        ("\\lbrace x \\rbrace \\lbrack y \\rbrack", "\\{ x \\} [ y ]"),
        ("1 + \\dots", "1 + \\ldots"),
        ("a=1...7", "a = 1 . . . 7"),  # an ellipsis stays as written
        ("a_1,\\ldots,a_n", "a _ { 1 } , \\ldots , a _ { n }"),
        ("a_1 \\cdots a_n", "a _ { 1 } \\cdots a _ { n }"),
        ("|x \\parallel y|", "| x | | y |"),
        ("\\|x\\|", "| | x | |"),
        ("a × b ≤ c", "a \\times b \\leq c"),
        # primes
        ("f'(x)", "f ^ { \\prime } ( x )"),
        ("f^{'}(x)", "f ^ { \\prime } ( x )"),
        ("f''", "f ^ { \\prime \\prime }"),
        ("f'^2", "f ^ { \\prime 2 }"),
        ("f'_1", "f ^ { \\prime } _ { 1 }"),
        ("\\phi^\\prime", "\\phi ^ { \\prime }"),
        # stray math delimiters (CROHME has them) and escaped specials
        ("$\\left| $\\frac{a}{b} \\right|$", "| \\frac { a } { b } |"),
        ("$a_0+a_1x", "a _ { 0 } + a _ { 1 } x"),
        ("\\$5 + 10\\%", "\\$ 5 + 1 0 \\%"),
        # commands it does not know are kept; one-argument accents are braced
        ("\\epsilon + \\mathbb R", "\\epsilon + \\mathbb { R }"),
        ("\\hat x", "\\hat { x }"),
    ],
)
def test_canonical_form(raw: str, canonical: str) -> None:
    assert norm(raw) == canonical


def test_aliases_map_to_canonical_tokens_only() -> None:
    targets = {token for values in ALIASES.values() for token in values}
    assert not targets & set(ALIASES), "an alias target is itself an alias"
    assert not targets & DROPPED


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("$ $", "empty"),
        ("\\quad \\left. \\right.", "empty"),
        ("{x", "missing '}'"),
        ("x}", "'}' without"),
        ("\\lim_{x \\to 1}} f", "'}' without"),
        ("x^", "^ without its argument"),
        ("x_}", "_ without its argument"),
        ("x^_2", "^ without its argument"),
        ("\\frac{1}", "\\frac without its argument"),
        ("\\frac", "\\frac without its argument"),
        ("\\sqrt", "\\sqrt without its argument"),
        ("\\sqrt[3", "missing ']'"),
        ("x^2^3", "double superscript"),
        ("x_1_2", "double subscript"),
        ("x^2'", "double superscript"),
        ("a\\", "trailing backslash"),
        ("\\begin{matrix}a\\end{matrix}", "environments"),
        ("{" * 500 + "x" + "}" * 500, "nested more than 100 deep"),
        ("\\sqrt" * 500 + "x", "nested more than 100 deep"),
        ("x" + "^{x" * 500 + "}" * 500, "nested more than 100 deep"),
    ],
)
def test_bad_labels_raise_latex_error_naming_the_source(raw: str, reason: str) -> None:
    with pytest.raises(LatexError, match=re.escape(reason)) as info:
        normalize_latex(raw, source="data/a.inkml")
    assert info.value.source == "data/a.inkml"
    assert str(info.value).startswith("data/a.inkml: ")


def test_non_text_label_raises_latex_error() -> None:
    with pytest.raises(LatexError, match="not text"):
        normalize_latex(None, source="t.tsv")  # type: ignore[arg-type]


# --- idempotence and fuzzing -------------------------------------------------------------------

_SYMBOLS = ["x", "y", "2", "17", "\\alpha ", "\\sin ", "\\infty ", "+", "-", "=", "(", ")", "|"]
_SYMBOLS += ["[", "]", ",", ".", "!", "\\lt ", "\\to ", "\\ldots ", "\\{", "\\}", "\\Pi ", "/"]
_SPACES = st.sampled_from(["", " ", "  ", "\\,", " \\quad ", "\n"])
_single = st.sampled_from(["x", "2", "\\alpha ", "\\pi ", "n"])


@st.composite
def _script_arg(draw, expr) -> str:
    return draw(st.one_of(_single, expr.map(lambda e: "{" + e + "}")))


def _expressions() -> st.SearchStrategy[str]:
    """Raw LaTeX in the styles found in CROHME: braced or not, spaced or not, sized or not."""

    def add_scripts(drawn: tuple[str, list[str], str, str, int]) -> str:
        """``base`` then ``count`` of its two scripts, in the drawn order (``x^a_b``, ``x_b^a``)."""
        base, order, first, second, count = drawn
        scripts = [op + arg for op, arg in zip(order, (first, second), strict=True)]
        return base + "".join(scripts[:count])

    def extend(expr: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        arg = _script_arg(expr)
        base = st.one_of(
            st.sampled_from(_SYMBOLS),
            expr.map(lambda e: "{" + e + "}"),
            st.tuples(arg, arg).map(lambda a: f"\\frac {a[0]}{a[1]}"),
            arg.map(lambda a: f"\\sqrt {a}"),
            st.tuples(_single, arg).map(lambda a: f"\\sqrt[{a[0]}]{a[1]}"),
            expr.map(lambda e: f"\\left( {e} \\right)"),
            st.sampled_from(["\\mbox{T}", "\\mathrm{gh}", "\\Big(", "f'", "\\frac 1 2"]),
        )
        scripted = st.tuples(base, st.permutations(["^", "_"]), arg, arg, st.integers(0, 2)).map(
            add_scripts
        )
        return st.lists(st.tuples(_SPACES, scripted), min_size=1, max_size=4).map(
            lambda parts: "".join(space + part for space, part in parts)
        )

    return st.recursive(st.sampled_from(_SYMBOLS), extend, max_leaves=12)


def _check_canonical(tokens: list[str]) -> None:
    """Properties every output has: no blanks in tokens, balanced braces, a fixed point."""
    assert tokens and all(t and t.split() == [t] for t in tokens)
    assert tokens.count("{") == tokens.count("}")
    assert normalize_latex(" ".join(tokens)) == tokens
    assert normalize_latex(tokens_to_latex(tokens)) == tokens


@FAST
@given(_expressions())
def test_generated_expressions_normalize_idempotently(raw: str) -> None:
    _check_canonical(normalize_latex(raw))


_LATEXISH = st.lists(
    st.one_of(
        st.sampled_from(list("\\{}^_[]$'.,() a1x&%~#")),
        st.sampled_from(["\\frac", "\\sqrt", "\\left", "\\right.", "\\mbox", "\\prime", "\\,"]),
        st.characters(),
    ),
    max_size=30,
).map("".join)


@FAST
@given(st.one_of(_LATEXISH, st.text(max_size=40)))
def test_arbitrary_text_only_ever_raises_latex_error(raw: str) -> None:
    try:
        tokens = normalize_latex(raw, source="fuzz")
    except LatexError as error:
        assert error.source == "fuzz"
        return
    _check_canonical(tokens)


# --- tokens_to_latex ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "compact"),
    [
        ("x^2+y", "x^{2}+y"),
        ("\\frac a b", "\\frac{a}{b}"),
        ("\\sqrt[n]x", "\\sqrt[n]{x}"),
        ("\\frac{x^2}{\\sqrt[3]{y}}", "\\frac{x^{2}}{\\sqrt[3]{y}}"),
        # a space only between a control word and a letter, which would lengthen its name
        ("\\sin x", "\\sin x"),
        ("\\alpha b", "\\alpha b"),
        ("\\sin \\alpha", "\\sin\\alpha"),
        ("\\alpha 2", "\\alpha2"),
        ("\\int \\limits_0^1 f(x) dx", "\\int\\limits_{0}^{1}f(x)dx"),
        ("\\{ x \\} \\% y", "\\{x\\}\\%y"),
        ("12 \\times 3", "12\\times3"),
    ],
)
def test_tokens_to_latex_writes_compact_latex(raw: str, compact: str) -> None:
    tokens = normalize_latex(raw)
    assert tokens_to_latex(tokens) == compact
    assert normalize_latex(compact) == tokens


def test_tokens_to_latex_balances_braces_of_decoder_output() -> None:
    assert tokens_to_latex(["}", "x", "^", "{", "2"]) == "x^{2}"
    assert tokens_to_latex(["\\frac", "{", "1", "}", "{", "{", "2", "}"]) == "\\frac{1}{{2}}"
    # a dropped brace does not glue a control word to the letter after it
    assert tokens_to_latex(["\\alpha", "}", "b"]) == "\\alpha b"


def _spaces_are_needed(latex: str) -> bool:
    """Every space in ``latex`` ends a control word that a letter follows."""
    return all(
        re.search(r"\\[A-Za-z]+$", latex[:i]) and latex[i + 1 : i + 2].isalpha()
        for i, ch in enumerate(latex)
        if ch == " "
    )


@FAST
@given(_expressions())
def test_compact_latex_reads_back_to_the_same_tokens(raw: str) -> None:
    tokens = normalize_latex(raw)
    compact = tokens_to_latex(tokens)
    assert normalize_latex(compact) == tokens
    assert _spaces_are_needed(compact), compact


_BRACELESS_VOCAB = sorted(set(CROHME_SYMBOLS) - {"{", "}"})


@FAST
@given(st.lists(st.sampled_from(_BRACELESS_VOCAB), min_size=1, max_size=12))
def test_compact_latex_of_any_decoder_output_reads_as_its_spaced_form(tokens: list[str]) -> None:
    """Whatever a decoder writes (here: any vocabulary tokens, braces aside, which are
    balanced first), the compact string reads exactly as the space-joined one: the same tokens,
    or the same error."""

    def read(latex: str) -> list[str] | str:
        try:
            return normalize_latex(latex)
        except LatexError as error:
            return str(error).split(" in ", 1)[0]  # the reason, less the quoted string

    compact = tokens_to_latex(tokens)
    assert read(compact) == read(" ".join(tokens))
    assert _spaces_are_needed(compact), compact


def test_matplotlib_mathtext_renders_every_crohme_token() -> None:
    mathtext = pytest.importorskip("matplotlib.mathtext")
    parser = mathtext.MathTextParser("agg")
    contexts = {"\\frac": "{} {{ a }} {{ b }}", "\\sqrt": "{} [ 3 ] {{ x }}", "^": "x {} {{ 2 }}"}
    contexts |= {
        "_": "x {} {{ 2 }}",
        "{": "{} x }}",
        "}": "{{ x {}",
        "\\limits": "\\int {} _ {{ a }}",
    }
    for token in CROHME_SYMBOLS:
        latex = contexts.get(token, "{}").format(token)
        parser.parse(mathtext_source(latex))  # raises ValueError when mathtext lacks something
    parser.parse(
        mathtext_source(tokens_to_latex(normalize_latex("{}^{14}C f'' \\left| x \\right|")))
    )


# --- equivalence: sequences that render the same formula --------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("\\frac 1 2", "\\frac { 1 } { 2 }"),  # the captions' unbraced arguments
        ("\\sqrt [ n ] 2", "\\sqrt [ n ] { 2 }"),
        ("x ^ 2 _ i", "x ^ { 2 } _ { i }"),
        ("{ x } + 1", "x + 1"),  # redundant braces
        ("\\frac { { 2 g } } { a }", "\\frac { 2 g } { a }"),
        ("{ x } ^ { 2 }", "x ^ { 2 }"),  # one symbol in braces takes its script the same way
        ("a _ { 1 } , . . . , a _ { n }", "a _ { 1 } , \\ldots , a _ { n }"),  # as agreed
        ("\\int \\limits _ { 0 } ^ { 1 }", "\\int _ { 0 } ^ { 1 }"),  # where limits sit
        ("x \\le y", "x \\leq y"),  # what normalize_latex unifies
    ],
)
def test_equivalent_sequences_share_one_form(a: str, b: str) -> None:
    assert equivalence_form(a.split()) == equivalence_form(b.split())


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("{ a b } ^ { 2 }", "a b ^ { 2 }"),  # (ab)^2 is not a b^2
        ("\\frac { 1 } { 2 }", "\\frac { 2 } { 1 }"),
        ("x ^ { 2 }", "x _ { 2 }"),
        (". .", "\\ldots"),
        ("\\sqrt [ 3 ] { x }", "\\sqrt { 3 x }"),
    ],
)
def test_different_formulas_keep_different_forms(a: str, b: str) -> None:
    assert equivalence_form(a.split()) != equivalence_form(b.split())


def test_unparseable_decoder_output_is_compared_as_it_is() -> None:
    assert equivalence_form(["}", "x", "{"]) == ["}", "x", "{"]
    # ... less the agreed differences that need no parse: ``\\limits`` and dots.
    assert equivalence_form(["}", ".", ".", ".", "\\limits"]) == ["}", "\\ldots"]


def _unbrace_single_arguments(tokens: list[str]) -> list[str]:
    """The captions' style: ``\\frac { 1 } { 2 }`` -> ``\\frac 1 2``, ``x ^ { 2 }`` -> ``x ^ 2``
    (one-token arguments of scripts, fractions and roots lose their braces)."""
    out = list(tokens)
    i = 0
    while i + 2 < len(out):
        opens_argument = i > 0 and out[i - 1] in ("^", "_", "\\frac", "\\sqrt", "}", "]")
        if (
            opens_argument
            and out[i] == "{"
            and out[i + 2] == "}"
            and out[i + 1] not in ("{", "}", "[", "]")  # "\\sqrt [" would open an index
            and not out[i + 1].startswith("\\")
        ):
            del out[i + 2], out[i]
        i += 1
    return out


@FAST
@given(_expressions())
def test_equivalence_is_a_fixed_point_and_ignores_braces_and_dots(raw: str) -> None:
    tokens = normalize_latex(raw)
    form = equivalence_form(tokens)
    assert equivalence_form(form) == form  # a canonical form
    assert equivalence_form(["{", *tokens, "}"]) == form  # the whole formula braced
    assert equivalence_form(_unbrace_single_arguments(tokens)) == form
    dotted = [d for t in tokens for d in ([".", ".", "."] if t == "\\ldots" else [t])]
    assert equivalence_form(dotted) == form


@pytest.mark.crohme
def test_every_truth_is_equivalent_to_its_caption_style_spelling(crohme: Path) -> None:
    """Every official truth (all years): its caption-style spelling (single-token arguments
    unbraced, ellipses as dots) has the same equivalence form."""
    truths = read_truths(crohme / "inkml")
    checked = 0
    for name, raw in truths.items():
        if name in BROKEN_TRUTHS:
            continue
        tokens = normalize_latex(raw, name)
        form = equivalence_form(tokens)
        dotted = [d for t in tokens for d in ([".", ".", "."] if t == "\\ldots" else [t])]
        assert equivalence_form(_unbrace_single_arguments(dotted)) == form, name
        checked += 1
    assert checked == len(truths) - len(BROKEN_TRUTHS)


# --- the real data -----------------------------------------------------------------------------

_TRUTH = re.compile(r'<annotation\s+type="truth"\s*>(.*?)</annotation>', re.S)

#: Official truths that are not valid LaTeX (an extra '}', a '\sqrt' without argument).
BROKEN_TRUTHS = {"RIT_2014_191": "'}' without", "RIT_2014_216": "'}' without"}
BROKEN_TRUTHS["RIT_2014_309"] = "\\sqrt without its argument"


def read_truths(folder: Path) -> dict[str, str]:
    """Expression-level truth (the first truth annotation) of every InkML file under ``folder``."""
    truths = {}
    for path in sorted(folder.rglob("*.inkml")):
        match = _TRUTH.search(path.read_text(encoding="utf-8", errors="replace"))
        if match:
            truths[path.stem] = html.unescape(match.group(1))
    return truths


@pytest.mark.crohme
def test_2016_truth_reproduces_the_published_captions(crohme: Path) -> None:
    truths = read_truths(crohme / "inkml" / "2016")
    lines = (crohme / "bttr" / "2016" / "caption.txt").read_text(encoding="utf-8").splitlines()
    captions = dict(line.split("\t", 1) for line in lines)
    assert len(truths) == len(captions) == 1147 and truths.keys() == captions.keys()
    agree = sum(normalize_latex(truths[name], name) == captions[name].split() for name in truths)
    assert agree / len(truths) >= 0.99, f"agreement {agree}/{len(truths)}"


@pytest.mark.crohme
def test_every_official_truth_normalizes_except_the_broken_ones(crohme: Path) -> None:
    truths = read_truths(crohme / "inkml")
    assert len(truths) == 8835 + 986 + 1147 + 1199
    failures = {}
    for name, raw in truths.items():
        try:
            tokens = normalize_latex(raw, name)
        except LatexError as error:
            failures[name] = str(error)
            continue
        assert normalize_latex(" ".join(tokens)) == tokens, name
    assert failures.keys() == BROKEN_TRUTHS.keys()
    for name, reason in BROKEN_TRUTHS.items():
        assert failures[name].startswith(f"{name}: {reason}")


@pytest.mark.crohme
def test_every_official_truth_survives_compact_latex(crohme: Path) -> None:
    """Train and the 2014/2016/2019 tests: the compact LaTeX of every truth's tokens reads back
    to those tokens."""
    truths = read_truths(crohme / "inkml")
    assert len(truths) == 8835 + 986 + 1147 + 1199
    checked = 0
    for name, raw in truths.items():
        if name in BROKEN_TRUTHS:
            continue
        tokens = normalize_latex(raw, name)
        compact = tokens_to_latex(tokens)
        assert normalize_latex(compact, name) == tokens, (name, compact)
        assert _spaces_are_needed(compact), (name, compact)
        checked += 1
    assert checked == len(truths) - len(BROKEN_TRUTHS)
