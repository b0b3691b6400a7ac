"""Training throughput (samples/s) of the whole engine on CPU: tiny and BTTR-size models.

Runs ``hmer.engine.train.train`` for a few steps per config (data loading, augmentation, forward,
backward, optimizer; no validation) and reports samples/s after the first log window (warm-up).
Data: the first ``--samples`` CROHME training expressions when the data is present, else
synthetic expressions; rendered at each config's own glyph scale.

    python benchmarks/bench_train.py [--steps 12] [--samples 256] [--device cpu] [--threads N]
        [--workers N] [--configs tiny cpu cpu-20px bttr-size]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "tiny": (ROOT / "configs" / "tiny.yaml", []),
    # The CPU starter recipe and the larger candidate it was compared with (RESULTS.md).
    "cpu": (ROOT / "configs" / "cpu.yaml", ["train.time_budget=null"]),
    "cpu-20px": (
        ROOT / "configs" / "cpu.yaml",
        [
            "train.time_budget=null",
            "render.symbol_height=20",
            "render.max_height=160",
            "render.max_width=640",
            "render.max_area=102400",
            "model.block_config=[8,8,8]",
            "model.d_model=192",
            "model.dim_feedforward=768",
        ],
    ),
    # The speed-run model (BTTR-size), in fp32 with CPU-sized batches (its GPU batches of up
    # to 256 expressions need tens of GB of activations).
    "bttr-size": (
        ROOT / "configs" / "crohme_h200.yaml",
        ["train.time_budget=null", "train.max_batch=16", "train.batch_pixels=400000"],
    ),
}


def synthetic_source(folder: Path, count: int) -> str:
    from hmer.data.datasets import write_bttr_layout
    from hmer.data.synth.generate import generate_images

    write_bttr_layout(generate_images(count, seed=0), folder, "train")
    return str(folder)


def measure(name: str, source: str, args: argparse.Namespace, scratch: Path) -> dict:
    from hmer.config import load_config
    from hmer.engine.train import train

    path, extra = CONFIGS[name]
    split = "train"
    cfg = load_config(
        path,
        [
            *extra,
            f"data.train={source}",
            f"data.train_split={split}",
            f"data.limit={args.samples}",
            "data.val_fraction=0",
            f"data.num_workers={args.workers}",
            f"data.augment={not args.no_augment}",
            "data.persistent_workers=false",
            f"train.device={args.device}",
            f"train.threads={'null' if args.threads is None else args.threads}",
            "train.precision=fp32" if args.device == "cpu" else "train.precision=bf16",
            "train.channels_last=false" if args.device == "cpu" else "train.channels_last=true",
            f"train.max_steps={args.steps}",
            f"train.log_every={max(1, args.steps // 4)}",
            "train.val_every=0",
            "train.ckpt_every=0",
            "train.final_test=false",
            "train.progress=false",
        ],
    )
    run = scratch / name
    start = time.monotonic()
    train(cfg, run)
    wall = time.monotonic() - start
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    windows = [r for r in records if r["kind"] == "train"][1:]  # the first one is warm-up
    samples = sum(r["samples"] for r in windows)
    seconds = sum(r["samples"] / r["samples_per_s"] for r in windows)
    params = next(r for r in records if r["kind"] == "start")["parameters"]
    return {
        "config": name,
        "parameters": params,
        "steps": args.steps,
        "samples_per_s": samples / seconds if seconds else float("nan"),
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--threads", type=int, help="intra-op threads (default: PyTorch's)")
    parser.add_argument("--no-augment", action="store_true", help="train without augmentation")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--configs", nargs="+", default=["tiny", "bttr-size"], choices=list(CONFIGS)
    )
    args = parser.parse_args()

    import torch

    from hmer.paths import crohme_root

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        source = "crohme" if crohme_root() is not None else synthetic_source(scratch, args.samples)
        label = "CROHME train" if source == "crohme" else "synthetic"
        threads = args.threads or torch.get_num_threads()
        print(
            f"data: first {args.samples} {label} expressions; torch {torch.__version__}, "
            f"{threads} threads, {args.workers} loader workers, device {args.device}"
        )
        for name in args.configs:
            r = measure(name, source, args, scratch)
            print(
                f"{r['config']:<10} {r['parameters'] / 1e6:6.2f}M params  "
                f"{r['samples_per_s']:8.1f} samples/s  "
                f"({r['steps']} steps, wall {r['wall_s']:.0f}s)"
            )


if __name__ == "__main__":
    main()
