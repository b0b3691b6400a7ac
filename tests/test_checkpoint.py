"""The one checkpoint format: safe loading, clear errors, small fp16 exports, RNG round trips.

The atomic writer the format uses is tested in ``test_io.py``.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from hmer.checkpoint import FORMAT, export_weights, load_checkpoint, load_model, save_checkpoint
from hmer.config import config_to_dict, load_config
from hmer.data.vocab import Vocab
from hmer.engine.build import build_model
from hmer.engine.rng import rng_state, set_rng_state
from hmer.errors import CheckpointError, ConfigError

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def tiny_model():
    cfg = load_config(TINY)
    torch.manual_seed(0)
    return build_model(cfg, Vocab.crohme()).eval(), cfg


@pytest.fixture
def checkpoint(tiny_model, tmp_path) -> Path:
    model, cfg = tiny_model
    return save_checkpoint(
        tmp_path / "model.pt",
        model=model.state_dict(),
        config=config_to_dict(cfg),
        vocab=Vocab.crohme().to_dict(),
        meta={"step": 7},
        train_state={"step": 7, "rng": [rng_state()]},
    )


def test_round_trip_through_load_model(checkpoint, tiny_model):
    model, cfg = tiny_model
    loaded, vocab, config = load_model(checkpoint, "cpu")
    assert vocab == Vocab.crohme() and config == cfg
    assert not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    payload = load_checkpoint(checkpoint, need_train_state=True)
    assert payload["format"] == FORMAT and payload["meta"]["step"] == 7
    assert payload["code_version"]


def test_export_writes_small_fp16_weights_that_load_model_reads(checkpoint, tiny_model, tmp_path):
    model, _ = tiny_model
    out = export_weights(checkpoint, tmp_path / "weights.pt")
    payload = torch.load(out, weights_only=True)
    assert "train_state" not in payload
    floats = [v for v in payload["model"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    assert out.stat().st_size < 0.6 * checkpoint.stat().st_size

    loaded, _, _ = load_model(out, "cpu")
    images = torch.rand(2, 1, 32, 64)
    mask = torch.zeros(2, 32, 64, dtype=torch.bool)
    with torch.no_grad():
        ours = model.encode(images, mask)[0]
        theirs = loaded.encode(images, mask)[0]
    assert next(loaded.parameters()).dtype == torch.float32  # fp16 on disk, fp32 in memory
    torch.testing.assert_close(theirs, ours, rtol=0.02, atol=0.02)


def _shifted_copy(checkpoint: Path, dst: Path, shift: float) -> Path:
    payload = torch.load(checkpoint, weights_only=True)
    payload["model"] = {
        k: v + shift if v.is_floating_point() else v + 1 for k, v in payload["model"].items()
    }
    torch.save(payload, dst)
    return dst


def test_export_of_several_checkpoints_is_their_average(checkpoint, tmp_path):
    other = _shifted_copy(checkpoint, tmp_path / "other.pt", shift=0.5)
    out = export_weights([checkpoint, other], tmp_path / "soup.pt", dtype=torch.float32)
    soup, first, second = (
        torch.load(p, weights_only=True)["model"] for p in (out, checkpoint, other)
    )
    for key, value in soup.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (first[key] + second[key]) / 2)
        else:  # BatchNorm counters: the last checkpoint's
            assert torch.equal(value, second[key])
    meta = torch.load(out, weights_only=True)["meta"]
    assert str(other) in meta["exported_from"]
    assert "step" not in meta and [m["step"] for m in meta["sources"]] == [7, 7]  # not the last's
    load_model(out, "cpu")


def test_checkpoints_of_different_models_are_not_averaged(checkpoint, tmp_path):
    cfg = load_config(TINY, ["model.d_model=48"])
    wider = save_checkpoint(
        tmp_path / "wider.pt",
        model=build_model(cfg, Vocab.crohme()).state_dict(),
        config=config_to_dict(cfg),
        vocab=Vocab.crohme().to_dict(),
    )
    with pytest.raises(CheckpointError, match=r"wider\.pt: weights do not match .*one model"):
        export_weights([wider, checkpoint], tmp_path / "soup.pt")
    renamed = torch.load(checkpoint, weights_only=True)
    renamed["vocab"] = Vocab(["a", "b", "c"]).to_dict()
    torch.save(renamed, tmp_path / "renamed.pt")
    with pytest.raises(CheckpointError, match=r"renamed\.pt: vocabulary mismatch"):
        export_weights([tmp_path / "renamed.pt", checkpoint], tmp_path / "soup.pt")
    assert not (tmp_path / "soup.pt").exists()


def test_export_can_change_how_the_weights_read_images_but_not_the_model(checkpoint, tmp_path):
    out = export_weights(
        checkpoint,
        tmp_path / "weights.pt",
        overrides=["render.symbol_height=20", "preprocess.symbol_height=20", "decode.beam=4"],
    )
    _, _, config = load_model(out, "cpu")
    assert config.render.symbol_height == config.preprocess.symbol_height == 20
    assert config.decode.beam == 4
    original = load_checkpoint(checkpoint)["config"]
    assert original["render"]["symbol_height"] != 20  # the source is untouched
    assert torch.load(out, weights_only=True)["meta"]["config_overrides"][0] == (
        "render.symbol_height=20"
    )

    for model_change in ("model.d_model=48", "model={d_model: 48}"):
        with pytest.raises(CheckpointError, match=rf"'{re.escape(model_change)}'.*cannot change"):
            export_weights(checkpoint, tmp_path / "other.pt", overrides=[model_change])
    with pytest.raises(ConfigError, match=r"render.symbol_height=-3"):
        export_weights(checkpoint, tmp_path / "other.pt", overrides=["render.symbol_height=-3"])
    assert not (tmp_path / "other.pt").exists()


def test_truncated_file_is_a_checkpoint_error(checkpoint):
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(checkpoint)


@pytest.mark.parametrize("key", ["model", "vocab", "config", "code_version"])
def test_missing_key_is_a_checkpoint_error_naming_it(checkpoint, key):
    payload = torch.load(checkpoint, weights_only=True)
    del payload[key]
    torch.save(payload, checkpoint)
    with pytest.raises(CheckpointError, match=f"missing the key '{key}'"):
        load_checkpoint(checkpoint)


def test_missing_training_state_when_resuming(checkpoint, tmp_path):
    out = export_weights(checkpoint, tmp_path / "weights.pt")
    load_checkpoint(out)  # fine for inference
    with pytest.raises(CheckpointError, match="train_state"):
        load_checkpoint(out, need_train_state=True)


def test_vocabulary_mismatch_is_a_checkpoint_error(checkpoint):
    other = Vocab(["a", "b", "c"])
    with pytest.raises(CheckpointError, match="vocabulary mismatch"):
        load_checkpoint(checkpoint, expected_vocab=other)
    load_checkpoint(checkpoint, expected_vocab=Vocab.crohme())


def test_weights_that_do_not_fit_the_model_are_a_checkpoint_error(checkpoint):
    payload = torch.load(checkpoint, weights_only=True)
    payload["config"]["model"]["d_model"] = 32
    torch.save(payload, checkpoint)
    with pytest.raises(CheckpointError, match="do not fit the model"):
        load_model(checkpoint)


def test_not_a_checkpoint_and_no_file(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an hmer checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")


class _Payload:
    """Not a plain type: ``weights_only`` loading must refuse to build it."""


def test_loading_never_unpickles_arbitrary_objects(checkpoint):
    payload = torch.load(checkpoint, weights_only=True)
    payload["meta"]["evil"] = _Payload()
    torch.save(payload, checkpoint)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(checkpoint)


def test_rng_state_round_trips_through_a_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(()).item())
    save_checkpoint(tmp_path / "rng.pt", model={}, config={}, vocab={}, train_state={"rng": state})
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["train_state"]["rng"])
    assert (random.random(), np.random.rand(), torch.rand(()).item()) == expected
