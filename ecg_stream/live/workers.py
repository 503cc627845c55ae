"""Replay streams in several worker processes when one core is not enough.

One process runs every stream of a :class:`~ecg_stream.live.replay.LiveReplay` on one event
loop, so it uses one core. :func:`run_workers` splits the streams over ``N`` worker processes
(``replay --workers N``, ``bench --workers N``), each a complete replay of its share with its
own ONNX session and its own MQTT connections (one per stream, so every stream keeps its own
last will: the broker still says ``offline`` for each stream of a worker that dies).

Ctrl-C reaches the workers (they share the terminal's process group) and each drains and returns
its summary; the parent ignores it and waits for them. SIGTERM to the parent is passed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from ecg_stream.config import ChainConfig, MqttConfig
from ecg_stream.errors import EcgStreamError
from ecg_stream.live.replay import LiveReplay, ReplaySummary, StreamSpec

MEMORY_SAMPLE_S = 1.0
"""How often a worker reads its resident memory, in s."""


@dataclass(frozen=True, slots=True)
class WorkerJob:
    """What one worker process replays.

    Args:
        specs: Its streams.
        mqtt: The broker (already running: the parent started it if need be).
        model_path: The ONNX model.
        speed: Factor of real time, or ``math.inf``.
        samples_s: Signal per ``samples`` message, in s (None: one per chunk).
        quiet: No line per beat.
    """

    specs: tuple[StreamSpec, ...]
    mqtt: MqttConfig
    model_path: Path
    speed: float
    samples_s: float | None = None
    quiet: bool = True


@dataclass(slots=True)
class WorkerResult:
    """What one worker did.

    Args:
        summary: Its streams' reports.
        cpu_s: CPU time of the replay in the worker, in s.
        wall_s: Wall time of the replay, in s.
        rss_bytes: Resident memory read every ``MEMORY_SAMPLE_S`` during the replay; the first
            reading is taken after the model loaded, before the streams started.
        error: The one-line error that ended the worker early, if any.
        died: The worker process ended without a result (killed, crashed).
    """

    summary: ReplaySummary
    cpu_s: float = 0.0
    wall_s: float = 0.0
    rss_bytes: list[float] = field(default_factory=list)
    error: str | None = None
    died: bool = False


def rss_bytes() -> float:
    """Resident memory of this process now, in bytes (NaN where /proc is missing)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return math.nan
    return float(pages * os.sysconf("SC_PAGE_SIZE"))


def split_streams(specs: Sequence[StreamSpec], workers: int) -> list[tuple[StreamSpec, ...]]:
    """Deal the streams to ``workers`` shares, round robin (no share is empty)."""
    shares = [tuple(specs[k::workers]) for k in range(min(workers, len(specs)))]
    return [share for share in shares if share]


def replay_job(job: WorkerJob) -> WorkerResult:
    """Run one worker's replay in this process, to its end or to Ctrl-C / SIGTERM."""
    from ecg_stream.classify.classifier import OnnxBeatClassifier
    from ecg_stream.classify.pipeline import BeatPipeline
    from ecg_stream.detector.chain import BeatExtractor
    from ecg_stream.live.runner import run_until_stopped

    result = WorkerResult(ReplaySummary())
    config = ChainConfig()
    try:
        classifier = OnnxBeatClassifier(job.model_path, config, threads=1)
    except EcgStreamError as error:
        result.error = str(error)
        return result
    with classifier:
        live = LiveReplay(
            job.specs,
            lambda: BeatPipeline(BeatExtractor(config), classifier),
            classifier.name,
            job.mqtt,
            speed=job.speed,
            summary=result.summary,
            say=None if job.quiet else lambda line: print(line, flush=True),
            samples_s=job.samples_s,
        )

        async def replay() -> None:
            async def sample_memory() -> None:
                while True:
                    await asyncio.sleep(MEMORY_SAMPLE_S)
                    result.rss_bytes.append(rss_bytes())

            result.rss_bytes.append(rss_bytes())  # before the streams' pipelines exist
            sampler = asyncio.create_task(sample_memory(), name="worker-memory")
            try:
                await live.run()
            except EcgStreamError as error:
                result.error = str(error)
            finally:
                sampler.cancel()

        cpu_before, started = time.process_time(), time.perf_counter()
        result.summary.interrupted = run_until_stopped(replay())
        result.cpu_s = time.process_time() - cpu_before
        result.wall_s = time.perf_counter() - started
    return result


def _worker_main(job: WorkerJob, results: Connection) -> None:
    results.send(replay_job(job))
    results.close()


async def run_workers(jobs: Sequence[WorkerJob]) -> list[WorkerResult]:
    """Run each job in a worker process of its own; wait for all of them.

    The event loop keeps running meanwhile (an embedded broker may live on it). A worker that
    dies without a result (killed, crashed) gives a result with an error and an empty summary.
    """
    context = multiprocessing.get_context("spawn")  # no copy of the parent's threads or loop
    started: list[tuple[BaseProcess, Connection]] = []
    for k, job in enumerate(jobs):
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_worker_main, args=(job, sender), name=f"ecg-stream-worker-{k}"
        )
        process.start()
        sender.close()
        started.append((process, receiver))

    def collect() -> list[WorkerResult]:
        results: list[WorkerResult] = []
        for process, receiver in started:
            try:
                results.append(receiver.recv())
            except EOFError:
                process.join()
                error = f"worker {process.name} died (exit status {process.exitcode})"
                results.append(
                    WorkerResult(ReplaySummary(interrupted=True), error=error, died=True)
                )
            process.join()
        return results

    with _passing_signals_to([process for process, _ in started]):
        return await asyncio.to_thread(collect)


@contextmanager
def _passing_signals_to(processes: Sequence[BaseProcess]) -> Iterator[None]:
    """For the context: Ctrl-C is left to the workers (they get it too), SIGTERM passed on."""

    def terminate() -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    # Not on Windows, nor off the main thread (replay --monitor): signals stay as they are.
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGINT, lambda: None)
        handled.append(signal.SIGINT)
        loop.add_signal_handler(signal.SIGTERM, terminate)
        handled.append(signal.SIGTERM)
    try:
        yield
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def merge_results(results: Sequence[WorkerResult]) -> ReplaySummary:
    """One summary of every worker's streams."""
    merged = ReplaySummary()
    for result in results:
        merged.streams += result.summary.streams
        merged.speed = result.summary.speed
        merged.interrupted |= result.summary.interrupted
        merged.inference_calls += result.summary.inference_calls
        merged.inference_windows += result.summary.inference_windows
    return merged
