"""One typed configuration for a run: YAML file + dotted command-line overrides, via omegaconf.

``Config`` composes the dataclasses owned by each part of the code (rendering, preprocessing,
augmentation) with the model's and the engine's (model, data, train, decode), which live here.
Every key is checked against those dataclasses: an unknown key or a value of the wrong type is a
``ConfigError`` naming it; so is a value outside what :data:`ALLOWED` gives its field (ranges and
choices, next to the dataclasses) or fields that disagree (``model.nhead`` must divide
``model.d_model``, ...).

This module imports neither torch nor the engine (``ModelConfig`` is defined here rather than in
:mod:`hmer.model`, which imports torch and timm), so reading a config stays light and
:mod:`hmer.model` and :mod:`hmer.engine` can import it without a cycle.

    cfg = load_config("configs/tiny.yaml", ["model.d_model=128", "train.batch_pixels=2e6"])
    save_config(cfg, run_dir / "config.yaml")
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, IntegerNode, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hmer.data.augment import AugmentConfig
from hmer.data.inkml import RenderConfig
from hmer.data.preprocess import PreprocessConfig
from hmer.errors import ConfigError
from hmer.io import atomic_write_text


@dataclass
class ModelConfig:
    """Model hyper-parameters (:class:`hmer.model.HmerModel`); the defaults are BTTR's.

    Encoder: ``backbone`` is ``"densenet"`` (timm DenseNet-BC: ``growth_rate``, ``block_config``
    layers per dense block, bottleneck width ``bn_size · growth_rate``, stem width
    ``2 · growth_rate``, dropout ``encoder_dropout`` after each dense layer) or any timm model name
    (features_only, cut at ``stride``). ``stride`` must match the DenseNet's
    (``4 · 2^(blocks - 1)``). ``pos_normalize``: the 2D encoding spans each image's valid extent.
    Decoder: ``d_model``, ``nhead``, ``num_decoder_layers``, ``dim_feedforward``, ``dropout``,
    ``norm_first`` (pre-norm). Loss: ``label_smoothing``.
    """

    backbone: str = "densenet"
    growth_rate: int = 24
    block_config: list[int] = field(default_factory=lambda: [16, 16, 16])
    bn_size: int = 4
    encoder_dropout: float = 0.2
    stride: int = 16
    pos_normalize: bool = True
    pos_temperature: float = 10000.0
    d_model: int = 256
    nhead: int = 8
    num_decoder_layers: int = 3
    dim_feedforward: int = 1024
    dropout: float = 0.3
    norm_first: bool = False
    label_smoothing: float = 0.0


@dataclass
class DataConfig:
    """Where samples come from and how they reach the model.

    ``train`` / ``test``: ``"crohme"`` (the official InkML under ``hmer.paths.crohme_root()``) or a
    path that ``hmer.data.datasets.load_samples`` understands (InkML folder, BTTR folder or zip,
    image folder + table); ``*_split`` names the split inside it.
    """

    train: str = "crohme"
    train_split: str | None = "train"
    test: str = "crohme"
    test_splits: list[str] = field(default_factory=lambda: ["2014", "2016", "2019"])
    #: Held-out share of the training samples that selects checkpoints, whole formulas at a
    #: time (fixed seed: same slice on every run with the same data). Test splits never select
    #: anything.
    val_fraction: float = 0.05
    val_seed: int = 0
    #: Validate on the training samples themselves (sanity checks on tiny data only).
    val_on_train: bool = False
    #: Load only the first ``limit`` listed training items (quick runs); validation comes
    #: out of those.
    limit: int | None = None
    #: Load only the first ``test_limit`` items of each test split (rehearsals of a run).
    test_limit: int | None = None
    #: ``"crohme"`` (built-in symbol set) or ``"data"`` (the tokens of the training samples).
    vocab: str = "crohme"
    #: Processes rendering / preprocessing samples into RAM once (None: all cores; 0: in-process).
    load_workers: int | None = None
    cache_dir: str | None = None
    augment: bool = True
    #: Padded batch sides are rounded up to this: fewer distinct shapes for cuDNN / compile.
    pad_multiple: int = 1
    #: Static batch shapes (the GPU path): every image goes on a canvas whose sides are multiples
    #: of ``canvas_height_step`` / ``canvas_width_step``, with a fixed batch size that fills
    #: ``train.batch_pixels`` and tokens padded to a multiple of ``length_step``
    #: (hmer.data.batching.Canvases): a few dozen shapes instead of a new one every step.
    static_shapes: bool = False
    #: Keep the training images on the device and gather + augment them there each step
    #: (hmer.engine.device_data; needs static_shapes): no loader workers, no per-step copies.
    on_device: bool = False
    canvas_height_step: int = 32
    canvas_width_step: int = 64
    length_step: int = 16
    #: DataLoader workers: they only augment and convert to tensors.
    num_workers: int = 2
    pin_memory: bool = True
    persistent_workers: bool = True
    prefetch_factor: int = 4


@dataclass
class TrainConfig:
    """The optimisation loop. Steps are optimizer steps; batch sizes are global per rank."""

    seed: int = 0
    #: Start from the weights of this checkpoint (fine-tuning: e.g. after synthetic
    #: pre-training, or the shipped model on your own data). Same model shape and vocabulary;
    #: the optimizer, schedule and step count start afresh. Ignored on ``--resume``.
    init_from: str | None = None
    #: ``"auto"`` (CUDA when available), ``"cuda"`` or ``"cpu"``.
    device: str = "auto"
    #: CPU intra-op threads (``torch.set_num_threads``); null keeps PyTorch's default.
    threads: int | None = None
    #: ``"bf16"`` autocast on CUDA (CPU always runs fp32) or ``"fp32"``.
    precision: str = "bf16"
    channels_last: bool = False
    compile: bool = False
    #: ``torch.compile`` mode: ``"default"``, or ``"reduce-overhead"`` (CUDA graphs).
    compile_mode: str = "default"
    #: cuDNN autotuning per input shape: pays off when shapes repeat (data.static_shapes).
    cudnn_benchmark: bool = False
    #: With data.static_shapes: one forward + backward per batch shape before training, so that
    #: autotuning / compilation happens outside the training time (weights and RNGs untouched).
    warm_canvases: bool = True
    #: ``"adamw"`` (fused on CUDA) or ``"adadelta"`` (BTTR's choice).
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    warmup_steps: int = 200
    #: The cosine decays from ``lr`` to ``lr * min_lr_ratio`` at the planned last step.
    min_lr_ratio: float = 0.01
    #: Max global gradient norm; 0 disables clipping.
    grad_clip: float = 1.0
    #: Pixel cap of one batch per rank: sum over the batch of padded H*W.
    batch_pixels: int = 1_000_000
    max_batch: int = 64
    epochs: int = 10
    #: Planned optimizer steps; overrides ``epochs`` when set.
    max_steps: int | None = None
    #: Wall-clock budget for the whole run (``"90s"``, ``"8m"``, ``"1h"``): the step count is
    #: planned from measured throughput so training, final evaluation and saving fit in it.
    time_budget: str | None = None
    #: Untimed steps (compilation, allocator warm-up) before throughput is measured.
    budget_warmup_steps: int = 10
    budget_measure_steps: int = 20
    #: Seconds reserved for the final test evaluation; None estimates it from measured decoding.
    eval_reserve_s: float | None = None
    #: Fraction of the budget kept free for the unforeseen (data-loader stalls, slow saves).
    budget_safety: float = 0.05
    ema: bool = False
    ema_decay: float = 0.999
    log_every: int = 50
    #: Greedy validation every this many steps (0: only at the end).
    val_every: int = 1000
    #: ``last.pt`` every this many steps (0: only at the end and on SIGTERM/SIGINT).
    ckpt_every: int = 1000
    progress: bool = True
    #: Evaluate the test splits with beam search at the end of training.
    final_test: bool = True


@dataclass
class DecodeConfig:
    """Decoding for validation (greedy) and the final test evaluation (beam search)."""

    beam: int = 10
    max_len: int = 200
    length_penalty: float = 1.0
    bidirectional: bool = True
    #: Pixel cap and size cap of evaluation batches.
    batch_pixels: int = 2_000_000
    max_batch: int = 64


@dataclass
class Config:
    render: RenderConfig = field(default_factory=RenderConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)


# --- allowed values ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Allowed:
    """What one field may hold: ``accepts(value)``, and ``text`` saying it in a message
    (``"> 0"``, ``"in [0, 1)"``). The schema has already checked the type; None (an optional
    field left unset) is always allowed."""

    text: str
    accepts: Callable[[Any], bool]


def _range(
    low: float, high: float | None = None, *, low_open: bool = False, high_open: bool = False
) -> Allowed:
    """Numbers from ``low`` to ``high`` (None: unbounded); open ends are excluded."""

    def accepts(value: float) -> bool:
        above = value > low if low_open else value >= low
        below = high is None or (value < high if high_open else value <= high)
        return above and below

    if high is None:
        text = f"{'>' if low_open else '>='} {low:g}"
    else:
        text = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    return Allowed(text, accepts)


def _one_of(*choices: str) -> Allowed:
    return Allowed("one of " + ", ".join(map(repr, choices)), lambda value: value in choices)


def _each(item: Allowed, *, count: int | None = None, at_least: int = 0) -> Allowed:
    """A list of exactly ``count`` values (else ``at_least`` of them), each allowed by ``item``."""
    if count is not None:
        size, sized = str(count), lambda n: n == count
    else:
        size, sized = f"{at_least} or more", lambda n: n >= at_least
    return Allowed(
        f"{size} values, each {item.text}",
        lambda values: sized(len(values)) and all(item.accepts(v) for v in values),
    )


def _is_duration(text: str) -> bool:
    try:
        parse_duration(text)
    except ConfigError:
        return False
    return True


_POSITIVE = _range(0, low_open=True)
_AT_LEAST_ONE = _range(1)
_NOT_NEGATIVE = _range(0)
_PROBABILITY = _range(0, 1)
_BELOW_ONE = _range(0, 1, high_open=True)  # dropout, decay rates, shares of a whole
_NAME = Allowed("a non-empty string", lambda value: bool(value.strip()))
_DEVICE = Allowed(
    "'auto', 'cpu', 'cuda' or 'cuda:<index>'",
    lambda value: re.fullmatch(r"auto|cpu|cuda(:\d+)?", value) is not None,
)

#: Every field that is not a bool, by dotted key (tests/test_config.py checks none is missing).
ALLOWED: dict[str, Allowed] = {
    "render.symbol_height": _POSITIVE,
    "render.stroke_width": _POSITIVE,
    "render.margin": _NOT_NEGATIVE,
    "render.max_height": _AT_LEAST_ONE,
    "render.max_width": _AT_LEAST_ONE,
    "render.max_area": _AT_LEAST_ONE,
    "preprocess.symbol_height": _POSITIVE,
    "preprocess.stroke_width": _POSITIVE,
    "preprocess.scale_tolerance": _BELOW_ONE,
    "preprocess.margin": _NOT_NEGATIVE,
    "preprocess.min_height": _AT_LEAST_ONE,
    "preprocess.min_width": _AT_LEAST_ONE,
    "preprocess.max_height": _AT_LEAST_ONE,
    "preprocess.max_width": _AT_LEAST_ONE,
    "preprocess.max_area": _AT_LEAST_ONE,
    "preprocess.max_input_pixels": _AT_LEAST_ONE,
    "preprocess.min_contrast": _range(0, 255),
    "augment.affine_p": _PROBABILITY,
    "augment.scale_min": _POSITIVE,
    "augment.scale_max": _POSITIVE,
    "augment.rotate_deg": _range(0, 180),
    "augment.shear_deg": _range(0, 90, high_open=True),
    "augment.elastic_p": _PROBABILITY,
    "augment.elastic_std": _NOT_NEGATIVE,
    "augment.elastic_cell": _AT_LEAST_ONE,
    "augment.thickness_p": _PROBABILITY,
    "augment.thicken_max": _NOT_NEGATIVE,
    "augment.thin_max": _NOT_NEGATIVE,
    "augment.blur_p": _PROBABILITY,
    "augment.blur_sigma": _NOT_NEGATIVE,
    "augment.noise_p": _PROBABILITY,
    "augment.noise_std": _NOT_NEGATIVE,
    "augment.margin": _NOT_NEGATIVE,
    "augment.max_height": _AT_LEAST_ONE,
    "augment.max_width": _AT_LEAST_ONE,
    "augment.jitter_offset": _NOT_NEGATIVE,
    "augment.jitter_scale": _BELOW_ONE,
    "augment.jitter_rotate_deg": _range(0, 180),
    "augment.jitter_point": _NOT_NEGATIVE,
    "augment.jitter_p": _PROBABILITY,
    "augment.swap_p": _PROBABILITY,
    "model.backbone": _NAME,
    "model.growth_rate": _AT_LEAST_ONE,
    "model.block_config": _each(_AT_LEAST_ONE, at_least=1),
    "model.bn_size": _AT_LEAST_ONE,
    "model.encoder_dropout": _BELOW_ONE,
    "model.stride": _AT_LEAST_ONE,
    "model.pos_temperature": _POSITIVE,
    "model.d_model": Allowed(
        "a positive multiple of 4 (the 2D sinusoidal encoding has 4 parts)",
        lambda value: value > 0 and value % 4 == 0,
    ),
    "model.nhead": _AT_LEAST_ONE,
    "model.num_decoder_layers": _AT_LEAST_ONE,
    "model.dim_feedforward": _AT_LEAST_ONE,
    "model.dropout": _BELOW_ONE,
    "model.label_smoothing": _BELOW_ONE,
    "data.train": _NAME,
    "data.train_split": _NAME,
    "data.test": _NAME,
    "data.test_splits": _each(_NAME),
    "data.val_fraction": _BELOW_ONE,
    "data.val_seed": _NOT_NEGATIVE,
    "data.limit": _AT_LEAST_ONE,
    "data.test_limit": _AT_LEAST_ONE,
    "data.vocab": _one_of("crohme", "data"),
    "data.load_workers": _NOT_NEGATIVE,
    "data.cache_dir": _NAME,
    "data.pad_multiple": _AT_LEAST_ONE,
    "data.canvas_height_step": _AT_LEAST_ONE,
    "data.canvas_width_step": _AT_LEAST_ONE,
    "data.length_step": _AT_LEAST_ONE,
    "data.num_workers": _NOT_NEGATIVE,
    "data.prefetch_factor": _AT_LEAST_ONE,
    "train.seed": _NOT_NEGATIVE,
    "train.init_from": _NAME,
    "train.device": _DEVICE,
    "train.threads": _AT_LEAST_ONE,
    "train.precision": _one_of("bf16", "fp32"),
    "train.compile_mode": _one_of(
        "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"
    ),
    "train.optimizer": _one_of("adamw", "adadelta"),
    "train.lr": _NOT_NEGATIVE,  # 0 freezes the weights (tests of train.init_from do)
    "train.weight_decay": _NOT_NEGATIVE,
    "train.betas": _each(_BELOW_ONE, count=2),
    "train.eps": _POSITIVE,
    "train.warmup_steps": _NOT_NEGATIVE,
    "train.min_lr_ratio": _PROBABILITY,
    "train.grad_clip": _NOT_NEGATIVE,
    "train.batch_pixels": _AT_LEAST_ONE,
    "train.max_batch": _AT_LEAST_ONE,
    "train.epochs": _AT_LEAST_ONE,
    "train.max_steps": _AT_LEAST_ONE,
    "train.time_budget": Allowed("a duration such as 90s, 8m or 1h30m", _is_duration),
    "train.budget_warmup_steps": _NOT_NEGATIVE,
    "train.budget_measure_steps": _AT_LEAST_ONE,
    "train.eval_reserve_s": _NOT_NEGATIVE,
    "train.budget_safety": _BELOW_ONE,
    "train.ema_decay": _BELOW_ONE,
    "train.log_every": _AT_LEAST_ONE,
    "train.val_every": _NOT_NEGATIVE,
    "train.ckpt_every": _NOT_NEGATIVE,
    "decode.beam": _AT_LEAST_ONE,
    "decode.max_len": _AT_LEAST_ONE,
    "decode.length_penalty": _NOT_NEGATIVE,
    "decode.batch_pixels": _AT_LEAST_ONE,
    "decode.max_batch": _AT_LEAST_ONE,
}


def check_config(cfg: Config) -> Config:
    """``cfg`` if every field holds an allowed value (:data:`ALLOWED`) and the fields agree with
    each other; else a ConfigError naming each bad key, its value and what it may be."""
    problems = []
    for section in fields(cfg):
        for item in fields(getattr(cfg, section.name)):
            key = f"{section.name}.{item.name}"
            value = getattr(getattr(cfg, section.name), item.name)
            allowed = ALLOWED.get(key)
            if allowed is not None and value is not None and not allowed.accepts(value):
                problems.append(f"{key}={value!r}: must be {allowed.text}")
    if not problems:  # the fields agreeing needs each to be sane first (nhead > 0, ...)
        problems = list(_disagreements(cfg))
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems))
    return cfg


def _disagreements(cfg: Config) -> Iterator[str]:
    """A message for each pair of fields whose values cannot go together."""
    model, augment, preprocess = cfg.model, cfg.augment, cfg.preprocess
    if model.d_model % model.nhead:
        yield (
            f"model.nhead={model.nhead}: must divide model.d_model={model.d_model} "
            "(each attention head gets d_model / nhead channels)"
        )
    if augment.scale_min > augment.scale_max:
        yield (
            f"augment.scale_min={augment.scale_min!r}: must be <= "
            f"augment.scale_max={augment.scale_max!r}"
        )
    for side in ("height", "width"):
        low, high = getattr(preprocess, f"min_{side}"), getattr(preprocess, f"max_{side}")
        if low > high:
            yield f"preprocess.min_{side}={low}: must be <= preprocess.max_{side}={high}"
    if cfg.data.on_device and not cfg.data.static_shapes:
        yield "data.on_device=true: needs data.static_shapes=true (fixed canvases on the device)"


_SCHEMA: DictConfig | None = None


def _schema() -> DictConfig:
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = OmegaConf.structured(Config)
    return _SCHEMA


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """Defaults <- YAML file at ``path`` (None: defaults only) <- dotted ``overrides``.

    ``overrides`` look like ``model.d_model=128`` or ``data.test_splits=[2014,2016]``.
    """
    layers: list[tuple[Any, str]] = []
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        try:
            loaded = OmegaConf.load(path)
        except Exception as error:
            raise ConfigError(f"{path}: not a valid YAML config: {error}") from error
        if not isinstance(loaded, DictConfig):
            raise ConfigError(
                f"{path}: a config file is a mapping of sections (render, model, train, ...), "
                f"not a {type(loaded).__name__.removesuffix('Config').lower()}"
            )
        layers.append((loaded, str(path)))
    return _merge(layers + [_override(item) for item in overrides])


def config_from_dict(data: Mapping[str, Any], source: str = "config") -> Config:
    """A ``Config`` from a plain dict (as saved in checkpoints), checked like a YAML file."""
    return _merge([(OmegaConf.create(dict(data)), source)])


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain Python types only: safe for ``torch.save`` + ``weights_only`` loading and YAML."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def apply_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    """``cfg`` with dotted ``overrides`` applied (used on resume)."""
    layers = [(OmegaConf.create(config_to_dict(cfg)), "config")]
    return _merge(layers + [_override(item) for item in overrides])


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write the fully resolved config as YAML (atomically); ``load_config`` reads it back."""
    atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.create(config_to_dict(cfg))))
    return Path(path)


def _override(item: str) -> tuple[DictConfig, str]:
    """The layer of one dotted ``KEY=VALUE`` override, and its name for messages."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. train.lr=3e-4")
    try:
        return OmegaConf.from_dotlist([item]), f"override {item!r}"
    except Exception as error:
        raise ConfigError(f"override {item!r}: {error}") from error


def _merge(layers: Sequence[tuple[Any, str]]) -> Config:
    """The layers merged over the schema, converted to a ``Config`` and checked
    (:func:`check_config`)."""
    merged = _schema()
    for layer, source in layers:
        _coerce_integral_floats(layer, merged)
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as error:
            raise ConfigError(_describe(error, source, merged)) from error
    try:
        cfg = OmegaConf.to_object(merged)  # resolves interpolations such as ${render.margin}
    except OmegaConfBaseException as error:
        raise ConfigError(_describe(error, "config", merged)) from error
    return check_config(cfg)  # type: ignore[arg-type]


def _coerce_integral_floats(layer: Any, schema: DictConfig) -> None:
    """Accept ``2e6`` for an integer field (YAML reads it as a float): it is clearly meant."""
    if not isinstance(layer, DictConfig):
        return
    for key in list(layer.keys()):
        value = layer._get_node(key)
        target = schema._get_node(key) if key in schema else None
        if isinstance(value, DictConfig) and isinstance(target, DictConfig):
            _coerce_integral_floats(value, target)
            continue
        if isinstance(value, DictConfig) or OmegaConf.is_interpolation(layer, key):
            continue  # an interpolation is resolved (and checked) after the merge
        raw = layer[key]
        if isinstance(raw, float) and raw.is_integer() and isinstance(target, IntegerNode):
            layer[key] = int(raw)


def _describe(error: OmegaConfBaseException, source: str, schema: DictConfig) -> str:
    key = getattr(error, "full_key", None) or ""
    message = str(error).splitlines()[0]
    if "not in" in message or type(error).__name__ == "ConfigKeyError":
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        node = OmegaConf.select(schema, parent) if parent else schema
        known = sorted(node.keys()) if isinstance(node, DictConfig) else []
        return f"{source}: unknown config key {key!r}" + (
            f" (known keys under {parent or 'the top level'}: {', '.join(map(str, known))})"
            if known
            else ""
        )
    return f"{source}: bad value for {key or 'config'}: {message}"


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(h|ms|m|s)?", re.IGNORECASE)
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, None: 1.0}


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``"90s"``, ``"8m"``, ``"1h"``, ``"1h30m"``, ``"2.5m"`` or a bare number."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        compact = text.strip().replace(" ", "")
        pos, seconds = 0, 0.0
        while pos < len(compact):
            match = _DURATION.match(compact, pos)
            if match is None or match.end() == pos:
                raise ConfigError(f"bad duration {text!r}: use e.g. 90s, 8m, 1h, 1h30m")
            unit = match.group(2).lower() if match.group(2) else None
            seconds += float(match.group(1)) * _UNIT_SECONDS[unit]
            pos = match.end()
        if not compact:
            raise ConfigError("empty duration: use e.g. 90s, 8m, 1h")
    if seconds <= 0:
        raise ConfigError(f"duration {text!r} must be positive")
    return seconds
