"""THE checkpoint format: one ``torch.save``'d dict of plain Python types and tensors.

Layout (``version`` 1)::

    {"format": "hmer-checkpoint", "version": 1,
     "config": <plain dict of hmer.config.Config>, "vocab": Vocab.to_dict(),
     "model": <state dict: the weights inference uses (the EMA weights when EMA is on)>,
     "code_version": "git describe or package version",
     "meta": {...}                      # optional: step, validation ExpRate, ...
     "train_state": {...}}              # training checkpoints only (last.pt): see hmer.engine.train

Exported inference weights are the same format with an fp16 ``model`` and no ``train_state``.
Every file is written atomically (temp file in the same folder, fsync, rename) and read with
``weights_only=True``, so loading a checkpoint never runs code from it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import torch

from hmer.errors import CheckpointError

if TYPE_CHECKING:
    from hmer.config import Config
    from hmer.data.vocab import Vocab
    from hmer.model.hmer_model import HmerModel

FORMAT = "hmer-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "config", "vocab", "model", "code_version")


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file beside ``path``; on success flush, fsync and rename it over ``path``.

    A crash (or an exception in the ``with`` body) leaves any previous ``path`` untouched and no
    temp file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows it
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``git describe --always --dirty`` of the source tree, else the installed package version."""
    root = Path(__file__).resolve().parents[2]
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
        from importlib.metadata import version

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
    from hmer.data.vocab import Vocab

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


def export_weights(src: str | Path, dst: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """Write the small inference file: ``src``'s inference weights in ``dtype``, config, vocabulary.

    Floating-point tensors are cast (BatchNorm counters and other integer buffers are kept).
    """
    payload = load_checkpoint(src)
    weights = {
        k: v.to(dtype) if torch.is_floating_point(v) else v for k, v in payload["model"].items()
    }
    meta = dict(payload.get("meta", {}))
    meta.update(exported_from=str(src), source_code_version=payload["code_version"])
    return save_checkpoint(
        dst, model=weights, config=payload["config"], vocab=payload["vocab"], meta=meta
    )


def load_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[HmerModel, Vocab, Config]:
    """A training checkpoint or exported weights -> (model, eval mode, on device; vocab; config).

    fp16 exported weights are loaded into an fp32 model (casting on copy).
    """
    from hmer.config import config_from_dict
    from hmer.data.vocab import Vocab
    from hmer.model.hmer_model import HmerModel

    payload = load_checkpoint(path)
    config = config_from_dict(payload["config"], source=f"{path} (config)")
    vocab = Vocab.from_dict(payload["vocab"])
    model = HmerModel(
        config.model, len(vocab), pad_id=vocab.pad_id, sos_id=vocab.sos_id, eos_id=vocab.eos_id
    )
    load_state_dict_checked(model, payload["model"], path)
    return model.to(device).eval(), vocab, config


def rng_state() -> dict[str, Any]:
    """Every RNG the loop touches: Python, NumPy (as a tensor), torch CPU, CUDA if initialised."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(_as_tuple(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": np_state["bit_generator"],
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    """``random.setstate`` wants nested tuples; a round trip may have produced lists."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value
