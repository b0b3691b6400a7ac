"""``benchmarks/gpu_probe.py``, the probe a speed run starts with: it times every way of running
the training step on the config's own batch shapes and chooses the fastest one that works
(here on a CPU with the tiny model; on the GPU machine the compiled variants join in)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from helpers import TINY, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_probe():
    spec = importlib.util.spec_from_file_location("gpu_probe", ROOT / "benchmarks" / "gpu_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_probe_times_each_variant_records_failures_and_chooses_a_working_one(
    gpu_probe,
    tiny_data,
    tmp_path,
    monkeypatch,
    capsys,
):
    broken = ["train.compile=true", "train.compile_mode=no-such-mode"]
    monkeypatch.setattr(gpu_probe, "COMPILED", {"broken": broken})
    out = tmp_path / "probe.json"
    argv = [str(TINY), *tiny_overrides(tiny_data), "--out", str(out), "--steps", "2"]
    assert gpu_probe.main([*argv, "--shapes", "2", "--compile"]) == 0
    probe = json.loads(out.read_text())
    assert probe["versions"]["torch"] and probe["versions"]["device"] == "cpu"
    by_name = {v["name"]: v for v in probe["variants"]}
    assert set(by_name) == {"eager", "broken"}
    eager = by_name["eager"]
    assert eager["ok"] and eager["samples_per_s"] > 0
    assert eager["step_ms"] == pytest.approx(
        eager["forward_ms"] + eager["backward_ms"] + eager["optimizer_ema_ms"], abs=0.01
    )
    assert 1 <= len(eager["shapes"]) <= 2
    # The crash of one variant is recorded with its error and never chosen.
    assert not by_name["broken"]["ok"] and "no-such-mode" in by_name["broken"]["error"]
    assert probe["choice"] == {"name": "eager", "overrides": eager["overrides"]}
    assert "choice: eager" in capsys.readouterr().out
