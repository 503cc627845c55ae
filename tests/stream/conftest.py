"""Real MQTT brokers for the stream tests: mosquitto on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stream.helpers import Mosquitto, free_port


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One mosquitto for the session (tests use distinct stream ids: retained state)."""
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
