"""The latency benchmark: where a label's time goes, and how many streams a machine holds.

``ecg-stream bench`` and ``benchmarks/latency.py`` run :func:`bench_main`. It measures, on a real
record, in the latency vocabulary of ``docs/protocol.md``:

- compute latency per stage for every beat (filter + detector, window + features, inference,
  serialisation + publish), and end to end up to a real MQTT subscriber (in this process,
  through mosquitto, the embedded broker or ``--broker``). The chunks go in a closed loop: the
  next chunk enters when the subscriber has the last chunk's beats, so no beat waits for another
  (queueing under load is what ``--streams`` measures);
- the signal latency, R peak -> label available, in signal time;
- inference side by side (:mod:`ecg_stream.bench.inference`);
- throughput, x real time, of the chain alone and with inference, as fast as possible;
- with ``--streams N --duration-s S``: one point of the scale curve, N real-time streams
  (:class:`~ecg_stream.live.replay.RecordReplay`) and a subscriber process.

Distributions are quoted as p50, p95, p99 and max; absolute times on a shared machine are noise,
the ratios of figures measured side by side in one run are not.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import msgspec
import numpy as np

from ecg_stream import wire
from ecg_stream.bench.inference import BASELINE, InferenceComparison, compare_inference
from ecg_stream.classify.classifier import OnnxBeatClassifier, default_model_path, keras_path_of
from ecg_stream.config import CHAIN_FS_HZ, DEFAULT_RHYTHM, ChainConfig, MqttConfig
from ecg_stream.detector.chain import BeatExtractor
from ecg_stream.detector.rhythm.stage import RhythmInput, RhythmStage
from ecg_stream.detector.segment import Detected
from ecg_stream.documents import make_output_dir, write_atomically
from ecg_stream.errors import BrokerError, ConfigError
from ecg_stream.live.analysis import stream_record
from ecg_stream.live.mqtt_sink import SAMPLES_SCALE_UV, check_samples_s, default_samples_s
from ecg_stream.live.replay import (
    MAX_SPEED_CHUNK_S,
    REAL_TIME_CHUNK_S,
    spread_starts,
)
from ecg_stream.live.replay_command import replay_job
from ecg_stream.live.session import RunSummary
from ecg_stream.live.sources import ReplaySource, StreamSpec
from ecg_stream.live.workers import (
    MAX_WORKERS,
    WorkerJob,
    default_workers,
    merge_results,
    run_workers,
    split_streams,
)
from ecg_stream.mqtt.broker import EmbeddedBroker
from ecg_stream.mqtt.mosquitto import Mosquitto
from ecg_stream.mqtt.subscriber import WireSubscriber
from ecg_stream.mqtt.transport import client_identifier, make_client
from ecg_stream.records import DataDirs, Record, load_record
from ecg_stream.stats import Percentiles
from ecg_stream.training.dataset import stream_record_windows
from ecg_stream.types import BeatWindow, Chunk, FloatArray, LabeledBeat
from ecg_stream.wire import BeatMessage, SamplesMessage, TopicKind

Say = Callable[[str], None]

STAGES: Final = {
    "filter_detector": "filter + R-peak detector",
    "window_features": "window + features",
    "inference": "inference (batch of the chunk)",
    "serialise_publish": "serialisation + publish (QoS 1 ack)",
    "compute": "compute latency (arrival -> publish acked)",
    "broker_subscriber": "broker -> subscriber",
    "end_to_end": "end to end (arrival -> subscriber)",
}
"""Stage keys of the JSON, and their titles in the table."""

QUICK_S: Final = 180.0
"""Signal used by ``--quick``: the first three minutes."""

RECEIPT_TIMEOUT_S: Final = 10.0
"""How long the closed loop waits for the subscriber to receive a chunk's beats."""


def percentiles(values_ms: Sequence[float]) -> Percentiles:
    """Exact count, mean, p50, p95, p99 and max of ``values_ms`` (NaN when empty)."""
    if not values_ms:
        return Percentiles(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    values = np.asarray(values_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return Percentiles(
        len(values), float(values.mean()), float(p50), float(p95), float(p99), float(values.max())
    )


def percentiles_json(summary: Percentiles) -> dict[str, float]:
    """The summary as a JSON object (NaN is written as null)."""
    fields: dict[str, float] = msgspec.to_builtins(summary)
    return fields


# --- brokers ------------------------------------------------------------------------------------


@contextmanager
def mosquitto(topic_prefix: str = "ecg") -> Iterator[MqttConfig]:
    """A mosquitto of its own on a free loopback port, for as long as the context.

    Raises:
        BrokerError: mosquitto is not installed, or does not start.
    """
    with tempfile.TemporaryDirectory() as directory, Mosquitto(Path(directory)) as broker:
        yield replace(broker.config, topic_prefix=topic_prefix)


@asynccontextmanager
async def bench_broker(
    url: str | None, embedded: bool, topic_prefix: str
) -> AsyncIterator[tuple[MqttConfig, str]]:
    """The broker to measure through, and its description: ``url``, embedded, or mosquitto."""
    if url is not None:
        config = MqttConfig.from_url(url, topic_prefix)
        yield config, f"the broker at {config.url}"
    elif embedded:
        async with EmbeddedBroker(port=0) as broker:
            config = MqttConfig(host=broker.host, port=broker.port, topic_prefix=topic_prefix)
            yield config, f"embedded amqtt at {config.url}"
    else:
        with mosquitto(topic_prefix) as config:
            yield config, f"mosquitto at {config.url}"


# --- per-stage latency --------------------------------------------------------------------------


@dataclass(slots=True)
class StageLatencies:
    """Per-beat latencies of one closed-loop run.

    Args:
        values_ms: Per stage key of ``STAGES``, one value per beat, in ms.
        signal_ms: Per beat, R peak -> end of the chunk that completed it, in signal ms.
        needed_ms: Per beat, R peak -> last sample its window (or the detector) needs, in ms.
        published: Beats published.
        received: Beats the subscriber received.
    """

    values_ms: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    signal_ms: list[float] = field(default_factory=list)
    needed_ms: list[float] = field(default_factory=list)
    published: int = 0
    received: int = 0


class _Receipts:
    """Receipt times of beats at the subscriber, by R-peak index; the closed loop waits here."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}
        self._pending: set[int] = set()
        self._arrived = asyncio.Event()

    def add(self, chain_sample: int, received_s: float) -> None:
        self.at[chain_sample] = received_s
        self._pending.discard(chain_sample)
        if not self._pending:
            self._arrived.set()

    async def wait(self, chain_samples: Sequence[int], timeout_s: float) -> None:
        self._pending = set(chain_samples) - self.at.keys()
        if not self._pending:
            return
        self._arrived.clear()
        try:
            async with asyncio.timeout(timeout_s):
                await self._arrived.wait()
        except TimeoutError:
            return  # counted as not received


async def measure_stages(
    record: Record,
    classifier: OnnxBeatClassifier,
    mqtt: MqttConfig,
    *,
    chunk_s: float = REAL_TIME_CHUNK_S,
    clock: Callable[[], float] = time.perf_counter,
) -> StageLatencies:
    """Run ``record`` through the chain in a closed loop and time every stage of every beat.

    The chain's stages are called one by one (as :class:`BeatExtractor` calls them) so each is
    timed; beats are published with the publisher's client and encoding, then the filtered
    samples, as a live stream does.
    """
    extractor = BeatExtractor(classifier.config)
    stream = f"stages{os.getpid()}"
    beats_topic = wire.topic_for(mqtt.topic_prefix, stream, TopicKind.BEATS)
    samples_topic = wire.topic_for(mqtt.topic_prefix, stream, TopicKind.SAMPLES)
    result, receipts = StageLatencies(), _Receipts()
    start_wall = time.time()

    async def listen(subscriber: WireSubscriber) -> None:
        async for _topic, message in subscriber.messages():
            if isinstance(message, BeatMessage):
                receipts.add(message.chain_sample, clock())

    async def publish(
        client: Any,
        arrival_s: float,
        end_index: int,
        filtered: Chunk | None,
        windows: Sequence[BeatWindow],
        stage_s: tuple[float, float],
    ) -> None:
        started = clock()
        beats = classifier.classify(windows) if windows else []
        inference_s = clock() - started
        sent: dict[int, tuple[float, float]] = {}
        for beat in beats:
            peak = beat.window.peak.index
            sample = record.to_record_index(peak)
            time_s = sample / record.fs_hz
            encode_s = clock()
            message = BeatMessage.from_beat(
                beat,
                stream=stream,
                record=record.name,
                sample=sample,
                chain_sample=peak,
                time_s=time_s,
                r_wall_time=start_wall + time_s,
                compute_ms=(encode_s - arrival_s) * 1000.0,
                published_at=time.time(),
            )
            payload = wire.encode(message)
            handed_s = clock()
            await client.publish(beats_topic, payload, qos=TopicKind.BEATS.qos)
            published_s = clock()
            sent[peak] = (handed_s, published_s)
            values = result.values_ms
            values["filter_detector"].append(stage_s[0] * 1000.0)
            values["window_features"].append(stage_s[1] * 1000.0)
            values["inference"].append(inference_s * 1000.0)
            values["serialise_publish"].append((published_s - encode_s) * 1000.0)
            values["compute"].append((published_s - arrival_s) * 1000.0)
            result.signal_ms.append((end_index - peak) / CHAIN_FS_HZ * 1000.0)
            needed = max(beat.window.ready_index, beat.window.peak.decided_index + 1)
            result.needed_ms.append((needed - peak) / CHAIN_FS_HZ * 1000.0)
        result.published += len(sent)
        if filtered is not None:
            samples = SamplesMessage.from_mv(
                stream, filtered.start_index, CHAIN_FS_HZ, filtered.samples, SAMPLES_SCALE_UV
            )
            await client.publish(samples_topic, wire.encode(samples), qos=TopicKind.SAMPLES.qos)
        await receipts.wait(list(sent), RECEIPT_TIMEOUT_S)
        for peak, (handed_s, _) in sent.items():
            received_s = receipts.at.get(peak)
            if received_s is not None:
                result.received += 1
                result.values_ms["broker_subscriber"].append((received_s - handed_s) * 1000.0)
                result.values_ms["end_to_end"].append((received_s - arrival_s) * 1000.0)

    subscriber = WireSubscriber(mqtt, stream=stream, kinds=(TopicKind.BEATS,))
    client = make_client(mqtt, identifier=client_identifier(stream))
    async with subscriber, client, asyncio.TaskGroup() as group:
        listener = group.create_task(listen(subscriber), name="bench-subscriber")
        source = ReplaySource(record.samples, CHAIN_FS_HZ, speed=math.inf, chunk_s=chunk_s)
        for chunk in source.chunks():
            arrival_s = clock()
            filtered = extractor.bandpass.process(chunk.samples)
            peaks = extractor.detector.process(filtered)
            detected_s = clock()
            windows = extractor.segmenter.process(Detected(filtered, tuple(peaks)))
            windowed_s = clock()
            stages = (detected_s - arrival_s, windowed_s - detected_s)
            filtered_chunk = Chunk(chunk.start_index, filtered)
            await publish(client, arrival_s, chunk.end_index, filtered_chunk, windows, stages)
        arrival_s = clock()  # the end of the stream releases the beats held back
        peaks = extractor.detector.flush()
        detected_s = clock()
        segmenter = extractor.segmenter
        windows = segmenter.process(Detected(np.empty(0), tuple(peaks))) + segmenter.flush()
        windowed_s = clock()
        stages = (detected_s - arrival_s, windowed_s - detected_s)
        await publish(client, arrival_s, record.samples.size, None, windows, stages)
        listener.cancel()
    return result


# --- throughput ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Throughput:
    """Signal time over wall time, as fast as possible, best of the interleaved repeats.

    Args:
        signal_s: Signal processed per repeat, in s.
        chain_x: The chain alone (filter, detector, windows), x real time.
        pipeline_x: The chain with inference, x real time.
        rhythm_x: The rhythm stage alone, on the same chunks' labeled beats, x real time.
        chunk_s: Chunk length, in s.
    """

    signal_s: float
    chain_x: float
    pipeline_x: float
    rhythm_x: float
    chunk_s: float

    @property
    def rhythm_share(self) -> float:
        """The rhythm stage's time over the chain's: what it adds to a stream's chain CPU."""
        return self.chain_x / self.rhythm_x


async def measure_throughput(
    record: Record,
    classifier: OnnxBeatClassifier,
    *,
    repeats: int = 2,
    chunk_s: float = MAX_SPEED_CHUNK_S,
) -> Throughput:
    """Time the chain, the whole session (chain + inference) and the rhythm stage, interleaved.

    The rhythm stage runs alone on the session's labeled beats, in the same chunks.
    """
    config = classifier.config
    chunks = list(ReplaySource(record.samples, CHAIN_FS_HZ, chunk_s=chunk_s).chunks())
    best = {"chain": math.inf, "pipeline": math.inf, "rhythm": math.inf}
    for _ in range(repeats):
        extractor = BeatExtractor(config)
        started = time.perf_counter()
        for chunk in chunks:
            extractor.process(chunk)
        extractor.flush()
        best["chain"] = min(best["chain"], time.perf_counter() - started)
        started = time.perf_counter()
        analysis = await stream_record(record, config, classifier, chunk_s=chunk_s)
        best["pipeline"] = min(best["pipeline"], time.perf_counter() - started)
        filtered = BeatExtractor(config).process(Chunk(0, record.samples)).filtered.samples
        inputs = rhythm_inputs(analysis.labeled, [chunk.end_index for chunk in chunks], filtered)
        stage = RhythmStage(DEFAULT_RHYTHM, CHAIN_FS_HZ)
        started = time.perf_counter()
        for rhythm_input in inputs:
            stage.process(rhythm_input)
        stage.flush()
        best["rhythm"] = min(best["rhythm"], time.perf_counter() - started)
    signal_s = record.samples.size / CHAIN_FS_HZ
    x = {name: signal_s / seconds for name, seconds in best.items()}
    return Throughput(signal_s, x["chain"], x["pipeline"], x["rhythm"], chunk_s)


def rhythm_inputs(
    beats: Sequence[LabeledBeat], chunk_ends: Sequence[int], filtered: FloatArray
) -> list[RhythmInput]:
    """The rhythm stage's input per chunk, as a session hands it.

    The beats whose window ended within the chunk, and the chunk's filtered samples (for VF).
    """
    inputs: list[RhythmInput] = []
    start, chunk_start = 0, 0
    for end_index in chunk_ends:
        stop = start
        while stop < len(beats) and beats[stop].window.ready_index <= end_index:
            stop += 1
        samples = filtered[chunk_start:end_index]
        inputs.append(RhythmInput(tuple(beats[start:stop]), end_index, samples=samples))
        start, chunk_start = stop, end_index
    return inputs


# --- one point of the scale curve ---------------------------------------------------------------

SUBSCRIBER_SCRIPT: Final = """
import asyncio, json, signal, sys, time
from ecg_stream.config import MqttConfig
from ecg_stream.mqtt.subscriber import WireSubscriber
from ecg_stream.stats import DurationHistogram
from ecg_stream.wire import BeatMessage, StatusMessage, StreamState

async def main():
    config = MqttConfig(host=sys.argv[1], port=int(sys.argv[2]), topic_prefix=sys.argv[3])
    streams = set(sys.argv[4].split(","))
    e2e, beats, offline = DurationHistogram(), 0, set()
    stop = asyncio.get_running_loop().create_future()  # SIGTERM: report what came so far
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with WireSubscriber(config) as subscriber:
        print("ready", flush=True)
        async def receive():
            nonlocal beats
            async for _, message in subscriber.messages():
                now = time.time()
                if isinstance(message, BeatMessage):
                    beats += 1
                    e2e.add(message.compute_ms + (now - message.published_at) * 1000.0)
                elif isinstance(message, StatusMessage) and message.state is StreamState.OFFLINE:
                    offline.add(message.stream)
                    if offline >= streams:
                        return
        receiving = asyncio.ensure_future(receive())
        await asyncio.wait((receiving, stop), return_when=asyncio.FIRST_COMPLETED)
        receiving.cancel()
    s = e2e.summary()
    print(json.dumps({"beats": beats, "malformed": subscriber.malformed, "p50": s.p50_ms,
                      "p95": s.p95_ms, "p99": s.p99_ms, "max": s.max_ms,
                      "cpu_s": time.process_time()}), flush=True)

asyncio.run(main())
"""
"""A subscriber process: end-to-end latency of every beat (chunk arrival -> receipt, on this
machine's clock) until every stream says offline; one JSON line at the end."""


def start_subscriber(mqtt: MqttConfig, streams: Sequence[str]) -> subprocess.Popen[str]:
    """Start :data:`SUBSCRIBER_SCRIPT` for ``streams``; returns once it is subscribed."""
    command = [sys.executable, "-c", SUBSCRIBER_SCRIPT, mqtt.host, str(mqtt.port)]
    process = subprocess.Popen(
        [*command, mqtt.topic_prefix, ",".join(streams)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None  # stdout=PIPE
    if process.stdout.readline().strip() != "ready":
        process.kill()
        msg = f"the subscriber process could not subscribe at {mqtt.url}"
        raise BrokerError(msg)
    return process


SUBSCRIBER_GRACE_S: Final = 120.0
"""How long the subscriber process may take after the replay to see every stream offline."""

SCALE_RAMP_S: Final = 5.0
"""Streams of a scale point join over this long, as patients do, not all on one clock tick."""

LATENCY_TARGET_MS: Final = 50.0
"""A scale point holds when its compute latency p99 is below this, with nothing lost."""


@dataclass(frozen=True, slots=True)
class ScalePoint:
    """N real-time streams over ``workers`` processes for a while.

    Args:
        streams: Concurrent streams.
        workers: Processes they were spread over.
        duration_s: Signal per stream, in s (real time).
        samples_s: Signal per ``samples`` message, in s.
        ramp_s: The streams started spread over this wall time, in s.
        wall_s: Wall time of the replay, in s (the slowest worker's).
        compute: Compute latency of every published beat (chunk arrival -> publish).
        pacing_error: |chunk arrival - due time| of every chunk.
        end_to_end: At the subscriber process (p50/p95/p99/max only; from its histogram).
        cpu_percent: CPU time of the workers over wall time, in % of one core.
        subscriber_cpu_percent: The same for the subscriber process.
        chain_ms_per_stream_s: Time in the chain (filter, detector, segmenter, quality) per
            second of one stream, in ms.
        inference_ms_per_stream_s: Time in the classifier per second of one stream, in ms.
        memory_per_stream_mb: Peak RSS during the replay over RSS before it, summed over
            workers, per stream, in MB.
        memory_growth_mb: RSS at the end over RSS after the first tenth of the run, summed
            over workers, in MB (flat memory: about 0).
        beats_published: Beats the publishers handed to the broker.
        beats_received: Beats the subscriber received.
        dropped: Messages the publishers dropped (full queues), all topics.
    """

    streams: int
    workers: int
    duration_s: float
    samples_s: float
    ramp_s: float
    wall_s: float
    compute: Percentiles
    pacing_error: Percentiles
    end_to_end: Percentiles
    cpu_percent: float
    subscriber_cpu_percent: float
    chain_ms_per_stream_s: float
    inference_ms_per_stream_s: float
    memory_per_stream_mb: float
    memory_growth_mb: float
    beats_published: int
    beats_received: int
    dropped: int

    @property
    def cpu_ms_per_stream_s(self) -> float:
        """The workers' CPU time per second of one stream, in ms."""
        return 10.0 * self.cpu_percent / self.streams

    @property
    def holds(self) -> bool:
        """Compute p99 under ``LATENCY_TARGET_MS``, nothing dropped, every beat received."""
        return (
            self.compute.p99_ms < LATENCY_TARGET_MS
            and self.dropped == 0
            and self.beats_received == self.beats_published
        )


async def measure_scale(
    record: Record,
    model_path: Path,
    mqtt: MqttConfig,
    *,
    streams: int,
    duration_s: float,
    workers: int = 1,
    samples_s: float | None = None,
    ramp_s: float = REAL_TIME_CHUNK_S,
) -> ScalePoint:
    """Replay the first ``duration_s`` of ``record`` as ``streams`` real-time streams.

    The streams start spread evenly over ``ramp_s`` (0: all on one clock tick, as after a
    server restart, when every stream's learning-period beats come out together).
    """
    part = replace(record, samples=record.samples[: round(duration_s * CHAIN_FS_HZ)])
    specs = spread_starts([StreamSpec(f"scale{k}", part) for k in range(streams)], ramp_s)
    mqtt = replace(mqtt, topic_prefix=f"{mqtt.topic_prefix}/scale{os.getpid()}")
    subscriber = await asyncio.to_thread(start_subscriber, mqtt, [s.stream_id for s in specs])
    shares = split_streams(specs, workers)
    samples_s = samples_s or default_samples_s(max(len(share) for share in shares))
    jobs = [WorkerJob(share, mqtt, model_path, speed=1.0, samples_s=samples_s) for share in shares]
    results = await run_workers(jobs, replay_job)
    errors = [result.error for result in results if result.error]
    if errors:
        subscriber.kill()
        raise BrokerError(errors[0])
    try:
        out, _ = await asyncio.to_thread(subscriber.communicate, timeout=SUBSCRIBER_GRACE_S)
    except subprocess.TimeoutExpired:  # some stream's offline never came: it reports what did
        subscriber.terminate()
        out, _ = await asyncio.to_thread(subscriber.communicate, timeout=SUBSCRIBER_GRACE_S)
    received = json.loads(out.strip().splitlines()[-1])
    e2e = Percentiles(  # json writes and reads NaN (no beats) as NaN
        count=int(received["beats"]),
        mean_ms=math.nan,
        p50_ms=float(received["p50"]),
        p95_ms=float(received["p95"]),
        p99_ms=float(received["p99"]),
        max_ms=float(received["max"]),
    )
    summary = merge_results(results, into=RunSummary())
    wall_s = max(result.wall_s for result in results)
    peak = sum(max(r.rss_bytes) - r.rss_bytes[0] for r in results if r.rss_bytes)
    growth = sum(r.rss_bytes[-1] - r.rss_bytes[len(r.rss_bytes) // 10] for r in results)
    published = sum(
        report.publisher.published[TopicKind.BEATS] for report in summary.streams.values()
    )
    return ScalePoint(
        streams=streams,
        workers=len(jobs),
        duration_s=duration_s,
        samples_s=REAL_TIME_CHUNK_S if samples_s is None else samples_s,
        ramp_s=ramp_s,
        wall_s=wall_s,
        compute=summary.compute().summary(),
        pacing_error=summary.pacing().summary(),
        end_to_end=e2e,
        cpu_percent=100.0 * sum(result.cpu_s for result in results) / wall_s,
        subscriber_cpu_percent=100.0 * received["cpu_s"] / wall_s,
        chain_ms_per_stream_s=1e3 * summary.chain_s() / (streams * wall_s),
        inference_ms_per_stream_s=1e3 * summary.inference_s / (streams * wall_s),
        memory_per_stream_mb=peak / streams / 1e6,
        memory_growth_mb=growth / 1e6,
        beats_published=published,
        beats_received=int(received["beats"]),
        dropped=summary.total_dropped,
    )


def scale_json(point: ScalePoint) -> dict[str, Any]:
    """One point of the scale curve as a JSON object."""
    return {**msgspec.to_builtins(point), "holds": point.holds}


def streams_per_machine(curve: Sequence[ScalePoint]) -> int:
    """The headline: the most streams of a point that holds (0 if none does)."""
    return max((point.streams for point in curve if point.holds), default=0)


# --- the whole benchmark ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """What to measure.

    Args:
        record: Record name or WFDB path stem.
        data_dir: Directory holding the WFDB files.
        lead: Lead name or index.
        quick: Only the first ``QUICK_S`` of the record, and fewer inference rounds.
        model_path: The ONNX model (None: the shipped one).
        keras_path: The Keras network compared with ONNX (None: the one ``export`` wrote
            beside the model; skipped if missing).
        batch: Beats per batched inference call.
        rounds: Inference rounds (None: 40 with ``quick``, 300 without).
        broker_url: A running broker (None: start one).
        embedded: Start the embedded amqtt broker instead of mosquitto.
        topic_prefix: First topic level(s).
        streams: Instead, the scale curve: one point per number of streams, in order, up to
            the first that does not hold.
        duration_s: Signal per stream of each scale point, in s.
        workers: Processes the streams of a scale point are spread over (at most one each;
            None: ``replay``'s default for that many streams).
        samples_s: Signal per ``samples`` message of the scale points, in s (None: ``replay``'s
            default, per chunk or 500 ms for many streams in a process).
        ramp_s: The streams of a scale point start spread over this wall time, in s.
        json_path: Write the results here.
        plot_dir: Write the PNG plots here.
    """

    record: str = "100"
    data_dir: DataDirs = None
    lead: str = "0"
    quick: bool = False
    model_path: Path | None = None
    keras_path: Path | None = None
    batch: int = 32
    rounds: int | None = None
    broker_url: str | None = None
    embedded: bool = False
    topic_prefix: str = "bench"
    streams: tuple[int, ...] | None = None
    duration_s: float = 60.0
    workers: int | None = None
    samples_s: float | None = None
    ramp_s: float = SCALE_RAMP_S
    json_path: Path | None = None
    plot_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.batch < 1 or (self.rounds is not None and self.rounds < 1):
            msg = f"--batch {self.batch} and --rounds {self.rounds} must be >= 1"
            raise ConfigError(msg)
        if self.streams is not None and (
            not self.streams or min(self.streams) < 1 or not 0 < self.duration_s <= 86_400
        ):
            msg = (
                f"--streams {self.streams} must be counts >= 1 and --duration-s "
                f"{self.duration_s} within (0, 86400] s"
            )
            raise ConfigError(msg)
        if self.workers is not None and not 1 <= self.workers <= MAX_WORKERS:
            msg = f"--workers {self.workers} must lie in [1, {MAX_WORKERS}]"
            raise ConfigError(msg)
        check_samples_s(self.samples_s)
        if not 0 <= self.ramp_s <= self.duration_s:
            msg = f"--ramp-s {self.ramp_s} must lie in [0, --duration-s {self.duration_s:g}]"
            raise ConfigError(msg)


@dataclass(slots=True)
class BenchReport:
    """Everything one run measured (the parts not run stay None).

    Args:
        record: Record name and lead.
        signal_s: Signal the stage and throughput parts used, in s.
        model: The ONNX model, as given.
        broker: Which broker carried the messages.
        stages: Per-beat stage latencies.
        inference: The side-by-side inference comparison.
        throughput: x real time.
        scale: The scale curve, in order of streams.
    """

    record: str
    signal_s: float
    model: str
    broker: str
    stages: StageLatencies | None = None
    inference: InferenceComparison | None = None
    throughput: Throughput | None = None
    scale: list[ScalePoint] | None = None

    def to_json(self) -> dict[str, Any]:
        """The report as one JSON object."""
        out: dict[str, Any] = {
            "benchmark": "ecg-stream latency",
            "record": self.record,
            "signal_s": self.signal_s,
            "model": self.model,
            "broker": self.broker,
            "machine": {"cpus": os.cpu_count(), "load_average": list(os.getloadavg())},
        }
        if self.stages is not None:
            stages = self.stages
            out["stages"] = {
                key: percentiles_json(percentiles(values))
                for key, values in stages.values_ms.items()
            }
            out["chunk_s"] = REAL_TIME_CHUNK_S
            out["beats"] = {"published": stages.published, "received": stages.received}
            out["signal_latency"] = percentiles_json(percentiles(stages.signal_ms))
            out["signal_latency_needed"] = percentiles_json(percentiles(stages.needed_ms))
        if self.inference is not None:
            out["inference"] = inference_json(self.inference)
        if self.throughput is not None:
            t = self.throughput
            out["throughput"] = {
                "signal_s": t.signal_s,
                "chunk_s": t.chunk_s,
                "chain_x_real_time": t.chain_x,
                "pipeline_x_real_time": t.pipeline_x,
                "chain_over_pipeline": t.chain_x / t.pipeline_x,
                "rhythm_x_real_time": t.rhythm_x,
                "rhythm_over_chain": t.rhythm_share,
            }
        if self.scale is not None:
            out["scale"] = {
                "latency_target_ms": LATENCY_TARGET_MS,
                "streams_per_machine": streams_per_machine(self.scale),
                "curve": [scale_json(point) for point in self.scale],
            }
        return out


def inference_baseline(comparison: InferenceComparison) -> str:
    """The variant the ratios are taken against: the ONNX fold model at batch 1 if measured."""
    if BASELINE in comparison.per_beat_ms:
        return BASELINE
    return next(iter(comparison.per_beat_ms))


def inference_json(comparison: InferenceComparison) -> dict[str, Any]:
    """The comparison as a JSON object: per-beat percentiles and the ratio of p50s per variant."""
    baseline = inference_baseline(comparison)
    base_p50 = percentiles(comparison.per_beat_ms[baseline]).p50_ms
    variants = {}
    for name, values in comparison.per_beat_ms.items():
        summary = percentiles(values)
        variants[name] = {**percentiles_json(summary), "ratio_p50": summary.p50_ms / base_p50}
    return {
        "beats": comparison.beats,
        "batch": comparison.batch,
        "keras_model": comparison.keras_model,
        "keras_skipped": comparison.skipped,
        "parity_max_abs": comparison.parity_max_abs,
        "int8": {
            "label_agreement": comparison.int8_label_agreement,
            "max_abs_probability_difference": comparison.int8_max_abs,
            "skipped": comparison.int8_skipped,
        },
        "baseline": baseline,
        "variants": variants,
    }


def _row(title: str, summary: Percentiles, extra: str = "") -> str:
    figures = (summary.p50_ms, summary.p95_ms, summary.p99_ms, summary.max_ms)
    return f"  {title:<44}{summary.count:>7}" + "".join(f"{v:>9.3f}" for v in figures) + extra


def format_report(report: BenchReport) -> str:
    """The report as a terminal table."""
    header = f"  {'':<44}{'n':>7}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}"
    lines = [
        f"ecg-stream latency benchmark: record {report.record}, {report.signal_s:.0f} s of signal, "
        f"model {report.model}, {report.broker}; {os.cpu_count()} CPUs, "
        f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    ]
    if report.stages is not None:
        stages = report.stages
        lines += [
            f"compute latency per stage, ms, every beat ({REAL_TIME_CHUNK_S:g} s chunks in a "
            f"closed loop; {stages.received} of {stages.published} beats received)",
            header,
        ]
        lines += [_row(STAGES[key], percentiles(v)) for key, v in stages.values_ms.items()]
        lines += [
            "signal latency, ms of signal time",
            header,
            _row("R peak -> label available", percentiles(stages.signal_ms)),
            _row("  of which: R peak -> last sample needed", percentiles(stages.needed_ms)),
        ]
    if report.inference is not None:
        comparison = report.inference
        baseline = inference_baseline(comparison)
        lines += [
            f"inference, ms per beat, side by side ({comparison.beats} real windows, "
            f"onnxruntime 1 thread; ratio = p50 / p50 of '{baseline}')",
            header + f"{'ratio':>9}",
        ]
        base_p50 = percentiles(comparison.per_beat_ms[baseline]).p50_ms
        for name, values in comparison.per_beat_ms.items():
            summary = percentiles(values)
            lines.append(_row(name, summary, f"{summary.p50_ms / base_p50:>8.1f}x"))
        if comparison.skipped:
            lines.append(f"  Keras: skipped: {comparison.skipped}")
        else:
            lines.append(
                f"  Keras model {comparison.keras_model}; |Keras - ONNX| probabilities "
                f"<= {comparison.parity_max_abs:.1e}"
            )
        lines.append(
            f"  int8: skipped: {comparison.int8_skipped}"
            if comparison.int8_skipped
            else f"  int8 (dynamic quantization) keeps the shipped label on "
            f"{100 * comparison.int8_label_agreement:.2f} % of the {comparison.beats} windows; "
            f"|int8 - shipped| probabilities <= {comparison.int8_max_abs:.3f}"
        )
    if report.throughput is not None:
        t = report.throughput
        lines.append(
            f"throughput, as fast as possible ({t.chunk_s:g} s chunks, best of 2): chain "
            f"{t.chain_x:.0f}x real time, chain + inference {t.pipeline_x:.0f}x "
            f"(chain alone {t.chain_x / t.pipeline_x:.1f}x faster); the rhythm stage adds "
            f"{100 * t.rhythm_share:.1f} % to the chain's time"
        )
    for s in report.scale or ():
        lines += [
            f"{s.streams} real-time streams over {s.workers} worker process(es) for "
            f"{s.duration_s:g} s ({s.wall_s:.1f} s wall; joining over {s.ramp_s:g} s; samples "
            f"messages of {s.samples_s:g} s), ms",
            header,
            _row("compute latency (arrival -> publish)", s.compute),
            _row("pacing error |arrival - due|", s.pacing_error),
            _row("end to end at a subscriber process", s.end_to_end),
            f"  CPU {s.cpu_percent:.1f} % of a core (subscriber {s.subscriber_cpu_percent:.1f} "
            f"%): {s.cpu_ms_per_stream_s:.2f} ms per stream-second (chain "
            f"{s.chain_ms_per_stream_s:.2f}, inference {s.inference_ms_per_stream_s:.3f}, MQTT, "
            f"asyncio and the rest "
            f"{s.cpu_ms_per_stream_s - s.chain_ms_per_stream_s - s.inference_ms_per_stream_s:.2f}"
            f"), memory {s.memory_per_stream_mb:.2f} MB per stream (growth after the first "
            f"tenth {s.memory_growth_mb:+.1f} MB), beats {s.beats_received} received of "
            f"{s.beats_published} published, {s.dropped} messages dropped: "
            + ("holds" if s.holds else f"does not hold (p99 < {LATENCY_TARGET_MS:g} ms, no loss)"),
        ]
    if report.scale:
        best = streams_per_machine(report.scale)
        workers = next((s.workers for s in report.scale if s.streams == best), 1)
        lines.append(
            f"streams per machine (compute p99 < {LATENCY_TARGET_MS:g} ms, nothing lost): "
            f"{best} ({best // workers} per worker process)"
        )
    return "\n".join(lines)


def write_plots(report: BenchReport, directory: Path) -> list[Path]:
    """Latency CDFs (per stage; per inference variant) and the scale curve, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    make_output_dir(directory)
    series: dict[str, dict[str, list[float]]] = {}
    if report.stages is not None:
        series["latency_cdf.png"] = {STAGES[k]: v for k, v in report.stages.values_ms.items()}
    if report.inference is not None:
        series["inference_cdf.png"] = report.inference.per_beat_ms
    written = []
    for name, curves in series.items():
        figure, axes = plt.subplots(figsize=(8, 5))
        for title, values in curves.items():
            if values:
                ordered = np.sort(np.maximum(values, 1e-4))
                axes.step(ordered, np.arange(1, ordered.size + 1) / ordered.size, label=title)
        axes.set_xscale("log")
        axes.set_xlabel("ms per beat" if name.startswith("inference") else "latency, ms")
        axes.set_ylabel("fraction of beats")
        axes.set_title(f"ecg-stream, record {report.record}: {name.removesuffix('.png')}")
        axes.grid(visible=True, which="both", alpha=0.3)
        axes.legend(fontsize="small")
        figure.tight_layout()
        figure.savefig(directory / name, dpi=110)
        plt.close(figure)
        written.append(directory / name)
    if report.scale:
        written.append(_plot_scale(report.scale, directory / "scale.png", plt))
    return written


def _plot_scale(curve: Sequence[ScalePoint], path: Path, plt: Any) -> Path:
    """Compute p99, CPU and memory per stream against the number of streams."""
    streams = [point.streams for point in curve]
    panels = [
        ("compute latency p99, ms", [p.compute.p99_ms for p in curve], LATENCY_TARGET_MS),
        ("CPU, % of one core (workers)", [p.cpu_percent for p in curve], None),
        ("memory per stream, MB", [p.memory_per_stream_mb for p in curve], None),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(12, 4))
    for axis, (title, values, limit) in zip(axes, panels, strict=True):
        axis.plot(streams, values, marker="o")
        if limit is not None:
            axis.axhline(limit, color="red", linestyle="--", label=f"target {limit:g} ms")
            axis.legend(fontsize="small")
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent real-time streams")
        axis.set_title(title)
        axis.grid(visible=True, which="both", alpha=0.3)
    figure.suptitle(f"ecg-stream scale: {curve[0].workers} worker(s), {os.cpu_count()} CPUs")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


async def run_bench(options: BenchOptions, say: Say) -> BenchReport:
    """Run the parts ``options`` ask for and return their report."""
    config = ChainConfig()
    record = load_record(options.record, options.data_dir, options.lead, annotations=False)
    if options.quick and options.streams is None:
        record = replace(record, samples=record.samples[: round(QUICK_S * CHAIN_FS_HZ)])
    model = options.model_path or default_model_path()
    with OnnxBeatClassifier(model, config, threads=1) as classifier:
        async with bench_broker(
            options.broker_url, options.embedded, options.topic_prefix
        ) as broker:
            mqtt, described = broker
            report = BenchReport(
                record=f"{record.name} ({record.lead})",
                signal_s=record.samples.size / CHAIN_FS_HZ,
                model=model.name,
                broker=described,
            )
            if options.streams is not None:
                report.signal_s = min(report.signal_s, options.duration_s)
                report.scale = await measure_curve(record, model, mqtt, options, say)
                return report
            say(f"stages: {report.signal_s:.0f} s of signal through {described} ...")
            report.stages = await measure_stages(record, classifier, mqtt)
        say("throughput ...")
        report.throughput = await measure_throughput(record, classifier)
        say("inference side by side ...")
        windows = stream_record_windows(record.samples, config)
        rounds = options.rounds or (40 if options.quick else 300)
        report.inference = await asyncio.to_thread(
            compare_inference,
            windows,
            classifier.contract,
            model,
            options.keras_path or keras_path_of(model),
            rounds=rounds,
            batch=options.batch,
        )
    return report


async def measure_curve(
    record: Record, model_path: Path, mqtt: MqttConfig, options: BenchOptions, say: Say
) -> list[ScalePoint]:
    """The scale points of ``options.streams`` in order, up to the first that does not hold."""
    assert options.streams is not None  # the caller's branch
    curve: list[ScalePoint] = []
    for streams in options.streams:
        workers = min(options.workers or default_workers(streams), streams)
        say(f"scale: {streams} streams over {workers} worker(s) for {options.duration_s:g} s ...")
        point = await measure_scale(
            record,
            model_path,
            mqtt,
            streams=streams,
            duration_s=options.duration_s,
            workers=workers,
            samples_s=options.samples_s,
            ramp_s=options.ramp_s,
        )
        curve.append(point)
        say(
            f"  compute p99 {point.compute.p99_ms:.1f} ms, CPU {point.cpu_percent:.0f} %, "
            f"dropped {point.dropped}: {'holds' if point.holds else 'does not hold; stopping'}"
        )
        if not point.holds:
            break
    return curve


def _no_nan(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (null in strict JSON)."""
    if isinstance(value, dict):
        return {key: _no_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_no_nan(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def bench_main(options: BenchOptions, say: Say) -> int:
    """``ecg-stream bench``: run, print the table, write the JSON and plots asked for."""
    report = asyncio.run(run_bench(options, say))
    say(format_report(report))
    if options.json_path is not None:
        text = json.dumps(_no_nan(report.to_json()), indent=2, allow_nan=False)
        write_atomically(options.json_path, text + "\n")
        say(f"wrote {options.json_path}")
    if options.plot_dir is not None:
        for path in write_plots(report, options.plot_dir):
            say(f"wrote {path}")
    return 0
