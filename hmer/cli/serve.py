"""hmer serve: a local page to write a formula, or give a picture of one, and read its LaTeX.

Listens on 127.0.0.1 (this computer only) unless --host says otherwise; the page has no login,
so listen beyond it (--host 0.0.0.0) only on a network you trust. The API is described at /docs.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from hmer.card import read_card, read_low_score, read_score_bins
from hmer.cli.predict import add_model_arguments, choose_engine, load_recognizer, model_file
from hmer.errors import HmerError


def run_serve(args: argparse.Namespace) -> int:
    from hmer.serve import LocalServer, make_app

    recognizer = load_recognizer(args, choose_engine(args))
    checkpoint = model_file(args)
    card = read_card(checkpoint) if checkpoint is not None else None
    app = make_app(
        recognizer,
        beam=args.beam,
        low_score=read_low_score(checkpoint),
        score_bins=read_score_bins(checkpoint),
        card=card,
    )
    try:
        server = LocalServer(app, args.host, args.port)
    except OSError as error:  # the port is taken, the address is not this computer's
        raise HmerError(f"cannot listen on {args.host}:{args.port}: {error.strerror}") from None
    print(f"hmer serve: open {server.url}/ (Ctrl-C stops)", file=sys.stderr, flush=True)
    # uvicorn stops on Ctrl-C, then raises it again for its caller: here, the normal way out.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="a local web page: write a formula (or give a picture of one), read its LaTeX",
        description=__doc__,
    )
    add_model_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free one)")
    p.set_defaults(func=run_serve)
