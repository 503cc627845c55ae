"""The ``replay`` command as a function: records over MQTT, in one process or several.

:func:`run_replay` composes what ``replay`` is: the records' streams
(:class:`~ecg_stream.live.replay.RecordReplay`), the shipped model, a broker, and the sinks
(MQTT and a line per beat), or the same in worker processes (``--workers``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from ecg_stream.config import DEFAULT_RHYTHM, ChainConfig, MqttConfig, RhythmSettings
from ecg_stream.detector.chain import warm_up
from ecg_stream.errors import ConfigError, EcgStreamError
from ecg_stream.live.mqtt_sink import (
    MqttSink,
    check_samples_s,
    default_samples_s,
)
from ecg_stream.live.replay import (
    REAL_TIME_CHUNK_S,
    RecordReplay,
    plan_streams,
    spread_starts,
)
from ecg_stream.live.session import RunSummary, Sink
from ecg_stream.live.sinks import BeatLines
from ecg_stream.live.workers import (
    MAX_WORKERS,
    MEMORY_SAMPLE_S,
    WorkerJob,
    WorkerResult,
    default_workers,
    merge_results,
    rss_bytes,
    run_workers,
    split_streams,
)
from ecg_stream.records import DataDirs
from ecg_stream.wire import check_topic_prefix

Say = Callable[[str], None]


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
        samples_s: Signal per ``samples`` message, in s (None: one per chunk, or 500 ms for a
            process of many streams: :func:`~ecg_stream.live.mqtt_sink.default_samples_s`).
        workers: Processes to spread the streams over (``ecg_stream.live.workers``; None: one
            per core from :data:`~ecg_stream.config.MANY_STREAMS` streams on, else 1).
        rhythm: Limits of each stream's rhythm stage.
        metrics_port: Serve Prometheus metrics on ``127.0.0.1:PORT/metrics`` (one process
            only: not with ``workers`` > 1).
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
    workers: int | None = None
    rhythm: RhythmSettings = DEFAULT_RHYTHM
    metrics_port: int | None = None

    def check(self) -> None:
        """Refuse a bad option before records and model load.

        Raises:
            ConfigError: An option is out of range.
        """
        check_topic_prefix(self.topic_prefix)
        check_samples_s(self.samples_s)
        if self.workers is not None and not 1 <= self.workers <= MAX_WORKERS:
            msg = (
                f"--workers {self.workers} must lie in [1, {MAX_WORKERS}] (one per core is plenty)"
            )
            raise ConfigError(msg)
        if self.metrics_port is not None and self.workers is not None and self.workers > 1:
            msg = "--metrics-port counts this process's streams: use it with --workers 1"
            raise ConfigError(msg)
        if self.broker_url is not None:  # a wrong URL fails before records and model load
            MqttConfig.from_url(self.broker_url, self.topic_prefix)

    def worker_count(self) -> int:
        """``workers``, or by default one per core for many streams (one with metrics)."""
        if self.workers is not None:
            return self.workers
        return 1 if self.metrics_port is not None else default_workers(len(self.records))


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
        workers = settings.worker_count()
        if workers > 1:
            jobs = [
                WorkerJob(
                    share,
                    mqtt,
                    classifier.path,
                    speed,
                    settings.samples_s or default_samples_s(len(share)),
                    settings.quiet,
                    settings.rhythm,
                )
                for share in split_streams(specs, workers)
            ]
            return await _replay_in_workers(jobs, say, summary)
        sinks = replay_sinks(
            mqtt,
            summary,
            speed=speed,
            samples_s=settings.samples_s or default_samples_s(len(specs)),
            say=None if settings.quiet else say,
        )
        if settings.metrics_port is not None:
            from ecg_stream.live.metrics import start_metrics  # prometheus only when asked

            sinks.append(start_metrics(settings.metrics_port, summary, say))
        replay = RecordReplay(
            specs,
            classifier,
            sinks,
            speed=speed,
            summary=summary,
            config=config,
            rhythm=settings.rhythm,
        )
        return await replay.run()


def replay_job(job: WorkerJob) -> WorkerResult:
    """Run one worker's replay in this process, to its end or to Ctrl-C / SIGTERM."""
    from ecg_stream.classify.classifier import OnnxBeatClassifier
    from ecg_stream.live.runner import run_until_stopped

    result = WorkerResult(RunSummary())
    warm_up(ChainConfig())
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
        replay = RecordReplay(
            job.specs,
            classifier,
            sinks,
            speed=job.speed,
            summary=result.summary,
            rhythm=job.rhythm,
        )

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


def replay_main(settings: ReplaySettings, say: Say, summary_json: Path | None = None) -> int:
    """Run :func:`run_replay` to its end or to Ctrl-C (or SIGTERM), then print the summary.

    Returns:
        0 at the end of the records, 1 when beats were lost (dropped before the broker or
        refused by it), 130 after Ctrl-C or SIGTERM.
    """
    from ecg_stream.live.runner import run_until_stopped

    summary = RunSummary()
    stopped = run_until_stopped(run_replay(settings, say, summary))
    summary.interrupted |= stopped  # workers are stopped on their own
    summary.report_to(say, summary_json)
    return 130 if summary.interrupted else summary.exit_status()
