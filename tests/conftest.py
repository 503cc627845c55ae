"""Fixtures shared by every test: real MIT-BIH records, seeded random numbers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ecg_stream.records import DATA_ENV, MITDB_RECORDS, Record, find_record, load_record

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mitdb"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The MIT-BIH directory: $ECG_STREAM_DATA, ../shared/data/mitdb, or the download cache."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).resolve()
    if (SHARED_DATA / "100.hea").is_file():
        return SHARED_DATA.resolve()
    # Online without local data: fetch the whole database once into the user cache.
    stems = [find_record(name) for name in MITDB_RECORDS]
    return stems[0].parent


@pytest.fixture(scope="session")
def record_100(data_dir: Path) -> Record:
    """Record 100, lead MLII, at 360 Hz."""
    return load_record("100", data_dir)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator: random chunkings are reproducible."""
    return np.random.default_rng(20261124)
