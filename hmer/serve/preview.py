"""The page's preview of a reading: its LaTeX as MathML, which browsers render natively.

Made on the server, once per reading, by :mod:`latex2mathml` (pure Python, no shared state: safe
from any thread). The input is :attr:`hmer.runtime.reading.Prediction.latex` as the page
receives it (compact, ``x^{2}+y``; the spaced token form reads the same: latex2mathml does not
depend on spacing).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from latex2mathml.converter import convert

__all__ = ["math_preview"]

#: What latex2mathml leaves as text when it cannot place it: a command it does not know
#: (``<mi>\foo</mi>``) or a stray brace (``x^}``; a real ``\{`` is written ``&#x0007B;``).
_LEFT_AS_TEXT = re.compile(r">(\\[A-Za-z]+|[{}])<")
_MATHML = "{http://www.w3.org/1998/Math/MathML}"
#: Children of the MathML elements that have a fixed number (base, scripts, arguments).
_ARITY = {"mfrac": 2, "mroot": 2, "msub": 2, "msup": 2, "munder": 2, "mover": 2}
_ARITY |= {"msubsup": 3, "munderover": 3}


def math_preview(latex: str) -> str | None:
    """``latex`` (math, no ``$``) as a ``<math>`` element, or None when there is nothing to
    show or it is not well-formed LaTeX (a decoder can end a reading with ``x^`` or a ``\\frac``
    missing its arguments), or latex2mathml wrote no well-formed MathML for it (an unknown
    command or a stray brace left as text, a bare ``&``, an element missing an argument): the
    page then shows the LaTeX alone.

    Every truth of CROHME 2014, 2016 and 2019, written as a reading would be, is previewed
    (``tests/test_serve_preview.py``).
    """
    if not latex.strip():
        return None
    try:
        mathml = convert(latex)
    except Exception:  # latex2mathml raises a zoo of types (and IndexError) on malformed input
        return None
    if _LEFT_AS_TEXT.search(mathml):
        return None
    try:
        root = ET.fromstring(mathml)
    except ET.ParseError:
        return None
    return mathml if all(_sound(element) for element in root.iter()) else None


def _sound(element: ET.Element) -> bool:
    """A MathML element (the page inserts the preview as markup: no script, no handler) with
    as many children as its kind has (latex2mathml writes ``\\frac{x}`` as a one-child
    ``mfrac``)."""
    if not element.tag.startswith(_MATHML) or any(name.startswith("on") for name in element.attrib):
        return False
    arity = _ARITY.get(element.tag.removeprefix(_MATHML))
    return arity is None or len(element) == arity
