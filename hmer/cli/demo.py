"""``hmer demo``: synthetic data -> tiny model trained on CPU -> held-out ExpRate -> recognition.

The defaults are the README's four-minute demo; ``--budget 10s --n-train 16 --n-test 2`` is a
smoke run of the same path in seconds (tests/test_packaging.py runs it on an installed wheel).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hmer.cli import positive_int


def _demo(args: argparse.Namespace) -> int:
    from hmer.demo import run_demo

    return run_demo(
        args.out, budget=args.budget, n_train=args.n_train, n_test=args.n_test, seed=args.seed
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo", help="end to end on CPU: synthetic handwriting, train, evaluate, recognize"
    )
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    demo.add_argument("--budget", default="4m", help="wall-clock budget of training + scoring")
    demo.add_argument(
        "--n-train", type=positive_int, default=4000, help="synthetic training expressions"
    )
    demo.add_argument(
        "--n-test", type=positive_int, default=200, help="held-out synthetic expressions"
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
