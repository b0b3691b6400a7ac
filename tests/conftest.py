"""Shared fixtures. Real-data tests use ``crohme`` and skip, saying why, when the data is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from hmer.paths import CROHME_ENV, crohme_root


@pytest.fixture(scope="session")
def crohme() -> Path:
    """The CROHME folder (official InkML under ``inkml/``); skips the test when it is absent."""
    root = crohme_root()
    if root is None:
        pytest.skip(f"CROHME data not found: set {CROHME_ENV} or place it at ../shared/crohme")
    return root
