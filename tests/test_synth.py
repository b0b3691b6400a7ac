"""Synthetic handwriting: every token is drawn, layout follows structure, output is reproducible,
grammar configs are validated, and ``hmer data synth`` writes a readable BTTR layout."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from hmer.data.latex import normalize_latex
from hmer.data.synth import Hand, Recombiner, Synthesizer, draw, generate, load_grammar
from hmer.data.synth.glyphs import FUNCTIONS, STRUCTURAL, can_draw, outline
from hmer.data.synth.recombine import read_corpus, slots
from hmer.data.synth.tree import TreeError, parse, to_tokens
from hmer.data.vocab import Vocab
from hmer.errors import ConfigError, DataError

# The stroke font is an optional dependency (absent on some machines): without it, nothing to test.
pytest.importorskip("HersheyFonts", reason="synthetic handwriting needs the hershey-fonts package")

EM = 100.0  # trace units per em (generate.UNITS_PER_EM)
SPECIAL = {"<pad>", "<sos>", "<eos>", "<unk>"}


def visible_positions(tokens: list[str]) -> set[int]:
    """Positions of tokens that must leave ink: all but braces, scripts marks, and the brackets
    around a root's degree (``\\sqrt [ 3 ] { x }``)."""
    hidden = set()
    for i, token in enumerate(tokens):
        if token in STRUCTURAL:
            hidden.add(i)
        elif token == "[" and i and tokens[i - 1] == "\\sqrt":
            hidden.add(i)
            depth = 0
            for j in range(i + 1, len(tokens)):
                depth += tokens[j] == "["
                if tokens[j] == "]" and depth == 0:
                    hidden.add(j)
                    break
                depth -= tokens[j] == "]"
    return set(range(len(tokens))) - hidden


@pytest.fixture(scope="module")
def drawings():
    synth = Synthesizer(seed=11)
    return [synth.drawing(i) for i in range(150)]


# --- coverage ------------------------------------------------------------------------------------


#: In the vocabulary without ink of its own: ``\limits`` (kept as the CROHME truth writes it)
#: only says where the limits of ``\int`` go. The generator does not write it; training formulas
#: holding it are left out of recombination (``recombine`` keeps drawable formulas only).
NOT_DRAWN = {"\\limits"}


def test_every_crohme_symbol_can_be_drawn():
    symbols = [
        t for t in Vocab.crohme().tokens if t not in SPECIAL | STRUCTURAL and t not in NOT_DRAWN
    ]
    missing = [t for t in symbols if not can_draw(t)]
    assert not missing
    assert not any(can_draw(t) for t in NOT_DRAWN)
    for token in symbols:
        if token not in {"\\frac", "\\sqrt"} | FUNCTIONS:  # those are drawn by rule, sign, word
            assert outline(token) and all(len(s) >= 2 for s in outline(token)), token


def test_every_token_of_a_generated_expression_leaves_ink_of_its_own(drawings):
    for drawing in drawings:
        tokens = drawing.tokens
        boxes = drawing.boxes()
        assert set(drawing.owners) == visible_positions(tokens), tokens
        for position, (x0, y0, x1, y1) in boxes.items():
            assert np.isfinite([x0, y0, x1, y1]).all()
            # a dot is the smallest ink: still a visible blob, never a single point
            assert max(x1 - x0, y1 - y0) > 0.02 * EM, (tokens[position], tokens)
        points = np.concatenate(drawing.traces)
        (left, top), (right, bottom) = points.min(0), points.max(0)
        for x0, y0, x1, y1 in boxes.values():  # each token's ink lies inside the expression's
            assert left <= x0 <= x1 <= right and top <= y0 <= y1 <= bottom


def test_generated_tokens_are_canonical_crohme_tokens(drawings):
    vocab = set(Vocab.crohme().tokens)
    for drawing in drawings:
        tokens = drawing.tokens
        assert set(tokens) <= vocab, tokens
        assert normalize_latex(" ".join(tokens)) == tokens


def test_lengths_and_structures_look_like_crohme():
    grammar = load_grammar()
    rng = np.random.default_rng(0)
    samples = [grammar.sample(rng) for _ in range(1500)]
    lengths = np.array([len(s) for s in samples])
    assert 9 <= np.median(lengths) <= 18  # CROHME train: 13
    assert (lengths >= 40).mean() > 0.03  # a long tail
    assert lengths.max() <= grammar.size["max_tokens"]
    for token in ("\\frac", "\\sqrt", "^", "_", "\\sum", "\\int", "\\lim", "(", "="):
        share = np.mean([token in s for s in samples])
        assert share > 0.02, token


# --- layout --------------------------------------------------------------------------------------


def hands():
    """A neutral hand and random ones, without the whole-expression drift and rotation (layout
    properties are about relative placement, which that global warp bends on purpose)."""
    rng = np.random.default_rng(5)
    sampled = [Hand.sample(rng) for _ in range(25)]
    return [Hand()] + [dataclasses.replace(h, wobble=0.0, rotation=0.0) for h in sampled]


def boxes_of(tokens: str, hand: Hand, seed: int) -> tuple[list[str], dict]:
    drawing = draw(tokens.split(), np.random.default_rng(seed), hand)
    return drawing.tokens, drawing.boxes()


def union(boxes: dict, positions) -> tuple[float, float, float, float]:
    chosen = [boxes[p] for p in positions if p in boxes]
    return (
        min(b[0] for b in chosen),
        min(b[1] for b in chosen),
        max(b[2] for b in chosen),
        max(b[3] for b in chosen),
    )


def centre(box):
    return 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])


@pytest.mark.parametrize("k", range(26))
def test_scripts_sit_above_right_and_below_right(k):
    hand = hands()[k]
    _, b = boxes_of("x ^ { 2 }", hand, k)
    base, sup = b[0], b[3]
    assert sup[0] > centre(base)[0] and sup[2] > base[2]
    assert centre(sup)[1] < centre(base)[1] and sup[1] < base[1]
    _, b = boxes_of("x _ { 2 }", hand, k)
    base, sub = b[0], b[3]
    assert sub[0] > centre(base)[0] and sub[2] > base[2]
    assert centre(sub)[1] > centre(base)[1] and sub[3] > base[3]
    _, b = boxes_of("x _ { i } ^ { 2 }", hand, k)
    assert b[7][3] < b[3][1]  # superscript entirely above the subscript


@pytest.mark.parametrize("k", range(26))
def test_fraction_numerator_above_bar_denominator_below(k):
    _, b = boxes_of("\\frac { a + 1 } { b }", hands()[k], k)
    bar, num, den = b[0], union(b, (2, 3, 4)), b[7]
    assert num[3] < bar[1] and den[1] > bar[3]
    assert bar[0] <= num[0] and num[2] <= bar[2]
    assert bar[0] <= den[0] and den[2] <= bar[2]


@pytest.mark.parametrize("k", range(26))
def test_radical_sign_covers_its_content(k):
    _, b = boxes_of("\\sqrt { x + \\frac { 1 } { y } }", hands()[k], k)
    sign, body = b[0], union(b, range(2, 11))
    assert sign[0] < body[0] and sign[2] >= body[2]  # the bar runs over all of it
    assert sign[1] < body[1] and sign[3] >= body[3] - 0.05 * EM


@pytest.mark.parametrize("k", range(26))
def test_operator_limits_above_and_below(k):
    hand = hands()[k]
    _, b = boxes_of("\\sum _ { i = 1 } ^ { n } i", hand, k)
    op, lower, upper = b[0], union(b, (3, 4, 5)), b[9]
    assert upper[3] < op[1] and lower[1] > op[3]
    assert upper[0] < op[2] and upper[2] > op[0]  # horizontally over the sign, not beside it
    _, b = boxes_of("\\lim _ { x \\rightarrow 0 } x", hand, k)
    assert union(b, (3, 4, 5))[1] > b[0][3]


@pytest.mark.parametrize("k", range(26))
def test_brackets_grow_around_tall_content(k):
    _, b = boxes_of("( \\frac { 1 } { 2 } ) ( x )", hands()[k], k)
    opening, closing, fraction = b[0], b[8], union(b, range(1, 8))
    assert opening[1] < fraction[1] and opening[3] > fraction[3]
    assert closing[1] < fraction[1] and closing[3] > fraction[3]
    assert opening[3] - opening[1] > b[9][3] - b[9][1]  # taller than the plain one around x


# --- reproducibility -----------------------------------------------------------------------------


def same(items_a, items_b) -> bool:
    return len(items_a) == len(items_b) and all(
        na == nb
        and ta == tb
        and len(ra) == len(rb)
        and all(np.array_equal(p, q) for p, q in zip(ra, rb, strict=True))
        for (na, ra, ta), (nb, rb, tb) in zip(items_a, items_b, strict=True)
    )


def test_same_seed_same_output_for_any_workers_and_start():
    one = generate(40, seed=3)
    assert same(one, generate(40, seed=3))
    assert same(one, generate(40, seed=3, workers=2))
    assert same(one[35:], generate(5, seed=3, start=35))
    assert len({name for name, _, _ in one}) == 40


def test_different_seeds_differ():
    a, b = generate(5, seed=1), generate(5, seed=2)
    assert [t for _, _, t in a] != [t for _, _, t in b]
    assert not any(
        np.array_equal(ra[0], rb[0]) for (_, ra, _), (_, rb, _) in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("bad", [{"n": -1}, {"seed": -3}, {"workers": 0}, {"n": 1.5}])
def test_bad_generate_arguments_fail_clearly(bad):
    args = {"n": 2, "seed": 0, "workers": 1} | bad
    field = next(iter(bad))
    with pytest.raises(ConfigError, match=field):
        generate(**args)


# --- grammar configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"factor": {"fractions": 1}}, "factor.fractions"),
        ({"sise": {}}, "sise"),
        ({"size": {"max_depth": "deep"}}, "size.max_depth"),
        ({"size": {"max_depth": 0}}, "size.max_depth"),
        ({"size": {"p_more_terms": 1.5}}, "size.p_more_terms"),
        ({"factor": {"fraction": -1}}, "factor.fraction"),
        ({"variable": {"lower": 0, "upper": 0, "greek": 0}}, "variable"),
        ({"symbols": {"lower": {"x": 1, "\\foo": 2}}}, "symbols.lower"),
        ({"symbols": {"brackets": {"(": 1}}}, "symbols.brackets"),
        ({"symbols": {"relation": {}}}, "symbols.relation"),
        ({"size": 3}, "size"),
        ({"recombine": {"max_swaps": 1.5}}, "recombine.max_swaps"),
    ],
)
def test_malformed_grammar_config_names_the_field(override, field):
    with pytest.raises(ConfigError, match=re.escape(f"'{field}'")):
        load_grammar(override)


def test_grammar_file_errors_name_the_file(tmp_path):
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list\.yaml"):
        load_grammar(listing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("factor: {fraction: [1\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml"):
        load_grammar(broken)
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        load_grammar(tmp_path / "missing.yaml")


def test_grammar_override_changes_what_is_sampled(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(
        "factor: {fraction: 0, root: 0}\nsymbols:\n  binary: {+: 1}\n  separator: {',': 1}\n"
    )
    grammar = load_grammar(path)
    rng = np.random.default_rng(1)
    samples = [grammar.sample(rng) for _ in range(300)]
    assert not any("\\frac" in s or "\\sqrt" in s for s in samples)
    assert not any(t in s for s in samples for t in ("\\times", "\\div", "\\pm"))
    assert sum("+" in s for s in samples) > 30


# --- trees and recombination ---------------------------------------------------------------------


def test_trees_round_trip_and_reject_non_canonical_sequences():
    grammar, rng = load_grammar(), np.random.default_rng(2)
    for _ in range(300):
        tokens = grammar.sample(rng)
        assert to_tokens(parse(tokens)) == tokens
    for bad in ("x ^ 2", "\\frac { a }", "a }", "x ^ { 2 } ^ { 3 }", "\\sqrt [ 3 { x }"):
        with pytest.raises(TreeError):
            parse(bad.split())


CORPUS = [
    "x ^ { 2 } + y ^ { 2 } = r ^ { 2 }",
    "\\frac { a + b } { c } = \\sqrt { d _ { 1 } }",
    "\\sum _ { i = 1 } ^ { n } i = \\frac { n ( n + 1 ) } { 2 }",
    "\\lim _ { x \\rightarrow 0 } \\frac { \\sin x } { x } = 1",
    "( a - b ) ^ { 3 } \\leq | z |",
    "f ( x ) = e ^ { - x } \\cos \\theta",
]


def test_recombination_swaps_whole_subtrees_into_new_canonical_formulas():
    corpus = [line.split() for line in CORPUS]
    recombiner = Recombiner([*corpus, ["\\frac", "{"], ["\\unknowable"]])
    assert recombiner.skipped == 2 and len(recombiner.formulas) == len(CORPUS)
    assert all(s for s in (slots(c) for c in corpus))
    rng = np.random.default_rng(0)
    outputs = [recombiner.sample(rng, max_swaps=2) for _ in range(200)]
    corpus_tokens = {t for c in corpus for t in c}
    assert sum(o not in corpus for o in outputs) > 100
    for tokens in outputs:
        assert set(tokens) <= corpus_tokens  # only swapped, never invented
        assert normalize_latex(" ".join(tokens)) == tokens
    with pytest.raises(DataError):
        Recombiner([["\\frac", "{"]])


def test_recombined_items_are_drawn_and_deterministic(tmp_path):
    captions = tmp_path / "caption.txt"
    captions.write_text("".join(f"n{i}\t{line}\n" for i, line in enumerate(CORPUS)))
    recombiner = Recombiner(read_corpus(captions))
    grammar = load_grammar({"recombine": {"share": 1.0}})
    first = generate(8, seed=4, grammar=grammar, corpus=recombiner)
    assert same(first, generate(8, seed=4, grammar=grammar, corpus=recombiner))
    for _, traces, tokens in first:
        assert traces and normalize_latex(" ".join(tokens)) == tokens


@pytest.mark.crohme
def test_all_crohme_test_truth_can_be_recombined_and_drawn(crohme):
    recombiner = Recombiner(read_corpus(crohme / "bttr" / "2016" / "caption.txt"), max_tokens=200)
    assert recombiner.skipped == 0
    rng = np.random.default_rng(0)
    for _ in range(20):
        tokens = recombiner.sample(rng)
        drawing = draw(tokens, rng)
        assert set(drawing.owners) == visible_positions(tokens)


# --- command -------------------------------------------------------------------------------------


def run_cli(argv: list[str]) -> int:
    from hmer.cli import main

    return main(["data", *argv])


def test_synth_command_writes_a_bttr_layout_that_reads_back(tmp_path):
    import cv2

    out = tmp_path / "synth"
    assert run_cli(["synth", "--n", "7", "--out", str(out), "--seed", "5", "--workers", "1"]) == 0
    lines = (out / "train" / "caption.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 7
    expected = {name: tokens for name, _, tokens in generate(7, seed=5)}
    for line in lines:
        name, tokens = line.split("\t")
        assert tokens.split() == expected[name]
        image = cv2.imread(str(out / "train" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        assert image is not None and image.ndim == 2 and image.max() > 0
    sheet = tmp_path / "preview.png"
    assert run_cli(["preview", str(out), "--split", "train", "--n", "4", "--out", str(sheet)]) == 0
    assert cv2.imread(str(sheet)) is not None
