"""CPU cost of the chain per stream-second, by stage, for chunks of 0.1, 0.5 and 1 s.

Each record is fed to a ``RecordFront`` (the per-stream front end of replay and analysis:
``BeatExtractor`` plus placing beats in the record's clock and reading the signal state after
every chunk, as a live session does) in consecutive chunks, as fast as possible.

Two runs per record and chunk size:

- ``front`` and ``chain``: CPU time (``time.process_time``) of a bare run, front end and
  chain alone.
- the stages: ``quality`` (``scan`` before the filter, ``assess`` after it, the state read),
  ``filter``, ``detector`` and ``segmenter``, timed call by call with ``perf_counter`` in an
  instrumented run (the clock reads cost ~0.1 us a call, a few per chunk).

Each figure is the smallest of ``--repeats`` runs (the machine may be shared).
Figures are ms of CPU per second of signal: a stream costs this much per second of real time.

    python benchmarks/chain_cost.py [RECORD ...] [--chunk-s 0.1 0.5 1] [--profile]

``--profile`` prints cProfile's top functions (by own time) for the first record at the first
chunk size instead.
"""

from __future__ import annotations

import argparse
import cProfile
import math
import pstats
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from ecg_stream.config import CHAIN_FS_HZ, ChainConfig
from ecg_stream.live.front import RecordFront
from ecg_stream.records import Record, load_record
from ecg_stream.types import Chunk

STAGES = ("quality", "filter", "detector", "segmenter")


def chunks_of(record: Record, chunk_s: float) -> list[Chunk]:
    size = round(chunk_s * CHAIN_FS_HZ)
    samples = record.samples
    return [Chunk(start, samples[start : start + size]) for start in range(0, samples.size, size)]


def run_front(record: Record, chunks: list[Chunk]) -> RecordFront:
    """The record through a fresh front end, reading the signal state after each chunk."""
    front = RecordFront(record, ChainConfig(), speed=math.inf)
    for chunk in chunks:
        front.process(chunk, 0.0, 0.0)
        front.signal()
    front.finish(0.0)
    return front


def run_chain(record: Record, chunks: list[Chunk]) -> None:
    front = RecordFront(record, ChainConfig(), speed=math.inf)
    extractor = front.extractor
    for chunk in chunks:
        extractor.process(chunk)
    extractor.flush()


def cpu_seconds(run: Callable[[], object], repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def timed(method: Callable[..., Any], totals: dict[str, int], stage: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter_ns()
        try:
            return method(*args, **kwargs)
        finally:
            totals[stage] += time.perf_counter_ns() - started

    return wrapper


def stage_seconds(record: Record, chunks: list[Chunk]) -> dict[str, float]:
    """Seconds spent in each stage's calls over one run of the front end."""
    totals = dict.fromkeys(STAGES, 0)
    front = RecordFront(record, ChainConfig(), speed=math.inf)
    extractor = front.extractor
    quality = extractor.quality
    quality.scan = timed(quality.scan, totals, "quality")  # type: ignore[method-assign]
    quality.assess = timed(quality.assess, totals, "quality")  # type: ignore[method-assign]
    for stage, target in (
        ("filter", extractor.bandpass),
        ("detector", extractor.detector),
        ("segmenter", extractor.segmenter),
    ):
        target.process = timed(target.process, totals, stage)  # type: ignore[method-assign]
        target.flush = timed(target.flush, totals, stage)  # type: ignore[method-assign]
    for chunk in chunks:
        front.process(chunk, 0.0, 0.0)
        started = time.perf_counter_ns()
        front.signal()
        totals["quality"] += time.perf_counter_ns() - started
    front.finish(0.0)
    return {stage: nanoseconds / 1e9 for stage, nanoseconds in totals.items()}


def profile(record: Record, chunk_s: float, top: int) -> None:
    chunks = chunks_of(record, chunk_s)
    run_front(record, chunks)  # warm: imports, compiled code, caches
    profiler = cProfile.Profile()
    profiler.runcall(run_front, record, chunks)
    print(f"record {record.name}, {chunk_s:g} s chunks, top {top} by own time:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="*", default=["100", "203", "208"])
    parser.add_argument("--chunk-s", type=float, nargs="+", default=[0.1, 0.5, 1.0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each kind; fastest counts")
    parser.add_argument("--profile", action="store_true", help="cProfile instead of figures")
    parser.add_argument("--top", type=int, default=30, help="functions --profile prints")
    args = parser.parse_args()
    records = [load_record(name, annotations=False) for name in args.records]
    if args.profile:
        profile(records[0], args.chunk_s[0], args.top)
        return
    columns = (*STAGES, "chain", "front")
    print("CPU ms per stream-second (stages: instrumented run; chain, front: bare runs)")
    print(f"{'record':>6} {'chunk_s':>7} " + " ".join(f"{name:>9}" for name in columns))
    for chunk_s in args.chunk_s:
        for record in records:
            chunks = chunks_of(record, chunk_s)
            run_front(record, chunks)  # warm: imports, compiled code, caches
            signal_s = record.samples.size / CHAIN_FS_HZ
            runs = [stage_seconds(record, chunks) for _ in range(args.repeats)]
            figures = {stage: min(run[stage] for run in runs) for stage in STAGES}
            figures["chain"] = cpu_seconds(partial(run_chain, record, chunks), args.repeats)
            figures["front"] = cpu_seconds(partial(run_front, record, chunks), args.repeats)
            print(
                f"{record.name:>6} {chunk_s:>7g} "
                + " ".join(f"{1000 * figures[name] / signal_s:>9.3f}" for name in columns)
            )


if __name__ == "__main__":
    main()
