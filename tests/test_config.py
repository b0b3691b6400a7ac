"""Run configs: YAML + dotted overrides, checked against the typed schema."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hmer.config import (
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
