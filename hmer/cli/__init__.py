"""The ``hmer`` command. Thin: each module in this package registers its subcommands.

A module here defines ``register(subparsers)``, adding parsers whose ``func`` default takes the
parsed arguments and returns an exit code. Heavy imports (torch, the model) happen inside those
functions, so ``hmer --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from typing import TypeVar

from hmer import __version__
from hmer.errors import HmerError

Number = TypeVar("Number", int, float)


def positive_int(text: str) -> int:
    """An argparse ``type``: an integer above 0."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse ``type``: an integer, 0 or more."""
    return _not_below_zero(int(text), text)


def non_negative_float(text: str) -> float:
    """An argparse ``type``: a number, 0 or more (not NaN)."""
    return _not_below_zero(float(text), text)


def _not_below_zero(value: Number, text: str) -> Number:
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


class IntermixedParser(argparse.ArgumentParser):
    """A parser whose leaf commands take options between and after their positionals.

    Plain argparse stops filling positionals at the first option, so
    ``hmer export-weights A.pt B.pt --set K=V OUT.pt`` or ``python train.py CONFIG --out DIR
    KEY=VALUE`` would fail with "unrecognized arguments". Subcommand parsers inherit this class
    (``add_subparsers`` defaults to the parent's class).
    """

    _intermixing = False

    def parse_known_args(
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._subparsers is not None or self._intermixing:
            return super().parse_known_args(args, namespace)
        # parse_known_intermixed_args calls parse_known_args itself (up to Python 3.12)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def build_parser() -> argparse.ArgumentParser:
    parser = IntermixedParser(
        prog="hmer", description="Handwritten mathematical expressions to LaTeX."
    )
    parser.add_argument("--version", action="version", version=f"hmer {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HmerError as error:
        print(f"hmer: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
