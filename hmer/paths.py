"""Where things live: the files hmer ships (configs, the example image, the model) and the
external data it never ships (CROHME), plus its cache folder.

Shipped files are package data, found with :mod:`importlib.resources`, so they are found alike in
a checkout (an editable install maps ``configs/`` to ``hmer.configs`` and ``data/examples/`` to
``hmer.examples``: pyproject.toml) and in an installed wheel, from any working directory.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from hmer.errors import ConfigError, HmerError

#: Environment variable naming the CROHME folder (layout: see data/README.md).
CROHME_ENV = "HMER_CROHME"
#: Environment variable naming hmer's cache folder (files it can always make again).
CACHE_ENV = "HMER_CACHE"


def crohme_root() -> Path | None:
    """The CROHME folder: ``$HMER_CROHME``, else ``../shared/crohme`` beside the repository.

    Returns None when neither exists, so callers (and tests) can say clearly what is missing.
    """
    env = os.environ.get(CROHME_ENV)
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "crohme")
    candidates.append(Path.cwd().parent / "shared" / "crohme")
    for path in candidates:
        if path.is_dir():
            return path
    return None


def cache_root() -> Path:
    """hmer's cache folder (made on demand): ``$HMER_CACHE``, else ``$XDG_CACHE_HOME/hmer``,
    else ``~/.cache/hmer``. It only holds what hmer can remake, such as ONNX exports."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hmer"


def default_model_path() -> Path:
    """Where the shipped model lives: ``hmer/assets/model.pt`` inside the package."""
    return Path(__file__).resolve().parent / "assets" / "model.pt"


def shipped_model() -> Path:
    """:func:`default_model_path`, checked to exist.

    Raises:
        HmerError: this copy of hmer has no shipped model (it says how to get one).
    """
    path = default_model_path()
    if not path.is_file():
        raise HmerError(
            f"no shipped model at {path}: this copy of hmer has no default weights. "
            "Train a model (`hmer train bttr --out runs/bttr`), export its "
            "weights (`hmer export-weights runs/bttr/best.pt model.pt`) and load them with "
            "Recognizer.from_checkpoint('model.pt') or `hmer predict --checkpoint model.pt`; "
            f"or copy such a file to {path}."
        )
    return path


#: The package holding the shipped YAML configs (the top-level ``configs/`` folder).
CONFIGS_PACKAGE = "hmer.configs"
#: The package holding the shipped example image (the top-level ``data/examples/`` folder).
EXAMPLES_PACKAGE = "hmer.examples"
#: Short names of shipped configs whose file name says more (the file keeps its name, so the
#: paths in older commands and scripts still work).
CONFIG_ALIASES = {"h200": "crohme_h200"}
#: The folders of those packages in a checkout (``package-dir`` in pyproject.toml), for code run
#: from a checkout that was never installed (``python train.py`` with the dependencies at hand).
_CHECKOUT_FOLDERS = {CONFIGS_PACKAGE: "configs", EXAMPLES_PACKAGE: "data/examples"}


def _package_folder(package: str) -> Path:
    try:
        # Wheels install unzipped and the editable install maps to the checkout: a folder.
        return Path(str(resources.files(package)))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / _CHECKOUT_FOLDERS[package]


def shipped_configs() -> dict[str, Path]:
    """Name -> file of every shipped config: the file stems (``tiny``, ``bttr``, ``cpu``,
    ``crohme_h200``) and the :data:`CONFIG_ALIASES` (``h200``)."""
    found = {path.stem: path for path in sorted(_package_folder(CONFIGS_PACKAGE).glob("*.yaml"))}
    found.update({alias: found[name] for alias, name in CONFIG_ALIASES.items() if name in found})
    return found


def config_path(spec: str | Path) -> Path:
    """The YAML file that ``spec`` names, in this order:

    1. an existing file: that file (your own config, or ``configs/tiny.yaml`` in a checkout);
    2. a shipped config's name: ``tiny``, ``bttr``, ``cpu``, ``h200`` (= ``crohme_h200``), also
       spelled ``tiny.yaml`` or ``configs/tiny.yaml``, the path it has in the checkout, so the
       commands written that way work from any folder.

    Raises:
        ConfigError: neither; the message lists the shipped names.
    """
    path = Path(spec)
    if path.is_file():
        return path
    shipped = shipped_configs()
    if path.parent in (Path("."), Path("configs")):
        name = path.stem if path.suffix == ".yaml" else path.name
        if name in shipped:
            return shipped[name]
    names = ", ".join(
        f"{name} (= {CONFIG_ALIASES[name]})" if name in CONFIG_ALIASES else name
        for name in sorted(shipped)
    )
    raise ConfigError(f"{spec}: no such config file, nor a shipped config name ({names})")


def example_image() -> tuple[Path, str]:
    """The shipped example image (a synthetic formula, free to use: data/examples/README.md)
    and its truth as canonical LaTeX tokens, space-separated.

    Raises:
        HmerError: this copy of hmer lacks the file (a broken install).
    """
    folder = _package_folder(EXAMPLES_PACKAGE)
    image, truth = folder / "example.png", folder / "example.txt"
    for path in (image, truth):
        if not path.is_file():
            raise HmerError(f"{path}: the example is missing from this install of hmer")
    return image, truth.read_text(encoding="utf-8").strip()
