"""Offline analysis: whole records through the streaming chain, as fast as possible."""

from __future__ import annotations

import csv
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ecg_stream.config import CHAIN_FS_HZ, ChainConfig
from ecg_stream.detector.chain import BeatExtractor
from ecg_stream.errors import ConfigError
from ecg_stream.records import Record
from ecg_stream.types import (
    BEAT_CLASSES,
    BeatWindow,
    Chunk,
    IntArray,
    LabeledBeat,
    SignalIssue,
)

T = TypeVar("T")

CSV_HEADER = ("sample", "time_s", "rr_ms")
LABEL_COLUMNS = ("label", "confidence", *(f"p_{c.value}" for c in BEAT_CLASSES))
QUALITY_COLUMNS = ("sqi", "sqi_issue")
"""Signal-quality index of each beat and, when unusable (label Q), why (detector/quality.py)."""


@dataclass(frozen=True, slots=True)
class DetectionResult:
    """A record's detected beats and what it cost to find them.

    Args:
        record: The analysed record.
        windows: Every detected beat, in order, indices in the chain's clock.
        chain_s: Wall time spent in the chain (filter, detector, windows), in s.
    """

    record: Record
    windows: tuple[BeatWindow, ...]
    chain_s: float

    @property
    def record_indices(self) -> IntArray:
        """R-peak indices in the record's own clock."""
        return np.array(
            [self.record.to_record_index(w.peak.index) for w in self.windows], dtype=np.int64
        )

    @property
    def speed_factor(self) -> float:
        """Signal duration over chain wall time: how many times faster than real time."""
        return self.record.samples.size / CHAIN_FS_HZ / max(self.chain_s, 1e-9)


def detect_record(record: Record, config: ChainConfig, chunk_s: float) -> DetectionResult:
    """Stream a whole record through the chain in ``chunk_s`` chunks, as fast as possible.

    Results do not depend on ``chunk_s`` (the conformance tests check it); speed does.
    """
    extractor = BeatExtractor(config)
    chunk_samples = max(1, round(chunk_s * config.fs_hz))
    windows: list[BeatWindow] = []
    started = time.perf_counter()
    for start in range(0, record.samples.size, chunk_samples):
        chunk = Chunk(start, record.samples[start : start + chunk_samples])
        windows += extractor.process(chunk).windows
    windows += extractor.flush().windows
    return DetectionResult(record, tuple(windows), time.perf_counter() - started)


def write_beats_csv(
    result: DetectionResult, path: Path, labeled: Sequence[LabeledBeat] | None
) -> None:
    """Write one CSV row per detected beat, indices in the record's own clock.

    Columns ``sample,time_s,rr_ms``, then, when ``labeled`` holds one beat per window,
    ``label,confidence,p_N,p_S,p_V,p_F,p_Q``, then ``sqi,sqi_issue`` (the beat's signal-quality
    index and, when unusable, why; such a beat is labelled Q).
    """
    if labeled is not None and len(labeled) != len(result.windows):
        msg = f"{len(labeled)} labeled beats for {len(result.windows)} windows"
        raise ValueError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            CSV_HEADER + (LABEL_COLUMNS if labeled is not None else ()) + QUALITY_COLUMNS
        )
        for i, (sample, window) in enumerate(
            zip(result.record_indices, result.windows, strict=True)
        ):
            rr = "" if np.isnan(window.rr.rr_ms) else f"{window.rr.rr_ms:.1f}"
            row = [int(sample), f"{sample / result.record.fs_hz:.4f}", rr]
            if labeled is not None:
                beat = labeled[i]
                row += [beat.label.value, f"{beat.confidence:.4f}"]
                row += [f"{p:.4f}" for p in beat.probabilities]
            quality = window.quality
            row += ["", ""] if quality is None else [f"{quality.sqi:.3f}", _issue(quality.issue)]
            writer.writerow(row)


def map_records(function: Callable[..., T], tasks: list[tuple[Any, ...]], jobs: int) -> Iterator[T]:
    """Apply ``function`` to each task's arguments, results in task order, in ``jobs`` processes.

    Raises:
        ConfigError: ``jobs`` is below 1.
    """
    if jobs < 1:
        msg = f"--jobs {jobs} must be >= 1"
        raise ConfigError(msg)
    if jobs == 1:
        yield from itertools.starmap(function, tasks)
        return
    with ProcessPoolExecutor(jobs) as pool:
        yield from pool.map(function, *zip(*tasks, strict=True))


def _issue(issue: SignalIssue | None) -> str:
    return "" if issue is None else issue.value
