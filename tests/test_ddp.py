"""torchrun + DistributedDataParallel on CPU (gloo): two ranks train as one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from helpers import ROOT, TINY, read_records, tiny_overrides


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_cpu_ranks_end_with_identical_weights_and_count_both_ranks_samples(
    tiny_data,
    tmp_path,
):
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes", "1", "--nproc_per_node", "2", "--master_port", str(free_port()),
        str(ROOT / "train.py"), str(TINY), *tiny_overrides(tiny_data),
        "train.max_steps=4", "train.log_every=2", "train.val_every=0", "train.final_test=false",
        "--out", str(run),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    (start,) = read_records(run, "start")
    assert start["world_size"] == 2
    end = read_records(run, "end")[-1]
    first, second = end["weights_sha256"]
    assert first == second  # DDP kept the replicas in sync
    per_rank = end["samples_per_rank"]
    assert len(per_rank) == 2 and min(per_rank) > 0
    # Logged sample counts (and so samples/s) are all-reduced over both ranks.
    assert sum(r["samples"] for r in read_records(run, "train")) == sum(per_rank)
    # Only rank 0 writes: one start record, one config, no stray files from rank 1.
    assert sorted(p.name for p in run.iterdir()) == [
        "best.pt", "config.yaml", "curves.png", "last.pt", "metrics.jsonl",
    ]  # fmt: skip
