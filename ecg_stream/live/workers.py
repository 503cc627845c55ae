"""Replay streams in several worker processes when one core is not enough.

One process runs every stream of a :class:`~ecg_stream.live.replay.RecordReplay` on one event
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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from ecg_stream.config import DEFAULT_RHYTHM, MANY_STREAMS, MqttConfig, RhythmSettings
from ecg_stream.live.session import RunSummary
from ecg_stream.live.sources import StreamSpec

Work = Callable[["WorkerJob"], "WorkerResult"]

MAX_WORKERS = 64
"""Most worker processes one replay may start."""

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
        rhythm: Limits of each stream's rhythm stage.
    """

    specs: tuple[StreamSpec, ...]
    mqtt: MqttConfig
    model_path: Path
    speed: float
    samples_s: float | None = None
    quiet: bool = True
    rhythm: RhythmSettings = DEFAULT_RHYTHM


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

    summary: RunSummary
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


def default_workers(streams: int) -> int:
    """Worker processes for ``streams`` streams: 1, or one per core from MANY_STREAMS on."""
    if streams < MANY_STREAMS:
        return 1
    return min(os.cpu_count() or 1, MAX_WORKERS)


def split_streams(specs: Sequence[StreamSpec], workers: int) -> list[tuple[StreamSpec, ...]]:
    """Deal the streams to ``workers`` shares, round robin (no share is empty)."""
    shares = [tuple(specs[k::workers]) for k in range(min(workers, len(specs)))]
    return [share for share in shares if share]


def _worker_main(work: Work, job: WorkerJob, results: Connection) -> None:
    results.send(work(job))
    results.close()


async def run_workers(jobs: Sequence[WorkerJob], work: Work) -> list[WorkerResult]:
    """Run ``work`` on each job in a worker process of its own; wait for all of them.

    ``work`` is a module-level function (the process imports it by name), e.g.
    :func:`ecg_stream.live.replay_command.replay_job`.

    The event loop keeps running meanwhile (an embedded broker may live on it). A worker that
    dies without a result (killed, crashed) gives a result with an error and an empty summary.
    """
    context = multiprocessing.get_context("spawn")  # no copy of the parent's threads or loop
    started: list[tuple[BaseProcess, Connection]] = []
    for k, job in enumerate(jobs):
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_worker_main, args=(work, job, sender), name=f"ecg-stream-worker-{k}"
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
                results.append(WorkerResult(RunSummary(interrupted=True), error=error, died=True))
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


def merge_results(results: Sequence[WorkerResult], into: RunSummary) -> RunSummary:
    """Add every worker's streams and counters to ``into``, in worker order; return it."""
    for result in results:
        into.merge(result.summary)
    return into
