"""Shared fixtures. Real-data tests use ``crohme`` and skip, saying why, when the data is absent.

The expensive ones (the tiny data set, a finished tiny run, the fitted model) are built once per
session; the plain functions they are made with are in ``helpers.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from helpers import fit_checkpoint, one_thread, synthetic_renders, tiny_config, tiny_dataset

from hmer.paths import CACHE_ENV, CROHME_ENV, crohme_root

if TYPE_CHECKING:
    from hmer.runtime.recognize import Recognizer


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """hmer's cache (ONNX exports) goes to the session's temp folder, never the user's."""
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("hmer_cache"))
    yield Path(os.environ[CACHE_ENV])
    if before is None:
        del os.environ[CACHE_ENV]
    else:
        os.environ[CACHE_ENV] = before


@pytest.fixture(scope="session")
def crohme() -> Path:
    """The CROHME folder (official InkML under ``inkml/``); skips the test when it is absent."""
    root = crohme_root()
    if root is None:
        pytest.skip(f"CROHME data not found: set {CROHME_ENV} or place it at ../shared/crohme")
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:func:`helpers.tiny_dataset`: 16 train and 4 test expressions."""
    return tiny_dataset(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture(scope="session")
def tiny_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished tiny run with EMA, shared by the tests that only read its outputs."""
    from hmer.engine.train import train

    run = tmp_path_factory.mktemp("tiny_run") / "run"
    cfg = tiny_config(
        tiny_data, "train.epochs=3", "train.log_every=2", "train.val_every=3", "train.ema=true"
    )
    assert train(cfg, run).status == "finished"
    return run


@pytest.fixture(scope="module")
def single_thread() -> Iterator[None]:
    """Torch on one thread for a whole module (see :func:`helpers.one_thread`); the modules
    using the fitted model ask for it with ``pytestmark = pytest.mark.usefixtures(...)``."""
    with one_thread():
        yield


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fitted model's checkpoint (``.../predict_model/fitted.pt``, shared by the session)."""
    return fit_checkpoint(tmp_path_factory.getbasetemp() / "predict_model" / "fitted.pt")


@pytest.fixture(scope="session")
def recognizer(checkpoint: Path) -> Recognizer:
    from hmer.runtime.recognize import Recognizer

    return Recognizer.from_checkpoint(checkpoint, device="cpu")


@pytest.fixture(scope="session")
def renders() -> list[np.ndarray]:
    """:func:`helpers.synthetic_renders`: ink 255 on 0, 32 px symbols."""
    return synthetic_renders()
