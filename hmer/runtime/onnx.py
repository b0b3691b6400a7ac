"""Recognition with onnxruntime + numpy alone: the path ``hmer predict`` takes on a CPU.

:class:`OnnxRecognizer` reads an export folder (:mod:`hmer.runtime.exports`) and reads formulas
exactly as :class:`hmer.runtime.recognize.Recognizer` does (same preprocessing, batching and
search: :class:`hmer.runtime.reading.Reader`), with the network run by
:class:`hmer.search.onnx_backend.OnnxNetwork`. Neither this module nor anything it imports at
module level imports torch; only exporting a checkpoint that has no cached export yet does.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hmer.config import DecodeConfig
from hmer.data.inkml import RenderConfig
from hmer.data.preprocess import PreprocessConfig
from hmer.data.vocab import Vocab
from hmer.errors import CheckpointError, HmerError
from hmer.paths import shipped_model
from hmer.runtime import exports
from hmer.runtime.reading import Reader
from hmer.search.network import Specials
from hmer.search.onnx_backend import OnnxNetwork

__all__ = ["INSTALL_HINT", "PACKAGES", "OnnxRecognizer", "export_for", "missing_packages"]

#: What ONNX inference needs: onnx to export a checkpoint (once per model), onnxruntime to run it.
PACKAGES = ("onnx", "onnxruntime")
#: The remedy when an install lacks them (both are dependencies of hmer; an install made with
#: ``--no-deps``, or a package removed later, still can).
INSTALL_HINT = "pip install onnx onnxruntime (or pip install 'hmer[onnx]')"


def missing_packages(names: Sequence[str] = PACKAGES) -> list[str]:
    """Those of ``names`` that cannot be imported here (found without importing them)."""
    return [name for name in names if importlib.util.find_spec(name) is None]


def _known_fields(cls: type, values: dict[str, Any]) -> Any:
    """``cls`` from the keys of ``values`` it has (an export's config may carry more)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


def export_for(checkpoint: str | Path, announce: Callable[[Path], None] | None = None) -> Path:
    """The export folder of a checkpoint file: the cached one, else made now with PyTorch
    (:func:`hmer.runtime.export.cached_export`, which ``announce`` s it first)."""
    folder = exports.cache_folder(checkpoint)
    if exports.is_cached(folder):
        return folder
    # Only a model never exported before needs torch (seconds to import): imported here.
    from hmer.runtime.export import cached_export

    return cached_export(checkpoint, announce=announce)


class OnnxRecognizer(Reader):
    """Reads formulas with the files of an ONNX export: onnxruntime + numpy, no torch.

    Same interface and settings as :class:`hmer.runtime.recognize.Recognizer` (``prepare``,
    ``predict``, ``predict_batch``, ``predict_images``; preprocessing and decoding settings from
    ``model.json``).

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
        try:
            import onnxruntime  # a core dependency; imported here, when a model is loaded
        except ImportError as error:
            raise HmerError(
                f"ONNX inference needs onnxruntime, a dependency of hmer: {INSTALL_HINT}"
            ) from error
        directory = Path(directory)
        meta = exports.read_meta(directory)
        self.vocab = Vocab.from_dict(meta["vocab"])
        config = meta["config"]
        self.preprocess_config = _known_fields(PreprocessConfig, config["preprocess"])
        self.render_config = _known_fields(RenderConfig, config["render"])
        self.decode = _known_fields(DecodeConfig, config["decode"])
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
        ids, dims = meta["special_ids"], meta["decoder"]
        self.network = OnnxNetwork(
            sessions["encoder"],
            sessions["step"],
            sessions["score"],
            Specials(int(ids["pad"]), int(ids["sos"]), int(ids["eos"])),
            len(self.vocab),
            (int(dims["layers"]), int(dims["heads"]), int(dims["head_dim"])),
        )

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        threads: int | None = None,
        decoder_threads: int = 1,
        announce: Callable[[Path], None] | None = None,
    ) -> OnnxRecognizer:
        """A checkpoint of the training engine or exported weights, exported to ONNX on first
        use (:func:`export_for`; ``announce`` is told before an export starts)."""
        directory = export_for(path, announce)
        return cls(directory, threads=threads, decoder_threads=decoder_threads)

    @classmethod
    def from_pretrained(
        cls, *, threads: int | None = None, decoder_threads: int = 1
    ) -> OnnxRecognizer:
        """The model shipped with hmer (:func:`hmer.paths.shipped_model`), as ONNX."""
        return cls.from_checkpoint(
            shipped_model(), threads=threads, decoder_threads=decoder_threads
        )
