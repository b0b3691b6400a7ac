"""The page's preview: a reading's LaTeX as MathML (hmer.serve.preview), for every formula a
reading can be, whatever its spacing, and safely nothing for a reading that is not LaTeX."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hmer.data.inkml import parse_inkml
from hmer.data.latex import normalize_latex, tokens_to_latex
from hmer.data.vocab import CROHME_SYMBOLS
from hmer.errors import LatexError
from hmer.serve import math_preview

MATHML = "{http://www.w3.org/1998/Math/MathML}"
#: Tokens that only make sense around others (written below in whole formulas).
STRUCTURE = {"^", "_", "{", "}", "\\frac", "\\sqrt", "\\limits"}


def elements(mathml: str) -> list[str]:
    """The MathML element names of a preview, in document order."""
    root = ET.fromstring(mathml)
    assert root.tag == f"{MATHML}math"
    return [element.tag.removeprefix(MATHML) for element in root.iter()]


@pytest.mark.parametrize(
    ("tokens", "shown"),
    [
        (["x", "^", "{", "2", "}", "+", "y"], "msup"),
        (["\\frac", "{", "a", "}", "{", "b", "}"], "mfrac"),
        (["\\sqrt", "[", "n", "]", "{", "x", "}"], "mroot"),
        (["\\lim", "\\limits", "_", "{", "x", "\\rightarrow", "0", "}", "f"], "munder"),
        (["\\sum", "\\limits", "_", "{", "i", "}", "^", "{", "n", "}", "i"], "munderover"),
        (["\\int", "_", "{", "0", "}", "^", "{", "1", "}", "\\sin", "x"], "msubsup"),
    ],
)
def test_a_reading_is_previewed_as_mathml_whatever_its_spacing(tokens, shown):
    compact = math_preview(tokens_to_latex(tokens))
    assert compact is not None and shown in elements(compact)
    assert math_preview(" ".join(tokens)) == compact


@pytest.mark.parametrize(
    ("latex", "shown"),
    [
        ("\\mbox{if }x>0", "mtext"),
        ("\\begin{matrix}a&b\\\\c&d\\end{matrix}", "mtable"),
        ("\\left(x\\right)", "mo"),
    ],
)
def test_what_the_old_preview_showed_nothing_for_is_shown(latex, shown):
    assert shown in elements(math_preview(latex))


@pytest.mark.parametrize("token", sorted(set(CROHME_SYMBOLS) - STRUCTURE))
def test_every_symbol_the_model_can_write_is_previewed(token):
    preview = math_preview(tokens_to_latex(["a", token, "b"]))
    assert preview is not None and "\\" not in "".join(ET.fromstring(preview).itertext())


@pytest.mark.parametrize(
    "latex",
    ["", "  ", "x^", "x_", "\\sqrt", "\\frac{x", "6^}", "\\foo x", "a&b", "{{{"],
)
def test_a_reading_that_is_not_latex_has_no_preview(latex):
    assert math_preview(latex) is None


def test_previews_made_at_once_on_many_threads_are_each_right():
    formulas = [tokens_to_latex(["x", "^", "{", str(i % 10), "}", "+", "y"]) for i in range(200)]
    one_by_one = [math_preview(latex) for latex in formulas]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(math_preview, formulas)) == one_by_one


@pytest.mark.crohme
def test_every_crohme_test_truth_is_previewed(crohme: Path):
    """Every truth of CROHME 2014, 2016 and 2019, as a reading of it would be written
    (normalized tokens -> tokens_to_latex), becomes MathML with no command left as text."""
    previewed, refused, failed = 0, 0, []
    for year in ("2014", "2016", "2019"):
        for path in sorted((crohme / "inkml" / year).glob("*.inkml")):
            ink = parse_inkml(path)
            try:
                tokens = normalize_latex(ink.latex or "", path.stem)
            except LatexError:  # the few broken truths (tests/test_latex.py names them)
                refused += 1
                continue
            if math_preview(tokens_to_latex(tokens)) is None:
                failed.append(f"{path.stem}: {tokens_to_latex(tokens)}")
            previewed += 1
    assert not failed, failed[:20]
    assert previewed == 986 + 1147 + 1199 - refused and refused <= 3
