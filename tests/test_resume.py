"""Stopping a run (signal or otherwise) and resuming it gives exactly the uninterrupted result;
killed and resumed any number of times, its directory stays consistent."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
import torch
from helpers import RESUME_OVERRIDES, assert_same_tensors, read_records, tiny_config

import hmer.engine.train as train_module
from hmer.cli.train import train_main
from hmer.config import load_config
from hmer.engine.run_dir import STALE_TEMP, remove_stale_temps, rewind_metrics
from hmer.engine.train import train
from hmer.io import atomic_open


def test_stop_then_resume_gives_identical_weights(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, *RESUME_OVERRIDES)
    straight = train(cfg, tmp_path / "straight")
    assert straight.status == "finished" and straight.step == 8

    first = train(cfg, tmp_path / "resumed", stop_after_steps=4)
    assert first.status == "interrupted" and first.step == 4
    half = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    assert half["train_state"]["step"] == 4 and half["train_state"]["sampler"]["consumed"] == 1

    assert train_main(["--resume", str(tmp_path / "resumed")]) == 0  # the CLI path
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    assert b["train_state"]["step"] == 8
    assert_same_tensors(a["model"], b["model"], "ema weights")
    assert_same_tensors(a["train_state"]["model"], b["train_state"]["model"], "weights")
    assert_same_tensors(
        a["train_state"]["optimizer"]["state"], b["train_state"]["optimizer"]["state"], "adam"
    )
    # The resumed run appended to the same log: the losses match the straight run's too.
    losses = [r["loss"] for r in read_records(tmp_path / "straight", "train")]
    resumed = [r["loss"] for r in read_records(tmp_path / "resumed", "train")]
    assert resumed == losses


def test_sigint_saves_last_checkpoint_and_returns_cleanly(tiny_data, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(tiny_data, "train.max_steps=10000", "train.log_every=1", "train.val_every=0")

    def interrupt_once_training() -> None:
        metrics = run / "metrics.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if metrics.exists() and '"kind": "train"' in metrics.read_text():
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    handler_before = signal.getsignal(signal.SIGINT)  # SIG_IGN under a background job
    thread = threading.Thread(target=interrupt_once_training, daemon=True)
    thread.start()
    result = train(cfg, run)
    thread.join()
    assert result.status == "interrupted" and result.signum == signal.SIGINT
    assert 0 < result.step < 10000
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["train_state"]["step"] == result.step
    assert read_records(run, "interrupted")[-1]["step"] == result.step
    assert signal.getsignal(signal.SIGINT) is handler_before  # handlers restored


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert train_main(["--resume", str(tmp_path / "empty")]) == 2
    assert "last.pt: no such checkpoint file" in capsys.readouterr().err


# --- the run directory stays consistent across kills and resumes ---------------------------------


def write_records(path, records, tail=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)


def test_rewinding_keeps_what_was_logged_when_the_checkpoint_was_saved(tmp_path):
    path = tmp_path / "metrics.jsonl"
    start = {"kind": "start", "parameters": 10}
    seen = [start, {"kind": "train", "step": 2}, {"kind": "train", "step": 4}]
    seen += [{"kind": "val", "step": 4}, {"kind": "interrupted", "step": 4, "signal": 15}]
    later = [{"kind": "train", "step": 6}, {"kind": "val", "step": 6}]
    write_records(path, seen + later, tail='{"kind": "tra')  # a line a kill cut short
    assert rewind_metrics(path, 4) == 2
    assert read_records(tmp_path) == seen

    # The final evaluation follows the last save: its records go, to be written again.
    final = [start, {"kind": "train", "step": 8}, {"kind": "val", "step": 8}]
    write_records(path, [*final, {"kind": "test", "step": 8, "split": "2014", "exprate": 1.0}])
    assert rewind_metrics(path, 8) == 1 and read_records(tmp_path) == final

    inode = path.stat().st_ino
    assert rewind_metrics(path, 8) == 0 and path.stat().st_ino == inode  # nothing to rewrite
    assert rewind_metrics(tmp_path / "absent.jsonl", 3) == 0


def test_only_the_atomic_writers_temp_files_count_as_stale(tmp_path):
    with atomic_open(tmp_path / "best.pt") as handle:  # the writer's own naming, mid-save
        handle.write(b"x")
        (in_flight,) = [p.name for p in tmp_path.iterdir()]
        assert STALE_TEMP.fullmatch(in_flight)
    stale = [".last.pt.k2j_h5g6.tmp", ".metrics.jsonl.abcdefgh.tmp"]
    kept = ["notes.tmp", ".notes.tmp", ".last.pt.short.tmp", "last.pt", "best.pt"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"")
    assert remove_stale_temps(tmp_path) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


@pytest.fixture(scope="module")
def killed_and_resumed(tiny_data, tmp_path_factory):
    """A run killed at step 5 (after its step-4 checkpoint, before the next save finished: the
    save's temp file left behind), resumed and stopped at step 6, resumed again to the end."""
    run = tmp_path_factory.mktemp("killed") / "run"
    cfg = tiny_config(tiny_data, *RESUME_OVERRIDES, "train.ckpt_every=2")
    real_save = train_module.save_checkpoint

    def killed_at_step_5(path, **parts):
        if parts["meta"]["step"] == 5:
            (run / ".last.pt.x1y2z3w4.tmp").write_bytes(b"half a checkpoint")
            raise RuntimeError("killed")
        return real_save(path, **parts)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_module, "save_checkpoint", killed_at_step_5)
        with pytest.raises(RuntimeError, match="killed"):
            train(cfg, run, stop_after_steps=5)
    assert [r["step"] for r in read_records(run, "train")] == [2, 4, 5]  # 5: past last.pt
    assert train(cfg, run, resume=True, stop_after_steps=2).step == 6
    assert train_main(["--resume", str(run)]) == 0
    return run


def test_killed_and_resumed_runs_log_every_step_once_in_order(killed_and_resumed):
    run = killed_and_resumed
    records = read_records(run)
    assert [r["kind"] for r in records].count("start") == 1
    assert [r["step"] for r in records if r["kind"] == "train"] == [2, 4, 6, 8]
    steps = [r["step"] for r in records if "step" in r]
    assert steps == sorted(steps)
    for kind in {r["kind"] for r in records}:
        of_kind = [r["step"] for r in records if r["kind"] == kind and "step" in r]
        assert len(of_kind) == len(set(of_kind)), f"{kind} logged twice at a step"
    assert [r["step"] for r in records if r["kind"] == "interrupted"] == [6]
    assert records[-1]["kind"] == "end" and records[-1]["step"] == 8
    assert not list(run.glob("*.tmp"))


def test_resuming_a_finished_run_says_so_and_changes_nothing(killed_and_resumed, capsys):
    run = killed_and_resumed
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.iterdir()}
    assert train_main(["--resume", str(run)]) == 0
    assert "already finished at step 8: nothing to resume" in capsys.readouterr().err
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.iterdir()} == before
    result = train(load_config(run / "config.yaml"), run, resume=True)
    assert (result.status, result.step) == ("finished", 8)


def test_sigterm_during_a_closing_save_exits_without_leaving_its_temp_file(
    tiny_data, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    cfg = tiny_config(tiny_data, *RESUME_OVERRIDES, "train.max_steps=2")
    real_save = torch.save

    def sigterm_mid_save(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # handled here: the temp file is open
        real_save(*args, **kwargs)

    def not_handled(signum, frame):
        raise AssertionError("SIGTERM reached the handler outside the run")

    monkeypatch.setattr(torch, "save", sigterm_mid_save)
    outside = signal.signal(signal.SIGTERM, not_handled)
    try:
        with pytest.raises(SystemExit) as caught:
            train(cfg, run)  # ckpt_every=0: the first save comes after the training loop
    finally:
        signal.signal(signal.SIGTERM, outside)
    assert caught.value.code == 128 + signal.SIGTERM
    assert not list(run.glob("*.tmp")) and not list(run.glob("*.pt"))
