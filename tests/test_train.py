"""The training loop on a tiny model and a tiny dataset that the tests draw themselves.

``helpers.tiny_dataset`` writes a BTTR-layout folder (``train/`` and ``test/`` with
``caption.txt``) of expressions made of a few stroke symbols rendered with the real renderer, so
these tests need no CROHME data; the ``tiny_data`` and ``tiny_run`` fixtures are in conftest.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers import TINY, expression_traces, read_records, tiny_config, write_inkml

from hmer.config import load_config
from hmer.engine.budget import Plan
from hmer.engine.train import train


def test_validation_slice_is_fixed_by_seed_not_by_loading_order(tiny_data):
    from hmer.data.datasets import load_samples
    from hmer.engine.data import split_validation

    samples, _ = load_samples(tiny_data, "train")
    train_a, val_a = split_validation(samples, 0.25, seed=0)
    _, val_b = split_validation(samples[::-1], 0.25, seed=0)
    assert len(val_a) == 4 and len(train_a) == 12
    assert {s.name for s in val_a} == {s.name for s in val_b}
    assert not {s.name for s in val_a} & {s.name for s in train_a}
    _, val_c = split_validation(samples, 0.25, seed=1)
    assert {s.name for s in val_c} != {s.name for s in val_a}


def test_validation_holds_out_whole_formulas():
    """Half of CROHME's training samples repeat a formula another writer also wrote; validation
    must not score formulas that training has seen, or it rewards memorizing them."""
    from hmer.data.datasets import Sample
    from hmer.engine.data import split_validation

    image = np.zeros((4, 4), np.uint8)
    formulas = [["x"], ["1", "+", "1"], ["7"], ["x", "=", "7"], ["-", "1"]]
    samples = [Sample(f"w{w}_{i}", image, f) for i, f in enumerate(formulas) for w in range(i + 1)]
    for seed in range(20):
        train, val = split_validation(samples, 0.2, seed)
        assert len(train) + len(val) == len(samples) == 15
        assert val and train
        seen = {tuple(s.tokens) for s in train}
        assert not any(tuple(s.tokens) in seen for s in val)
        assert len(val) < 3 + 5  # about 20%: whole formulas, stopping once 3 are held out


def test_augmentation_is_a_function_of_seed_epoch_and_sample(tiny_data):
    from hmer.data.augment import AugmentConfig, build_augment
    from hmer.data.datasets import load_samples
    from hmer.data.vocab import Vocab
    from hmer.engine.data import SampleDataset

    samples, _ = load_samples(tiny_data, "train")
    dataset = SampleDataset(samples, Vocab.crohme(), build_augment(AugmentConfig()), seed=0)
    again = SampleDataset(samples, Vocab.crohme(), build_augment(AugmentConfig()), seed=0)
    first = [dataset[(i, 0)][0] for i in range(8)]
    assert all(torch.equal(a, again[(i, 0)][0]) for i, a in enumerate(first))
    assert any(not torch.equal(a, dataset[(i, 1)][0]) for i, a in enumerate(first))
    assert torch.equal(dataset[3][0], dataset[3][0])  # a bare index is never augmented
    image, ids, name = dataset[0]
    assert image.dtype == torch.float32 and image.shape[0] == 1 and name == samples[0].name
    assert ids == Vocab.crohme().encode(samples[0].tokens)


def test_tiny_run_writes_config_metrics_checkpoints_results_and_plot(tiny_run):
    run = tiny_run
    cfg = load_config(run / "config.yaml")  # the resolved config loads back as it was
    assert cfg.train.epochs == 3 and cfg.model.d_model == 64
    train_records = read_records(run, "train")
    assert train_records and all(math.isfinite(r["loss"]) for r in train_records)
    assert all(r["samples_per_s"] > 0 and r["lr"] > 0 for r in train_records)
    # The share of wall time spent waiting for the input pipeline: what tells a slow GPU run
    # whether data loading is the limit.
    assert all(0.0 <= r["data_wait_share"] <= 1.0 for r in train_records)
    # Distinct batch shapes so far (what cuDNN plans for) only grow; no GPU, no memory figure.
    shapes = [r["distinct_shapes"] for r in train_records]
    assert shapes == sorted(shapes) and shapes[0] >= 1
    assert all(r["peak_memory_mb"] is None for r in train_records)
    end = read_records(run, "end")[-1]
    assert [r["step"] for r in read_records(run, "val")][-1] == end["step"]  # validated at the end
    assert [r["split"] for r in read_records(run, "test")] == ["test"]  # tested once, at the end
    assert (run / "last.pt").is_file() and (run / "best.pt").is_file()
    results = json.loads((run / "results.json").read_text())
    assert results["splits"]["test"]["method"] == "beam"
    assert 0.0 <= results["splits"]["test"]["exprate"] <= 100.0
    tsv = (run / "predictions_test.tsv").read_text().splitlines()
    assert len(tsv) == 1 + 4  # header + one row per test expression
    assert (run / "curves.png").stat().st_size > 1000


def test_best_checkpoint_is_chosen_on_validation_only(tiny_run):
    val = read_records(tiny_run, "val")
    best = max(val, key=lambda r: (r["exprate"], -r["step"]))  # the first of the best
    stored = torch.load(tiny_run / "best.pt", weights_only=True)
    assert stored["meta"]["step"] == best["step"]
    assert "train_state" not in stored  # best.pt holds inference weights only


def test_ema_weights_are_the_inference_weights(tiny_run):
    last = torch.load(tiny_run / "last.pt", weights_only=True)
    raw, ema = last["train_state"]["model"], last["model"]
    assert raw.keys() == ema.keys()
    assert any(not torch.equal(raw[k], ema[k]) for k in raw if raw[k].is_floating_point())
    assert last["train_state"]["ema"]["updates"] == last["train_state"]["step"]


def test_existing_run_is_not_overwritten(tiny_run):
    from hmer.errors import HmerError

    with pytest.raises(HmerError, match="already holds a run"):
        train(load_config(tiny_run / "config.yaml"), tiny_run)


def test_time_budget_measures_then_trains_to_the_deadline_on_a_time_schedule(tiny_data, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(
        tiny_data,
        "train.time_budget=8s",
        "train.budget_warmup_steps=1",
        "train.budget_measure_steps=2",
        "train.val_every=0",
        "train.log_every=4",
    )
    result = train(cfg, run)
    (plan,) = read_records(run, "plan")
    assert plan["how"] == "time_budget" and plan["budget_s"] == 8.0
    assert plan["step_s"] > 0 and plan["test_s"] > 0 and plan["val_s"] > 0
    reserved = plan["safety_s"] + plan["test_s"] + plan["val_s"] + 2 * plan["save_s"]
    assert plan["deadline_s"] == pytest.approx(8.0 - reserved - plan["finish_s"])
    # Planned after 1 warm-up + 2 timed steps (1 timed step if the machine is slow enough to
    # cut the timing short).
    assert 2 <= plan["step"] <= 3
    # Training ran until the deadline, whatever the planned step estimate said, and the
    # learning rate followed the clock down to its floor.
    last = torch.load(run / "last.pt", weights_only=True)
    state = last["train_state"]
    assert state["clock"]["elapsed_s"] > plan["deadline_s"]
    assert state["scheduler"]["progress"] > 0.95
    assert state["step"] == result.step >= plan["step"]
    floor = cfg.train.lr * cfg.train.min_lr_ratio
    assert read_records(run, "train")[-1]["lr"] < floor + 0.02 * cfg.train.lr
    # A budget that fits too few steps to learn anything says so when it is planned.
    warned = [r for r in read_records(run, "warning") if "steps" in r["message"]]
    assert bool(warned) == (plan["total_steps"] < 300)
    fields = {k: v for k, v in plan.items() if k not in ("kind", "step")}
    assert Plan(**fields).describe().startswith("plan: ")


def test_a_resumed_time_budget_keeps_its_clock(tiny_data, tmp_path):
    run = tmp_path / "run"
    common = ("train.budget_warmup_steps=1", "train.budget_measure_steps=2", "train.val_every=0")
    cfg = tiny_config(tiny_data, "train.time_budget=120s", "train.log_every=2", *common)
    first = train(cfg, run, stop_after_steps=4)
    assert first.status == "interrupted"
    saved = torch.load(run / "last.pt", weights_only=True)["train_state"]["clock"]
    assert saved["elapsed_s"] > 0 and saved["train_start_s"] is not None
    # Resumed with a budget its clock has already spent: it stops at once, its clock going on
    # from the first process's (a fresh clock would train for the whole budget again).
    spent = tiny_config(tiny_data, "train.time_budget=1s", "train.log_every=2", *common)
    train(spent, run, resume=True)
    end = read_records(run, "end")[-1]
    assert end["elapsed_s"] > saved["elapsed_s"]
    assert end["step"] <= 4 + 2
    assert set(end["phases_s"]) >= {"startup", "data", "training", "saving"}


def test_loader_workers_run_one_intra_op_thread_each():
    """Many workers x many threads each oversubscribe the cores of a GPU host; a worker's
    augmentation ops are small, so each worker runs one torch thread."""
    import signal

    from hmer.engine.data import _seed_worker

    threads, handler = torch.get_num_threads(), signal.getsignal(signal.SIGINT)
    try:
        _seed_worker(0, seed=0, rank=0)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
        signal.signal(signal.SIGINT, handler)


def test_init_from_starts_training_from_a_checkpoints_weights(tiny_run, tiny_data, tmp_path):
    """Fine-tuning (e.g. after synthetic pre-training): the weights come from the checkpoint;
    with a zero learning rate they are still exactly those weights after training (BatchNorm
    statistics aside: they follow the new data)."""
    cfg = tiny_config(
        tiny_data,
        f"train.init_from={tiny_run / 'best.pt'}",
        "train.lr=0",
        "train.max_steps=2",
        "train.val_every=0",
        "train.final_test=false",
    )
    train(cfg, tmp_path / "run")
    start = torch.load(tiny_run / "best.pt", weights_only=True)["model"]
    after = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    assert start.keys() == after.keys()
    weights = [k for k in start if "running_" not in k and "num_batches" not in k]
    assert len(weights) > 10 and all(torch.equal(start[k], after[k]) for k in weights)


def test_init_from_a_checkpoint_of_another_shape_names_the_file(tiny_run, tiny_data, tmp_path):
    from hmer.errors import CheckpointError

    cfg = tiny_config(tiny_data, f"train.init_from={tiny_run / 'best.pt'}", "model.d_model=32")
    with pytest.raises(CheckpointError, match=r"best\.pt: weights do not fit the model"):
        train(cfg, tmp_path / "run")


def test_samples_with_ink_are_drawn_again_from_jittered_strokes():
    """augment.jitter_p: a training sample with online ink is re-rendered from jittered
    strokes, reproducibly per (seed, epoch, sample); evaluation indexing never is."""
    import functools

    from hmer.data.augment import AugmentConfig, reink
    from hmer.data.datasets import Sample
    from hmer.data.inkml import RenderConfig, render_traces
    from hmer.data.preprocess import PreprocessConfig, preprocess
    from hmer.data.vocab import Vocab
    from hmer.engine.data import SampleDataset

    traces = tuple(
        np.asarray(t, np.float32)
        for t in expression_traces(["x", "+", "7"], np.random.default_rng(0))
    )
    stored = preprocess(render_traces(traces))
    samples = [Sample("ink", stored, ["x", "+", "7"], traces), Sample("image", stored, ["x"])]
    redraw = functools.partial(
        reink, cfg=AugmentConfig(), render=RenderConfig(), preprocess=PreprocessConfig()
    )
    always = SampleDataset(samples, Vocab.crohme(), reink=redraw, reink_p=1.0)
    never = SampleDataset(samples, Vocab.crohme(), reink=redraw, reink_p=0.0)

    def pixels(dataset, key):
        return dataset[key][0]

    assert torch.equal(pixels(always, 0), pixels(never, (0, 0)))  # the stored image
    assert not torch.equal(pixels(always, (0, 0)), pixels(always, 0))
    assert torch.equal(pixels(always, (0, 0)), pixels(always, (0, 0)))
    assert not torch.equal(pixels(always, (0, 0)), pixels(always, (0, 1)))
    assert torch.equal(pixels(always, (1, 0)), pixels(always, 1))  # no ink: nothing to redraw


@pytest.mark.parametrize("jitter_p", [0.0, 0.5])
def test_training_keeps_online_ink_only_when_strokes_are_jittered(tmp_path, jitter_p):
    from hmer.engine.data import build_data

    for i in range(8):
        write_inkml(tmp_path / "ink" / "train" / f"s{i}.inkml", 2 + i % 3, f"${i}+x$")
    cfg = load_config(
        TINY,
        [
            f"data.train={tmp_path / 'ink'}",
            "data.load_workers=0",
            "data.val_fraction=0.25",
            f"augment.jitter_p={jitter_p}",
        ],
    )
    data = build_data(cfg, load_tests=False)
    assert len(data.train) == 6 and len(data.val) == 2
    assert all((s.traces is not None) == (jitter_p > 0) for s in data.train.samples)
    assert data.train.reink_p == jitter_p


def test_symbol_donors_come_from_the_training_slice_only(tmp_path):
    """augment.swap_p: redrawn samples borrow symbols from other training expressions, never
    from the validation slice (its hands would leak into training)."""
    from hmer.data.augment import SymbolBank
    from hmer.engine.data import build_data

    for i in range(8):
        labels = [f"w{i}s{k}" for k in range(3)]
        write_inkml(tmp_path / "ink" / "train" / f"s{i}.inkml", 3, f"${i}+x$", labels)
    overrides = [
        f"data.train={tmp_path / 'ink'}",
        "data.load_workers=0",
        "data.val_fraction=0.25",
        "augment.jitter_p=0.5",
    ]
    data = build_data(load_config(TINY, [*overrides, "augment.swap_p=0.3"]), load_tests=False)
    bank = data.train.reink.keywords["bank"]
    assert isinstance(bank, SymbolBank)
    train_labels = {label for s in data.train.samples for label, _ in s.symbols}
    val_labels = {label for s in data.val for label, _ in s.symbols}
    assert len(train_labels) == 18 and len(val_labels) == 6
    assert set(bank.instances) == train_labels
    without = build_data(load_config(TINY, overrides), load_tests=False)
    assert without.train.reink.keywords["bank"] is None


def test_static_shapes_train_on_a_few_fixed_batch_shapes(tiny_data, tmp_path):
    """data.static_shapes (the GPU path): the loader's batches come in the sampler's fixed
    (B, H, W, L) shapes, augmented images included, and a run trains on them."""
    from hmer.engine.data import build_data

    overrides = (
        "data.static_shapes=true",
        "data.canvas_height_step=32",
        "data.canvas_width_step=64",
    )
    cfg = tiny_config(tiny_data, *overrides, "train.epochs=2", "train.val_every=0")
    data = build_data(cfg, load_tests=False)
    allowed = set(data.batches.sampler.shapes())
    for epoch in range(2):
        data.batches.set_epoch(epoch)
        for batch in data.loader:
            b, _, h, w = batch.images.shape
            assert (b, h, w, batch.tokens.shape[1]) in allowed
            assert b * h * w <= max(cfg.train.batch_pixels, h * w)
    assert train(cfg, tmp_path / "run").status == "finished"
    phases = read_records(tmp_path / "run", "end")[-1]["phases_s"]
    assert phases["warmup"] > 0  # every shape warmed once, before training
    # Warming leaves no trace: the same run without it ends on bit-identical weights.
    cold = tiny_config(
        tiny_data, *overrides, "train.epochs=2", "train.val_every=0", "train.warm_canvases=false"
    )
    assert train(cold, tmp_path / "cold").status == "finished"
    runs = (tmp_path / "run", tmp_path / "cold")
    digests = [read_records(run, "end")[-1]["weights_sha256"] for run in runs]
    assert digests[0] == digests[1]
    assert "warmup" not in read_records(tmp_path / "cold", "end")[-1]["phases_s"]
