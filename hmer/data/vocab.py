"""The token vocabulary: canonical LaTeX tokens <-> integer ids, saved inside every checkpoint."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from hmer.errors import DataError

#: Reading order of a token sequence: left to right (``sos … eos``) or right to left
#: (``eos … sos``). Training runs both (BTTR); a search runs one.
Direction = Literal["l2r", "r2l"]

#: Every token of the normalized CROHME truth (train, 2014, 2016 and 2019), sorted. Derived with
#: ``hmer.data.latex.normalize_latex`` from the official InkML; ``tests/test_vocab.py`` checks it
#: on the real data. Left out: ``\ltN`` (one train file, a typo for ``\lt N``).
CROHME_SYMBOLS: tuple[str, ...] = (
    "!", "(", ")", "+", ",", "-", ".", "/",
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9",
    "<", "=", ">",
    "A", "B", "C", "E", "F", "G", "H", "I", "L", "M", "N", "O", "P", "R", "S", "T", "V", "X", "Y",
    "[",
    "\\Delta", "\\Pi", "\\alpha", "\\beta", "\\cdot", "\\cdots", "\\cos", "\\div", "\\exists",
    "\\forall", "\\frac", "\\gamma", "\\geq", "\\in", "\\infty", "\\int", "\\lambda", "\\ldots",
    "\\leq", "\\lim", "\\limits", "\\log", "\\mu", "\\neq", "\\phi", "\\pi", "\\pm", "\\prime",
    "\\rightarrow",
    "\\sigma", "\\sin", "\\sqrt", "\\sum", "\\tan", "\\theta", "\\times", "\\{", "\\}",
    "]", "^", "_",
    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m",
    "n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z",
    "{", "|", "}",
)  # fmt: skip

_FORMAT = "hmer-vocab"
_VERSION = 1


class Vocab:
    """Ids ``0..3`` are ``<pad> <sos> <eos> <unk>``; the symbols follow in the given order.

    Equality (and hashing) is by the full token list, so a checkpoint's vocabulary can be compared
    with the one a dataset expects.
    """

    PAD, SOS, EOS, UNK = "<pad>", "<sos>", "<eos>", "<unk>"
    SPECIALS: tuple[str, ...] = (PAD, SOS, EOS, UNK)
    pad_id, sos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, symbols: Iterable[str]):
        symbols = list(symbols)
        seen: set[str] = set()
        for symbol in symbols:
            if not isinstance(symbol, str) or not symbol or symbol.split() != [symbol]:
                raise DataError(f"vocabulary symbol {symbol!r} is not a non-empty token")
            if symbol in self.SPECIALS:
                raise DataError(f"vocabulary symbol {symbol!r} is reserved for a special token")
            if symbol in seen:
                raise DataError(f"vocabulary symbol {symbol!r} appears twice")
            seen.add(symbol)
        self._tokens: tuple[str, ...] = (*self.SPECIALS, *symbols)
        self._ids = {token: i for i, token in enumerate(self._tokens)}

    @classmethod
    def crohme(cls) -> Vocab:
        """The built-in CROHME symbol set ``CROHME_SYMBOLS``: complete for its normalized truth."""
        return cls(CROHME_SYMBOLS)

    @classmethod
    def from_token_lists(cls, token_lists: Iterable[Sequence[str]]) -> Vocab:
        """The sorted set of every token in ``token_lists`` (specials excluded)."""
        symbols = {token for tokens in token_lists for token in tokens}
        return cls(sorted(symbols - set(cls.SPECIALS)))

    @property
    def tokens(self) -> list[str]:
        """All tokens by id, specials first."""
        return list(self._tokens)

    @property
    def symbols(self) -> list[str]:
        """The tokens after the specials."""
        return list(self._tokens[len(self.SPECIALS) :])

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self._tokens == other._tokens

    def __hash__(self) -> int:
        return hash(self._tokens)

    def __repr__(self) -> str:
        return f"Vocab({len(self.SPECIALS)} specials + {len(self) - len(self.SPECIALS)} symbols)"

    def encode(
        self, tokens: Sequence[str], strict: bool = False, *, source: str | None = None
    ) -> list[int]:
        """Ids of ``tokens`` (no sos/eos added). Unknown tokens become ``unk_id``, or, when
        ``strict``, raise a DataError naming the token (and ``source``, e.g. the label's file)."""
        ids = []
        for token in tokens:
            index = self._ids.get(token)
            if index is None:
                if strict:
                    raise DataError(
                        f"unknown token {token!r} (not among the {len(self)} of the vocabulary)",
                        source=source,
                    )
                index = self.unk_id
            ids.append(index)
        return ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of ``ids``, without the special ones (pad, sos, eos, unk)."""
        out = []
        for index in ids:
            index = int(index)
            if not 0 <= index < len(self._tokens):
                raise DataError(f"token id {index} is outside the vocabulary (size {len(self)})")
            if index >= len(self.SPECIALS):
                out.append(self._tokens[index])
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain python types only, for ``torch.save(..., weights_only=True)`` checkpoints."""
        return {"format": _FORMAT, "version": _VERSION, "tokens": list(self._tokens)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocab:
        """Inverse of ``to_dict``; DataError when the dict is not a vocabulary of this version."""
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise DataError(f"not a vocabulary dict (expected format {_FORMAT!r})")
        if data.get("version") != _VERSION:
            raise DataError(f"vocabulary version {data.get('version')!r} is not {_VERSION}")
        tokens = data.get("tokens")
        if not isinstance(tokens, list) or tuple(tokens[: len(cls.SPECIALS)]) != cls.SPECIALS:
            raise DataError(f"vocabulary tokens must be a list starting with {cls.SPECIALS}")
        return cls(tokens[len(cls.SPECIALS) :])
