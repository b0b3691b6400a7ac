"""Score a model on samples: greedy (cheap, for validation) or beam search (the final test numbers).

Samples are decoded in pixel-capped batches of similar sizes; under torchrun each rank decodes
its share and the predictions are gathered, so every rank returns the same full result.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from hmer.checkpoint import load_model
from hmer.data.batching import BucketBatchSampler, collate
from hmer.data.datasets import Sample, load_samples
from hmer.data.preprocess import to_tensor
from hmer.data.vocab import Vocab
from hmer.engine import distributed
from hmer.engine.data import load_split, split_validation
from hmer.errors import DataError
from hmer.io import atomic_write_text
from hmer.metrics import equivalence_exprate, exprate, expression_table
from hmer.paths import crohme_root
from hmer.search.torch_backend import beam_search, greedy

if TYPE_CHECKING:
    from hmer.config import Config, DecodeConfig


@dataclass
class EvalResult:
    """One split scored: ``metrics`` has ``exprate``, ``le1``, ``le2`` (in %) and ``count``."""

    split: str
    method: str
    metrics: dict[str, float]
    predictions: list[list[str]]
    rows: list[Any] = field(default_factory=list)
    #: The search's score of each prediction (length-normalized log-probability).
    scores: list[float] = field(default_factory=list)
    seconds: float = 0.0


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when asked for; fp32 everywhere else."""
    if device.type == "cuda" and precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def eval_batches(samples: Sequence[Sample], batch_pixels: int, max_batch: int) -> list[list[int]]:
    """Indices of ``samples`` grouped into pixel-capped batches of similar image sizes."""
    sizes = [tuple(s.image.shape[:2]) for s in samples]
    sampler = BucketBatchSampler(sizes, max_pixels=batch_pixels, max_batch=max_batch, shuffle=False)
    return [list(batch) for batch in sampler]


@torch.no_grad()
def decode_samples(
    model: torch.nn.Module,
    samples: Sequence[Sample],
    vocab: Vocab,
    cfg: DecodeConfig,
    *,
    method: str = "beam",
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    max_len: int | None = None,
    batch_pixels: int | None = None,
    max_batch: int | None = None,
    progress: bool = False,
) -> list[tuple[list[str], float]]:
    """(predicted tokens, score) per sample, in the order of ``samples``; ``method`` is
    ``"greedy"`` or ``"beam"``; the score is the search's length-normalized log-probability.

    Under torchrun every rank decodes ``samples[rank::world_size]`` and all ranks get all results.
    """
    if method not in ("greedy", "beam"):
        raise ValueError(f"method must be 'greedy' or 'beam', got {method!r}")
    device = torch.device(device)
    rank, world = distributed.get_rank(), distributed.get_world_size()
    mine = list(range(rank, len(samples), world))
    batches = eval_batches(
        [samples[i] for i in mine],
        batch_pixels or cfg.batch_pixels,
        max_batch or cfg.max_batch,
    )
    limit = max_len or cfg.max_len
    was_training = model.training
    model.eval()
    local: dict[int, tuple[list[str], float]] = {}
    bar = None
    if progress and distributed.is_main():
        bar = tqdm(total=len(mine), desc=f"decode ({method})", unit="expr", leave=False)
    try:
        for batch_idx in batches:
            chosen = [mine[i] for i in batch_idx]
            batch = collate(
                [(to_tensor(samples[i].image), [], samples[i].name) for i in chosen], vocab.pad_id
            ).to(device, non_blocking=True)
            with autocast(device, precision):
                if method == "greedy":
                    hyps = greedy(model, batch.images, batch.image_mask, max_len=limit)
                else:
                    hyps = beam_search(
                        model,
                        batch.images,
                        batch.image_mask,
                        beam=cfg.beam,
                        max_len=limit,
                        length_penalty=cfg.length_penalty,
                        bidirectional=cfg.bidirectional,
                    )
            for index, hyp in zip(chosen, hyps, strict=True):
                local[index] = (vocab.decode(hyp.tokens), float(hyp.score))
            if bar is not None:
                bar.update(len(chosen))
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    merged: dict[int, tuple[list[str], float]] = {}
    for part in distributed.all_gather_objects(local):
        merged.update(part)
    return [merged[i] for i in range(len(samples))]


def evaluate_samples(
    model: torch.nn.Module,
    samples: Sequence[Sample],
    vocab: Vocab,
    cfg: DecodeConfig,
    *,
    split: str,
    method: str = "beam",
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    max_len: int | None = None,
    batch_pixels: int | None = None,
    max_batch: int | None = None,
    progress: bool = False,
) -> EvalResult:
    """Decode ``samples`` and score them against their canonical tokens (ExpRate, <=1, <=2)."""
    start = time.perf_counter()
    decoded = decode_samples(
        model,
        samples,
        vocab,
        cfg,
        method=method,
        device=device,
        precision=precision,
        max_len=max_len,
        batch_pixels=batch_pixels,
        max_batch=max_batch,
        progress=progress,
    )
    predictions = [tokens for tokens, _ in decoded]
    scores = [score for _, score in decoded]
    truths = [list(s.tokens) for s in samples]
    metrics = {
        k: int(v) if k == "count" else float(v) for k, v in exprate(predictions, truths).items()
    }
    metrics["exprate_equiv"] = equivalence_exprate(predictions, truths)
    published = [s.published for s in samples]
    if samples and all(p is not None for p in published):
        metrics["exprate_published"] = float(exprate(predictions, published)["exprate"])
    rows = expression_table([s.name for s in samples], truths, predictions, scores)
    return EvalResult(
        split=split,
        method=method,
        metrics=metrics,
        predictions=predictions,
        rows=list(rows),
        scores=scores,
        seconds=time.perf_counter() - start,
    )


def rows_to_tsv(rows: Sequence[Any]) -> str:
    """Per-expression rows (dataclasses, dicts or tuples from ``expression_table``) as TSV text."""
    records = [_as_record(row) for row in rows]
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    if records and isinstance(records[0], dict):
        header = list(records[0])
        writer.writerow(header)
        writer.writerows([[_cell(r.get(k)) for k in header] for r in records])
    else:
        writer.writerows([[_cell(v) for v in r] for r in records])
    return out.getvalue()


def _as_record(row: Any) -> Any:
    if is_dataclass(row) and not isinstance(row, type):
        return asdict(row)
    if hasattr(row, "_asdict"):
        return row._asdict()
    return row


def _cell(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def write_results(
    out_dir: str | Path, results: Sequence[EvalResult], extra: dict[str, Any] | None = None
) -> Path:
    """``out_dir/results.json`` (metrics per split) + ``out_dir/predictions_<split>.tsv``."""
    out_dir = Path(out_dir)
    for result in results:
        atomic_write_text(out_dir / f"predictions_{result.split}.tsv", rows_to_tsv(result.rows))
    summary: dict[str, Any] = dict(extra or {})
    summary["splits"] = {
        r.split: {**r.metrics, "method": r.method, "seconds": round(r.seconds, 3)} for r in results
    }
    path = out_dir / "results.json"
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
    return path


def format_table(results: Sequence[EvalResult]) -> str:
    """The familiar table: one row per split, ExpRate / <=1 / <=2 in %, then the equivalence
    ExpRate and, for test sets in the BTTR/CoMER layout, the published-caption ExpRate (the
    number to compare with papers; "-" where the captions are not given)."""
    lines = [
        f"{'split':<10} {'method':<8} {'count':>6} {'ExpRate':>8} {'<=1':>7} {'<=2':>7} "
        f"{'equiv':>7} {'published':>9}"
    ]
    for r in results:
        m = r.metrics
        published = m.get("exprate_published")
        lines.append(
            f"{r.split:<10} {r.method:<8} {int(m.get('count', 0)):>6} "
            f"{m['exprate']:>8.2f} {m['le1']:>7.2f} {m['le2']:>7.2f} "
            f"{m.get('exprate_equiv', float('nan')):>7.2f} "
            + (f"{published:>9.2f}" if published is not None else f"{'-':>9}")
        )
    return "\n".join(lines)


#: The split name that scores a checkpoint on its own run's held-out validation slice.
VALIDATION = "validation"


def validation_samples(config: Config, data: str | Path | None = None) -> list[Sample]:
    """The validation slice that the run behind ``config`` held out of its training data: the
    same formulas, loaded as its training loaded them (:func:`~hmer.engine.data.load_split`) and
    drawn with its ``data.val_fraction`` and ``data.val_seed``, from ``data`` (default: the
    run's ``data.train``) at its ``data.train_split``."""
    if config.data.val_on_train or config.data.val_fraction <= 0:
        raise DataError(
            "this checkpoint's run held out no validation slice "
            f"(data.val_fraction={config.data.val_fraction}, "
            f"data.val_on_train={config.data.val_on_train})"
        )
    source = config.data.train if data is None else str(data)
    everything = load_split(config, source, config.data.train_split, limit=config.data.limit)
    return split_validation(everything, config.data.val_fraction, config.data.val_seed)[1]


def _test_folder(data: str | Path | None) -> Path:
    """``data``, or the CROHME InkML folder when none is given."""
    if data is not None:
        return Path(data)
    root = crohme_root()
    if root is None:
        raise DataError("no --data given and no CROHME folder found (set HMER_CROHME)")
    return root / "inkml"


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    data: str | Path | None = None,
    splits: Sequence[str] = ("2014", "2016", "2019"),
    beam: int | None = None,
    length_penalty: float | None = None,
    greedy_only: bool = False,
    batch_size: int | None = None,
    device: str = "auto",
    out_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> list[EvalResult]:
    """Load ``checkpoint`` and score it on each of ``splits`` under ``data``; the split
    ``"validation"`` is the run's own held-out slice of its training data
    (:func:`validation_samples`).

    ``data`` defaults to the CROHME InkML folder (``crohme_root()/inkml``); images are rendered and
    preprocessed with the checkpoint's own config, i.e. exactly as in training. Predictions go
    to ``out_dir`` (default: beside the checkpoint) as TSV, with ``results.json``.
    ``beam`` / ``length_penalty``: override the checkpoint's ``decode`` settings, which
    ``results.json`` records under ``"decode"``. ``workers``: processes rendering InkML (None:
    all cores).
    """
    dev = distributed.resolve_device(device)
    model, vocab, config = load_model(checkpoint, dev)
    if beam is not None:
        config.decode.beam = beam
    if length_penalty is not None:
        config.decode.length_penalty = length_penalty
    workers = (os.cpu_count() or 1) if workers is None else workers
    config.data.load_workers = workers  # load_split (the validation slice) reads it from here
    folder = _test_folder(data) if any(split != VALIDATION for split in splits) else None
    results = []
    for split in splits:
        if split == VALIDATION:
            samples = validation_samples(config, data)
        else:
            samples, _ = load_samples(
                folder, split, render=config.render, preprocess=config.preprocess, workers=workers
            )
            if not samples:
                raise DataError(f"no samples for split {split!r}", source=str(folder))
        result = evaluate_samples(
            model,
            samples,
            vocab,
            config.decode,
            split=split,
            method="greedy" if greedy_only else "beam",
            device=dev,
            precision=config.train.precision,
            max_batch=batch_size,
            progress=progress,
        )
        results.append(result)
    out_dir = Path(out_dir) if out_dir is not None else Path(checkpoint).parent / "eval"
    source = folder if folder is not None else data or config.data.train
    extra = {"checkpoint": str(checkpoint), "data": str(source), "decode": asdict(config.decode)}
    write_results(out_dir, results, extra=extra)
    return results
