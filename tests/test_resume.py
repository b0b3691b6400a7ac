"""Stopping a run (signal or otherwise) and resuming it gives exactly the uninterrupted result."""

from __future__ import annotations

import os
import signal
import threading
import time

import torch
from helpers import RESUME_OVERRIDES, assert_same_tensors, read_records, tiny_config

from hmer.cli.train import train_main
from hmer.engine.train import train


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

    thread = threading.Thread(target=interrupt_once_training, daemon=True)
    thread.start()
    result = train(cfg, run)
    thread.join()
    assert result.status == "interrupted" and result.signum == signal.SIGINT
    assert 0 < result.step < 10000
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["train_state"]["step"] == result.step
    assert read_records(run, "interrupted")[-1]["step"] == result.step
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert train_main(["--resume", str(tmp_path / "empty")]) == 2
    assert "last.pt: no such checkpoint file" in capsys.readouterr().err
