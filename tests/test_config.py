"""Run configs: YAML + dotted overrides, checked against the typed schema."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from hmer.config import (
    ALLOWED,
    Config,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_duration,
    save_config,
)
from hmer.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert cfg.train.precision in ("bf16", "fp32")


def test_shipped_configs_cover_the_three_recipes():
    assert {p.stem for p in CONFIGS} >= {"tiny", "bttr", "crohme_h200"}
    bttr, h200 = (
        load_config(CONFIGS[0].with_name("bttr.yaml")),
        load_config(CONFIGS[0].with_name("crohme_h200.yaml")),
    )
    assert bttr.model.growth_rate == 24 and bttr.model.block_config == [16, 16, 16]
    assert bttr.train.optimizer == "adadelta" and bttr.decode.beam == 10
    assert h200.train.precision == "bf16" and h200.train.channels_last and h200.train.ema
    assert h200.model.d_model == bttr.model.d_model  # BTTR-size model
    assert h200.data.num_workers >= 8 and h200.data.persistent_workers


def test_defaults_without_a_file():
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.data.val_fraction == 0.05 and cfg.data.test_splits == ["2014", "2016", "2019"]


def test_dotted_overrides_apply_with_types():
    cfg = load_config(TINY, ["model.d_model=128", "train.lr=3e-4", "data.test_splits=[2014,2016]"])
    assert cfg.model.d_model == 128
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.data.test_splits == ["2014", "2016"]


def test_scientific_notation_is_accepted_for_integer_fields():
    cfg = load_config(TINY, ["train.batch_pixels=2e6"])
    assert cfg.train.batch_pixels == 2_000_000 and isinstance(cfg.train.batch_pixels, int)
    with pytest.raises(ConfigError, match=r"train\.batch_pixels"):
        load_config(TINY, ["train.batch_pixels=2.5"])


def test_preprocess_follows_render_in_tiny_config():
    cfg = load_config(TINY, ["render.symbol_height=20"])
    assert cfg.preprocess.symbol_height == 20.0


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.bogus=1", "train.bogus"),
        ("nonsense=3", "nonsense"),
        ("model.dmodel=64", "model.dmodel"),
    ],
)
def test_unknown_keys_are_errors_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=re.escape(f"unknown config key '{key}'")):
        load_config(TINY, [override])


def test_unknown_key_in_a_file_names_the_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  lr: 0.1\n  lerning_rate: 0.2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*train\.lerning_rate"):
        load_config(path)


def test_bad_values_and_syntax_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.lr"):
        load_config(TINY, ["train.lr=fast"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(TINY, ["train.lr"])
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


#: Values a user tried (and more of the same kinds): each names its key in the error.
BAD_VALUES = [
    "train.lr=-1",
    "train.lr=-1e-9",
    "train.betas=[2,3]",
    "train.betas=[0.9]",
    "train.eps=0",
    "train.weight_decay=-0.1",
    "train.min_lr_ratio=1.5",
    "train.grad_clip=-1",
    "train.batch_pixels=0",
    "train.max_batch=0",
    "train.epochs=0",
    "train.max_steps=0",
    "train.warmup_steps=-5",
    "train.log_every=0",
    "train.val_every=-1",
    "train.ckpt_every=-1",
    "train.ema_decay=1",
    "train.budget_safety=1",
    "train.budget_measure_steps=0",
    "train.eval_reserve_s=-1",
    "train.threads=0",
    "train.seed=-1",
    "train.device=tpu",
    "train.device=cuda0",
    "train.precision=fp16",
    "train.optimizer=sgd",
    "train.compile_mode=fast",
    "train.time_budget=soon",
    "model.d_model=0",
    "model.d_model=-8",
    "model.d_model=66",
    "model.nhead=0",
    "model.num_decoder_layers=0",
    "model.dim_feedforward=0",
    "model.dropout=1",
    "model.dropout=-0.1",
    "model.encoder_dropout=1.5",
    "model.label_smoothing=1",
    "model.growth_rate=0",
    "model.block_config=[]",
    "model.block_config=[2,0]",
    "model.stride=0",
    "model.backbone=' '",
    "render.symbol_height=0",
    "render.stroke_width=-1",
    "render.max_area=0",
    "preprocess.min_contrast=300",
    "preprocess.scale_tolerance=-0.1",
    "augment.affine_p=1.5",
    "augment.noise_p=-0.1",
    "augment.jitter_p=2",
    "augment.shear_deg=90",
    "augment.scale_min=0",
    "data.val_fraction=1",
    "data.val_fraction=-0.1",
    "data.vocab=mine",
    "data.num_workers=-1",
    "data.limit=0",
    "data.canvas_width_step=0",
    "decode.beam=0",
    "decode.max_len=0",
    "decode.length_penalty=-1",
]


@pytest.mark.parametrize("override", BAD_VALUES)
def test_out_of_range_values_are_errors_naming_the_key_and_the_range(override):
    key = override.split("=", 1)[0]
    with pytest.raises(ConfigError, match=rf"{re.escape(key)}=.*: must be "):
        load_config(TINY, [override])


@pytest.mark.parametrize(
    ("overrides", "keys"),
    [
        (["model.nhead=3"], ["model.nhead=3", "model.d_model=64"]),  # tiny's d_model
        (["augment.scale_min=1.2", "augment.scale_max=1.1"], ["augment.scale_min"]),
        (["preprocess.min_height=300"], ["preprocess.min_height=300", "preprocess.max_height"]),
        (["data.on_device=true"], ["data.on_device", "data.static_shapes"]),
    ],
)
def test_fields_that_disagree_are_errors_naming_both(overrides, keys):
    with pytest.raises(ConfigError) as caught:
        load_config(TINY, overrides)
    assert all(key in str(caught.value) for key in keys)


def test_every_field_has_its_allowed_values_and_the_defaults_are_allowed():
    defaults = Config()
    keys = {
        f"{section.name}.{item.name}"
        for section in fields(defaults)
        for item in fields(getattr(defaults, section.name))
        if item.type != "bool"  # the schema's type check is all a bool needs
    }
    assert keys == set(ALLOWED)
    assert load_config(None) == Config()


@pytest.mark.parametrize(
    ("override", "value"),
    [
        ("train.device=cuda:1", "cuda:1"),
        ("train.lr=0", 0.0),
        ("train.betas=[0,0.99]", [0.0, 0.99]),
        ("model.dropout=0", 0.0),
        ("data.limit=null", None),
        ("augment.affine_p=1", 1.0),
    ],
)
def test_edge_values_inside_the_ranges_are_accepted(override, value):
    section, name = override.split("=", 1)[0].split(".")
    assert getattr(getattr(load_config(TINY, [override]), section), name) == value


def test_values_reached_through_resume_and_checkpoints_are_checked_too():
    cfg = load_config(TINY)
    with pytest.raises(ConfigError, match=r"train\.lr=-1"):
        apply_overrides(cfg, ["train.lr=-1"])
    with pytest.raises(ConfigError, match=r"model\.nhead"):
        config_from_dict({**config_to_dict(cfg), "model": {"nhead": 5}}, "last.pt")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides(cfg, ["train.lr"])


def test_a_file_that_is_not_a_mapping_is_a_config_error(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- train\n- model\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: a config file is a mapping"):
        load_config(path)


@pytest.mark.parametrize("where", ["file", "override"])
def test_an_interpolation_of_a_missing_key_is_a_config_error_naming_the_field(tmp_path, where):
    path = tmp_path / "config.yaml"
    path.write_text("train:\n  lr: ${missing}\n" if where == "file" else "{}\n")
    overrides = ["train.lr=${missing}"] if where == "override" else []
    with pytest.raises(ConfigError, match=r"train\.lr.*'missing'"):
        load_config(path, overrides)


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(TINY, ["train.ema=true", "data.limit=200"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert "${" not in (tmp_path / "config.yaml").read_text()  # interpolations resolved
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert apply_overrides(cfg, ["train.lr=0.5"]).train.lr == 0.5


def test_plain_dict_form_holds_only_plain_types():
    def plain(value):
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (str, int, float, bool))

    assert plain(config_to_dict(load_config(TINY)))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("8m", 480.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("2.5m", 150.0),
        ("45", 45.0),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "8 minutes", "m", "-5s", "0s"])
def test_bad_durations_are_config_errors(text):
    with pytest.raises(ConfigError):
        parse_duration(text)
