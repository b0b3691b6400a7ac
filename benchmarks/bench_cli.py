"""Seconds a person waits for one ``hmer predict IMAGE`` command on CPU, per engine.

    python benchmarks/bench_cli.py [--checkpoint CKPT] [--runs 5] [--image PNG]

Each run is a whole new process (interpreter start, imports, model load, one formula, beam 10),
the two engines taking turns so that drifts of the machine's speed hit both:

- ``--engine onnx``: onnxruntime on the cached ONNX export (exported once, before timing);
  needs neither torch nor timm;
- ``--engine torch``: PyTorch.

Model: ``--checkpoint``, else a random BTTR-size model saved to a temporary checkpoint with
``decode.max_len`` 40 (a random decoder never ends a formula; 40 steps is a long formula's
search). Image: ``data/examples/example.png`` (drawn by the synthetic generator).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _random_checkpoint(path: Path) -> Path:
    import torch

    from hmer.checkpoint import save_checkpoint
    from hmer.config import Config, config_to_dict
    from hmer.data.vocab import Vocab
    from hmer.engine.build import build_model

    torch.manual_seed(0)
    config, vocab = Config(), Vocab.crohme()
    config.decode.max_len = 40
    model = build_model(config, vocab)
    return save_checkpoint(
        path, model=model.state_dict(), config=config_to_dict(config), vocab=vocab.to_dict()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="default: a random BTTR-size model")
    parser.add_argument("--runs", type=int, default=5, help="commands per engine")
    parser.add_argument("--image", type=Path, default=ROOT / "data" / "examples" / "example.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "HMER_CACHE": str(Path(tmp) / "cache")}
        checkpoint = args.checkpoint or _random_checkpoint(Path(tmp) / "random.pt")
        command = [sys.executable, "-m", "hmer", "predict", str(args.image)]
        command += ["--checkpoint", str(checkpoint), "--device", "cpu", "--engine"]
        start = time.perf_counter()
        subprocess.run([*command, "onnx"], env=env, check=True, capture_output=True)
        first = time.perf_counter() - start
        print(f"first onnx command (exports the model to the cache): {first:.2f} s")
        wall: dict[str, list[float]] = {"onnx": [], "torch": []}
        outputs: dict[str, set[str]] = {"onnx": set(), "torch": set()}
        for _ in range(args.runs):
            for engine in wall:
                start = time.perf_counter()
                done = subprocess.run(
                    [*command, engine], env=env, check=True, capture_output=True, text=True
                )
                wall[engine].append(time.perf_counter() - start)
                outputs[engine].add(done.stdout.strip())
    print(
        f"model: {'checkpoint ' + str(args.checkpoint) if args.checkpoint else 'random BTTR size'}"
    )
    for engine, times in wall.items():
        print(
            f"hmer predict --engine {engine:<5}: median {statistics.median(times):.2f} s "
            f"(min {min(times):.2f}, max {max(times):.2f}, {len(times)} runs)"
        )
    ratio = statistics.median(wall["torch"]) / statistics.median(wall["onnx"])
    print(
        f"onnx command is {ratio:.1f}x faster; same output: {outputs['onnx'] == outputs['torch']}"
    )


if __name__ == "__main__":
    main()
