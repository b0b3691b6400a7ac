"""A random grammar of handwritten-math-like expressions, emitting canonical tokens.

Statements (equations, chains of inequalities, definitions ``f ( x ) = ...``, sequences with
``\\ldots``, quantified logic) are built from expressions: sums of terms, each an implicit product
of factors -- variables, numbers, powers, subscripts, fractions, roots, bracketed expressions,
functions, big operators with limits. Nesting decays with depth, so lengths and depths follow a
long-tailed distribution like CROHME's (median ~14 tokens, tail past 50). Weights live in
``grammar.yaml``; :func:`load_grammar` validates a user override and names any bad field.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hmer.data.synth.glyphs import STRUCTURAL, can_draw
from hmer.errors import ConfigError

DEFAULT_PATH = Path(__file__).with_name("grammar.yaml")
#: Blocks of relative weights: non-negative, not all zero.
_WEIGHT_BLOCKS = frozenset({"statement", "factor", "variable"})
#: Factor kinds that nest; their weight decays with depth and is zero at the maximum depth.
_NESTED = ("power", "subsup", "fraction", "root", "brackets", "function", "big_operator")
_INTEGERS = frozenset(
    {"max_terms", "max_factors", "max_depth", "max_tokens", "max_digits", "max_swaps"}
)
_FUNCTION_NAMES = ("f", "g", "h", "F", "G", "y", "u", "P")
_INDEX_NAMES = ("i", "j", "k", "n", "m")


class _Pool:
    """Tokens with relative weights; ``draw`` picks one."""

    def __init__(self, weights: Mapping[str, float]):
        self.tokens = tuple(weights)
        cumulative = np.cumsum(np.array(list(weights.values()), dtype=np.float64))
        self.cumulative = cumulative / cumulative[-1]

    def draw(self, rng: np.random.Generator) -> str:
        at = int(np.searchsorted(self.cumulative, rng.random(), side="right"))
        return self.tokens[min(at, len(self.tokens) - 1)]


class Grammar:
    """The expression sampler for one validated configuration (see :func:`load_grammar`)."""

    def __init__(self, config: Mapping[str, Any]):
        self.config = config
        self.pools = {name: _Pool(block) for name, block in config["symbols"].items()}
        self.statements = _Pool(config["statement"])
        self.alphabets = _Pool(config["variable"])
        self.size = config["size"]
        self.factor_pools = [self._factor_pool(d) for d in range(self.size["max_depth"] + 1)]

    def sample(self, rng: np.random.Generator) -> list[str]:
        """One expression as canonical tokens (drawn again while longer than ``max_tokens``)."""
        while True:
            tokens = self.statement(rng)
            if len(tokens) <= self.size["max_tokens"]:
                return tokens

    # -- statements -------------------------------------------------------------------------------

    def statement(self, rng: np.random.Generator) -> list[str]:
        kind = self.statements.draw(rng)
        if kind == "equation":
            lhs = self.factor(rng, 0) if rng.random() < 0.4 else self.expression(rng, 0, 3)
            return [*lhs, self.pools["relation"].draw(rng), *self.expression(rng, 0)]
        if kind == "chain":
            parts = [self.expression(rng, 1, 2) for _ in range(2 + int(rng.random() < 0.5))]
            out = parts[0]
            for part in parts[1:]:
                out += [self.pools["inequality"].draw(rng), *part]
            return out
        if kind == "definition":
            args = [self.variable(rng)]
            if rng.random() < 0.25:
                args += [",", self.variable(rng)]
            name = _FUNCTION_NAMES[rng.integers(len(_FUNCTION_NAMES))]
            return [name, "(", *args, ")", "=", *self.expression(rng, 0)]
        if kind == "sequence":
            return self.sequence(rng)
        if kind == "logic":
            return self.logic(rng)
        return self.expression(rng, 0)

    def sequence(self, rng: np.random.Generator) -> list[str]:
        """``a _ { 1 } , a _ { 2 } , \\ldots , a _ { n }`` and ``1 + 2 + \\ldots + n`` shapes."""
        separator = self.pools["separator"].draw(rng)
        ellipsis = self.pools["ellipsis"].draw(rng)
        name = self.variable(rng)
        start = int(rng.integers(0, 2))
        count = int(rng.integers(2, 4))
        last = _INDEX_NAMES[rng.integers(len(_INDEX_NAMES))]
        subscripted = rng.random() < 0.7

        def element(index: str) -> list[str]:
            return [name, "_", "{", index, "}"] if subscripted else list(index)

        out: list[str] = []
        for k in range(count):
            out += [*element(str(start + k)), separator]
        out += [ellipsis]
        if rng.random() < 0.8:
            out += [separator, *element(last)]
        if rng.random() < 0.3:
            out = [*self.factor(rng, 1), "=", *out]
        return out

    def logic(self, rng: np.random.Generator) -> list[str]:
        quantifier = "\\forall" if rng.random() < 0.6 else "\\exists"
        var = self.variable(rng)
        out = [quantifier, var]
        if rng.random() < 0.6:
            out += ["\\in", self.pools["upper"].draw(rng)]
        if rng.random() < 0.6:
            out += [",", *self.expression(rng, 1, 2), self.pools["relation"].draw(rng)]
            out += self.expression(rng, 1, 2)
        return out

    # -- expressions ------------------------------------------------------------------------------

    def expression(
        self, rng: np.random.Generator, depth: int, max_terms: int | None = None
    ) -> list[str]:
        """Terms joined by binary operators; fewer and shorter the deeper it sits."""
        limit = self.size["max_terms"] if max_terms is None else max_terms
        more = self.size["p_more_terms"] * (0.75**depth)
        out = ["-"] if rng.random() < 0.08 else []
        out += self.term(rng, depth)
        for _ in range(limit - 1):
            if rng.random() >= more:
                break
            out += [self.pools["binary"].draw(rng), *self.term(rng, depth)]
        return out

    def term(self, rng: np.random.Generator, depth: int) -> list[str]:
        out = self.factor(rng, depth)
        for _ in range(self.size["max_factors"] - 1):
            if rng.random() >= self.size["p_more_factors"] or out == ["\\infty"]:
                break
            nxt = self.factor(rng, depth)
            # a coefficient comes first (2 x, not x 2, and not "2 3", which reads as 23)
            if nxt[0].isdigit() or nxt == ["\\infty"]:
                nxt = [self.variable(rng)]
            out += nxt
        return out

    def factor(self, rng: np.random.Generator, depth: int) -> list[str]:
        kind = self.factor_pools[min(depth, len(self.factor_pools) - 1)].draw(rng)
        return getattr(self, f"_{kind}")(rng, depth)

    def _factor_pool(self, depth: int) -> _Pool:
        """Factor kinds at ``depth``: nesting kinds decay, and stop at the maximum depth."""
        weights = dict(self.config["factor"])
        for kind in _NESTED:
            if depth >= self.size["max_depth"]:
                weights[kind] = 0.0
            else:
                weights[kind] *= self.size["depth_decay"] ** depth
        if not any(weights.values()):
            weights["variable"] = 1.0
        return _Pool(weights)

    # -- factors (each ``_<kind>`` is one kind of the ``factor`` block) ------------------------

    def variable(self, rng: np.random.Generator) -> str:
        return self.pools[self.alphabets.draw(rng)].draw(rng)

    def number(self, rng: np.random.Generator) -> list[str]:
        cfg = self.config["number"]
        digits = [self.pools["digits"].draw(rng)]
        while len(digits) < cfg["max_digits"] and rng.random() < cfg["p_more_digits"]:
            digits.append(self.pools["digits"].draw(rng))
        if len(digits) > 1 and digits[0] == "0":
            digits[0] = "1"
        if rng.random() < cfg["p_decimal"]:
            digits += [".", self.pools["digits"].draw(rng)]
        return digits

    def exponent(self, rng: np.random.Generator, depth: int) -> list[str]:
        if rng.random() < self.config["power"]["p_simple"]:
            r = rng.random()
            if r < 0.6:
                return [self.pools["digits"].draw(rng)]
            if r < 0.85:
                return [self.variable(rng)]
            return ["-", self.pools["digits"].draw(rng)]
        return self.script_expression(rng, depth)

    def index(self, rng: np.random.Generator, depth: int) -> list[str]:
        r = rng.random()
        if r < 0.4:
            return [self.pools["digits"].draw(rng)]
        if r < 0.75:
            return [self.variable(rng)]
        if r < 0.85:
            return [self.variable(rng), self.variable(rng)]
        return self.script_expression(rng, depth)

    def script_expression(self, rng: np.random.Generator, depth: int) -> list[str]:
        """A short expression for a script: little nesting (no integral in an exponent)."""
        return self.expression(rng, max(depth + 1, self.size["max_depth"] - 1), 2)

    def atom(self, rng: np.random.Generator) -> list[str]:
        return self.number(rng) if rng.random() < 0.25 else [self.variable(rng)]

    def _variable(self, rng: np.random.Generator, depth: int) -> list[str]:
        return [self.variable(rng)]

    def _number(self, rng: np.random.Generator, depth: int) -> list[str]:
        return self.number(rng)

    def _infinity(self, rng: np.random.Generator, depth: int) -> list[str]:
        return ["\\infty"]

    def _power(self, rng: np.random.Generator, depth: int) -> list[str]:
        if (
            rng.random() < self.config["power"]["p_bracket_base"]
            and depth + 1 < self.size["max_depth"]
        ):
            base = self.bracketed(rng, depth)
        else:
            base = self.atom(rng)
        return [*base, "^", "{", *self.exponent(rng, depth), "}"]

    def _subscript(self, rng: np.random.Generator, depth: int) -> list[str]:
        return [self.variable(rng), "_", "{", *self.index(rng, depth), "}"]

    def _subsup(self, rng: np.random.Generator, depth: int) -> list[str]:
        sub, sup = self.index(rng, depth), self.exponent(rng, depth)
        return [self.variable(rng), "_", "{", *sub, "}", "^", "{", *sup, "}"]

    def _prime(self, rng: np.random.Generator, depth: int) -> list[str]:
        name = _FUNCTION_NAMES[rng.integers(len(_FUNCTION_NAMES))]
        primes = ["\\prime"] * (1 + int(rng.random() < 0.2))
        out = [name, "^", "{", *primes, "}"]
        if rng.random() < 0.6:
            out += ["(", self.variable(rng), ")"]
        return out

    def _fraction(self, rng: np.random.Generator, depth: int) -> list[str]:
        num = self.expression(rng, depth + 1)
        den = self.expression(rng, depth + 1)
        return ["\\frac", "{", *num, "}", "{", *den, "}"]

    def _root(self, rng: np.random.Generator, depth: int) -> list[str]:
        out = ["\\sqrt"]
        if rng.random() < self.config["root"]["p_degree"]:
            degree = self.pools["digits"].draw(rng) if rng.random() < 0.7 else self.variable(rng)
            out += ["[", degree, "]"]
        return [*out, "{", *self.expression(rng, depth + 1), "}"]

    def bracketed(self, rng: np.random.Generator, depth: int) -> list[str]:
        opening, closing = self.pools["brackets"].draw(rng).split()
        return [opening, *self.expression(rng, depth + 1), closing]

    def _brackets(self, rng: np.random.Generator, depth: int) -> list[str]:
        out = self.bracketed(rng, depth)
        if rng.random() < 0.25:
            out += ["^", "{", *self.exponent(rng, depth), "}"]
        return out

    def _function(self, rng: np.random.Generator, depth: int) -> list[str]:
        cfg = self.config["function"]
        name = self.pools["function"].draw(rng)
        out = [name]
        if name == "\\log" and rng.random() < cfg["p_log_base"]:
            out += ["_", "{", *self.index(rng, depth), "}"]
        elif rng.random() < cfg["p_power"]:
            out += ["^", "{", *self.exponent(rng, depth), "}"]
        if rng.random() < cfg["p_brackets"]:
            return [*out, "(", *self.expression(rng, depth + 1), ")"]
        return out + (self.number(rng) if rng.random() < 0.2 else []) + [self.variable(rng)]

    def _big_operator(self, rng: np.random.Generator, depth: int) -> list[str]:
        op = self.pools["big_operator"].draw(rng)
        body = self.term(rng, depth + 1)
        var = _INDEX_NAMES[rng.integers(len(_INDEX_NAMES))]
        if op == "\\lim":
            x = self.variable(rng)
            target = ["\\infty"] if rng.random() < 0.5 else self.atom(rng)
            return ["\\lim", "_", "{", x, "\\rightarrow", *target, "}", *body]
        if op == "\\int":
            x = self.variable(rng)
            out = ["\\int"]
            if rng.random() < 0.65:
                low = ["0"] if rng.random() < 0.4 else self.atom(rng)
                high = ["\\infty"] if rng.random() < 0.25 else self.atom(rng)
                out += ["_", "{", *low, "}", "^", "{", *high, "}"]
            return [*out, *body, "d", x]
        out = [op, "_", "{", var]
        if rng.random() < 0.8:
            out += ["=", self.pools["digits"].draw(rng)]
        out.append("}")
        if rng.random() < 0.75:
            high = ["\\infty"] if rng.random() < 0.35 else [self.variable(rng)]
            out += ["^", "{", *high, "}"]
        return out + body

    def _factorial(self, rng: np.random.Generator, depth: int) -> list[str]:
        return [*self.atom(rng), "!"]


# --- configuration -------------------------------------------------------------------------------


def load_grammar(source: str | Path | Mapping[str, Any] | None = None) -> Grammar:
    """The default grammar, or the defaults overridden by a YAML file or a mapping.

    Raises:
        ConfigError: the file is unreadable or not a mapping, or a field is unknown or holds a bad
            value; the message names the file and the field (``factor.fraction``).
    """
    if source is None:
        return _cached_default()
    if isinstance(source, Mapping):
        name, user = "grammar config", source
    else:
        name, user = str(source), _read(Path(source))
    config = _merge(_read(DEFAULT_PATH), user, name, "")
    _validate(config, name)
    return Grammar(config)


@functools.cache
def _cached_default() -> Grammar:
    config = _read(DEFAULT_PATH)
    _validate(config, str(DEFAULT_PATH))
    return Grammar(config)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read grammar config: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a grammar config must be a mapping of fields")
    return data


def _merge(default: Mapping[str, Any], user: Mapping[str, Any], name: str, prefix: str) -> dict:
    merged = copy.deepcopy(dict(default))
    for key, value in user.items():
        field = f"{prefix}{key}"
        if key not in default:
            known = ", ".join(sorted(default))
            raise ConfigError(f"{name}: unknown field {field!r} (known here: {known})")
        replace_whole = prefix == "symbols." or not isinstance(default[key], Mapping)
        if replace_whole:
            merged[key] = value
        elif not isinstance(value, Mapping):
            raise ConfigError(f"{name}: field {field!r} must be a mapping, got {value!r}")
        else:
            merged[key] = _merge(default[key], value, name, f"{field}.")
    return merged


def _number(value: Any, name: str, field: str, check: Callable[[float], bool], want: str) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not check(value):
        raise ConfigError(f"{name}: field {field!r} must be {want}, got {value!r}")


def _weights(block: Any, name: str, field: str) -> None:
    if not isinstance(block, Mapping) or not block:
        raise ConfigError(f"{name}: field {field!r} must be a non-empty mapping of weights")
    for key, value in block.items():
        _number(value, name, f"{field}.{key}", lambda v: v >= 0, "a non-negative weight")
    if not sum(block.values()) > 0:
        raise ConfigError(f"{name}: field {field!r} has no positive weight")


def _validate(config: dict[str, Any], name: str) -> None:
    """Check every field in place; pool keys are normalized to strings (YAML reads ``1`` as int)."""
    for block, values in config.items():
        if block in _WEIGHT_BLOCKS:
            _weights(values, name, block)
        elif block == "symbols":
            for pool, weights in values.items():
                field = f"symbols.{pool}"
                if isinstance(weights, Mapping):
                    weights = values[pool] = {str(k): v for k, v in weights.items()}
                _weights(weights, name, field)
                for key in weights:
                    tokens = key.split() if pool == "brackets" else [key]
                    want = 2 if pool == "brackets" else 1
                    bad = len(tokens) != want or any(
                        t in STRUCTURAL or not can_draw(t) for t in tokens
                    )
                    if bad:
                        raise ConfigError(
                            f"{name}: field {field!r} holds {key!r}, which is not "
                            + ("an 'open close' pair" if want == 2 else "a drawable symbol")
                        )
        else:
            for key, value in values.items():
                field = f"{block}.{key}"
                if key in _INTEGERS:
                    _number(value, name, field, lambda v: v >= 1 and v == int(v), "an integer >= 1")
                else:
                    _number(value, name, field, lambda v: 0 <= v <= 1, "a number in [0, 1]")
