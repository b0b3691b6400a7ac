"""Write the model card of a weights file from its training run and its `hmer evaluate` results.

    python scripts/model_card.py hmer/assets/model.pt --run runs/cpu \\
        --beam-results runs/eval-beam --greedy-results runs/eval-greedy \\
        --command "python train.py configs/cpu.yaml ..." --machine "2-core CPU ..." \\
        [--name "CPU starter"] [--notes "what it is not good at"]

Writes ``NAME.json`` beside the weights (read by ``hmer.card``: ``hmer predict`` and ``hmer
serve`` use its ``low_score`` entry) and ``MODEL_CARD.md`` in the same folder, for people. Every
figure comes from the files named: ExpRate / <=1 / <=2 from ``results.json``, the score-vs-
correctness relation from the beam ``predictions_<split>.tsv`` of ``--calibrate-on``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from hmer.card import card_path
from hmer.io import atomic_write_text
from hmer.metrics import low_score_threshold, score_bins

#: "A low score": readings below it were right at most this often on the calibration split.
LOW_SCORE_EXPRATE = 5.0


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_predictions(path: Path) -> tuple[list[float], list[bool]]:
    """(score, right) per expression of a ``predictions_<split>.tsv``."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if not rows or "score" not in rows[0]:
        raise SystemExit(f"{path}: no score column (evaluate with this version of hmer)")
    return [float(r["score"]) for r in rows], [int(r["distance"]) == 0 for r in rows]


def training_summary(run: Path) -> dict[str, Any]:
    records = read_jsonl(run / "metrics.jsonl")
    start = next(r for r in records if r["kind"] == "start")
    end = [r for r in records if r["kind"] == "end"][-1]
    val = [r for r in records if r["kind"] == "val"]
    best = max(val, key=lambda r: (r["exprate"], -r["step"])) if val else None
    samples = sum(end["samples_per_rank"])
    return {
        "run": str(run),
        "parameters": start["parameters"],
        "train_samples": start["train_samples"],
        "val_samples": start["val_samples"],
        "steps": end["step"],
        "samples_seen": samples,
        "epochs": round(samples / start["train_samples"], 1),
        "wall_s": round(end["elapsed_s"], 1),
        "best_val": best and {k: best[k] for k in ("step", "exprate", "le1", "le2")},
        "val_curve": [(r["step"], round(r["exprate"], 2)) for r in val],
    }


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def markdown(card: dict[str, Any]) -> str:
    t = card["training"]
    lines = [
        f"# {card['name']}",
        "",
        card["summary"],
        "",
        "## Scores (ExpRate against hmer's normalization of the CROHME InkML truth)",
        "",
        "| split | decoding | count | ExpRate | ≤1 | ≤2 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for method, splits in card["scores"].items():
        for split, m in splits.items():
            lines.append(
                f"| {split} | {method} | {m['count']} | **{m['exprate']:.2f}** | "
                f"{m['le1']:.2f} | {m['le2']:.2f} |"
            )
    low = card["low_score"]
    lines += [
        "",
        f"Reproduce: `{card['reproduce']}` (add `--greedy` for the greedy rows).",
        "",
        "## What a score means",
        "",
        f"The score of a reading is its length-normalized log-probability (0 = certain). On "
        f"CROHME {card['calibration']['split']} ({card['calibration']['method']}), by fifths "
        "of the readings sorted by score:",
        "",
        "| score from | to | readings | right (%) |",
        "| --- | --- | --- | --- |",
    ]
    for b in card["calibration"]["bins"]:
        lines.append(f"| {b['low']:.3f} | {b['high']:.3f} | {b['count']} | {b['exprate']:.1f} |")
    if low is not None:
        lines += [
            "",
            f"Readings scoring below **{low['threshold']:.3f}** ({low['count']} of them) were "
            f"right {low['exprate']:.1f}% of the time: `hmer predict` and `hmer serve` say so "
            "when a reading scores that low.",
        ]
    lines += [
        "",
        "## Training",
        "",
        f"- Data: {card['data']}",
        f"- Command: `{card['command']}`",
        f"- Config: {card['config']}",
        f"- Machine: {card['machine']}",
        f"- Commit: {card['commit']}",
        f"- Parameters: {t['parameters']:,}; {t['steps']:,} steps, {t['samples_seen']:,} "
        f"samples (~{t['epochs']} epochs of {t['train_samples']:,}); wall time "
        f"{t['wall_s'] / 60:.1f} min",
        f"- Validation (greedy, {t['val_samples']} held-out training expressions, whole formulas "
        f"held out): best ExpRate {t['best_val']['exprate']:.2f} at step {t['best_val']['step']};"
        " curve " + ", ".join(f"{exprate:.2f} at {step:,}" for step, exprate in t["val_curve"]),
        f"- Weights: `{card['weights']}`, fp16, {card['weights_bytes'] / 1e6:.1f} MB, sha256 "
        f"`{card['weights_sha256'][:16]}…`",
        "",
        "## What it is not good at",
        "",
        card["notes"],
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("--run", type=Path, required=True, help="the training run directory")
    parser.add_argument("--beam-results", type=Path, required=True)
    parser.add_argument("--greedy-results", type=Path)
    parser.add_argument("--calibrate-on", default="2014", help="split for the score relation")
    parser.add_argument("--command", required=True, help="the training command, as run")
    parser.add_argument("--machine", required=True)
    parser.add_argument("--name", default="hmer CPU starter model")
    parser.add_argument("--summary", default="")
    parser.add_argument("--notes", default="")
    parser.add_argument(
        "--data",
        default="the official CROHME training set (InkML, 8,835 expressions by hundreds of "
        "writers), less the whole formulas held out for validation",
    )
    parser.add_argument("--commit", help="the code that trained it (default: HEAD)")
    parser.add_argument("--config", default="configs/cpu.yaml")
    args = parser.parse_args()

    scores = {"beam": json.loads((args.beam_results / "results.json").read_text())["splits"]}
    if args.greedy_results is not None:
        greedy = json.loads((args.greedy_results / "results.json").read_text())["splits"]
        scores["greedy"] = greedy
    split = args.calibrate_on
    values, right = read_predictions(args.beam_results / f"predictions_{split}.tsv")
    found = low_score_threshold(values, right, LOW_SCORE_EXPRATE)
    low = None
    if found is not None:
        threshold, rate, count = found
        low = {
            "threshold": round(threshold, 4),
            "exprate": round(rate, 2),
            "count": count,
            "split": split,
            "method": "beam",
        }
    data = args.weights.read_bytes()
    card = {
        "name": args.name,
        "summary": args.summary,
        "weights": str(args.weights),
        "weights_bytes": len(data),
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        "commit": args.commit or commit(),
        "data": args.data,
        "config": args.config,
        "command": args.command,
        "machine": args.machine,
        "training": training_summary(args.run),
        "scores": scores,
        "metric": "ExpRate against hmer's normalization of the CROHME InkML truth",
        "reproduce": f"hmer evaluate --checkpoint {args.weights} --split "
        + " ".join(scores["beam"]),
        "calibration": {"split": split, "method": "beam", "bins": score_bins(values, right, 5)},
        "low_score": low,
        "notes": args.notes,
    }
    atomic_write_text(card_path(args.weights), json.dumps(card, indent=1) + "\n")
    atomic_write_text(args.weights.parent / "MODEL_CARD.md", markdown(card))
    print(f"wrote {card_path(args.weights)} and {args.weights.parent / 'MODEL_CARD.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
