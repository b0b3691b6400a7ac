"""Which device reads formulas by default, decided without importing torch when it cannot
matter."""

from __future__ import annotations

import os
import shutil

__all__ = ["default_device"]


def default_device() -> str:
    """``"cuda"`` when PyTorch sees a GPU, else ``"cpu"``.

    Without a GPU driver (no NVIDIA or ROCm device node, no ``nvidia-smi``) the answer is
    ``"cpu"`` without importing torch, which takes seconds: ``hmer predict`` on a laptop then
    runs on onnxruntime alone.
    """
    if not any(map(os.path.exists, ("/dev/nvidiactl", "/dev/kfd"))) and not shutil.which(
        "nvidia-smi"
    ):
        return "cpu"
    import torch  # only where a GPU may exist: the question needs CUDA

    return "cuda" if torch.cuda.is_available() else "cpu"
