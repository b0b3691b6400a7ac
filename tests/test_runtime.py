"""The runtime reads formulas without torch: with torch, timm and torchvision made impossible to
import, the onnxruntime recognizer reads a picture from a cached export and agrees with the
PyTorch recognizer."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import LABELS, paper
from PIL import Image

from hmer.data.batching import pad_images
from hmer.runtime.export import cached_export

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

#: Run in a fresh interpreter where importing torch, timm or torchvision raises ImportError.
BLOCKED = """
import json, sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "timm", "torchvision"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Blocked())
from hmer.runtime.onnx import OnnxRecognizer
found = OnnxRecognizer.from_checkpoint(sys.argv[1], threads=1).predict(sys.argv[2])
print(json.dumps({"tokens": found.tokens, "score": found.score}))
"""


def test_a_cached_export_reads_a_formula_with_torch_blocked(
    checkpoint, recognizer, renders, private_cache, tmp_path
):
    image = tmp_path / "formula.png"
    Image.fromarray(paper(renders[0])).save(image)
    cached_export(checkpoint)  # made with torch here; read without it below
    env = {**os.environ, "HMER_CACHE": str(private_cache)}
    run = subprocess.run(
        [sys.executable, "-c", BLOCKED, str(checkpoint), str(image)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout)
    expected = recognizer.predict(image)
    assert found["tokens"] == expected.tokens == LABELS[0]
    assert found["score"] == pytest.approx(expected.score, abs=1e-4)


def test_without_a_cached_export_the_runtime_asks_for_torch(checkpoint, tmp_path):
    """Exporting is the one thing that needs torch: blocked, it fails with ImportError."""
    env = {**os.environ, "HMER_CACHE": str(tmp_path / "empty-cache")}
    run = subprocess.run(
        [sys.executable, "-c", BLOCKED, str(checkpoint), "unused.png"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode != 0 and "torch is blocked" in run.stderr


def test_padding_puts_images_top_left_with_a_mask():
    small = np.full((2, 3), 255, np.uint8)
    large = np.zeros((4, 5), np.uint8)
    images, mask = pad_images([small, large])
    assert images.shape == (2, 1, 4, 5) and images.dtype == np.float32
    assert images[0, 0, :2, :3].tolist() == [[1.0] * 3] * 2 and images[0].sum() == 6
    assert mask[0, :2, :3].sum() == 0 and mask[0].sum() == 20 - 6 and mask[1].sum() == 0
