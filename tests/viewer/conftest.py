"""Fixtures of the viewer tests: offscreen Qt and real mosquitto brokers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stream.helpers import Mosquitto, free_port


def pytest_configure(config: pytest.Config) -> None:
    del config  # the windows draw into memory: no display needed, as on CI
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


# The same brokers as tests/stream: one per session, or one a test may stop and restart.
@pytest.fixture(scope="session")
def viewer_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path_factory.mktemp("viewer-mosquitto"), free_port())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def restartable_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path, free_port())
    broker.start()
    yield broker
    broker.stop()
