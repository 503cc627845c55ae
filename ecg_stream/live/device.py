"""``ecg-stream device``: a device simulator publishing a record's raw samples on ``raw``.

Each record is one device: its lead is published as int16 ADC counts with the record's gain
(counts per mV), as an acquisition front end delivers them, in chunks of ``chunk_s`` paced
like a real device (chunk ``k`` leaves when its last sample has been acquired, on a schedule
from the start time, ``speed`` times real time or as fast as possible). With ``fs_hz`` the
lead is first resampled to another rate, to exercise the worker's resampler. At the record's
own rate the counts are the record's digital samples minus its baseline, so a worker's beats
equal ``replay``'s and ``analyze``'s.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import signal

from ecg_stream.config import MqttConfig
from ecg_stream.errors import BrokerError, ConfigError
from ecg_stream.live.sources import ReplaySource
from ecg_stream.mqtt.transport import (
    RECONNECT_BACKOFF,
    Client,
    MqttError,
    ReconnectingSession,
)
from ecg_stream.records import DataDirs, find_record, load_record
from ecg_stream.types import FloatArray
from ecg_stream.wire import (
    MAX_RAW_SAMPLES_PER_MESSAGE,
    RAW_FS_RANGE_HZ,
    RAW_GAIN_RANGE,
    RawMessage,
    TopicKind,
    check_stream_id,
    check_topic_prefix,
    encode,
    topic_for,
)

Clock = Callable[[], float]
Say = Callable[[str], None]

DEFAULT_CHUNK_MS = 100.0
"""Signal per ``raw`` message: a device sends ten chunks a second."""

_INT16_MIN, _INT16_MAX = -32768, 32767


@dataclass(frozen=True, slots=True)
class DeviceSignal:
    """One lead as a device publishes it.

    Args:
        name: Record name.
        lead: Lead name.
        fs_hz: Sampling rate, in Hz.
        values: int16 counts (with ``gain``) or float32 mV (``gain`` None).
        gain: Counts per mV of the counts.
    """

    name: str
    lead: str
    fs_hz: float
    values: npt.NDArray[np.int16] | npt.NDArray[np.float32] = field(repr=False)
    gain: float | None

    def millivolts(self) -> FloatArray:
        """The signal in mV, as a worker decodes it."""
        values = self.values.astype(np.float64)
        return values / self.gain if self.gain is not None else values

    def message(
        self, stream: str, start: int, stop: int, t0: float | None, session: str | None = None
    ) -> RawMessage:
        """The ``raw`` message of samples ``start:stop`` (``session``: the device's token)."""
        part, lead = self.values[start:stop], self.lead
        if self.gain is None:
            return RawMessage.from_mv(
                stream, start, self.fs_hz, part, lead=lead, t0=t0, session=session
            )
        return RawMessage.from_counts(
            stream, start, self.fs_hz, part, gain=self.gain, lead=lead, t0=t0, session=session
        )


def check_device_rate(fs_hz: float) -> float:
    """Return ``fs_hz`` if a device may publish at it, else raise.

    Raises:
        ConfigError: Outside :data:`~ecg_stream.wire.RAW_FS_RANGE_HZ`.
    """
    low, high = RAW_FS_RANGE_HZ
    if not low <= fs_hz <= high:  # also refuses NaN
        msg = f"--fs {fs_hz:g} Hz is not a device rate; use {low:g} to {high:g} Hz (e.g. 250, 500)"
        raise ConfigError(msg)
    return fs_hz


def resample_lead(samples_mv: FloatArray, from_hz: float, to_hz: float) -> FloatArray:
    """Resample a whole lead (polyphase, anti-aliased); what a device at ``to_hz`` would record.

    Example:
        >>> resample_lead(np.zeros(360), 360.0, 250.0).shape
        (250,)
    """
    if from_hz == to_hz:
        return samples_mv
    ratio = Fraction(to_hz / from_hz).limit_denominator(1000)
    resampled = signal.resample_poly(samples_mv, ratio.numerator, ratio.denominator)
    return np.asarray(resampled, dtype=np.float64)


def load_device_signal(
    name: str,
    data_dir: DataDirs = None,
    lead: str = "0",
    *,
    fs_hz: float | None = None,
    duration_s: float | None = None,
    float32: bool = False,
) -> DeviceSignal:
    """A record's lead as a device would publish it.

    Args:
        name: Record name or WFDB path stem.
        data_dir: Directories to search first.
        lead: Lead name or index.
        fs_hz: Publish at this rate (default: the record's own).
        duration_s: Only the first seconds of the record.
        float32: Publish float32 mV instead of int16 counts.

    Raises:
        EcgStreamError: The record cannot be found or read, or an option is out of range.
    """
    import wfdb

    if fs_hz is not None:
        check_device_rate(fs_hz)
    if duration_s is not None and not duration_s > 0:
        msg = f"--duration-s {duration_s} must be > 0"
        raise ConfigError(msg)
    record = load_record(name, data_dir, lead, annotations=False)  # checks files and lead
    stem = Path(name) if Path(name).parent != Path() else find_record(name, data_dir)
    header = wfdb.rdheader(str(stem))
    channel = list(header.sig_name).index(record.lead)
    stop = None if duration_s is None else max(1, round(duration_s * record.fs_hz))
    raw = wfdb.rdrecord(str(stem), channels=[channel], physical=False, sampto=stop)
    baseline = int(raw.baseline[0])
    gain = float(raw.adc_gain[0]) * (1000.0 if (raw.units or ["mV"])[0].lower() == "uv" else 1.0)
    counts = np.asarray(raw.d_signal[:, 0], dtype=np.int64) - baseline
    target = record.fs_hz if fs_hz is None else fs_hz
    if target != record.fs_hz:
        check_device_rate(target)
        samples_mv = resample_lead(counts / gain, record.fs_hz, target)
        counts = np.rint(samples_mv * gain).astype(np.int64)
    else:
        check_device_rate_of_record(record.name, target)
    fits = counts.size > 0 and counts.min() >= _INT16_MIN and counts.max() <= _INT16_MAX
    low, high = RAW_GAIN_RANGE
    if float32 or not fits or not low <= gain <= high:
        values: npt.NDArray[np.int16] | npt.NDArray[np.float32] = (counts / gain).astype(np.float32)
        return DeviceSignal(record.name, record.lead, target, values, None)
    return DeviceSignal(record.name, record.lead, target, counts.astype(np.int16), gain)


def check_device_rate_of_record(name: str, fs_hz: float) -> None:
    """A record at a rate no device publishes needs ``--fs``.

    Raises:
        ConfigError: ``fs_hz`` is outside the device range.
    """
    low, high = RAW_FS_RANGE_HZ
    if not low <= fs_hz <= high:
        msg = f"record {name} is at {fs_hz:g} Hz, not a device rate; pass --fs {low:g}..{high:g}"
        raise ConfigError(msg)


@dataclass(slots=True)
class DeviceReport:
    """What one simulated device published.

    Args:
        stream_id: The stream.
        record: Record name.
        fs_hz: Its rate, in Hz.
        messages: ``raw`` messages published.
        samples: Samples published.
    """

    stream_id: str
    record: str
    fs_hz: float
    messages: int = 0
    samples: int = 0


async def publish_device(
    mqtt: MqttConfig,
    stream_id: str,
    device: DeviceSignal,
    *,
    speed: float,
    chunk_s: float,
    start_delay_s: float = 0.0,
    report: DeviceReport | None = None,
    clock: Clock = time.monotonic,
    wall_clock: Clock = time.time,
) -> DeviceReport:
    """Publish one device's lead on ``<prefix>/<stream_id>/raw``, paced, QoS 1.

    The device connects, waits ``start_delay_s``, then sends its first chunk. Its chunks carry
    a session token drawn at this start. A lost link (or a broker that does not acknowledge a
    chunk in time) is reconnected, to the next node of a cluster, and the chunk is sent again:
    ``serve`` drops a chunk it already has.

    Raises:
        BrokerError: The broker cannot be reached at start.
    """
    report = report or DeviceReport(stream_id, device.name, device.fs_hz)
    topic = topic_for(mqtt.topic_prefix, stream_id, TopicKind.RAW)
    source = ReplaySource(
        device.values.astype(np.float64), device.fs_hz, speed=speed, chunk_s=chunk_s, clock=clock
    )
    token = secrets.token_hex(8)  # new at each start: serve tells a restart from a twin
    chunks = aiter(source)
    start_wall = math.nan
    unsent: tuple[bytes, int] | None = None  # a chunk's payload and samples, not acknowledged

    async def send(client: Client) -> None:
        nonlocal start_wall, unsent
        if report.messages == 0:
            await asyncio.sleep(start_delay_s)
        while True:
            if unsent is None:
                chunk = await anext(chunks, None)
                if chunk is None:
                    return
                if math.isnan(start_wall):
                    start_wall = wall_clock()
                start = chunk.start_index
                lag_s = 0.0 if math.isinf(speed) else start / device.fs_hz / speed
                message = device.message(
                    stream_id, start, chunk.end_index, start_wall + lag_s, token
                )
                unsent = encode(message), chunk.end_index - start
            await client.publish(topic, unsent[0], qos=TopicKind.RAW.qos)
            report.messages += 1
            report.samples += unsent[1]
            unsent = None

    session = ReconnectingSession(
        mqtt,
        client_prefix=f"ecg-device-{stream_id}",
        backoff=RECONNECT_BACKOFF,
        rng=random.Random(),  # jitter, not cryptography
    )
    try:
        await session.run(send)
    except MqttError as error:  # the first connection failed
        msg = (
            f"cannot publish to the MQTT broker at {mqtt.url} ({error}); start one (mosquitto) "
            "or pass --broker URL"
        )
        raise BrokerError(msg) from error
    return report


async def run_devices(
    records: Sequence[str],
    *,
    say: Say,
    reports: list[DeviceReport],
    broker_url: str | None = None,
    topic_prefix: str = "ecg",
    stream_ids: Sequence[str] | None = None,
    speed: float = 1.0,
    chunk_ms: float = DEFAULT_CHUNK_MS,
    fs_hz: float | None = None,
    duration_s: float | None = None,
    float32: bool = False,
    lead: str = "0",
    data_dir: DataDirs = None,
) -> list[DeviceReport]:
    """``ecg-stream device``: one simulated device per record, all concurrently.

    Raises:
        EcgStreamError: A record, an option or the broker is not usable.
    """
    from ecg_stream.mqtt.broker import DEFAULT_BROKER_URL

    check_topic_prefix(topic_prefix)
    mqtt = MqttConfig.from_url(broker_url or DEFAULT_BROKER_URL, topic_prefix)
    low_ms = 1000.0 / RAW_FS_RANGE_HZ[0]
    if not 1.0 <= chunk_ms <= 1000.0 * MAX_RAW_SAMPLES_PER_MESSAGE / RAW_FS_RANGE_HZ[1]:
        msg = (
            f"--chunk-ms {chunk_ms:g} is not valid; use 1 to "
            f"{1000.0 * MAX_RAW_SAMPLES_PER_MESSAGE / RAW_FS_RANGE_HZ[1]:g} ms "
            f"(a device sends e.g. 100 ms; at least {low_ms:g} ms at 100 Hz)"
        )
        raise ConfigError(msg)
    if fs_hz is not None:
        check_device_rate(fs_hz)
    ids = list(stream_ids) if stream_ids else None
    if ids is not None and len(ids) != len(records):
        msg = f"{len(ids)} --stream-id for {len(records)} records; give one per record in order"
        raise ConfigError(msg)
    devices = [
        load_device_signal(
            name, data_dir, lead, fs_hz=fs_hz, duration_s=duration_s, float32=float32
        )
        for name in records
    ]
    ids = ids or [device.name for device in devices]
    for stream_id in ids:
        check_stream_id(stream_id)
    if len(set(ids)) != len(ids):
        msg = f"stream ids {ids} repeat (a record given twice?); pass one --stream-id per record"
        raise ConfigError(msg)
    reports[:] = [DeviceReport(i, d.name, d.fs_hz) for i, d in zip(ids, devices, strict=True)]
    rate = "as fast as possible" if math.isinf(speed) else f"at {speed:g}x real time"
    names = ", ".join(
        f"{d.name} ({d.lead}, {d.fs_hz:g} Hz) as {i}" for i, d in zip(ids, devices, strict=True)
    )
    say(f"device: publishing {names} {rate} to {mqtt.url} under {topic_prefix}/<stream>/raw")
    # Real devices are not synchronised: their chunks fall due spread over a chunk period
    period_s = 0.0 if math.isinf(speed) else chunk_ms / 1000.0 / speed
    async with asyncio.TaskGroup() as group:
        for k, (stream_id, device, report) in enumerate(zip(ids, devices, reports, strict=True)):
            group.create_task(
                publish_device(
                    mqtt,
                    stream_id,
                    device,
                    speed=speed,
                    chunk_s=chunk_ms / 1000.0,
                    start_delay_s=k * period_s / len(ids),
                    report=report,
                ),
                name=f"device-{stream_id}",
            )
    return reports
