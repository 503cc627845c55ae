"""Records as live streams: paced (or as fast as possible) chunks, one session each, to the sinks.

:class:`RecordReplay` is what ``replay``, ``analyze`` and ``evaluate`` run: each record is one
stream, a named task in one ``TaskGroup``; its :class:`~ecg_stream.live.sources.ReplaySource`
paces the chunks, its :class:`~ecg_stream.live.session.StreamSession` runs them through the
chain and hands the beats to the sinks, and one
:class:`~ecg_stream.classify.batcher.InferenceBatcher` labels the windows of every stream of one
event-loop turn in one ONNX call. ``replay`` sends the beats to MQTT (and the terminal),
``analyze`` to CSV files.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from ecg_stream.classify.batcher import ClassifierLike, InferenceBatcher
from ecg_stream.config import CHAIN_FS_HZ, ChainConfig, MqttConfig
from ecg_stream.errors import ConfigError, EcgStreamError
from ecg_stream.live.front import RecordFront
from ecg_stream.live.mqtt_sink import MqttSink, check_samples_s
from ecg_stream.live.runner import first_error
from ecg_stream.live.session import RunSummary, Sink, StreamSession
from ecg_stream.live.sinks import BeatLines
from ecg_stream.live.sources import ReplaySource, StreamSpec
from ecg_stream.live.workers import (
    MEMORY_SAMPLE_S,
    WorkerJob,
    WorkerResult,
    merge_results,
    rss_bytes,
    run_workers,
    split_streams,
)
from ecg_stream.records import DataDirs, Record
from ecg_stream.types import Chunk
from ecg_stream.wire import StatusMessage, check_stream_id, check_topic_prefix

Clock = Callable[[], float]
Say = Callable[[str], None]

REAL_TIME_CHUNK_S = 0.1
"""Chunk duration when paced: one ``samples`` message per 100 ms of signal."""

MAX_SPEED_CHUNK_S = 1.0
"""Chunk duration at ``--speed max``: fewer, larger chunks and messages, same beats."""

MAX_WORKERS = 64
"""Most worker processes one replay may start."""

NO_MODEL = "none"
"""Model name on the status of streams that are not classified (``analyze --no-classify``)."""


class RecordReplay:
    """Replay records concurrently, each one stream session, to the sinks.

    Args:
        specs: The streams.
        classifier: Labels every stream's beats, batched per event-loop turn (None: beats go
            unlabeled, e.g. detection only).
        sinks: Where every stream's output goes.
        speed: Factor of real time, or ``math.inf``.
        summary: Where the per-stream reports go (readable after Ctrl-C too).
        config: The chain's configuration (the classifier's contract was checked against it).
        chunk_s: Chunk duration, in s of signal (default: ``REAL_TIME_CHUNK_S`` at a finite
            speed, ``MAX_SPEED_CHUNK_S`` at ``math.inf``; results do not depend on it).
        clock: Monotonic clock, in s.
        wall_clock: Unix time, in s.

    Raises:
        ConfigError: Stream ids are missing or repeat.
    """

    def __init__(
        self,
        specs: Sequence[StreamSpec],
        classifier: ClassifierLike | None,
        sinks: Sequence[Sink],
        *,
        speed: float,
        summary: RunSummary | None = None,
        config: ChainConfig | None = None,
        chunk_s: float | None = None,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        ids = [spec.stream_id for spec in specs]
        if not specs or len(set(ids)) != len(ids):
            msg = f"stream ids {ids} must be given and distinct; pass one --stream-id per record"
            raise ConfigError(msg)
        self.specs, self.classifier, self.sinks = tuple(specs), classifier, tuple(sinks)
        self.speed, self.clock, self.wall_clock = speed, clock, wall_clock
        self.config = config or ChainConfig()
        if chunk_s is None:
            chunk_s = MAX_SPEED_CHUNK_S if math.isinf(speed) else REAL_TIME_CHUNK_S
        self.chunk_s = chunk_s
        self.summary = summary if summary is not None else RunSummary()
        self.summary.speed = speed
        self.model_name = NO_MODEL if classifier is None else classifier.name

    async def run(self) -> RunSummary:
        """Run every stream to its end (or until cancelled); close the sinks; the summary.

        Raises:
            EcgStreamError: A stream failed (e.g. BrokerError); the first such error.
        """
        batcher = None if self.classifier is None else InferenceBatcher(self.classifier)
        try:
            async with AsyncExitStack() as stack:
                for sink in self.sinks:
                    stack.push_async_callback(sink.close)
                async with asyncio.TaskGroup() as group:
                    for spec in self.specs:
                        group.create_task(
                            self._stream(spec, batcher), name=f"stream-{spec.stream_id}"
                        )
        except BaseExceptionGroup as errors:
            raise first_error(errors) from None
        finally:
            if batcher is not None:
                self.summary.add_inference(batcher)
        return self.summary

    async def _stream(self, spec: StreamSpec, batcher: InferenceBatcher | None) -> None:
        record = spec.record
        report = self.summary.report(spec.stream_id, record.name)
        source = ReplaySource(
            record.samples, CHAIN_FS_HZ, speed=self.speed, chunk_s=self.chunk_s, clock=self.clock
        )
        session: StreamSession[Chunk] = StreamSession(
            RecordFront(record, self.config, self.speed),
            self.sinks,
            StatusMessage.online(spec.stream_id, record.name, self.model_name),
            report,
            batcher=batcher,
            clock=self.clock,
            wall_clock=self.wall_clock,
        )
        paced = not math.isinf(self.speed)
        if paced:
            await asyncio.sleep(spec.start_delay_s)
        async with session:
            async for chunk in source:
                if paced:
                    report.pacing.add(abs(chunk.arrival_s - source.due_s(chunk.start_index)) * 1e3)
                await session.process(chunk, chunk.arrival_s)
            await session.finish()


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


def replay_sinks(
    mqtt: MqttConfig,
    summary: RunSummary,
    *,
    speed: float,
    samples_s: float | None,
    say: Say | None,
) -> list[Sink]:
    """The sinks of ``replay``: MQTT (lossless at ``--speed max``) and a line per beat."""
    sinks: list[Sink] = [MqttSink(mqtt, summary, lossless=math.isinf(speed), samples_s=samples_s)]
    if say is not None:
        sinks.append(BeatLines(say))
    return sinks


@dataclass(frozen=True, slots=True)
class ReplaySettings:
    """What ``ecg-stream replay`` was asked to do.

    Args:
        records: Record names or WFDB path stems, one stream each.
        speed: Factor of real time, or ``math.inf``.
        broker_url: ``mqtt://host:port`` or ``mqtts://...``; None: localhost or embedded.
        stream_ids: One per record, or None for the record names.
        lead: Lead name or index, for every record.
        topic_prefix: First topic level(s).
        data_dir: Directories holding the WFDB files.
        model_path: ONNX model (None: the shipped one).
        quiet: No per-beat lines.
        samples_s: Signal per ``samples`` message, in s (None: one per chunk).
        workers: Processes to spread the streams over (``ecg_stream.live.workers``).
    """

    records: tuple[str, ...]
    speed: float
    broker_url: str | None = None
    stream_ids: tuple[str, ...] | None = None
    lead: str = "0"
    topic_prefix: str = "ecg"
    data_dir: DataDirs = None
    model_path: Path | None = None
    quiet: bool = False
    samples_s: float | None = None
    workers: int = 1

    def check(self) -> None:
        """Refuse a bad option before records and model load.

        Raises:
            ConfigError: An option is out of range.
        """
        check_topic_prefix(self.topic_prefix)
        check_samples_s(self.samples_s)
        if not 1 <= self.workers <= MAX_WORKERS:
            msg = (
                f"--workers {self.workers} must lie in [1, {MAX_WORKERS}] (one per core is plenty)"
            )
            raise ConfigError(msg)
        if self.broker_url is not None:  # a wrong URL fails before records and model load
            MqttConfig.from_url(self.broker_url, self.topic_prefix)


async def run_replay(settings: ReplaySettings, say: Say, summary: RunSummary) -> RunSummary:
    """``ecg-stream replay``: load records and the model, find a broker, run the streams.

    Args:
        settings: What to replay, and how.
        say: Where terminal lines go.
        summary: Filled as the streams run (print it after Ctrl-C too).

    Raises:
        EcgStreamError: A record, the model or the broker is not usable.
    """
    from ecg_stream.classify.classifier import OnnxBeatClassifier, default_model_path
    from ecg_stream.mqtt.broker import broker_for
    from ecg_stream.records import load_record

    settings.check()
    speed = settings.speed
    loaded = [
        load_record(name, settings.data_dir, settings.lead, annotations=False)
        for name in settings.records
    ]
    specs = spread_starts(plan_streams(loaded, settings.stream_ids), REAL_TIME_CHUNK_S / speed)
    config = ChainConfig()
    model_path = settings.model_path or default_model_path()
    async with AsyncExitStack() as stack:
        classifier = stack.enter_context(OnnxBeatClassifier(model_path, config, threads=1))
        mqtt = await stack.enter_async_context(
            broker_for(settings.broker_url, settings.topic_prefix, say)
        )
        rate = "as fast as possible" if math.isinf(speed) else f"at {speed:g}x real time"
        names = ", ".join(f"{s.record.name} ({s.record.lead}) as {s.stream_id}" for s in specs)
        say(
            f"replaying {names} {rate} with model {classifier.name} to {mqtt.url} under "
            f"{settings.topic_prefix}/<stream>/...; Ctrl-C stops"
        )
        if settings.workers > 1:
            jobs = [
                WorkerJob(share, mqtt, classifier.path, speed, settings.samples_s, settings.quiet)
                for share in split_streams(specs, settings.workers)
            ]
            return await _replay_in_workers(jobs, say, summary)
        sinks = replay_sinks(
            mqtt,
            summary,
            speed=speed,
            samples_s=settings.samples_s,
            say=None if settings.quiet else say,
        )
        replay = RecordReplay(specs, classifier, sinks, speed=speed, summary=summary, config=config)
        return await replay.run()


def replay_job(job: WorkerJob) -> WorkerResult:
    """Run one worker's replay in this process, to its end or to Ctrl-C / SIGTERM."""
    from ecg_stream.classify.classifier import OnnxBeatClassifier
    from ecg_stream.live.runner import run_until_stopped

    result = WorkerResult(RunSummary())
    try:
        classifier = OnnxBeatClassifier(job.model_path, ChainConfig(), threads=1)
    except EcgStreamError as error:
        result.error = str(error)
        return result
    with classifier:
        say = None if job.quiet else _print_line
        sinks = replay_sinks(
            job.mqtt, result.summary, speed=job.speed, samples_s=job.samples_s, say=say
        )
        replay = RecordReplay(job.specs, classifier, sinks, speed=job.speed, summary=result.summary)

        async def run() -> None:
            async def sample_memory() -> None:
                while True:
                    await asyncio.sleep(MEMORY_SAMPLE_S)
                    result.rss_bytes.append(rss_bytes())

            result.rss_bytes.append(rss_bytes())  # before the streams' sessions exist
            sampler = asyncio.create_task(sample_memory(), name="worker-memory")
            try:
                await replay.run()
            except EcgStreamError as error:
                result.error = str(error)
            finally:
                sampler.cancel()

        cpu_before, started = time.process_time(), time.perf_counter()
        result.summary.interrupted = run_until_stopped(run())
        result.cpu_s = time.process_time() - cpu_before
        result.wall_s = time.perf_counter() - started
    return result


def _print_line(line: str) -> None:
    print(line, flush=True)


async def _replay_in_workers(
    jobs: Sequence[WorkerJob], say: Say, summary: RunSummary
) -> RunSummary:
    """Run the jobs in worker processes; fill ``summary`` with their streams, in job order."""
    results = await run_workers(jobs, replay_job)
    merge_results(results, into=summary)
    for job, result in zip(jobs, results, strict=True):
        if result.died:  # its streams' connections closed: the broker sent their wills
            ids = ", ".join(spec.stream_id for spec in job.specs)
            say(f"{result.error}: streams {ids} stopped; their status says offline")
        elif result.error:
            raise EcgStreamError(result.error)
    return summary


def replay_main(settings: ReplaySettings, say: Say) -> int:
    """Run :func:`run_replay` to its end or to Ctrl-C (or SIGTERM), then print the summary.

    Returns:
        0 at the end of the records, 130 after Ctrl-C or SIGTERM.
    """
    from ecg_stream.live.runner import run_until_stopped

    summary = RunSummary()
    stopped = run_until_stopped(run_replay(settings, say, summary))
    summary.interrupted |= stopped  # workers are stopped on their own
    say(summary.format())
    return 130 if summary.interrupted else 0
