"""Shared pieces of the stream tests: run a coroutine, collect what a subscriber receives."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import wfdb

from ecg_stream.classify.batcher import ClassifierLike
from ecg_stream.config import CHAIN_FS_HZ, MqttConfig
from ecg_stream.detector.chain import BeatExtractor
from ecg_stream.errors import BrokerError, PayloadError
from ecg_stream.mqtt.mosquitto import Mosquitto, mosquitto_executable, port_open
from ecg_stream.mqtt.publisher import PendingBeat
from ecg_stream.mqtt.subscriber import WireSubscriber
from ecg_stream.records import Record
from ecg_stream.types import (
    BEAT_CLASSES,
    BeatWindow,
    Chunk,
    LabeledBeat,
    MorphologyFeatures,
    RPeak,
    RRFeatures,
)
from ecg_stream.wire import (
    OUTPUT_KINDS,
    BeatMessage,
    EventMessage,
    SamplesMessage,
    StatusMessage,
    StreamState,
    TopicKind,
    WireMessage,
)

T = TypeVar("T")


BROKER_ENV = "ECG_STREAM_TEST_BROKER"
"""Which broker the MQTT tests run: ``mosquitto``, ``embedded`` (amqtt), or unset: mosquitto
when installed, else embedded."""

BROKER_START_TIMEOUT_S = 20.0


class BrokerKind(Enum):
    """The MQTT broker the tests run against."""

    MOSQUITTO = "mosquitto"
    EMBEDDED = "embedded"  # ecg_stream.mqtt.broker (amqtt), as ``ecg-stream broker`` runs it


def selected_broker_kind() -> BrokerKind:
    """The broker named by $ECG_STREAM_TEST_BROKER, else mosquitto if installed, else embedded.

    Raises:
        pytest.UsageError: $ECG_STREAM_TEST_BROKER names no broker kind.
    """
    wanted = os.environ.get(BROKER_ENV, "")
    if not wanted:
        return BrokerKind.MOSQUITTO if mosquitto_executable() else BrokerKind.EMBEDDED
    try:
        return BrokerKind(wanted)
    except ValueError:
        choices = ", ".join(kind.value for kind in BrokerKind)
        msg = f"${BROKER_ENV}={wanted!r} is no broker; use one of {choices}, or unset it"
        raise pytest.UsageError(msg) from None


class MqttBroker:
    """A broker on a loopback port: mosquitto, or the embedded one (amqtt) as ``ecg-stream
    broker`` runs it.

    Args:
        directory: Where the configuration and log files go.
        port: TCP port on 127.0.0.1.
        kind: Which broker to run.
        persistent: mosquitto keeps sessions and queued messages on disk (in ``directory``),
            with a 1 s autosave, as a no-loss deployment runs it (docs/operations.md).
    """

    def __init__(
        self, directory: Path, port: int, kind: BrokerKind, *, persistent: bool = False
    ) -> None:
        self.port, self.kind = port, kind
        self.log_path = directory / f"{kind.value}-{port}.log"
        self.database_path = directory / "mosquitto.db"  # mosquitto's persistence file
        self._mosquitto: Mosquitto | None = None
        if kind is BrokerKind.MOSQUITTO:
            try:
                self._mosquitto = Mosquitto(directory, port, persistent=persistent)
            except BrokerError as error:
                pytest.fail(f"{error}, or unset ${BROKER_ENV} to test against the embedded broker")
            self.log_path = self._mosquitto.log_path
        self.process: subprocess.Popen[bytes] | None = None  # the embedded broker

    @property
    def config(self) -> MqttConfig:
        return MqttConfig(host="127.0.0.1", port=self.port, topic_prefix="ecg")

    def start(self) -> None:
        if self._mosquitto is not None:
            try:
                self._mosquitto.start()
            except BrokerError as error:
                pytest.fail(str(error))
            return
        command = [sys.executable, "-m", "ecg_stream.cli", "broker", "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log)
        deadline = time.monotonic() + BROKER_START_TIMEOUT_S
        while not port_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the embedded broker did not start: {self.log_path.read_text()}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing saved since the last autosave, no goodbye to clients."""
        if self._mosquitto is not None:
            self._mosquitto.kill()
        elif self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self._mosquitto is not None:
            self._mosquitto.stop()
        elif self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


def record_stretch(stem: Path, directory: Path, name: str, samples: int) -> Path:
    """The first ``samples`` of a WFDB record (both leads, and its annotations) as a record of
    its own in ``directory``, in the record's own format, gain and baseline (the same digital
    samples); its path stem."""
    raw = wfdb.rdrecord(str(stem), sampto=samples)
    wfdb.wrsamp(
        name,
        fs=raw.fs,
        units=raw.units,
        sig_name=raw.sig_name,
        p_signal=raw.p_signal,
        fmt=raw.fmt,
        adc_gain=raw.adc_gain,
        baseline=raw.baseline,
        write_dir=str(directory),
    )
    annotations = wfdb.rdann(str(stem), "atr", sampto=samples - 1)
    symbols = np.array(annotations.symbol)
    wfdb.wrann(name, "atr", annotations.sample, symbols, write_dir=str(directory))
    return directory / name


def expected_beats(record: Record, classifier: ClassifierLike) -> list[LabeledBeat]:
    """The record's beats from the chain and the classifier called directly (no session).

    In 1 s chunks, as ``analyze`` and ``--speed max`` feed them: some records' first seconds
    give other beats when the detector learns from one whole-record chunk (a chunking
    dependence of the detector).
    """
    extractor = BeatExtractor(classifier.config)
    chunk = round(CHAIN_FS_HZ)
    windows = [
        window
        for start in range(0, record.samples.size, chunk)
        for window in extractor.process(Chunk(start, record.samples[start : start + chunk])).windows
    ]
    return classifier.classify([*windows, *extractor.flush().windows])


TEST_TIMEOUT_S = 60.0


def run(coroutine: Coroutine[Any, Any, T], timeout_s: float = TEST_TIMEOUT_S) -> T:
    """Run a coroutine in a fresh event loop, failing (not hanging) after ``timeout_s``."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout_s):
            return await coroutine

    return asyncio.run(bounded())


async def eventually(condition: Callable[[], bool], timeout_s: float) -> None:
    """Return once ``condition()`` holds (polled); TimeoutError after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - another process's doing: no event to wait on
            await asyncio.sleep(0.05)


def status_of(stream: str, record: str = "100") -> StatusMessage:
    return StatusMessage(
        stream=stream,
        state=StreamState.ONLINE,
        record=record,
        fs_hz=360.0,
        model="test_model",
        classes=BEAT_CLASSES,
    )


def beat_message(stream: str, index: int) -> PendingBeat:
    """A plausible beat at R-peak index ``index``, as handed to a publisher."""
    window = BeatWindow(
        peak=RPeak(index=index, decided_index=index + 60),
        samples=np.zeros(250),
        rr=RRFeatures(
            rr_ms=800.0 if index else math.nan, local_mean_rr_ms=800.0, long_mean_rr_ms=800.0
        ),
        morphology=MorphologyFeatures(template_correlation=1.0, amplitude_ratio=1.0),
        ready_index=index + 160,
    )
    beat = LabeledBeat(window=window, probabilities=(0.9, 0.04, 0.03, 0.02, 0.01))
    return PendingBeat(
        beat,
        stream=stream,
        record="100",
        sample=index,
        chain_sample=index,
        time_s=index / 360.0,
        r_wall_time=1.7e9 + index / 360.0,
    )


def samples_message(stream: str, start_index: int, size: int = 36) -> SamplesMessage:
    return SamplesMessage.from_mv(stream, start_index, 360.0, np.linspace(-1, 1, size), 1.0)


@dataclass
class Collector:
    """Messages a real subscriber received, by kind, in arrival order."""

    beats: list[BeatMessage] = field(default_factory=list)
    samples: list[SamplesMessage] = field(default_factory=list)
    statuses: list[StatusMessage] = field(default_factory=list)
    events: list[EventMessage] = field(default_factory=list)
    malformed: list[tuple[str, PayloadError]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, message: WireMessage) -> None:
        if isinstance(message, BeatMessage):
            self.beats.append(message)
        elif isinstance(message, SamplesMessage):
            self.samples.append(message)
        elif isinstance(message, EventMessage):
            self.events.append(message)
        else:
            self.statuses.append(message)

    def offline_seen(self, stream: str) -> bool:
        return any(s.stream == stream and s.state is StreamState.OFFLINE for s in self.statuses)


async def collect_until(
    config: MqttConfig,
    collector: Collector,
    done: Callable[[Collector], bool],
    *,
    stream: str | None = None,
    kinds: tuple[TopicKind, ...] = OUTPUT_KINDS,
) -> None:
    """Subscribe (sets ``collector.ready`` once subscribed) and collect until ``done``."""
    subscriber = WireSubscriber(
        config,
        stream=stream,
        kinds=kinds,
        on_malformed=lambda topic, error: collector.malformed.append((topic, error)),
    )
    async with subscriber:
        collector.ready.set()
        async for _topic, message in subscriber.messages():
            collector.add(message)
            if done(collector):
                return


def stamped(beat: PendingBeat, compute_ms: float = 1.5, published_at: float = 1.7e9) -> BeatMessage:
    """A beat's message as the publisher sends it (compute latency and publication time)."""
    return beat.stamped(compute_ms, published_at)
