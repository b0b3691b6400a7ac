"""What a run records: metrics.jsonl lines, wall time by phase, the train window and weight
digests."""

from __future__ import annotations

import json
import time

import torch
from torch import nn

from hmer.engine.metrics_log import MetricsLog, Phases, TrainWindow, record_line, weights_digest


def test_metrics_log_appends_one_json_object_per_line_and_rank_zero_only(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    log.write({"kind": "train", "step": 1})
    log.write({"kind": "val", "step": 2})
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2]  # flushed
    log.close()
    again = MetricsLog(path)
    again.write({"kind": "end", "step": 3})
    again.close()
    assert len(path.read_text().splitlines()) == 3
    silent = MetricsLog(None)  # other ranks
    silent.write({"kind": "train"})
    silent.close()


def test_a_record_line_reads_back_as_the_record_it_was(tmp_path):
    record = {"kind": "val", "step": 3, "exprate": 12.5, "best": None, "loss": float("nan")}
    line = record_line(record)
    assert line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line).keys() == record.keys() and json.loads(line)["exprate"] == 12.5
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.write(record)
    log.close()
    assert (tmp_path / "metrics.jsonl").read_text() == line  # what a rewind writes back


def test_phases_add_up_wall_time_less_the_phases_inside(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    phases = Phases(startup=1.0)
    with phases.timed("training", excluding=("validation", "saving")):
        now[0] += 10.0
        with phases.timed("validation"):
            now[0] += 3.0
        now[0] += 1.0
    with phases.timed("validation"):
        now[0] += 2.0
    assert phases == {"startup": 1.0, "validation": 5.0, "training": 11.0}


def test_train_window_sums_on_the_device_and_keeps_shapes_across_windows():
    window = TrainWindow(torch.device("cpu"))
    window.add(torch.tensor(2.0), 4, (4, 1, 32, 64, 5))
    window.add(torch.tensor(1.0, dtype=torch.float16), 2, (2, 1, 32, 64, 5))
    assert window.loss.item() == 3.0 and window.samples == 6 and window.steps == 2
    window.data_wait_s += 0.5
    window.reset(123.0)
    assert window.loss.item() == 0.0 and window.samples == window.steps == 0
    assert window.data_wait_s == 0.0 and window.start == 123.0
    assert len(window.shapes) == 2


def test_weights_digest_tells_identical_weights_apart_from_others():
    torch.manual_seed(0)
    a = nn.Linear(3, 2)
    b = nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert weights_digest(a) == weights_digest(b)
    with torch.no_grad():
        b.bias[0] += 1e-6
    assert weights_digest(a) != weights_digest(b)
