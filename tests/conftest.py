"""Shared fixtures. Real-data tests use ``crohme`` and skip, saying why, when the data is absent."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hmer.paths import CACHE_ENV, CROHME_ENV, crohme_root


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
