"""``hmer train``, ``hmer evaluate``, ``hmer plot``, ``hmer export-weights``, ``hmer model info``.

Thin: parse arguments, call the engine. ``python train.py ...`` at the repository root is the same
as ``hmer train ...``. A config is a shipped config's name (``tiny``, ``bttr``, ``cpu``, ``h200``)
or a YAML file (:func:`hmer.paths.config_path`).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from hmer.cli import IntermixedParser, non_negative_float, non_negative_int, positive_int
from hmer.data.vocab import Vocab
from hmer.errors import ConfigError, HmerError
from hmer.paths import CONFIG_ALIASES, config_path, shipped_configs


def _config_help() -> str:
    names = sorted(set(shipped_configs()) - set(CONFIG_ALIASES.values()))
    return f"a shipped config ({', '.join(names)}) or a YAML file"


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        nargs="?",
        help=f"{_config_help()}; optional with --resume, which reuses the run's",
    )
    parser.add_argument(
        "--config",
        dest="config_option",
        metavar="CONFIG",
        help="the same as the positional CONFIG",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted overrides, e.g. model.d_model=128 train.batch_pixels=2e6",
    )
    parser.add_argument(
        "--out", type=Path, help="run directory (default: runs/<config name>-<date>-<time>)"
    )
    parser.add_argument(
        "--time-budget",
        metavar="DURATION",
        help="wall-clock budget for the whole run, e.g. 90s, 8m, 1h: steps are planned to fit it",
    )
    parser.add_argument(
        "--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR from last.pt"
    )


def parse_train_args(argv: list[str]) -> argparse.Namespace:
    """Arguments of ``python train.py`` (options may come before or after the overrides)."""
    parser = IntermixedParser(prog="train.py", description="Train a handwritten-math recognizer.")
    add_train_arguments(parser)
    return parser.parse_args(argv)


def run_train(args: argparse.Namespace, started: float | None = None) -> int:
    """Exit code: 0 when the run finished, 128 + signal number when SIGINT/SIGTERM stopped it."""
    started = time.monotonic() if started is None else started
    from hmer.checkpoint import load_checkpoint
    from hmer.config import apply_overrides, config_from_dict, load_config
    from hmer.engine.distributed import shutdown
    from hmer.engine.train import train

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config and not Path(config).is_file():
        config, overrides = None, [config, *overrides]
    if args.config_option is not None:
        if config is not None:
            raise ConfigError(f"two configs given: {config} and --config {args.config_option}")
        config = args.config_option
    rank0 = os.environ.get("RANK", "0") == "0"  # torchrun: only rank 0 prints
    if args.resume is not None:
        if config is not None and rank0:
            print(f"note: --resume uses the config saved in {args.resume}; ignoring {config}")
        payload = load_checkpoint(args.resume / "last.pt", need_train_state=True)
        cfg = apply_overrides(
            config_from_dict(payload["config"], f"{args.resume}/last.pt"), overrides
        )
        run_dir = args.resume
    else:
        if config is None:
            raise ConfigError(f"no config given: name {_config_help()}, e.g. `hmer train tiny`")
        cfg = load_config(config_path(config), overrides)
        run_dir = args.out or Path("runs") / f"{Path(config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.time_budget is not None:
        cfg = apply_overrides(cfg, [f"train.time_budget={args.time_budget}"])
    try:
        result = train(cfg, run_dir, resume=args.resume is not None, started=started)
    finally:
        shutdown()
    if result.status == "interrupted" and result.signum is not None:
        return 128 + int(result.signum)
    if rank0:
        print(f"run directory: {result.run_dir}")
    return 0


def train_main(argv: list[str], started: float | None = None) -> int:
    """Entry point of the top-level ``train.py``: errors print one line, like ``hmer``."""
    try:
        return run_train(parse_train_args(argv), started)
    except HmerError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 128 + signal.SIGINT


def _evaluate(args: argparse.Namespace) -> int:
    from hmer.engine.evaluate import evaluate_checkpoint, format_table

    results = evaluate_checkpoint(
        args.checkpoint,
        data=args.data,
        splits=args.split,
        beam=args.beam,
        length_penalty=args.length_penalty,
        greedy_only=args.greedy,
        batch_size=args.batch_size,
        device=args.device,
        out_dir=args.out,
        workers=args.workers,
    )
    print(format_table(results))
    out = args.out or Path(args.checkpoint).parent / "eval"
    print(f"per-expression predictions: {out}/predictions_<split>.tsv")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from hmer.engine.plot import plot_run

    print(plot_run(args.run_dir, args.out))
    return 0


def _export(args: argparse.Namespace) -> int:
    from hmer.checkpoint import export_weights

    out = export_weights(args.checkpoints, args.out, overrides=args.set)
    averaged = f", the average of {len(args.checkpoints)}" if len(args.checkpoints) > 1 else ""
    print(f"{out} ({out.stat().st_size / 1e6:.1f} MB, fp16{averaged})")
    return 0


def _model_info(args: argparse.Namespace) -> int:
    from hmer.config import load_config
    from hmer.engine.build import build_model
    from hmer.model.summary import summary

    cfg = load_config(config_path(args.config), args.overrides)
    model = build_model(cfg, Vocab.crohme()).eval()
    # A typical one-line expression at this config's glyph scale.
    height = round(2 * cfg.render.symbol_height)
    print(f"{args.config}: {cfg.model.backbone} encoder, d_model {cfg.model.d_model}")
    print(summary(model, image_size=(height, 5 * height)))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model from a YAML config",
        description="Train a model (same as `python train.py`). Overrides come before options.",
    )
    add_train_arguments(p)
    p.set_defaults(func=run_train)

    p = subparsers.add_parser(
        "evaluate",
        help="score a checkpoint on test splits (ExpRate / <=1 / <=2)",
        description="Decode test splits with a checkpoint and print the ExpRate table.",
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="a .pt checkpoint or weights")
    p.add_argument(
        "--data",
        type=Path,
        help="InkML folder, BTTR folder/zip or image folder + table (default: CROHME InkML)",
    )
    p.add_argument(
        "--split",
        nargs="+",
        default=["2014", "2016", "2019"],
        help="splits to score; 'validation' is the run's own held-out slice of its training data",
    )
    p.add_argument(
        "--beam", type=positive_int, help="beam width (default: the checkpoint's decode.beam)"
    )
    p.add_argument(
        "--length-penalty",
        type=non_negative_float,
        help="beam scores are log p / (length + 1) ** this (default: the checkpoint's)",
    )
    p.add_argument("--greedy", action="store_true", help="greedy decoding instead of beam search")
    p.add_argument("--batch-size", type=positive_int, help="max expressions per batch")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", type=Path, help="where TSVs + results.json go (default: beside CKPT)")
    p.add_argument(
        "--workers",
        type=non_negative_int,
        help="processes rendering InkML; 0 renders in this process (default: all cores)",
    )
    p.set_defaults(func=_evaluate)

    p = subparsers.add_parser("plot", help="draw loss / ExpRate curves of a run to PNG")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--out", type=Path, help="PNG path (default RUN_DIR/curves.png)")
    p.set_defaults(func=_plot)

    p = subparsers.add_parser(
        "export-weights",
        help="write small fp16 inference weights from a checkpoint (several: their average)",
    )
    p.add_argument(
        "checkpoints",
        type=Path,
        nargs="+",
        metavar="CKPT",
        help="checkpoints of one model; several are averaged tensor by tensor (a model soup)",
    )
    p.add_argument("out", type=Path, metavar="OUT")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change the file's config, e.g. --set render.symbol_height=20 (repeatable; "
        "model.* cannot change)",
    )
    p.set_defaults(func=_export)

    p = subparsers.add_parser("model", help="model tools")
    model_sub = p.add_subparsers(dest="model_command", required=True, metavar="SUBCOMMAND")
    q = model_sub.add_parser("info", help="parameters, sizes and FLOPs of a config's model")
    q.add_argument("config", metavar="CONFIG", help=_config_help())
    q.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    q.set_defaults(func=_model_info)
