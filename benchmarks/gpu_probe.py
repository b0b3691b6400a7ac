"""The probe that runs before a speed run: time the training step of a config on its real static
batch shapes, for each way of running it, and choose the fastest that works.

    python benchmarks/gpu_probe.py [CONFIG] [KEY=VALUE ...] [--out probe.json] [--budget 90]
        [--shapes 6] [--steps 6] [--compile]

Variants (each a set of config overrides): eager with cuDNN autotuning off and on, and, on CUDA
(or with ``--compile``), ``torch.compile`` on static shapes and ``torch.compile`` in
``reduce-overhead`` mode (CUDA graphs). Each variant warms every probed shape once, then times
``--steps`` optimizer steps cycling over them, split into forward / backward / optimizer + EMA
(CUDA events on a GPU, host clocks on a CPU), with the host time per step and, on CUDA, the
host-device syncs counted (``torch.cuda.set_sync_debug_mode``). A variant that crashes is
recorded with its error and skipped; variants not reached within ``--budget`` seconds are
recorded as skipped. Prints the torch / CUDA / cuDNN versions and the attention backends, and
writes ``probe.json``: ``{"versions", "shapes", "variants": [...], "choice": {"name",
"overrides"}}``. ``scripts/gpu_speedrun.sh`` passes the choice's overrides to ``train.py``.

The shapes are the most frequent canvases of the config's training set (``data.static_shapes``),
so the data is loaded (use ``data.cache_dir`` to share the renders with the run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]

#: name -> config overrides; the compiled ones only where compilation is worth trying.
EAGER = {
    "eager": ["train.compile=false", "train.cudnn_benchmark=false"],
    "eager+autotune": ["train.compile=false", "train.cudnn_benchmark=true"],
}
COMPILED = {
    "compile": ["train.compile=true", "train.compile_mode=default", "train.cudnn_benchmark=true"],
    "cuda-graphs": [
        "train.compile=true",
        "train.compile_mode=reduce-overhead",
        "train.cudnn_benchmark=true",
    ],
}


def versions(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"torch": torch.__version__, "device": str(device)}
    if device.type == "cuda":
        info |= {
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "gpu": torch.cuda.get_device_name(device),
            "attention": {
                "flash": torch.backends.cuda.flash_sdp_enabled(),
                "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
                "math": torch.backends.cuda.math_sdp_enabled(),
            },
        }
    return info


class Clock:
    """Marks on the device's timeline (CUDA events) or the host's (CPU)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def mark(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def ms(self, start: Any, end: Any) -> float:
        if not self.cuda:
            return 1000.0 * (end - start)
        end.synchronize()
        return float(start.elapsed_time(end))


def probe_variant(name: str, overrides: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Time one variant; the returned record holds its figures or its error."""
    from hmer.config import load_config
    from hmer.engine.build import build_model, build_optimizer
    from hmer.engine.data import build_data
    from hmer.engine.ema import Ema
    from hmer.engine.evaluate import autocast

    cfg = load_config(args.config, [*args.overrides, "data.static_shapes=true", *overrides])
    device = torch.device(cfg.train.device if cfg.train.device != "auto" else "cuda")
    torch.backends.cudnn.benchmark = cfg.train.cudnn_benchmark
    data = build_data(cfg, device=device, load_tests=False)
    counts = Counter(
        (len(batch), *batch.shape)
        for batch in data.batches.sampler.epoch_batches()  # type: ignore[attr-defined]
    )
    shapes = [shape for shape, _ in counts.most_common(args.shapes)]
    model = build_model(cfg, data.vocab).to(device)
    memory = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory)
    optimizer = build_optimizer(model, cfg, device)
    ema = Ema(model, cfg.train.ema_decay) if cfg.train.ema else None
    step_model: Any = model
    if cfg.train.compile:
        step_model = torch.compile(model, mode=cfg.train.compile_mode, dynamic=False)
    batches = []
    for count, height, width, length in shapes:
        images = torch.rand(count, 1, height, width, device=device).contiguous(memory_format=memory)
        mask = torch.zeros(count, height, width, dtype=torch.bool, device=device)
        tokens = torch.randint(4, len(data.vocab), (count, length), device=device)
        lengths = torch.full((count,), length, device=device)
        batches.append((images, mask, tokens, lengths))
    clock = Clock(device)

    def step(batch: tuple[torch.Tensor, ...]) -> tuple[float, float, float, float]:
        began = time.perf_counter()
        t0 = clock.mark()
        with autocast(device, cfg.train.precision):
            loss = step_model(*batch)["loss"]
        t1 = clock.mark()
        loss.backward()
        t2 = clock.mark()
        if cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(model)
        t3 = clock.mark()
        host = 1000.0 * (time.perf_counter() - began)
        return clock.ms(t0, t1), clock.ms(t1, t2), clock.ms(t2, t3), host

    warm_began = time.perf_counter()
    for batch in batches:  # autotuning and compilation happen here, once per shape
        step(batch)
    warm_s = time.perf_counter() - warm_began
    syncs = None
    timings = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.set_sync_debug_mode("warn")
        try:
            began = time.perf_counter()
            for i in range(args.steps):
                timings.append(step(batches[i % len(batches)]))
            wall = time.perf_counter() - began
        finally:
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("default")
        if device.type == "cuda":
            # Clock.ms synchronizes on purpose (3 per step); anything beyond is the step's own.
            syncs = max(0, sum("synchroniz" in str(w.message) for w in caught) - 3 * args.steps)
    samples = sum(batches[i % len(batches)][0].shape[0] for i in range(args.steps))
    mean = [sum(t[k] for t in timings) / len(timings) for k in range(4)]
    return {
        "name": name,
        "overrides": overrides,
        "ok": True,
        "warm_s": round(warm_s, 3),
        "forward_ms": round(mean[0], 3),
        "backward_ms": round(mean[1], 3),
        "optimizer_ema_ms": round(mean[2], 3),
        "step_ms": round(sum(mean[:3]), 3),
        "host_ms": round(mean[3], 3),
        "samples_per_s": round(samples / wall, 1),
        "host_syncs_per_step": None if syncs is None else syncs / args.steps,
        "shapes": [list(s) for s in shapes],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=str(ROOT / "configs" / "crohme_h200.yaml"))
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=Path("probe.json"))
    parser.add_argument("--budget", type=float, default=90.0, help="seconds for all variants")
    parser.add_argument("--shapes", type=int, default=6, help="most frequent shapes probed")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant")
    parser.add_argument("--compile", action="store_true", help="try torch.compile on a CPU too")
    args = parser.parse_args(argv)

    from hmer.config import load_config

    cfg = load_config(args.config, args.overrides)
    device = torch.device(
        cfg.train.device
        if cfg.train.device != "auto"
        else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    args.overrides = [*args.overrides, f"train.device={device.type}"]
    info = versions(device)
    print(json.dumps(info), flush=True)
    variants = dict(EAGER)
    if device.type == "cuda" or args.compile:
        variants |= COMPILED
    if device.type != "cuda":  # no cuDNN to autotune
        variants.pop("eager+autotune")
    began = time.perf_counter()
    records = []
    for name, overrides in variants.items():
        if time.perf_counter() - began > args.budget:
            records.append({"name": name, "overrides": overrides, "ok": False, "skipped": True})
            print(f"{name}: skipped (probe budget of {args.budget:.0f}s spent)", flush=True)
            continue
        try:
            record = probe_variant(name, overrides, args)
        except Exception as error:  # a variant that crashes is recorded, never fatal
            record = {"name": name, "overrides": overrides, "ok": False, "error": repr(error)}
            traceback.print_exc(file=sys.stderr)
        records.append(record)
        if record["ok"]:
            print(
                f"{name}: {record['step_ms']:.1f} ms/step (forward {record['forward_ms']:.1f}, "
                f"backward {record['backward_ms']:.1f}, optimizer+EMA "
                f"{record['optimizer_ema_ms']:.1f}; host {record['host_ms']:.1f}), "
                f"{record['samples_per_s']:.0f} samples/s, warm-up {record['warm_s']:.1f}s, "
                f"host syncs/step {record['host_syncs_per_step']}",
                flush=True,
            )
        else:
            print(f"{name}: failed: {record.get('error')}", flush=True)
    working = [r for r in records if r["ok"]]
    best = max(working, key=lambda r: r["samples_per_s"]) if working else None
    choice = {"name": best["name"], "overrides": best["overrides"]} if best else None
    summary = {"versions": info, "variants": records, "choice": choice}
    from hmer.io import atomic_write_text

    atomic_write_text(args.out, json.dumps(summary, indent=1) + "\n")
    print(
        f"choice: {choice['name'] if choice else 'none (every variant failed)'}; wrote {args.out}"
    )
    return 0 if choice else 1


if __name__ == "__main__":
    sys.exit(main())
