"""Fixtures shared by every test: real MIT-BIH records, real MQTT brokers, seeded random
numbers.

The MQTT tests run mosquitto when it is installed and the project's embedded broker (amqtt)
otherwise; $ECG_STREAM_TEST_BROKER (``mosquitto`` or ``embedded``) picks one. The session header
says which. A test marked ``mosquitto_only("why")`` is skipped, with its reason, on amqtt.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from ecg_stream.classify.classifier import OnnxBeatClassifier, default_model_path
from ecg_stream.config import ChainConfig
from ecg_stream.mqtt.mosquitto import free_port, mosquitto_executable
from ecg_stream.records import DATA_ENV, MITDB_RECORDS, Record, find_record, load_record
from tests.helpers import BROKER_ENV, BrokerKind, MqttBroker, record_stretch, selected_broker_kind

pytest_plugins = ["tests.models", "tests.postgres"]  # ONNX model, dataset cache, PostgreSQL

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mitdb"
BROKER_KIND = pytest.StashKey[BrokerKind]()


def pytest_configure(config: pytest.Config) -> None:
    """Pick the MQTT broker once, and register the marker of tests that need mosquitto."""
    config.stash[BROKER_KIND] = selected_broker_kind()
    config.addinivalue_line(
        "markers",
        "mosquitto_only(reason): needs a mosquitto feature; skipped on the embedded broker",
    )


def pytest_report_header(config: pytest.Config) -> str:
    """Which broker the MQTT tests run against, and why."""
    kind = config.stash[BROKER_KIND]
    chosen = f"${BROKER_ENV}={os.environ[BROKER_ENV]}" if os.environ.get(BROKER_ENV) else None
    if kind is BrokerKind.MOSQUITTO:
        return f"MQTT broker: mosquitto ({chosen or mosquitto_executable()})"
    why = chosen or "mosquitto not found on PATH or in /usr/sbin"
    return f"MQTT broker: embedded amqtt ({why}; mosquitto_only tests are skipped)"


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Repeat the fallback at the end (``-q`` hides the header): mosquitto is what CI runs."""
    if config.stash[BROKER_KIND] is BrokerKind.EMBEDDED:
        terminalreporter.write_line(
            "MQTT tests ran against the embedded broker (amqtt), not mosquitto; "
            "mosquitto_only tests were skipped"
        )


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a ``mosquitto_only`` test, with its reason, when the broker is the embedded one."""
    marker = item.get_closest_marker("mosquitto_only")
    if marker is not None and item.config.stash[BROKER_KIND] is BrokerKind.EMBEDDED:
        reason = marker.args[0] if marker.args else "a mosquitto feature"
        pytest.skip(f"needs mosquitto, the embedded broker (amqtt) runs: {reason}")


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


@pytest.fixture
def short_record(data_dir: Path, tmp_path: Path) -> Path:
    """The first 10 s of record 100 as a WFDB record of its own, with its annotations."""
    return record_stretch(data_dir / "100", tmp_path, "short", 3600)


@pytest.fixture(scope="session")
def record_100(data_dir: Path) -> Record:
    """Record 100, lead MLII, at 360 Hz."""
    return load_record("100", data_dir)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator: random chunkings are reproducible."""
    return np.random.default_rng(20261124)


def _shared_broker_scope(
    fixture_name: str, config: pytest.Config
) -> Literal["session", "function"]:
    """One mosquitto for the session; an embedded broker per test.

    amqtt 0.12 sends a connecting client the retained messages that match any client's
    subscription, not only its own: retained statuses of earlier tests would reach later ones.
    """
    del fixture_name
    return "function" if config.stash[BROKER_KIND] is BrokerKind.EMBEDDED else "session"


@pytest.fixture(scope=_shared_broker_scope)
def mqtt_broker(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[MqttBroker]:
    """A broker on a free loopback port, shared by the session's tests when it is mosquitto
    (tests use distinct stream ids: retained state outlives a test)."""
    kind = pytestconfig.stash[BROKER_KIND]
    broker = MqttBroker(tmp_path_factory.mktemp(kind.value), free_port(), kind)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def own_mqtt_broker(tmp_path: Path, pytestconfig: pytest.Config) -> Iterator[MqttBroker]:
    """A broker of the test's own, which the test may stop and restart."""
    broker = MqttBroker(tmp_path, free_port(), pytestconfig.stash[BROKER_KIND])
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def shipped_classifier() -> Iterator[OnnxBeatClassifier]:
    """The shipped model (in git: a missing model fails, it does not skip)."""
    with OnnxBeatClassifier(default_model_path(), ChainConfig()) as classifier:
        yield classifier
