"""ONNX export, and recognition with onnxruntime + numpy alone (no torch at inference).

``export_onnx(model, vocab, config, DIR)`` writes three files:

``encoder.onnx``
    ``image`` float32 ``(B, 1, H, W)`` (ink 1 on 0, padded bottom/right), ``image_mask`` bool
    ``(B, H, W)`` (True = padding) -> ``memory`` float32 ``(B, S, d_model)``, ``memory_mask``
    bool ``(B, S)`` (True = padding), and ``memory_keys``, ``memory_values`` float32
    ``(layers, B, heads, S, head_dim)``: every decoder layer's cross-attention keys/values of
    the image, computed once per image.
``decoder_step.onnx``
    One incremental decoder step. ``tokens`` int64 ``(N,)`` (the newest token of each row),
    ``memory_keys``, ``memory_values``, ``memory_mask``, and ``past_keys``, ``past_values``
    float32 ``(layers, N, heads, T, head_dim)`` (self-attention cache of the ``T`` tokens fed so
    far; ``T = 0`` at the first step) -> ``logp`` float32 ``(N, vocab)`` (log-probabilities of
    the next token), ``present_keys``, ``present_values`` ``(layers, N, heads, T + 1,
    head_dim)``. Rows and images: ``N = B · G``, rows ``b·G … b·G + G - 1`` belong to image
    ``b`` (beams, hypotheses). The token's position is ``T``, read from the cache's shape.
``decoder_score.onnx``
    Teacher-forced scoring of whole sequences, for BTTR's rescoring of the hypotheses by the
    opposite direction in one pass: ``tokens``, ``targets`` int64 ``(N, L)`` (decoder inputs,
    start token first, and the tokens they should predict, padding where nothing is scored),
    ``memory``, ``memory_mask`` -> ``logp`` float32 ``(N,)``, the summed log-probability of the
    targets.
``model.json``
    ``format``, ``version``, the vocabulary (``Vocab.to_dict()``), the run's config (plain dict:
    preprocessing, rendering, decoding settings), the decoder's sizes and the special ids.

Dynamic axes: batch, image height and width, memory length, rows and cache length.

:class:`OnnxRecognizer` reads such a folder and decodes with numpy: the same batched beam search
as :mod:`hmer.decode` (BTTR's shrinking beam, both directions, rescoring by the opposite
direction, length normalization) and greedy search, giving the same tokens as PyTorch.
``onnx`` is needed to export, ``onnxruntime`` to run; both are imported only here, when used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import io
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from hmer.errors import CheckpointError, HmerError
from hmer.recognize import ImageInput, Prediction, prepare_image, shipped_model

if TYPE_CHECKING:
    import torch
    from torch import nn

    from hmer.config import Config
    from hmer.data.vocab import Vocab
    from hmer.model.hmer_model import HmerModel

__all__ = ["FILES", "Encoded", "OnnxRecognizer", "cached_export", "export_onnx"]

FORMAT = "hmer-onnx"
VERSION = 1
#: What :func:`export_onnx` writes in its folder, by role.
FILES = {
    "encoder": "encoder.onnx",
    "step": "decoder_step.onnx",
    "score": "decoder_score.onnx",
    "meta": "model.json",
}
DEFAULT_OPSET = 17
#: Exports :func:`cached_export` keeps (the most recently used; ~22 MB each at BTTR size).
CACHED_EXPORTS = 8

#: Encoder outputs, in order.
_ENCODED = ("memory", "memory_mask", "memory_keys", "memory_values")


# ----------------------------------------------------------------------------- export (torch)


def _graphs(model: HmerModel) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The exported computations as modules over plain tensors (built here so that torch is
    only imported when exporting)."""
    import torch
    from torch import Tensor, nn

    from hmer.model.decoder import DecoderState

    class EncoderGraph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, image: Tensor, image_mask: Tensor) -> tuple[Tensor, ...]:
            memory, memory_mask = self.model.encode(image, image_mask)
            state = self.model.decoder.start(memory, memory_mask)
            keys, values = zip(*state.memory_kv, strict=True)
            return memory, memory_mask, torch.stack(keys), torch.stack(values)

    class StepGraph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self,
            tokens: Tensor,
            memory_keys: Tensor,
            memory_values: Tensor,
            memory_mask: Tensor,
            past_keys: Tensor,
            past_values: Tensor,
        ) -> tuple[Tensor, Tensor, Tensor]:
            decoder = self.model.decoder
            past = past_keys.shape[3]  # traced as a shape: the graph works at any position
            bias = torch.zeros(memory_mask.shape, dtype=torch.float32, device=memory_mask.device)
            state = DecoderState(
                memory_kv=list(zip(memory_keys.unbind(0), memory_values.unbind(0), strict=True)),
                memory_bias=bias.masked_fill(memory_mask, float("-inf"))[:, None, None, :],
                self_kv=list(zip(past_keys.unbind(0), past_values.unbind(0), strict=True)),
                position=past,
                # Encodings of positions 0 … past: the step reads row ``past``.
                positions=decoder.pos(
                    memory_keys.new_zeros(1, past + 1, decoder.embed.embedding_dim)
                )[0],
            )
            logits = decoder.step(tokens, state)
            keys, values = zip(*state.self_kv, strict=True)
            return torch.log_softmax(logits.float(), -1), torch.stack(keys), torch.stack(values)

    class ScoreGraph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self, tokens: Tensor, targets: Tensor, memory: Tensor, memory_mask: Tensor
        ) -> Tensor:
            logits = self.model.decoder(tokens, memory, memory_mask)
            logp = torch.log_softmax(logits.float(), dim=-1)
            picked = logp.gather(2, targets[:, :, None])[:, :, 0]
            return picked.masked_fill(targets == self.model.pad_id, 0.0).sum(1)

    return EncoderGraph().eval(), StepGraph().eval(), ScoreGraph().eval()


@contextlib.contextmanager
def _bool_cumsum(opset: int) -> Iterator[None]:
    """ONNX ``CumSum`` has no bool kernel while torch sums bools as int64 (the encoder's masked
    positional encoding does): cast first. Registered for the export only."""
    import torch
    from torch.onnx import symbolic_helper

    @symbolic_helper.parse_args("v", "i", "none")
    def cumsum(g: Any, x: Any, dim: int, dtype: Any = None) -> Any:
        axis = g.op("Constant", value_t=torch.tensor(dim, dtype=torch.int64))
        if x.type().scalarType() == "Bool":
            x = g.op("Cast", x, to_i=7)  # TensorProto.INT64
        elif dtype is not None and dtype.node().kind() != "prim::Constant":
            x = g.op("Cast", x, to_i=symbolic_helper._get_const(dtype, "i", "dtype"))
        return g.op("CumSum", x, axis)

    torch.onnx.register_custom_op_symbolic("aten::cumsum", cumsum, opset)
    try:
        yield
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::cumsum", opset)


def _to_onnx_bytes(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    inputs: Sequence[str],
    outputs: Sequence[str],
    axes: dict[str, dict[int, str]],
    opset: int,
) -> bytes:
    """``torch.onnx.export`` with the TorchScript exporter (its tracing keeps shape arithmetic
    symbolic, which the cache position relies on), to bytes."""
    import torch

    kwargs: dict[str, Any] = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape checks turned constant
        torch.onnx.export(
            module,
            args,
            buffer,
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            **kwargs,
        )
    return buffer.getvalue()


def export_onnx(
    model: HmerModel,
    vocab: Vocab,
    config: Config,
    out_dir: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
) -> dict[str, Path]:
    """Write ``encoder.onnx``, ``decoder_step.onnx``, ``decoder_score.onnx`` and ``model.json``
    to ``out_dir`` (created; each file written atomically). The model is exported in float32
    from a CPU copy.

    Returns:
        ``{"encoder": path, "step": path, "score": path, "meta": path}``.
    """
    import copy

    import torch

    from hmer.config import config_to_dict
    from hmer.engine.checkpoint import atomic_open

    try:
        import onnx  # noqa: F401 - the exporter needs it; say so clearly
    except ImportError as error:
        raise HmerError("ONNX export needs the onnx package: pip install onnx") from error
    model = copy.deepcopy(model).float().cpu().eval()
    encoder, step, score = _graphs(model)
    layers = len(model.decoder.transformer.layers)
    heads = model.decoder.nhead
    head_dim = model.cfg.d_model // heads

    # Example inputs: two images, the second padded, so every masked path is traced.
    image = torch.rand(2, 1, 64, 96)
    image_mask = torch.zeros(2, 64, 96, dtype=torch.bool)
    image_mask[1, 40:, :] = True
    image_mask[1, :, 70:] = True
    with torch.no_grad():
        memory, memory_mask, memory_keys, memory_values = encoder(image, image_mask)
    rows = 2 * len(memory)  # two rows per image
    past = torch.zeros(layers, rows, heads, 3, head_dim)
    tokens = torch.full((rows,), vocab.sos_id, dtype=torch.long)
    sequences = torch.randint(len(vocab.SPECIALS), len(vocab), (rows, 5))
    sequences[:, 0] = vocab.sos_id

    memory_axes = {
        "memory": {0: "batch", 1: "cells"},
        "memory_mask": {0: "batch", 1: "cells"},
        "memory_keys": {1: "batch", 3: "cells"},
        "memory_values": {1: "batch", 3: "cells"},
    }
    cache_axes = {
        f"{kind}_{part}": {1: "rows", 3: length}
        for kind, length in (("past", "past"), ("present", "past_plus_1"))
        for part in ("keys", "values")
    }
    out_dir = Path(out_dir)
    paths = {role: out_dir / name for role, name in FILES.items()}
    with _bool_cumsum(opset):
        encoder_bytes = _to_onnx_bytes(
            encoder,
            (image, image_mask),
            ["image", "image_mask"],
            _ENCODED,
            {
                "image": {0: "batch", 2: "height", 3: "width"},
                "image_mask": {0: "batch", 1: "height", 2: "width"},
                **memory_axes,
            },
            opset,
        )
        step_bytes = _to_onnx_bytes(
            step,
            (tokens, memory_keys, memory_values, memory_mask, past, past.clone()),
            ["tokens", "memory_keys", "memory_values", "memory_mask", "past_keys", "past_values"],
            ["logp", "present_keys", "present_values"],
            {"tokens": {0: "rows"}, "logp": {0: "rows"}, **memory_axes, **cache_axes},
            opset,
        )
        score_bytes = _to_onnx_bytes(
            score,
            (sequences, sequences.roll(-1, 1), memory, memory_mask),
            ["tokens", "targets", "memory", "memory_mask"],
            ["logp"],
            {
                "tokens": {0: "rows", 1: "length"},
                "targets": {0: "rows", 1: "length"},
                "logp": {0: "rows"},
                **memory_axes,
            },
            opset,
        )
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "opset": opset,
        "vocab": vocab.to_dict(),
        "config": config_to_dict(config),
        "decoder": {"layers": layers, "heads": heads, "head_dim": head_dim},
        "special_ids": {"pad": model.pad_id, "sos": model.sos_id, "eos": model.eos_id},
        "files": {role: FILES[role] for role in ("encoder", "step", "score")},
    }
    for role, data in (("encoder", encoder_bytes), ("step", step_bytes), ("score", score_bytes)):
        with atomic_open(paths[role], "wb") as handle:
            handle.write(data)
    with atomic_open(paths["meta"], "w") as handle:
        handle.write(json.dumps(meta, indent=1) + "\n")
    return paths


def cached_export(
    checkpoint: str | Path, *, announce: Callable[[Path], None] | None = None
) -> Path:
    """The ONNX export of a checkpoint file (or exported weights), made on first use.

    Exports live in ``cache_root()/onnx/<sha256 of the file>-v<VERSION>`` (see
    :func:`hmer.paths.cache_root`), so a file is exported once (a few seconds) and any later
    call with the same bytes returns at once; another file, or a new export format, gets its own
    folder. The export is written to a temporary folder and renamed into place: an interrupted
    export leaves nothing that a later call would take for complete. The cache keeps the
    :data:`CACHED_EXPORTS` most recently used exports.

    Args:
        checkpoint: the file.
        announce: called with the export's folder just before an export starts (not when the
            export is already there), e.g. to tell a person why this call takes seconds.

    Raises:
        CheckpointError: the file cannot be read, or is not a checkpoint (naming it).
    """
    from hmer.paths import cache_root

    path = Path(checkpoint)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read the checkpoint: {error}") from error
    target = cache_root() / "onnx" / f"{digest.hexdigest()[:32]}-v{VERSION}"
    if (target / FILES["meta"]).is_file():
        with contextlib.suppress(OSError):  # a read-only cache still serves
            os.utime(target)  # recently used: kept by _prune_exports
        return target  # without importing torch: a CLI call stays quick
    from hmer.engine.checkpoint import load_model

    if announce is not None:
        announce(target)
    model, vocab, config = load_model(path, "cpu")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        export_onnx(model, vocab, config, staging)
        os.replace(staging, target)
    except OSError:
        if not (target / FILES["meta"]).is_file():  # not a concurrent export that finished first
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _prune_exports(target.parent, CACHED_EXPORTS)
    return target


def _prune_exports(folder: Path, keep: int) -> None:
    """Delete all but the ``keep`` most recently used exports in ``folder``, and temporary
    folders that a killed export left there over an hour ago."""

    def used(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:  # deleted meanwhile by another process
            return 0.0

    entries = [p for p in folder.iterdir() if p.is_dir()]
    exports = sorted((p for p in entries if not p.name.startswith(".")), key=used, reverse=True)
    stale = [p for p in entries if p.name.startswith(".") and used(p) < time.time() - 3600]
    for path in exports[keep:] + stale:
        shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------- numpy decoding


@dataclasses.dataclass
class _Ended:
    """An ended hypothesis of one direction: ``tokens`` in decoding order (reversed for R2L),
    ``logp`` the sum of its log-probabilities, end token included."""

    tokens: np.ndarray
    logp: np.float32


class Encoded(NamedTuple):
    """The encoder's outputs for ``B`` images (see the module docstring for shapes)."""

    memory: np.ndarray
    mask: np.ndarray
    keys: np.ndarray
    values: np.ndarray

    def select(self, images: np.ndarray) -> Encoded:
        """The outputs of images ``images`` (indices, in the new order)."""
        return Encoded(
            self.memory[images], self.mask[images], self.keys[:, images], self.values[:, images]
        )


def _pad_images(images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``(H, W)`` images (ink 255) -> float32 ``(B, 1, H, W)`` in [0, 1] (top-left,
    zero padding) and bool ``(B, H, W)`` True = padding, as :func:`hmer.data.batching.collate`."""
    height = max(image.shape[0] for image in images)
    width = max(image.shape[1] for image in images)
    batch = np.zeros((len(images), 1, height, width), np.float32)
    mask = np.ones((len(images), height, width), bool)
    for i, image in enumerate(images):
        h, w = image.shape
        batch[i, 0, :h, :w] = image.astype(np.float32) / np.float32(255.0)
        mask[i, :h, :w] = False
    return batch, mask


def _known_fields(cls: type, values: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


class OnnxRecognizer:
    """Reads formulas with the files of :func:`export_onnx`: onnxruntime + numpy, no torch.

    Same interface as :class:`hmer.recognize.Recognizer` (``prepare``, ``predict``,
    ``predict_batch``) and the same preprocessing and decoding settings (from ``model.json``).

    Args:
        directory: the export folder.
        threads: the encoder's onnxruntime intra-op threads (None: its default, one per
            physical core).
        decoder_threads: intra-op threads of the decoder step and of the rescoring pass. A
            step multiplies ``(rows, d_model)`` matrices, rows = beam · directions · images:
            too little work to share, and a second thread that spins between the steps takes
            a core from the Python search loop. On 2 cores, beam 10, batch 1: encoder on 2
            threads and decoder on 1 is 1.5x faster end to end than 2 + 2, and 1.15x faster
            than 1 + 1 (benchmarks/RESULTS.md).
        providers: onnxruntime execution providers (default: CPU).
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        threads: int | None = None,
        decoder_threads: int = 1,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> None:
        from hmer.data.inkml import RenderConfig
        from hmer.data.preprocess import PreprocessConfig
        from hmer.data.vocab import Vocab

        try:
            import onnxruntime
        except ImportError as error:
            raise HmerError("ONNX inference needs onnxruntime: pip install onnxruntime") from error
        directory = Path(directory)
        meta_path = directory / FILES["meta"]
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as error:
            raise CheckpointError(
                f"{meta_path}: cannot read the export's metadata: {error}"
            ) from error
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise CheckpointError(f"{meta_path}: not an hmer ONNX export (format {FORMAT!r})")
        if meta.get("version") != VERSION:
            raise CheckpointError(
                f"{meta_path}: export version {meta.get('version')!r}, this code reads {VERSION}"
            )
        self.vocab = Vocab.from_dict(meta["vocab"])
        config = meta["config"]
        self.preprocess_config = _known_fields(PreprocessConfig, config["preprocess"])
        self.render_config = _known_fields(RenderConfig, config["render"])
        decode = config["decode"]
        self.max_len = int(decode["max_len"])
        self.length_penalty = float(decode["length_penalty"])
        self.bidirectional = bool(decode["bidirectional"])
        ids = meta["special_ids"]
        self.pad_id, self.sos_id, self.eos_id = int(ids["pad"]), int(ids["sos"]), int(ids["eos"])
        dims = meta["decoder"]
        self._cache_shape = (int(dims["layers"]), int(dims["heads"]), int(dims["head_dim"]))
        sessions = {}
        for role in ("encoder", "step", "score"):
            path = directory / meta["files"][role]
            if not path.is_file():
                raise CheckpointError(f"{path}: missing file of the ONNX export")
            options = onnxruntime.SessionOptions()
            options.inter_op_num_threads = 1
            intra = threads if role == "encoder" else decoder_threads
            if intra is not None:
                options.intra_op_num_threads = intra
            sessions[role] = onnxruntime.InferenceSession(
                str(path), options, providers=list(providers)
            )
        self._encoder, self._step, self._score = (
            sessions["encoder"],
            sessions["step"],
            sessions["score"],
        )

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, threads: int | None = None, decoder_threads: int = 1
    ) -> OnnxRecognizer:
        """A checkpoint of the training engine or exported weights, exported to ONNX on first
        use (:func:`cached_export`)."""
        return cls(cached_export(path), threads=threads, decoder_threads=decoder_threads)

    @classmethod
    def from_pretrained(
        cls, *, threads: int | None = None, decoder_threads: int = 1
    ) -> OnnxRecognizer:
        """The model shipped with hmer (:func:`hmer.recognize.shipped_model`), as ONNX."""
        return cls.from_checkpoint(
            shipped_model(), threads=threads, decoder_threads=decoder_threads
        )

    # -- user-facing

    def prepare(self, x: ImageInput) -> np.ndarray:
        """The model's input for ``x``: uint8 ``(H, W)``, ink 255 on 0."""
        return prepare_image(x, self.preprocess_config, self.render_config)

    def predict(self, x: ImageInput, beam: int = 10) -> Prediction:
        """Read one formula (see :meth:`hmer.recognize.Recognizer.predict`)."""
        return self.predict_batch([x], beam=beam)[0]

    def predict_batch(
        self, xs: Sequence[ImageInput], beam: int = 10, batch_size: int = 8
    ) -> list[Prediction]:
        """Read several formulas, in order, in padded batches of up to ``batch_size`` images of
        similar sizes."""
        return self.predict_images([self.prepare(x) for x in xs], beam, batch_size)

    def predict_images(
        self, images: Sequence[np.ndarray], beam: int = 10, batch_size: int = 8
    ) -> list[Prediction]:
        """:meth:`predict_batch` for images already through :meth:`prepare`."""
        from hmer.data.latex import tokens_to_latex

        order = sorted(range(len(images)), key=lambda i: images[i].shape)
        found: dict[int, Prediction] = {}
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            best = self.nbest(*_pad_images([images[i] for i in chunk]), beam=beam, best_only=True)
            for i, hyps in zip(chunk, best, strict=True):
                ids, score = hyps[0]
                tokens = self.vocab.decode(ids)
                found[i] = Prediction(tokens_to_latex(tokens), tokens, score)
        return [found[i] for i in range(len(images))]

    # -- model

    def encode(self, images: np.ndarray, image_mask: np.ndarray) -> Encoded:
        """``(B, 1, H, W)`` float32, ``(B, H, W)`` bool -> the encoder's outputs."""
        return Encoded(*self._encoder.run(None, {"image": images, "image_mask": image_mask}))

    def _empty_cache(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        layers, heads, head_dim = self._cache_shape
        empty = np.zeros((layers, rows, heads, 0, head_dim), np.float32)
        return empty, empty

    def _run_step(
        self, tokens: np.ndarray, memory: Encoded, cache: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """One decoder step: ``(N,)`` tokens -> ``(N, V)`` float32 log-probabilities, new cache."""
        feed = {
            "tokens": tokens.astype(np.int64),
            "memory_keys": memory.keys,
            "memory_values": memory.values,
            "memory_mask": memory.mask,
            "past_keys": cache[0],
            "past_values": cache[1],
        }
        logp, keys, values = self._step.run(None, feed)
        return logp, (keys, values)

    def _start_end(self, direction: str) -> tuple[int, int]:
        if direction == "l2r":
            return self.sos_id, self.eos_id
        if direction == "r2l":
            return self.eos_id, self.sos_id
        raise ValueError(f"direction must be 'l2r' or 'r2l', got {direction!r}")

    def _beam(
        self, memory: Encoded, directions: Sequence[str], beam: int, max_len: int
    ) -> list[list[_Ended]]:
        """BTTR's shrinking beam search, batched, as ``hmer.decode._beam``: the ``D`` directions
        of an image search side by side in the same steps, search ``s = b · D + d``; an image
        leaves the batch when its searches are done. Returns per search the ended hypotheses
        in the order they ended."""
        b, d, k = len(memory.memory), len(directions), beam
        starts, ends = zip(*(self._start_end(direction) for direction in directions), strict=True)
        end_ids = np.array(ends)
        banned = np.zeros((d, len(self.vocab)), bool)
        banned[:, self.pad_id] = True
        banned[np.arange(d), list(starts)] = True
        ended: list[list[_Ended]] = [[] for _ in range(b * d)]
        active = np.arange(b * d)  # searches of the images still in the batch
        n_ended = np.zeros(b * d, np.int64)
        scores = np.zeros((b * d, 1), np.float32)  # one live hypothesis (empty) per search
        history = np.zeros((b * d, 1, 0), np.int64)
        tokens = np.tile(np.array(starts, np.int64), b)
        cache = self._empty_cache(b * d)
        rank = np.arange(k)
        live = np.zeros((b * d, 1), bool)
        for t in range(max_len):
            width = scores.shape[1]  # slots per search: 1 at the first step, then <= beam
            logp, cache = self._run_step(tokens, memory, cache)
            logp = np.where(
                banned[active % d][:, None, :], -np.inf, logp.reshape(len(active), width, -1)
            )
            vocab = logp.shape[-1]
            candidates = (scores[:, :, None] + logp).reshape(len(active), -1)
            index = np.argsort(-candidates, axis=1, kind="stable")[:, :k]
            top = np.take_along_axis(candidates, index, 1)
            parent, token = index // vocab, index % vocab
            # BTTR: only the best (beam - ended) candidates survive this step.
            chosen = (rank[None, :] < (k - n_ended)[:, None]) & np.isfinite(top)
            ends_now = chosen & (token == end_ids[active % d][:, None])
            live = chosen & ~ends_now
            # Live candidates first; slots past the most live of any search are not stepped.
            order = np.argsort(~live, axis=1, kind="stable")
            live, top, parent, token, ends_now = (
                np.take_along_axis(x, order, 1) for x in (live, top, parent, token, ends_now)
            )
            history = np.concatenate(
                (np.take_along_axis(history, parent[:, :, None], 1), token[:, :, None]), 2
            )
            for i, j in zip(*np.nonzero(ends_now), strict=True):  # per search in rank order
                ended[active[i]].append(_Ended(history[i, j, :t].copy(), top[i, j]))
            n_ended = n_ended + ends_now.sum(1)
            scores = np.where(live, top, np.float32(-np.inf)).astype(np.float32)
            rows = parent + width * np.arange(len(active))[:, None]
            searching = live.reshape(-1, d * k).any(1)  # per image still in the batch
            if not searching.any():
                break
            width = int(live.sum(1).max())
            scores, history, live, token, rows = (
                x[:, :width] for x in (scores, history, live, token, rows)
            )
            if not searching.all():  # drop the images that are done
                images = np.nonzero(searching)[0]
                keep = (images[:, None] * d + np.arange(d)).ravel()
                active, n_ended, scores, history, live, token, rows = (
                    x[keep] for x in (active, n_ended, scores, history, live, token, rows)
                )
                memory = memory.select(images)
            cache = (cache[0][:, rows.ravel()], cache[1][:, rows.ravel()])
            tokens = token.ravel()
        else:  # max_len reached: live hypotheses count as ended
            for i, j in zip(*np.nonzero(live), strict=True):
                ended[active[i]].append(_Ended(history[i, j].copy(), scores[i, j]))
        return ended

    def _sequence_logp(
        self, memory: Encoded, sequences: list[list[np.ndarray]], r2l: np.ndarray
    ) -> np.ndarray:
        """Teacher-forced log-probability (end token included) of ``G`` reading-order sequences
        per image, each scored left-to-right, or right-to-left where ``r2l`` ``(B, G)`` is True,
        in one pass (as ``hmer.decode._sequence_logp``). Returns ``(B, G)`` float32."""
        b, g = len(sequences), len(sequences[0])
        flat = [s for row in sequences for s in row]
        width = max(len(s) for s in flat) + 1
        inputs = np.full((b * g, width), self.pad_id, np.int64)
        targets = np.full((b * g, width), self.pad_id, np.int64)
        for n, (seq, backward) in enumerate(zip(flat, r2l.reshape(-1), strict=True)):
            start, end = self._start_end("r2l" if backward else "l2r")
            body = seq[::-1] if backward else seq
            inputs[n, : len(body) + 1] = [start, *body]
            targets[n, : len(body) + 1] = [*body, end]
        feed = {
            "tokens": inputs,
            "targets": targets,
            "memory": memory.memory,
            "memory_mask": memory.mask,
        }
        return self._score.run(None, feed)[0].reshape(b, g)

    def _opposite_logps(
        self,
        memory: Encoded,
        sequences: list[list[np.ndarray]],
        found_r2l: list[list[bool]],
        logps: list[np.ndarray],
        max_len: int,
        alpha: float,
        best_only: bool,
    ) -> list[np.ndarray]:
        """Per image, each hypothesis's log p in the direction that did not find it, with the
        savings of :func:`hmer.decode._rescore`: a hypothesis both directions ended is not
        scored again; with ``best_only``, one whose bound ``logp / 2`` (normalized) cannot beat
        the best known score stays -inf."""
        opposite, pending, norms = [], [], []
        for seqs, r2l, logp in zip(sequences, found_r2l, logps, strict=True):
            ended = {
                (back, tuple(s)): j
                for j, (s, back) in enumerate(zip(seqs, r2l, strict=True))
                if len(s) < max_len
            }
            known = np.full(len(seqs), -np.inf, np.float32)
            for j, (s, back) in enumerate(zip(seqs, r2l, strict=True)):
                partner = ended.get((not back, tuple(s)))
                if len(s) < max_len and partner is not None:
                    known[j] = logp[partner]
            opposite.append(known)
            pending.append(np.isneginf(known) & np.isfinite(logp))
            norms.append((np.array([len(s) for s in seqs], np.float32) + 1) ** np.float32(alpha))
        if not best_only:
            self._score_opposite(memory, sequences, found_r2l, pending, opposite)
            return opposite
        for first_round in (True, False):
            chosen = []
            for logp, known, waiting, norm in zip(logps, opposite, pending, norms, strict=True):
                bound = logp / 2 / norm
                best = np.max((logp + known) / 2 / norm, initial=-np.inf)
                candidates = waiting & (bound > best)
                if first_round:
                    top = np.argsort(-np.where(candidates, bound, -np.inf), kind="stable")[:2]
                    candidates &= np.isin(np.arange(len(bound)), top)
                chosen.append(candidates)
            self._score_opposite(memory, sequences, found_r2l, chosen, opposite)
            pending = [waiting & ~c for waiting, c in zip(pending, chosen, strict=True)]
        return opposite

    def _score_opposite(
        self,
        memory: Encoded,
        sequences: list[list[np.ndarray]],
        found_r2l: list[list[bool]],
        which: list[np.ndarray],
        opposite: list[np.ndarray],
    ) -> None:
        """Write into ``opposite`` the other direction's log p of the hypotheses ``which``
        (per image, bool), in one teacher-forced pass."""
        chosen = [np.nonzero(w)[0] for w in which]
        width = max(len(c) for c in chosen)
        if width == 0:
            return
        empty = np.zeros(0, np.int64)
        padded = [
            [seqs[j] for j in c] + [empty] * (width - len(c))
            for seqs, c in zip(sequences, chosen, strict=True)
        ]
        backward = np.array(
            [
                [not r2l[j] for j in c] + [False] * (width - len(c))
                for r2l, c in zip(found_r2l, chosen, strict=True)
            ],
            bool,
        )
        scored = self._sequence_logp(memory, padded, backward)
        for n, c in enumerate(chosen):
            opposite[n][c] = scored[n, : len(c)]

    def nbest(
        self,
        images: np.ndarray,
        image_mask: np.ndarray,
        *,
        beam: int = 10,
        max_len: int | None = None,
        length_penalty: float | None = None,
        bidirectional: bool | None = None,
        direction: str = "l2r",
        best_only: bool = False,
    ) -> list[list[tuple[list[int], float]]]:
        """Per image, ``(token ids, score)`` of every ended hypothesis, best first, unique
        (as :func:`hmer.decode.nbest`; unset settings come from ``model.json``). With
        ``best_only``, the first is still the best, but hypotheses that cannot beat it are left
        out unscored (as :func:`hmer.decode.beam_search`).

        Args:
            images: ``(B, 1, H, W)`` float32, ink 1 on 0; image_mask: ``(B, H, W)`` bool.
        """
        max_len = self.max_len if max_len is None else max_len
        alpha = self.length_penalty if length_penalty is None else length_penalty
        both = self.bidirectional if bidirectional is None else bidirectional
        if beam < 1 or max_len < 1:
            raise ValueError(f"beam and max_len must be >= 1, got {beam} and {max_len}")
        memory = self.encode(images, image_mask)
        directions = ("l2r", "r2l") if both else (direction,)
        found = self._beam(memory, directions, beam, max_len)
        b, d = images.shape[0], len(directions)
        # Per image: (direction, ended hypothesis), directions in order, each in ending order.
        per_image = [
            [(dr, e) for i, dr in enumerate(directions) for e in found[n * d + i]] for n in range(b)
        ]
        sequences = [
            [e.tokens[::-1] if dr == "r2l" else e.tokens for dr, e in h] for h in per_image
        ]
        found_r2l = [[dr == "r2l" for dr, _ in h] for h in per_image]
        logps = [np.array([e.logp for _, e in h], np.float32) for h in per_image]
        if both:
            opposite = self._opposite_logps(
                memory, sequences, found_r2l, logps, max_len, alpha, best_only
            )
            logps = [(lp + op) / np.float32(2.0) for lp, op in zip(logps, opposite, strict=True)]
        result = []
        for seqs, logp in zip(sequences, logps, strict=True):
            lengths = np.array([len(s) for s in seqs], np.float32)
            scores = (logp / (lengths + np.float32(1.0)) ** np.float32(alpha)).astype(np.float32)
            seen: set[tuple[int, ...]] = set()
            hyps = []
            for j in np.argsort(-scores, kind="stable"):
                key = tuple(int(t) for t in seqs[j])
                if np.isfinite(scores[j]) and key not in seen:
                    seen.add(key)
                    hyps.append((list(key), float(scores[j])))
            result.append(hyps)
        return result

    def greedy(
        self,
        images: np.ndarray,
        image_mask: np.ndarray,
        *,
        max_len: int | None = None,
        direction: str = "l2r",
    ) -> list[tuple[list[int], float]]:
        """Per image, ``(token ids, log p / (n + 1))`` of greedy decoding (as
        :func:`hmer.decode.greedy`)."""
        max_len = self.max_len if max_len is None else max_len
        memory = self.encode(images, image_mask)
        b = images.shape[0]
        start, end = self._start_end(direction)
        cache = self._empty_cache(b)
        tokens = np.full(b, start, np.int64)
        out: list[list[int]] = [[] for _ in range(b)]
        logp_sum = np.zeros(b, np.float32)
        running = np.ones(b, bool)
        for _ in range(max_len):
            logp, cache = self._run_step(tokens, memory, cache)
            logp[:, [self.pad_id, start]] = -np.inf
            tokens = logp.argmax(1)
            logp_sum += np.where(running, logp[np.arange(b), tokens], np.float32(0.0))
            for i in np.nonzero(running & (tokens != end))[0]:
                out[i].append(int(tokens[i]))
            running &= tokens != end
            if not running.any():
                break
        return [
            (seq[::-1] if direction == "r2l" else seq, float(lp / np.float32(len(seq) + 1)))
            for seq, lp in zip(out, logp_sum, strict=True)
        ]
