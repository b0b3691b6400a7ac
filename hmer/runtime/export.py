"""ONNX export of a model: the three graphs onnxruntime runs (:mod:`hmer.search.onnx_backend`).

``export_onnx(model, vocab, config, DIR)`` writes three graphs and their metadata
(:mod:`hmer.runtime.exports`):

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

Dynamic axes: batch, image height and width, memory length, rows and cache length. The onnx
package is needed here (it is a core dependency); reading an export needs onnxruntime alone.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.onnx import symbolic_helper

from hmer.checkpoint import load_model
from hmer.config import config_to_dict
from hmer.errors import HmerError
from hmer.io import atomic_open
from hmer.model.decoder import DecoderState
from hmer.runtime import exports
from hmer.runtime.exports import FILES, FORMAT, VERSION

if TYPE_CHECKING:
    from hmer.config import Config
    from hmer.data.vocab import Vocab
    from hmer.model.hmer_model import HmerModel

__all__ = ["DEFAULT_OPSET", "cached_export", "export_onnx"]

DEFAULT_OPSET = 17

#: Encoder outputs, in order.
_ENCODED = ("memory", "memory_mask", "memory_keys", "memory_values")


def _graphs(model: HmerModel) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The exported computations as modules over plain tensors."""

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
    try:
        import onnx  # noqa: F401 - the exporter needs it; say so clearly
    except ImportError as error:
        raise HmerError(
            "ONNX export needs the onnx package, a dependency of hmer that this install lacks: "
            "pip install onnx"
        ) from error
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

    A file is exported once (a few seconds) into :func:`hmer.runtime.exports.cache_folder`, and
    any later call with the same bytes returns at once; another file, or a new export format,
    gets its own folder. The export is written to a temporary folder and renamed into place: an
    interrupted export leaves nothing that a later call would take for complete. The cache
    keeps the :data:`hmer.runtime.exports.CACHED_EXPORTS` most recently used exports.

    Args:
        checkpoint: the file.
        announce: called with the export's folder just before an export starts (not when the
            export is already there), e.g. to tell a person why this call takes seconds.

    Raises:
        CheckpointError: the file cannot be read, or is not a checkpoint (naming it).
    """
    target = exports.cache_folder(checkpoint)
    if exports.is_cached(target):
        return target
    if announce is not None:
        announce(target)
    model, vocab, config = load_model(checkpoint, "cpu")
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
    exports.prune(target.parent, exports.CACHED_EXPORTS)
    return target
