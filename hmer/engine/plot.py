"""Training curves from a run's ``metrics.jsonl``: loss and validation ExpRate against step, to PNG.

``metrics.jsonl`` holds one JSON object per line with a ``kind``: ``"train"`` lines carry
``step`` and ``loss`` (and ``lr``), ``"val"`` lines carry ``step`` and ``exprate`` (in %),
``"test"`` lines the final per-split ExpRates. Unknown kinds and keys are ignored.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from hmer.engine.metrics_log import read_metrics
from hmer.io import atomic_open


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw ``run_dir/metrics.jsonl`` to ``out`` (default ``run_dir/curves.png``) and return it.

    Left: training loss (log scale) and learning rate; right: validation ExpRate, with the final
    test ExpRates as labelled dots at the last step.
    """
    run_dir = Path(run_dir)
    records = read_metrics(run_dir / "metrics.jsonl")
    train = [r for r in records if r.get("kind") == "train" and "loss" in r]
    val = [r for r in records if r.get("kind") == "val" and "exprate" in r]
    test = [r for r in records if r.get("kind") == "test" and "exprate" in r]

    # A bare Figure (no pyplot): no global backend or figure registry, so nothing to close.
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    if train:
        steps = [r["step"] for r in train]
        ax_loss.plot(steps, [r["loss"] for r in train], color="tab:blue", label="train loss")
        if all(r["loss"] > 0 for r in train):
            ax_loss.set_yscale("log")
            ax_loss.yaxis.set_major_formatter(ScalarFormatter())
            ax_loss.yaxis.set_minor_formatter(ScalarFormatter())
        if all("lr" in r for r in train):
            ax_lr = ax_loss.twinx()
            ax_lr.plot(steps, [r["lr"] for r in train], color="tab:gray", lw=0.8, label="lr")
            ax_lr.set_ylabel("learning rate", color="tab:gray")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("loss")

    if val:
        ax_acc.plot([r["step"] for r in val], [r["exprate"] for r in val], "o-", label="validation")
    last_step = max((r.get("step", 0) for r in records), default=0)
    for r in test:
        label = f"{r.get('split', 'test')} ({r.get('method', 'beam')}): {r['exprate']:.1f}"
        ax_acc.plot([r.get("step", last_step)], [r["exprate"]], "s", label=label)
    ax_acc.set_xlabel("step")
    ax_acc.set_ylabel("ExpRate (%)")
    ax_acc.set_title("expression recognition rate")
    if val or test:
        ax_acc.legend(loc="lower right", fontsize="small")
    ax_acc.grid(alpha=0.3)
    ax_loss.grid(alpha=0.3)
    fig.suptitle(run_dir.name)

    out = Path(out) if out is not None else run_dir / "curves.png"
    with atomic_open(out, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    return out
