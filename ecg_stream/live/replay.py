"""Live replay: records -> paced chunks -> beat pipeline -> MQTT, several streams in one process.

Each stream is one named asyncio task in one ``TaskGroup``: its :class:`ReplaySource` paces the
chunks, its pipeline's extractor (synchronous, I/O-free: filter, detector, windows) cuts the
beats, an :class:`InferenceBatcher` shared by the streams labels the windows of every stream of
one event-loop turn in one ONNX call, and its :class:`BeatPublisher` publishes samples and beats
through a bounded queue. No thread per stream and no session per beat: one ONNX session serves
every stream, and the event loop only waits on clocks and sockets.

At a finite ``--speed`` the source is real time, so a full publish queue drops (counted): the
display ``samples`` long before beats, which have a buffer of their own for over 10 minutes of
broker outage; at ``--speed max`` nothing is real time, so the stream waits for the queue
instead and nothing is dropped.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import numpy as np

from ecg_stream.classify.batcher import ClassifierLike, InferenceBatcher
from ecg_stream.config import CHAIN_FS_HZ, ChainConfig, MqttConfig
from ecg_stream.detector.stage import Stage
from ecg_stream.errors import ConfigError, EcgStreamError
from ecg_stream.live.sources import ReplaySource
from ecg_stream.mqtt.publisher import SAMPLES_QUEUE_SIZE, BeatPublisher, PublisherStats
from ecg_stream.records import DataDirs, Record
from ecg_stream.stats import DurationHistogram
from ecg_stream.types import (
    BEAT_CLASSES,
    BeatClass,
    BeatWindow,
    Chunk,
    FloatArray,
    LabeledBeat,
    SignalState,
)
from ecg_stream.wire import (
    BeatMessage,
    SamplesMessage,
    StatusMessage,
    TopicKind,
    WireMessage,
    check_stream_id,
    check_topic_prefix,
)

if TYPE_CHECKING:  # workers.py runs LiveReplay: it imports this module
    from ecg_stream.live.workers import WorkerJob

Clock = Callable[[], float]
Say = Callable[[str], None]

REAL_TIME_CHUNK_S = 0.1
"""Chunk duration when paced: one ``samples`` message per 100 ms of signal."""

MAX_SPEED_CHUNK_S = 1.0
"""Chunk duration at ``--speed max``: fewer, larger chunks and messages, same beats."""

SAMPLES_RANGE_S = (0.05, 10.0)
"""Shortest and longest signal one ``samples`` message may carry, in s."""

MAX_WORKERS = 64
"""Most worker processes one replay may start."""

SAMPLES_SCALE_UV = 1.0
"""Microvolts per count of the ``samples`` payloads (int16: +-32.7 mV at 1 uV)."""


class ExtractionLike(Protocol):
    """What the extractor yields per chunk (``ecg_stream.detector.chain.Extracted``)."""

    @property
    def filtered(self) -> Chunk:
        """The chunk after the band-pass."""

    @property
    def windows(self) -> tuple[BeatWindow, ...]:
        """Beat windows this chunk completed, in R-peak order."""


class ExtractorLike(Stage[Chunk, ExtractionLike], Protocol):
    """A stream's chain up to the beat windows (``ecg_stream.detector.chain.BeatExtractor``)."""

    @property
    def state(self) -> SignalState:
        """The state of the input at the newest sample (ok, noisy, lead-off, gap)."""


class PipelineLike(Protocol):
    """The beat pipeline as the live edge uses it (``ecg_stream.classify.pipeline.BeatPipeline``).

    The live edge runs the two halves apart: each stream's extractor on its own chunks, and the
    classifier once per event-loop turn for the windows of every stream that shares it.
    """

    @property
    def extractor(self) -> ExtractorLike:
        """This stream's extractor (stateful, one per stream)."""

    @property
    def classifier(self) -> ClassifierLike:
        """The classifier (stateless; streams that share it share its inference calls)."""


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One stream to replay.

    Args:
        stream_id: Topic level of the stream (default: the record name).
        record: The record (its ``samples`` may be a slice, e.g. in tests).
        start_delay_s: Wall time the stream waits before its first chunk, in s (finite speeds).
    """

    stream_id: str
    record: Record
    start_delay_s: float = 0.0


@dataclass(slots=True)
class StreamReport:
    """What one stream did.

    Args:
        stream_id: The stream.
        record: Record name.
        beats: Beats published or queued, per class.
        pacing: |chunk arrival - due time| of each chunk, in ms (finite speed only).
        publisher: The publisher's counters and compute-latency histogram.
        signal_s: Signal time replayed, in s.
        started_s: Clock time of the first chunk (NaN before).
        finished_s: Clock time the stream ended (NaN before).
    """

    stream_id: str
    record: str
    beats: dict[BeatClass, int] = field(default_factory=lambda: dict.fromkeys(BEAT_CLASSES, 0))
    pacing: DurationHistogram = field(default_factory=DurationHistogram)
    publisher: PublisherStats = field(default_factory=PublisherStats)
    signal_s: float = 0.0
    started_s: float = math.nan
    finished_s: float = math.nan

    @property
    def speed_factor(self) -> float:
        """Signal time over wall time."""
        return self.signal_s / max(self.finished_s - self.started_s, 1e-9)


@dataclass(slots=True)
class ReplaySummary:
    """Every stream's report; printed at the end or on Ctrl-C.

    Args:
        streams: One report per stream, in the order given.
        speed: Factor of real time of the replay (``math.inf``: as fast as possible).
        interrupted: The replay was stopped by Ctrl-C.
        inference_calls: Classifier calls made for all streams together (one per loop turn
            with beats ready at most).
        inference_windows: Beat windows those calls classified.
    """

    streams: list[StreamReport] = field(default_factory=list)
    speed: float = 1.0
    interrupted: bool = False
    inference_calls: int = 0
    inference_windows: int = 0

    @property
    def total_dropped(self) -> int:
        """Messages dropped by every publisher."""
        return sum(report.publisher.dropped_total for report in self.streams)

    @property
    def beats_lost(self) -> int:
        """Beats that never reached the broker, every stream."""
        return sum(report.publisher.dropped[TopicKind.BEATS] for report in self.streams)

    def compute(self) -> DurationHistogram:
        """Compute latency of every stream's published beats."""
        merged = DurationHistogram()
        for report in self.streams:
            merged.merge(report.publisher.compute)
        return merged

    def pacing(self) -> DurationHistogram:
        """Pacing error of every stream's chunks."""
        merged = DurationHistogram()
        for report in self.streams:
            merged.merge(report.pacing)
        return merged

    def format(self) -> str:
        """The summary as terminal lines."""
        if not self.streams:
            return "nothing replayed"
        lines = ["interrupted: summary so far" if self.interrupted else "summary"]
        for report in self.streams:
            counts = "  ".join(f"{cls.value} {report.beats[cls]}" for cls in BEAT_CLASSES)
            compute = report.publisher.compute.summary()
            dropped = report.publisher.dropped
            reconnects = report.publisher.reconnects
            republished = report.publisher.republished
            lines += [
                f"  stream {report.stream_id} (record {report.record}): "
                f"{sum(report.beats.values())} beats: {counts}",
                f"    compute latency mean {compute.mean_ms:.2f} ms, max {compute.max_ms:.2f} ms; "
                f"dropped {sum(dropped.values())} (beats {dropped[TopicKind.BEATS]}, samples "
                f"{dropped[TopicKind.SAMPLES]}); {report.signal_s:.1f} s of signal at "
                f"{report.speed_factor:.0f}x real time"
                + (f"; {reconnects} reconnects" if reconnects else "")
                + (f", {republished} re-sent" if republished else ""),
            ]
        compute, pacing = self.compute().summary(), self.pacing().summary()
        lines.append(f"  compute latency (chunk arrival -> publish): {compute}")
        if math.isinf(self.speed):
            lines.append(
                "    (at --speed max the chain outruns the broker: compute latency is mostly the "
                "wait in the publish queue; measure latency at --speed 1)"
            )
        if pacing.count:
            lines.append(f"  pacing error |arrival - due|: {pacing}")
        if self.inference_calls:
            lines.append(
                f"  inference: {self.inference_calls} calls for {self.inference_windows} beats "
                f"(mean batch {self.inference_windows / self.inference_calls:.1f})"
            )
        lines.append(f"  dropped: {self.total_dropped}; beats lost: {self.beats_lost}")
        return "\n".join(lines)


class LiveReplay:
    """Replay several streams concurrently through their pipelines to MQTT.

    Args:
        specs: The streams.
        make_pipeline: Builds one pipeline per stream; streams whose pipelines share a classifier
            share its inference calls (one per event-loop turn).
        model_name: Classifier name for the status topic.
        mqtt: Broker and topic prefix.
        speed: Factor of real time, or ``math.inf``.
        summary: Where the per-stream reports go (readable after Ctrl-C too).
        say: Where per-beat lines go (None: quiet).
        chunk_s: Chunk duration, in s of signal (default: ``REAL_TIME_CHUNK_S`` at a finite
            speed, ``MAX_SPEED_CHUNK_S`` at ``math.inf``; results do not depend on it).
        samples_s: Signal per ``samples`` message, in s (default: one message per chunk);
            longer messages mean fewer publishes per stream, and a coarser monitor trace.
        queue_size: Length of each stream's ``samples`` queue (beats have their own buffer).
        publish_samples: Also publish the filtered samples (``samples`` topic).
        clock: Monotonic clock, in s.
        wall_clock: Unix time, in s.
    """

    def __init__(
        self,
        specs: Sequence[StreamSpec],
        make_pipeline: Callable[[], PipelineLike],
        model_name: str,
        mqtt: MqttConfig,
        *,
        speed: float,
        summary: ReplaySummary | None = None,
        say: Say | None = None,
        chunk_s: float | None = None,
        samples_s: float | None = None,
        queue_size: int = SAMPLES_QUEUE_SIZE,
        publish_samples: bool = True,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        ids = [spec.stream_id for spec in specs]
        if not specs or len(set(ids)) != len(ids):
            msg = f"stream ids {ids} must be given and distinct; pass one --stream-id per record"
            raise ConfigError(msg)
        self.specs, self.make_pipeline, self.model_name = tuple(specs), make_pipeline, model_name
        self.mqtt, self.speed, self.say = mqtt, speed, say
        if chunk_s is None:
            chunk_s = MAX_SPEED_CHUNK_S if math.isinf(speed) else REAL_TIME_CHUNK_S
        check_samples_s(samples_s)
        self.chunk_s, self.queue_size, self.publish_samples = chunk_s, queue_size, publish_samples
        self.samples_s = chunk_s if samples_s is None else samples_s
        self.clock, self.wall_clock = clock, wall_clock
        self.summary = summary if summary is not None else ReplaySummary()

    async def run(self) -> ReplaySummary:
        """Run every stream to its end (or until cancelled) and return the summary.

        Raises:
            EcgStreamError: A stream failed (e.g. BrokerError); the first such error.
        """
        reports = [StreamReport(spec.stream_id, spec.record.name) for spec in self.specs]
        self.summary.streams, self.summary.speed = reports, self.speed
        pipelines = [self.make_pipeline() for _ in self.specs]
        batchers: dict[int, InferenceBatcher] = {}  # by classifier identity: one per shared one
        for pipeline in pipelines:
            batchers.setdefault(id(pipeline.classifier), InferenceBatcher(pipeline.classifier))
        try:
            async with asyncio.TaskGroup() as group:
                for spec, report, pipeline in zip(self.specs, reports, pipelines, strict=True):
                    batcher = batchers[id(pipeline.classifier)]
                    group.create_task(
                        self._stream(spec, report, pipeline, batcher),
                        name=f"stream-{spec.stream_id}",
                    )
        except BaseExceptionGroup as errors:
            user_errors = errors.subgroup(EcgStreamError)
            if user_errors is not None:  # a user can fix it: one line, not a traceback
                first = user_errors.exceptions[0]
                while isinstance(first, BaseExceptionGroup):
                    first = first.exceptions[0]
                raise first from None
            raise
        finally:
            self.summary.inference_calls = sum(b.calls for b in batchers.values())
            self.summary.inference_windows = sum(b.windows for b in batchers.values())
        return self.summary

    async def _stream(
        self,
        spec: StreamSpec,
        report: StreamReport,
        pipeline: PipelineLike,
        batcher: InferenceBatcher,
    ) -> None:
        record = spec.record
        source = ReplaySource(
            record.samples, CHAIN_FS_HZ, speed=self.speed, chunk_s=self.chunk_s, clock=self.clock
        )
        extractor = pipeline.extractor
        unlabeled: tuple[BeatWindow, ...] = ()  # extracted, not yet back from the batcher
        status = StatusMessage.online(spec.stream_id, record.name, self.model_name)
        publisher = BeatPublisher(
            self.mqtt,
            status,
            queue_size=self.queue_size,
            clock=self.clock,
            wall_clock=self.wall_clock,
        )
        report.publisher = publisher.stats
        lossless = math.isinf(self.speed)
        start_wall = math.nan
        samples = SamplesCollector(spec.stream_id, self.samples_s)
        async with publisher:
            if not lossless:
                await asyncio.sleep(spec.start_delay_s)
            try:
                async for chunk in source:
                    if math.isnan(start_wall):
                        report.started_s = source.start_s
                        start_wall = self.wall_clock() - (self.clock() - source.start_s)
                    if not lossless:
                        report.pacing.add(
                            abs(chunk.arrival_s - source.due_s(chunk.start_index)) * 1e3
                        )
                    output = extractor.process(chunk)
                    unlabeled = output.windows
                    beats = await batcher.classify(unlabeled)
                    unlabeled = ()
                    report.signal_s = chunk.end_index / CHAIN_FS_HZ
                    for beat in beats:  # beats first: they are the latency-critical part
                        message = self._describe(spec, beat, start_wall, report)
                        await self._emit(publisher, message, chunk.arrival_s, lossless)
                    state = extractor.state
                    if state is not (status.signal or SignalState.OK):
                        # the input's state changed (retained): a clean stream never says it
                        status = msgspec.structs.replace(status, signal=state)
                        await self._emit(publisher, status, chunk.arrival_s, lossless)
                    for display in samples.add(output.filtered) if self.publish_samples else ():
                        await self._emit(publisher, display, chunk.arrival_s, lossless)
                unlabeled = extractor.flush().windows
                flushed = await batcher.classify(unlabeled)
                unlabeled = ()
            except asyncio.CancelledError:
                # Ctrl-C: the last beats go out too, labeled here (the loop is stopping)
                rest = unlabeled + extractor.flush().windows
                for beat in pipeline.classifier.classify(rest) if rest else ():
                    publisher.submit(self._describe(spec, beat, start_wall, report), self.clock())
                raise
            else:
                arrival = self.clock()
                for beat in flushed:
                    message = self._describe(spec, beat, start_wall, report)
                    await self._emit(publisher, message, arrival, lossless)
                if self.publish_samples and (last := samples.take()):
                    await self._emit(publisher, last, arrival, lossless)
            finally:
                report.finished_s = self.clock()

    @staticmethod
    async def _emit(
        publisher: BeatPublisher, message: WireMessage, arrival_s: float, lossless: bool
    ) -> None:
        if lossless:
            await publisher.put(message, arrival_s)
        else:
            publisher.submit(message, arrival_s)

    def _describe(
        self, spec: StreamSpec, beat: LabeledBeat, start_wall: float, report: StreamReport
    ) -> BeatMessage:
        record = spec.record
        sample = record.to_record_index(beat.window.peak.index)
        time_s = sample / record.fs_hz
        r_wall_time = start_wall + (0.0 if math.isinf(self.speed) else time_s / self.speed)
        message = BeatMessage.from_beat(
            beat,
            stream=spec.stream_id,
            record=record.name,
            sample=sample,
            time_s=time_s,
            r_wall_time=r_wall_time,
        )
        report.beats[message.label] += 1
        if self.say is not None:
            self.say(format_beat_line(message))
        return message


def check_samples_s(samples_s: float | None) -> None:
    """Refuse a ``samples`` message length outside :data:`SAMPLES_RANGE_S` (None: per chunk).

    Raises:
        ConfigError: It is outside (or NaN).
    """
    low, high = SAMPLES_RANGE_S
    if samples_s is not None and not low <= samples_s <= high:
        msg = (
            f"--samples-ms {samples_s * 1e3:g} must lie in [{low * 1e3:g}, {high * 1e3:g}] ms "
            "(signal per samples message)"
        )
        raise ConfigError(msg)


class SamplesCollector:
    """Join a stream's consecutive filtered chunks into ``samples`` messages.

    Args:
        stream_id: The stream.
        duration_s: Signal per message, in s (a message closes with the chunk that reaches it;
            0: one message per chunk).
    """

    def __init__(self, stream_id: str, duration_s: float) -> None:
        self.stream_id = stream_id
        self.limit = max(1, round(duration_s * CHAIN_FS_HZ))
        self._parts: list[FloatArray] = []
        self._start_index = 0
        self._held = 0

    def add(self, chunk: Chunk) -> tuple[SamplesMessage, ...]:
        """Hold ``chunk``; return the messages it completes.

        A jump in the sample index (a gap in the input) first closes what was held.
        """
        done = () if self._start_index + self._held == chunk.start_index else self._taken()
        if not self._parts:
            self._start_index = chunk.start_index
        self._parts.append(chunk.samples)
        self._held += chunk.samples.size
        return done + self._taken() if self._held >= self.limit else done

    def _taken(self) -> tuple[SamplesMessage, ...]:
        message = self.take()
        return () if message is None else (message,)

    def take(self) -> SamplesMessage | None:
        """The samples held so far as one message (None if none are held)."""
        if not self._parts:
            return None
        samples = np.concatenate(self._parts)
        self._parts, self._held = [], 0
        return SamplesMessage.from_mv(
            self.stream_id, self._start_index, CHAIN_FS_HZ, samples, SAMPLES_SCALE_UV
        )


def format_beat_line(message: BeatMessage) -> str:
    """The live terminal line of a beat: stream, time, label, confidence, heart rate."""
    hr = "  -- " if message.hr_bpm is None else f"{message.hr_bpm:5.1f}"
    return (
        f"{message.stream:>8}  {message.time_s:9.3f} s  {message.label.value}  "
        f"{message.confidence:4.2f}  {hr} bpm"
    )


def spread_starts(specs: Sequence[StreamSpec], over_s: float) -> list[StreamSpec]:
    """The streams with their starts spread evenly over ``over_s`` of wall time.

    Patients join a ward at their own times, not all on one clock tick: spread over a chunk
    period, the streams of a process fall due one after the other instead of all at once.
    """
    return [replace(spec, start_delay_s=k * over_s / len(specs)) for k, spec in enumerate(specs)]


def plan_streams(records: Sequence[Record], stream_ids: Sequence[str] | None) -> list[StreamSpec]:
    """Pair records with stream ids (default: the record names).

    Raises:
        ConfigError: The number of ids differs from the number of records, or ids repeat.
    """
    if stream_ids:
        if len(stream_ids) != len(records):
            msg = (
                f"{len(stream_ids)} --stream-id for {len(records)} records; give one per record "
                "in the same order, or none to use the record names"
            )
            raise ConfigError(msg)
        ids = list(stream_ids)
    else:
        ids = [record.name for record in records]
    for stream_id in ids:
        check_stream_id(stream_id)
    if len(set(ids)) != len(ids):
        msg = f"stream ids {ids} repeat (a record given twice?); pass one --stream-id per record"
        raise ConfigError(msg)
    return [StreamSpec(stream_id, record) for stream_id, record in zip(ids, records, strict=True)]


async def run_replay(
    records: Sequence[str],
    *,
    speed: float,
    say: Say,
    summary: ReplaySummary,
    broker_url: str | None = None,
    stream_ids: Sequence[str] | None = None,
    lead: str = "0",
    topic_prefix: str = "ecg",
    data_dir: DataDirs = None,
    model_path: Path | None = None,
    quiet: bool = False,
    samples_s: float | None = None,
    workers: int = 1,
) -> ReplaySummary:
    """``ecg-stream replay``: load records and the model, find a broker, run the streams.

    Args:
        records: Record names or WFDB path stems, one stream each.
        speed: Factor of real time, or ``math.inf``.
        say: Where terminal lines go.
        summary: Filled as the streams run (print it after Ctrl-C too).
        broker_url: ``mqtt://host:port`` or ``mqtts://...``; None: localhost or embedded.
        stream_ids: One per record, or None for the record names.
        lead: Lead name or index, for every record.
        topic_prefix: First topic level(s).
        data_dir: Directory holding the WFDB files.
        model_path: ONNX model (default: the shipped one).
        quiet: No per-beat lines.
        samples_s: Signal per ``samples`` message, in s (None: one per chunk).
        workers: Processes to spread the streams over (``ecg_stream.live.workers``).

    Raises:
        EcgStreamError: A record, the model or the broker is not usable.
    """
    from ecg_stream.classify.classifier import OnnxBeatClassifier, default_model_path
    from ecg_stream.classify.pipeline import BeatPipeline
    from ecg_stream.live.workers import WorkerJob, split_streams
    from ecg_stream.mqtt.broker import broker_for
    from ecg_stream.records import load_record

    check_topic_prefix(topic_prefix)
    check_samples_s(samples_s)
    if not 1 <= workers <= MAX_WORKERS:
        msg = f"--workers {workers} must lie in [1, {MAX_WORKERS}] (one per core is plenty)"
        raise ConfigError(msg)
    if broker_url is not None:  # a wrong URL fails before records and model load
        MqttConfig.from_url(broker_url, topic_prefix)
    loaded = [load_record(name, data_dir, lead, annotations=False) for name in records]
    specs = spread_starts(plan_streams(loaded, stream_ids), REAL_TIME_CHUNK_S / speed)
    config = ChainConfig()
    async with AsyncExitStack() as stack:
        classifier = stack.enter_context(
            OnnxBeatClassifier(model_path or default_model_path(), config, threads=1)
        )
        mqtt = await stack.enter_async_context(broker_for(broker_url, topic_prefix, say))
        rate = "as fast as possible" if math.isinf(speed) else f"at {speed:g}x real time"
        names = ", ".join(f"{s.record.name} ({s.record.lead}) as {s.stream_id}" for s in specs)
        say(
            f"replaying {names} {rate} with model {classifier.name} to {mqtt.url} under "
            f"{topic_prefix}/<stream>/...; Ctrl-C stops"
        )

        if workers > 1:
            jobs = [
                WorkerJob(share, mqtt, classifier.path, speed, samples_s, quiet)
                for share in split_streams(specs, workers)
            ]
            return await _replay_in_workers(jobs, say, summary)

        def make_pipeline() -> PipelineLike:
            from ecg_stream.detector.chain import BeatExtractor

            return BeatPipeline(BeatExtractor(config), classifier)

        live = LiveReplay(
            specs,
            make_pipeline,
            classifier.name,
            mqtt,
            speed=speed,
            summary=summary,
            say=None if quiet else say,
            samples_s=samples_s,
        )
        return await live.run()


async def _replay_in_workers(
    jobs: Sequence[WorkerJob], say: Say, summary: ReplaySummary
) -> ReplaySummary:
    """Run the jobs in worker processes; fill ``summary`` with their streams, in job order."""
    from ecg_stream.live.workers import merge_results, run_workers

    results = await run_workers(jobs)
    merged = merge_results(results)
    summary.streams = merged.streams
    summary.speed, summary.interrupted = jobs[0].speed, merged.interrupted
    summary.inference_calls = merged.inference_calls
    summary.inference_windows = merged.inference_windows
    for job, result in zip(jobs, results, strict=True):
        if result.died:  # its streams' connections closed: the broker sent their wills
            ids = ", ".join(spec.stream_id for spec in job.specs)
            say(f"{result.error}: streams {ids} stopped; their status says offline")
        elif result.error:
            raise EcgStreamError(result.error)
    return summary


def replay_main(records: Sequence[str], *, speed: float, say: Say, **options: Any) -> int:
    """Run :func:`run_replay` to its end or to Ctrl-C (or SIGTERM), then print the summary.

    Args:
        records: Record names or WFDB path stems.
        speed: Factor of real time, or ``math.inf``.
        say: Where terminal lines go.
        **options: The keyword arguments of :func:`run_replay`.

    Returns:
        0 at the end of the records, 130 after Ctrl-C or SIGTERM.
    """
    from ecg_stream.live.runner import run_until_stopped

    summary = ReplaySummary()
    stopped = run_until_stopped(
        run_replay(records, speed=speed, say=say, summary=summary, **options)
    )
    summary.interrupted |= stopped  # workers are stopped on their own
    say(summary.format())
    return 130 if summary.interrupted else 0
