"""``scripts/gpu_speedrun.sh --smoke``: the whole speed-run path at CPU size, on the tiny data set
(probe, static shapes warmed before the clock, training set resident on the device, time-based
schedule, final test, exported weights), as a GPU session runs it before spending device time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_speed_run_runs_end_to_end_at_cpu_size(tiny_data, tmp_path):
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "SMOKE_BUDGET": "40s",
        "PROBE_BUDGET": "30",
        "RENDER_CACHE": str(tmp_path / "renders"),
    }
    data = [
        f"data.train={tiny_data}",
        "data.train_split=train",
        f"data.test={tiny_data}",
        "data.test_splits=[test]",
        "data.load_workers=0",
        "data.num_workers=0",
        "data.val_fraction=0.25",
    ]
    command = ["bash", "scripts/gpu_speedrun.sh", str(out), "--smoke", "--", *data]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    probe = json.loads((out / "probe.json").read_text())
    assert probe["choice"]["name"] == "eager"  # on a CPU: the only variant
    config = (out / "config.yaml").read_text()
    assert "static_shapes: true" in config and "on_device: true" in config
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    end = next(r for r in reversed(records) if r["kind"] == "end")
    assert end["phases_s"]["warmup"] > 0 and end["phases_s"]["training"] > 0
    train = [r for r in records if r["kind"] == "train"]
    assert train and train[-1]["distinct_shapes"] <= 64
    assert json.loads((out / "results.json").read_text())["splits"]["test"]["method"] == "beam"
    assert (out / "model.pt").stat().st_size > 0
