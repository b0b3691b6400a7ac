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

from hmer import __version__
from hmer.errors import HmerError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
