"""Canonical token sequences <-> layout trees.

The canonical convention (``hmer.data.latex``) braces every script and every ``\\frac`` and
``\\sqrt`` argument, so a sequence parses without guessing: ``x _ { i } ^ { 2 }``,
``\\frac { a } { b }``, ``\\sqrt [ 3 ] { x }``. Brackets are plain symbols of a row (canonical
LaTeX has no ``\\left``); the layout pairs and stretches them. Every node that leaves ink
remembers the position of its token, so a drawing can say which strokes belong to which token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from hmer.errors import DataError

#: Operators whose ``_``/``^`` arguments are written below/above them rather than at their side.
LIMIT_OPERATORS = frozenset({"\\sum", "\\prod", "\\lim"})
#: Operators drawn big; ``\int`` keeps its scripts at its side.
BIG_OPERATORS = frozenset({"\\sum", "\\prod", "\\int"})


class TreeError(DataError):
    """A token sequence that is not in canonical form (unbalanced braces, a bare script...)."""


@dataclass
class Row:
    """A horizontal list of nodes; ``start``/``end`` delimit its tokens (end exclusive)."""

    items: list[Node]
    start: int = 0
    end: int = 0


@dataclass
class Sym:
    """A symbol: a letter, digit, operator, bracket, function name (``\\sin``) or big operator."""

    token: str
    index: int = -1


@dataclass
class Group:
    """A bare ``{ ... }``: draws as its content."""

    body: Row


@dataclass
class Frac:
    num: Row
    den: Row
    index: int = -1  # position of the ``\frac`` token, whose ink is the bar


@dataclass
class Sqrt:
    body: Row
    degree: Row | None = None
    index: int = -1  # position of the ``\sqrt`` token, whose ink is the radical sign


@dataclass
class Scripts:
    """A base with a subscript and/or superscript (``base`` None when the script starts a row)."""

    base: Node | None
    sub: Row | None = None
    sup: Row | None = None
    sub_first: bool = field(default=True, repr=False)  # token order, for an exact round trip


Node = Sym | Group | Frac | Sqrt | Scripts


def parse(tokens: Sequence[str], source: str | None = None) -> Row:
    """Parse canonical tokens into a tree. Raises TreeError naming ``source`` when malformed."""
    parser = _Parser(list(tokens), source)
    row = parser.row(stop=())
    if parser.pos != len(tokens):
        parser.fail(f"unexpected {tokens[parser.pos]!r}")
    return row


def to_tokens(node: Row | Node) -> list[str]:
    """The canonical tokens of a tree: ``parse(t)`` followed by ``to_tokens`` gives ``t`` back."""
    out: list[str] = []
    _emit(node, out)
    return out


def _emit(node: Row | Node | None, out: list[str]) -> None:
    if isinstance(node, Row):
        for item in node.items:
            _emit(item, out)
    elif isinstance(node, Sym):
        out.append(node.token)
    elif isinstance(node, Group):
        out.append("{")
        _emit(node.body, out)
        out.append("}")
    elif isinstance(node, Frac):
        out.append("\\frac")
        _braced(node.num, out)
        _braced(node.den, out)
    elif isinstance(node, Sqrt):
        out.append("\\sqrt")
        if node.degree is not None:
            out.append("[")
            _emit(node.degree, out)
            out.append("]")
        _braced(node.body, out)
    elif isinstance(node, Scripts):
        _emit(node.base, out)
        scripts = [("_", node.sub), ("^", node.sup)]
        for mark, script in scripts if node.sub_first else scripts[::-1]:
            if script is not None:
                out.append(mark)
                _braced(script, out)


def _braced(row: Row, out: list[str]) -> None:
    out.append("{")
    _emit(row, out)
    out.append("}")


class _Parser:
    def __init__(self, tokens: list[str], source: str | None):
        self.tokens = tokens
        self.source = source
        self.pos = 0

    def fail(self, message: str) -> NoReturn:
        raise TreeError(f"{message} at token {self.pos} of {' '.join(self.tokens)!r}", self.source)

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def expect(self, token: str) -> None:
        if self.peek() != token:
            self.fail(f"expected {token!r}")
        self.pos += 1

    def row(self, stop: tuple[str, ...]) -> Row:
        start = self.pos
        items: list[Node] = []
        while (token := self.peek()) is not None and token not in stop:
            if token == "}":
                self.fail("unbalanced '}'")
            items.append(self.scripted(None if token in ("_", "^") else self.atom()))
        return Row(items, start, self.pos)

    def braced(self) -> Row:
        self.expect("{")
        body = self.row(stop=("}",))
        self.expect("}")
        return body

    def atom(self) -> Node:
        if self.peek() == "{":
            return Group(self.braced())
        token, index = self.tokens[self.pos], self.pos
        self.pos += 1
        if token == "\\frac":
            return Frac(self.braced(), self.braced(), index)
        if token == "\\sqrt":
            degree = None
            if self.peek() == "[":
                self.pos += 1
                degree = self.row(stop=("]",))
                self.expect("]")
            return Sqrt(self.braced(), degree, index)
        return Sym(token, index)

    def scripted(self, base: Node | None) -> Node:
        node = Scripts(base)
        while (mark := self.peek()) in ("_", "^"):
            if (node.sub if mark == "_" else node.sup) is not None:
                self.fail(f"double {mark!r}")
            self.pos += 1
            if self.peek() != "{":
                self.fail(f"unbraced argument of {mark!r}")
            script = self.braced()
            if mark == "_":
                node.sub, node.sub_first = script, node.sup is None
            else:
                node.sup = script
        if node.sub is None and node.sup is None:
            assert base is not None  # without a base the loop read a script (or failed)
            return base
        return node
