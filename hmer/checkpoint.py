"""THE checkpoint format: one ``torch.save``'d dict of plain Python types and tensors.

Layout (``version`` 1)::

    {"format": "hmer-checkpoint", "version": 1,
     "config": <plain dict of hmer.config.Config>, "vocab": Vocab.to_dict(),
     "model": <state dict: the weights inference uses (the EMA weights when EMA is on)>,
     "code_version": "git describe or package version",
     "meta": {...}                      # optional: step, validation ExpRate, ...
     "train_state": {...}}              # training checkpoints only (last.pt): see hmer.engine.train

Exported inference weights are the same format with an fp16 ``model`` and no ``train_state``.
Every file is written atomically (:mod:`hmer.io`) and read with ``weights_only=True``, so
loading a checkpoint never runs code from it.

Training and inference both read and write checkpoints through this module; it does not import
:mod:`hmer.engine` (what only training needs, such as the RNG state, lives there:
:mod:`hmer.engine.rng`).
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Mapping, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hmer.config import apply_overrides, config_from_dict, config_to_dict
from hmer.data.vocab import Vocab
from hmer.errors import CheckpointError
from hmer.io import atomic_open

if TYPE_CHECKING:
    from hmer.config import Config
    from hmer.model.hmer_model import HmerModel

FORMAT = "hmer-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "config", "vocab", "model", "code_version")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``git describe --always --dirty`` of the source tree, else the installed package version."""
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        if out.stdout.strip():
            return "git:" + out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return "hmer " + version("hmer")
    except Exception:
        return "unknown"


def save_checkpoint(
    path: str | Path,
    *,
    model: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    vocab: Mapping[str, Any],
    meta: Mapping[str, Any] | None = None,
    train_state: Mapping[str, Any] | None = None,
) -> Path:
    """Write one checkpoint atomically. ``config``/``vocab`` are plain dicts (``to_dict`` forms)."""
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "config": dict(config),
        "vocab": dict(vocab),
        "model": {k: v.detach().cpu() for k, v in model.items()},
        "code_version": code_version(),
        "meta": dict(meta or {}),
    }
    if train_state is not None:
        payload["train_state"] = dict(train_state)
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)
    return Path(path)


def load_checkpoint(
    path: str | Path, *, expected_vocab: Vocab | None = None, need_train_state: bool = False
) -> dict[str, Any]:
    """Read and validate a checkpoint on CPU with ``weights_only=True``.

    Raises CheckpointError naming the file for: a missing or unreadable file, a truncated or
    corrupt file, something that is not an hmer checkpoint, a missing key, or a vocabulary that
    differs from ``expected_vocab``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, bad pickle, disallowed global: all "unreadable"
        raise CheckpointError(
            f"{path}: cannot read checkpoint (truncated or corrupt file?): {error}"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an hmer checkpoint (no format={FORMAT!r} marker)")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload.get('version')!r}, "
            f"this code reads {VERSION}"
        )
    required = (*REQUIRED_KEYS, "train_state") if need_train_state else REQUIRED_KEYS
    for key in required:
        if key not in payload:
            raise CheckpointError(f"{path}: checkpoint is missing the key {key!r}")
    if expected_vocab is not None:
        check_vocab(payload, expected_vocab, path)
    return payload


def check_vocab(payload: Mapping[str, Any], expected: Vocab, path: str | Path) -> None:
    """CheckpointError unless the checkpoint's vocabulary is ``expected`` (same tokens, order)."""
    try:
        stored = Vocab.from_dict(payload["vocab"])
    except Exception as error:
        raise CheckpointError(f"{path}: unreadable vocabulary in checkpoint: {error}") from error
    if stored != expected:
        ours, theirs = list(expected.tokens), list(stored.tokens)
        diff = sorted(set(ours) ^ set(theirs))[:8]
        raise CheckpointError(
            f"{path}: vocabulary mismatch: checkpoint has {len(theirs)} tokens, this run "
            f"{len(ours)}; differing tokens (first 8): {diff or 'same tokens, other order'}"
        )


def load_state_dict_checked(
    module: torch.nn.Module, state: Mapping[str, Any], path: str | Path
) -> None:
    """``module.load_state_dict`` (strict), turning key / shape mismatches into CheckpointError."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit the model: {error}") from error


def export_weights(
    sources: str | Path | Sequence[str | Path],
    dst: str | Path,
    dtype: torch.dtype = torch.float16,
    overrides: Sequence[str] = (),
) -> Path:
    """Write the small inference file: the inference weights of ``sources`` in ``dtype``, with the
    config and vocabulary of the last one.

    ``overrides`` (dotted ``KEY=VALUE``, as for training) change how the file reads images, e.g.
    ``render.symbol_height=20`` for weights that read more at larger glyphs than they were trained
    at; ``model.*`` describes the weights themselves and cannot be overridden (CheckpointError).

    Several sources are averaged tensor by tensor in fp32 (a "model soup"): meant for runs that
    continued one from another, whose weights lie in one basin. They must share the vocabulary
    and every weight's name and shape (CheckpointError naming the file otherwise). Floating-point
    tensors are cast; BatchNorm counters and other integer buffers are the last source's. The
    file's ``meta`` is the source's, or with several, their metas under ``sources``.
    """
    paths = [Path(sources)] if isinstance(sources, str | Path) else [Path(p) for p in sources]
    if not paths:
        raise CheckpointError("export_weights needs at least one checkpoint")
    payloads = [load_checkpoint(path) for path in paths]
    last = payloads[-1]
    vocab = Vocab.from_dict(last["vocab"])
    for path, payload in zip(paths[:-1], payloads[:-1], strict=True):
        check_vocab(payload, vocab, path)
        ours, theirs = payload["model"], last["model"]
        for key in sorted(ours.keys() | theirs.keys()):
            shapes = [tuple(w[key].shape) if key in w else "missing" for w in (ours, theirs)]
            if shapes[0] != shapes[1]:
                raise CheckpointError(
                    f"{path}: weights do not match {paths[-1]}'s ({key}: {shapes[0]} vs "
                    f"{shapes[1]}); only checkpoints of one model can be averaged"
                )
    weights = {}
    for key, value in last["model"].items():
        if torch.is_floating_point(value):
            total = sum(payload["model"][key].float() for payload in payloads)
            weights[key] = (total / len(payloads)).to(dtype)
        else:
            weights[key] = value
    # One source's training record (step, validation) describes the file; an average's does not.
    metas = [dict(p.get("meta", {})) for p in payloads]
    meta = metas[0] if len(metas) == 1 else {"sources": metas}
    meta.update(
        exported_from=", ".join(str(path) for path in paths),
        source_code_version=last["code_version"],
    )
    config = last["config"]
    if overrides:
        before = config_from_dict(config, f"{paths[-1]} (config)")
        after = apply_overrides(before, overrides)
        if after.model != before.model:
            raise CheckpointError(
                f"overrides {list(overrides)} change model.*, which describes the weights; "
                "an export cannot change it"
            )
        config = config_to_dict(after)
        meta["config_overrides"] = list(overrides)
    return save_checkpoint(dst, model=weights, config=config, vocab=last["vocab"], meta=meta)


def load_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[HmerModel, Vocab, Config]:
    """A training checkpoint or exported weights -> (model, eval mode, on device; vocab; config).

    fp16 exported weights are loaded into an fp32 model (casting on copy).
    """
    # Imported here: the network pulls in timm (about a second), which reading, writing and
    # exporting checkpoint files never need.
    from hmer.model.hmer_model import HmerModel

    payload = load_checkpoint(path)
    config = config_from_dict(payload["config"], source=f"{path} (config)")
    vocab = Vocab.from_dict(payload["vocab"])
    model = HmerModel(
        config.model, len(vocab), pad_id=vocab.pad_id, sos_id=vocab.sos_id, eos_id=vocab.eos_id
    )
    load_state_dict_checked(model, payload["model"], path)
    return model.to(device).eval(), vocab, config
