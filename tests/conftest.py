"""Fixtures shared by every test: real MIT-BIH records, real mosquitto brokers, seeded random
numbers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ecg_stream.records import DATA_ENV, MITDB_RECORDS, Record, find_record, load_record
from tests.stream.helpers import Mosquitto, free_port

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


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One mosquitto on a free loopback port for the session (tests use distinct stream ids:
    retained state outlives a test)."""
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"), free_port())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def own_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A mosquitto of the test's own, which the test may stop and restart."""
    broker = Mosquitto(tmp_path, free_port())
    broker.start()
    yield broker
    broker.stop()
