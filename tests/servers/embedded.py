"""Settings for the embedded backend: a fresh SQLite file per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from memstore.core.settings import Settings


@pytest.fixture
def embedded_settings(tmp_path: Path) -> Settings:
    return Settings(memory_type="embedded", data_path=tmp_path / "memstore.db")
