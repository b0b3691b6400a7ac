"""Specification of hmer.data.vocab: token <-> id mapping saved inside checkpoints."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest

from hmer.data.latex import normalize_latex
from hmer.data.vocab import CROHME_SYMBOLS, Vocab
from hmer.errors import DataError, LatexError


def test_special_tokens_come_first_with_fixed_ids() -> None:
    vocab = Vocab(["x", "y"])
    assert (vocab.pad_id, vocab.sos_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2, 3)
    assert vocab.tokens == ["<pad>", "<sos>", "<eos>", "<unk>", "x", "y"]
    assert vocab.symbols == ["x", "y"]
    assert len(vocab) == 6
    assert "x" in vocab and "z" not in vocab


def test_encode_maps_unknown_tokens_to_unk() -> None:
    vocab = Vocab(["x", "^", "{", "}", "2"])
    assert vocab.encode(["x", "^", "{", "2", "}"]) == [4, 5, 6, 8, 7]
    assert vocab.encode(["x", "\\alpha"]) == [4, vocab.unk_id]


def test_strict_encode_names_the_unknown_token_and_source() -> None:
    vocab = Vocab(["x"])
    with pytest.raises(DataError, match=r"unknown token '\\\\alpha'") as info:
        vocab.encode(["x", "\\alpha"], strict=True, source="a.inkml")
    assert info.value.source == "a.inkml"


def test_decode_inverts_encode_and_drops_special_ids() -> None:
    vocab = Vocab.crohme()
    tokens = normalize_latex("\\frac{1}{2} + x^2")
    ids = vocab.encode(tokens)
    assert vocab.decode(ids) == tokens
    padded = [vocab.sos_id, *ids, vocab.unk_id, vocab.eos_id, vocab.pad_id, vocab.pad_id]
    assert vocab.decode(padded) == tokens


def test_decode_rejects_ids_outside_the_vocabulary() -> None:
    with pytest.raises(DataError, match="outside the vocabulary"):
        Vocab(["x"]).decode([5])
    with pytest.raises(DataError, match="outside the vocabulary"):
        Vocab(["x"]).decode([-1])


@pytest.mark.parametrize(
    ("symbols", "reason"),
    [
        (["x", "x"], "twice"),
        (["<pad>"], "reserved"),
        (["a b"], "not a non-empty token"),
        ([""], "not a non-empty token"),
    ],
)
def test_bad_symbol_lists_raise(symbols: list[str], reason: str) -> None:
    with pytest.raises(DataError, match=reason):
        Vocab(symbols)


def test_dict_round_trip_through_json_and_a_weights_only_checkpoint() -> None:
    torch = pytest.importorskip("torch")
    vocab = Vocab.crohme()
    data = vocab.to_dict()
    assert Vocab.from_dict(json.loads(json.dumps(data))) == vocab
    buffer = io.BytesIO()
    torch.save({"vocab": data}, buffer)
    buffer.seek(0)
    assert Vocab.from_dict(torch.load(buffer, weights_only=True)["vocab"]) == vocab


@pytest.mark.parametrize(
    "data",
    [
        {"tokens": ["<pad>", "<sos>", "<eos>", "<unk>"]},
        {"format": "hmer-vocab", "version": 2, "tokens": ["<pad>", "<sos>", "<eos>", "<unk>"]},
        {"format": "hmer-vocab", "version": 1, "tokens": ["<sos>", "<pad>", "<eos>", "<unk>"]},
        {"format": "hmer-vocab", "version": 1, "tokens": "x"},
        ["x"],
    ],
)
def test_from_dict_rejects_what_is_not_a_vocabulary(data: object) -> None:
    with pytest.raises(DataError):
        Vocab.from_dict(data)  # type: ignore[arg-type]


def test_equality_and_hash_follow_the_token_list() -> None:
    assert Vocab(["a", "b"]) == Vocab(["a", "b"])
    assert hash(Vocab(["a", "b"])) == hash(Vocab(["a", "b"]))
    assert Vocab(["a", "b"]) != Vocab(["b", "a"])
    assert Vocab(["a"]) != ["<pad>", "<sos>", "<eos>", "<unk>", "a"]


def test_from_token_lists_is_sorted_and_deterministic() -> None:
    lists = [["y", "^", "{", "2", "}"], ["x", "+", "y"]]
    vocab = Vocab.from_token_lists(lists)
    assert vocab.symbols == sorted({t for tokens in lists for t in tokens})
    assert Vocab.from_token_lists(reversed(lists)) == vocab


def test_crohme_symbols_are_sorted_unique_and_canonical() -> None:
    assert list(CROHME_SYMBOLS) == sorted(set(CROHME_SYMBOLS))
    assert 100 <= len(CROHME_SYMBOLS) <= 120
    assert Vocab.crohme().symbols == list(CROHME_SYMBOLS)
    for symbol in set(CROHME_SYMBOLS) - {"\\frac", "\\sqrt", "^", "_", "{", "}"}:
        assert normalize_latex(symbol) == [symbol]


@pytest.mark.crohme
def test_crohme_vocab_covers_the_normalized_official_truth(crohme: Path) -> None:
    """Read through the data pipeline's own parser, as training and evaluation will."""
    inkml = pytest.importorskip("hmer.data.inkml")
    vocab = Vocab.crohme()
    missing: Counter[str] = Counter()
    used: set[str] = set()
    for path in sorted((crohme / "inkml").rglob("*.inkml")):
        try:
            raw = inkml.parse_inkml(path).latex
            tokens = normalize_latex(raw, str(path)) if raw is not None else []
        except (DataError, LatexError):
            continue  # malformed files and broken truths: the subject of test_inkml/test_latex
        used.update(tokens)
        missing.update(f"{path.stem}:{t}" for t in tokens if t not in vocab)
    assert missing == Counter({"form000-equation001:\\ltN": 1})  # a typo for "\lt N"
    assert used >= set(CROHME_SYMBOLS)
