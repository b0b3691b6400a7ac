"""Structural recombination: new formulas made from real ones by swapping whole subtrees.

A slot is a span of tokens that forms a complete row: a script, a fraction's numerator or
denominator, a radical's body, the content of a bracket pair, or a term or relation side of the
top level. Replacing a slot with a donor row of the same kind (scripts with scripts, the rest with
the rest) keeps the sequence canonical, and keeps real formulas' local structure while making new
combinations of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from hmer.data.latex import normalize_latex
from hmer.data.synth.glyphs import STRUCTURAL, can_draw
from hmer.data.synth.grammar import Grammar
from hmer.data.synth.layout import BINARY, RELATIONS
from hmer.data.synth.tree import Frac, Group, Row, Scripts, Sqrt, Sym, TreeError, parse
from hmer.errors import DataError

_PAIRS = {"(": ")", "[": "]", "\\{": "\\}", "|": "|"}

Slot = tuple[str, int, int]  # kind ("script" or "row"), start, end (exclusive)


def slots(tokens: Sequence[str]) -> list[Slot]:
    """Every swappable span of a canonical sequence (raises TreeError when it does not parse)."""
    tree = parse(tokens)
    out: list[Slot] = []
    _top_level(tree, out)
    _walk(tree, out)
    return [slot for slot in out if slot[1] < slot[2]]


def _top_level(row: Row, out: list[Slot]) -> None:
    """Terms and relation sides: spans between top-level operators."""
    start = row.start
    for item in row.items:
        if isinstance(item, Sym) and (item.token in BINARY or item.token in RELATIONS):
            out.append(("row", start, item.index))
            start = item.index + 1
    if start != row.start:
        out.append(("row", start, row.end))


def _walk(row: Row, out: list[Slot]) -> None:
    stack: list[tuple[str, int]] = []
    for item in row.items:
        base = item.base if isinstance(item, Scripts) else item
        if isinstance(base, Sym):
            token = base.token
            if stack and _PAIRS[stack[-1][0]] == token:
                out.append(("row", stack.pop()[1] + 1, base.index))
            elif token in _PAIRS:
                stack.append((token, base.index))
        for child, kind in _children(item):
            out.append((kind, child.start, child.end))
            _walk(child, out)


def _children(node: object) -> list[tuple[Row, str]]:
    if isinstance(node, Frac):
        return [(node.num, "row"), (node.den, "row")]
    if isinstance(node, Sqrt):
        degree = [] if node.degree is None else [(node.degree, "script")]
        return [(node.body, "row"), *degree]
    if isinstance(node, Group):
        return [(node.body, "row")]
    if isinstance(node, Scripts):
        scripts = [(r, "script") for r in (node.sub, node.sup) if r is not None]
        return _children(node.base) + scripts
    return []


class Recombiner:
    """Recombines a corpus of canonical token sequences (for instance CROHME training truth).

    Sequences that do not parse, hold a token the pen cannot draw, or are longer than
    ``max_tokens`` are left out (``skipped`` counts them).
    """

    def __init__(self, corpus: Iterable[Sequence[str]], max_tokens: int = 80):
        self.max_tokens = max_tokens
        self.formulas: list[list[str]] = []
        self.donors: dict[str, list[list[str]]] = {"script": [], "row": []}
        self.skipped = 0
        for sequence in corpus:
            tokens = list(sequence)
            try:
                spans = slots(tokens)
            except TreeError:
                spans = None
            drawable = all(t in STRUCTURAL or can_draw(t) for t in tokens)
            if spans is None or not drawable or not tokens or len(tokens) > max_tokens:
                self.skipped += 1
                continue
            self.formulas.append(tokens)
            for kind, start, end in spans:
                if tokens[start] not in ("_", "^"):  # a leading script would attach elsewhere
                    self.donors[kind].append(tokens[start:end])
        if not self.formulas:
            raise DataError(
                f"no usable formulas in the recombination corpus ({self.skipped} skipped)"
            )

    def sample(
        self,
        rng: np.random.Generator,
        grammar: Grammar | None = None,
        max_swaps: int = 2,
        p_grammar_donor: float = 0.0,
    ) -> list[str]:
        """A corpus formula with 1..``max_swaps`` slots replaced by donors (or grammar samples)."""
        tokens = self.formulas[rng.integers(len(self.formulas))]
        for _ in range(int(rng.integers(1, max_swaps + 1))):
            spans = slots(tokens)
            if not spans:
                break
            kind, start, end = spans[rng.integers(len(spans))]
            if grammar is not None and rng.random() < p_grammar_donor:
                donor = grammar.exponent(rng, 1) if kind == "script" else grammar.expression(rng, 1)
            else:
                pool = self.donors[kind] or self.donors["row"]
                donor = pool[rng.integers(len(pool))]
            candidate = [*tokens[:start], *donor, *tokens[end:]]
            if len(candidate) > self.max_tokens:
                continue
            try:
                parse(candidate)
            except TreeError:  # e.g. a donor script landing after a base that has one already
                continue
            tokens = candidate
        return list(tokens)


def read_corpus(path: str | Path) -> list[list[str]]:
    """Canonical token sequences from a caption file, a BTTR-layout folder, or an InkML folder.

    A caption file holds ``name<TAB>tokens`` (or just ``tokens``) per line; a folder is searched
    for ``caption.txt`` files, else for ``*.inkml`` files. Every label goes through
    ``normalize_latex`` (third-party captions are not always canonical: ``\\frac 1 2``); labels it
    rejects and unreadable files are skipped. Raises DataError when nothing usable is found.
    """
    path = Path(path)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(path.rglob("caption.txt"))
    else:
        raise DataError("no such file or folder", path)
    labels = []
    for file in files:
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            text = line.split("\t", 1)[-1].strip()
            if text:
                labels.append((text, f"{file}:{number}"))
    if path.is_dir() and not files:
        labels = _inkml_labels(path)
    corpus = []
    for text, source in labels:
        try:
            corpus.append(normalize_latex(text, source=source))
        except DataError:
            continue
    if not corpus:
        raise DataError("no usable labels found (caption.txt lines or InkML truth)", path)
    return corpus


def _inkml_labels(folder: Path) -> list[tuple[str, str]]:
    # Start-up: the InkML reader pulls in OpenCV; ``hmer --help`` loads this package.
    from hmer.data.inkml import parse_inkml

    labels = []
    for file in sorted(folder.rglob("*.inkml")):
        try:
            latex = parse_inkml(file).latex
        except DataError:
            continue
        if latex:
            labels.append((latex, str(file)))
    return labels
