"""``hmer viz …``: pictures that explain the model (``hmer viz pos-enc --out FILE.png``)."""

from __future__ import annotations

import argparse

from hmer.cli import positive_int


def _multiple_of_4(text: str) -> int:
    value = positive_int(text)
    if value % 4:
        raise argparse.ArgumentTypeError(
            f"must be a multiple of 4 (x/y halves of sin/cos pairs), got {text}"
        )
    return value


def _pos_enc(args: argparse.Namespace) -> int:
    from hmer.viz import draw_pos_enc

    path = draw_pos_enc(
        args.out,
        height=args.height,
        width=args.width,
        dim=args.dim,
        channels=args.channels,
        temperature=args.temperature,
    )
    print(f"wrote {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    viz = subparsers.add_parser("viz", help="draw pictures that explain the model")
    pictures = viz.add_subparsers(dest="picture", required=True, metavar="PICTURE")

    pos_enc = pictures.add_parser(
        "pos-enc", help="heat maps of x-half and y-half channels of the 2D positional encoding"
    )
    pos_enc.add_argument("--out", required=True, help="image file to write (e.g. pos_enc.png)")
    pos_enc.add_argument("--height", type=positive_int, default=16, help="grid rows (cells)")
    pos_enc.add_argument("--width", type=positive_int, default=64, help="grid columns (cells)")
    pos_enc.add_argument("--dim", type=_multiple_of_4, default=256, help="channels")
    pos_enc.add_argument(
        "--channels", type=int, nargs="+", default=None, help="channels to draw (default: 3 x, 3 y)"
    )
    pos_enc.add_argument("--temperature", type=float, default=10000.0, help="frequency base")
    pos_enc.set_defaults(func=_pos_enc)
