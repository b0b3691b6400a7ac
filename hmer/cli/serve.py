"""hmer serve: a local page to write formulas by hand and read them as LaTeX (hmer.serve)."""

from __future__ import annotations

import argparse
import sys

from hmer.card import read_low_score
from hmer.cli.predict import add_model_arguments, choose_engine, load_recognizer, model_file


def run_serve(args: argparse.Namespace) -> int:
    from hmer.serve import make_server

    recognizer = load_recognizer(args, choose_engine(args))
    low_score = read_low_score(model_file(args))
    server = make_server(recognizer, args.host, args.port, beam=args.beam, low_score=low_score)
    host, port = server.server_address[:2]
    print(f"hmer serve: open http://{host}:{port}/ (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="a local web page: write a formula with a mouse, pen or finger, read its LaTeX",
        description=__doc__,
    )
    add_model_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free one)")
    p.set_defaults(func=run_serve)
