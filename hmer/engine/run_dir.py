"""A run's directory, made consistent whenever the run starts or resumes, however its last process
ended (SIGKILL and power cuts included)::

    config.yaml              the resolved config
    metrics.jsonl            one JSON object per line (start, train, val, plan, test, end records)
    last.pt                  full training state (for --resume)
    best.pt                  inference weights that scored best on validation
    results.json             final test scores (beam search), with predictions_<split>.tsv
    curves.png               loss / ExpRate curves

A process can die mid-save, leaving the atomic writer's temp file, and after logging steps past
its last checkpoint, which the resumed run logs again. So, on rank 0, before anything is written:

- temp files of :func:`hmer.io.atomic_open` in the directory are removed (nothing else is);
- ``metrics.jsonl`` is rewound to the checkpoint's step (:func:`rewind_metrics`), so that each
  kind of record has strictly increasing steps however often the run was killed and resumed;
- a run whose log ends with its ``end`` record is finished: resuming it changes nothing
  (:func:`finished_result`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hmer.checkpoint import load_checkpoint
from hmer.config import save_config
from hmer.engine import distributed
from hmer.engine.metrics_log import read_metrics, record_line
from hmer.errors import HmerError
from hmer.io import atomic_write_text

if TYPE_CHECKING:
    import torch

    from hmer.config import Config
    from hmer.data.vocab import Vocab

#: Names of :func:`hmer.io.atomic_open`'s temp files: ``tempfile.mkstemp`` with prefix
#: ``.<target name>.`` and suffix ``.tmp`` puts eight random characters between them.
STALE_TEMP = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")

#: Records logged after the save at their step: the final evaluation and the closing record.
#: A run resumed from that save evaluates again, so they go (``interrupted`` records stay: the
#: resumed run never writes them again, and they tell where the run was stopped).
AFTER_SAVE = frozenset({"test", "end"})


@dataclass
class RunResult:
    """What :func:`hmer.engine.train.train` returns: the final step, how it ended and the final
    scores."""

    run_dir: Path
    step: int
    status: str  # "finished" | "interrupted"
    best_val_exprate: float | None
    test: dict[str, dict[str, float]]
    signum: int | None = None


def open_run_dir(
    run_dir: Path, cfg: Config, resume: bool, main: bool, say: Callable[[str], None]
) -> dict[str, Any] | None:
    """The checkpoint to resume from (None for a new run), once the directory is ready: created,
    cleaned and rewound (see the module docstring), ``config.yaml`` written. ``main``: this is
    rank 0 (the only one to touch files); ``say``: prints what was cleaned."""
    payload = None
    if resume:
        payload = load_checkpoint(run_dir / "last.pt", need_train_state=True)
    elif main and (run_dir / "last.pt").exists():
        raise HmerError(f"{run_dir} already holds a run (last.pt): use --resume or another --out")
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        removed = remove_stale_temps(run_dir)
        if removed:
            say(f"removed {len(removed)} temp file(s) of saves cut short: {', '.join(removed)}")
        if payload is not None:
            step = int(payload["train_state"]["step"])
            dropped = rewind_metrics(run_dir / "metrics.jsonl", step)
            if dropped:
                say(f"dropped {dropped} metrics record(s) logged after last.pt (step {step})")
        save_config(cfg, run_dir / "config.yaml")
    distributed.barrier()
    return payload


def best_weights(run_dir: Path, vocab: Vocab, main: bool) -> dict[str, torch.Tensor] | None:
    """``best.pt``'s weights on every rank (rank 0 reads them, ``main``), None without one."""
    weights = None
    if main and (run_dir / "best.pt").exists():
        weights = load_checkpoint(run_dir / "best.pt", expected_vocab=vocab)["model"]
    return distributed.broadcast_object(weights)


def remove_stale_temps(folder: Path) -> list[str]:
    """Remove the atomic writer's temp files directly in ``folder``; their names, sorted."""
    removed = sorted(
        p.name for p in folder.iterdir() if STALE_TEMP.fullmatch(p.name) and p.is_file()
    )
    for name in removed:
        (folder / name).unlink(missing_ok=True)
    return removed


def rewind_metrics(path: Path, step: int) -> int:
    """Make ``path`` hold what had been logged when the checkpoint at ``step`` was saved: no
    record past ``step``, no :data:`AFTER_SAVE` record at it, no line a crash cut short.
    Rewritten atomically, and only when that changes it. Returns the number of records dropped.
    """
    if not path.is_file():
        return 0
    records = read_metrics(path)
    kept = [r for r in records if not _after(r, step)]
    text = "".join(record_line(r) for r in kept)
    if text != path.read_text(encoding="utf-8"):
        atomic_write_text(path, text)
    return len(records) - len(kept)


def _after(record: dict[str, Any], step: int) -> bool:
    """Whether ``record`` was logged after the save at ``step``. Records without a step (the
    start record) come first."""
    at = record.get("step")
    if not isinstance(at, int):
        return False
    return at > step or (at == step and record.get("kind") in AFTER_SAVE)


def finished_result(run_dir: Path) -> RunResult | None:
    """The result of the run in ``run_dir`` if it finished (its log ends with the ``end`` record,
    the last thing a run writes), from its log; else None."""
    path = run_dir / "metrics.jsonl"
    records = read_metrics(path) if path.is_file() else []
    if not records or records[-1].get("kind") != "end":
        return None
    end = records[-1]
    step = int(end["step"])
    scores = {
        r["split"]: {k: v for k, v in r.items() if k not in ("kind", "step", "split", "method")}
        for r in records
        if r.get("kind") == "test" and r.get("step") == step
    }
    return RunResult(run_dir, step, "finished", end.get("best_val_exprate"), scores)
