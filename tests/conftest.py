"""Fixtures shared by every test: real MIT-BIH records, seeded random numbers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ecg_stream.records import DATA_ENV, Record, load_record

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mitdb"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The MIT-BIH directory: $ECG_STREAM_DATA, else ../shared/data/mitdb."""
    path = Path(os.environ.get(DATA_ENV) or SHARED_DATA).resolve()
    if not (path / "100.hea").is_file():
        pytest.fail(f"MIT-BIH records not found in {path}; set {DATA_ENV}")
    return path


@pytest.fixture(scope="session")
def record_100(data_dir: Path) -> Record:
    """Record 100, lead MLII, at 360 Hz."""
    return load_record("100", data_dir)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator: random chunkings are reproducible."""
    return np.random.default_rng(20261124)
