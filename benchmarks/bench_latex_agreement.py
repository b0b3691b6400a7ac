"""LaTeX normalization vs the published CROHME 2016 captions: agreement and every disagreement.

.venv/bin/python benchmarks/bench_latex_agreement.py [--crohme PATH]

Normalizes the InkML truth of the 1,147 CROHME 2016 files, compares with ``bttr/2016/caption.txt``
(the token sequences papers score against), prints the agreement rate and each disagreement
(name, ours, theirs) grouped by kind, and how many of the disagreements render the same formula
(``equivalence_form``); then the labels of the other splits that do not normalize, and the
normalization speed.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

from hmer.data.inkml import parse_inkml
from hmer.data.latex import TWO_ARGUMENTS, equivalence_form, normalize_latex
from hmer.errors import DataError, LatexError
from hmer.paths import crohme_root


def kind_of(ours: list[str] | None, theirs: list[str]) -> str:
    """Why the two token lists differ, from what the published caption does."""
    if ours is None:
        return "our normalizer raises LatexError"
    try:
        if normalize_latex(" ".join(theirs)) == ours:
            return "caption leaves an argument unbraced (normalizing the caption gives ours)"
    except LatexError:
        pass
    joined = " ".join(theirs)
    if any(f"{{ {command} }}" in joined for command in (*TWO_ARGUMENTS, "\\sqrt")):
        return "caption braces a lone \\frac as a script argument (^ { \\frac } { p } { q })"
    if "\\sqrt { [ }" in joined:
        return "caption braces the '[' of a \\sqrt index as the argument"
    return "other"


def truths(folder: Path) -> dict[str, str | None]:
    """Truth by file stem, through the data pipeline's parser (None: no truth, or unreadable)."""
    out: dict[str, str | None] = {}
    for path in sorted(folder.rglob("*.inkml")):
        try:
            out[path.stem] = parse_inkml(path).latex
        except DataError:
            out[path.stem] = None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crohme", type=Path, default=crohme_root())
    root = parser.parse_args().crohme
    if root is None or not (root / "bttr" / "2016" / "caption.txt").is_file():
        print("CROHME data not found (set HMER_CROHME or pass --crohme): nothing to measure")
        return

    lines = (root / "bttr" / "2016" / "caption.txt").read_text(encoding="utf-8").splitlines()
    captions = {name: tokens.split() for name, tokens in (line.split("\t", 1) for line in lines)}
    raw = truths(root / "inkml" / "2016")
    groups: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for name, theirs in sorted(captions.items()):
        try:
            ours = normalize_latex(raw[name] or "", name)
        except LatexError:
            ours = None
        if ours != theirs:
            shown = " ".join(ours) if ours is not None else "(error)"
            groups[kind_of(ours, theirs)].append((name, shown, " ".join(theirs)))
    wrong = sum(len(group) for group in groups.values())
    agree = len(captions) - wrong
    print(f"2016 agreement: {agree}/{len(captions)} = {100 * agree / len(captions):.2f} %")
    same = sum(
        equivalence_form(ours.split()) == equivalence_form(theirs.split())
        for group in groups.values()
        for _, ours, theirs in group
    )
    print(
        f"of the {wrong} that differ, {same} render the same formula (equivalence); "
        f"equivalent agreement {agree + same}/{len(captions)} = "
        f"{100 * (agree + same) / len(captions):.2f} %"
    )
    for kind, items in sorted(groups.items(), key=lambda item: -len(item[1])):
        print(f"\n{kind}: {len(items)}")
        for name, ours, theirs in items:
            print(f"  {name}\n    ours   {ours}\n    theirs {theirs}")

    print("\nlabels that do not normalize (LatexError), all splits:")
    labels = [(name, latex) for name, latex in truths(root / "inkml").items() if latex is not None]
    began = time.perf_counter()
    for name, latex in labels:
        try:
            normalize_latex(latex, name)
        except LatexError as error:
            print(f"  {error}")
    seconds = time.perf_counter() - began
    print(f"\nnormalize_latex: {len(labels) / seconds:,.0f} labels/s ({len(labels)} labels)")


if __name__ == "__main__":
    main()
