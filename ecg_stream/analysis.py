"""Offline analysis: a whole record through the streaming chain, detections scored."""

from __future__ import annotations

import csv
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecg_stream.config import CHAIN_FS_HZ, ChainConfig
from ecg_stream.detector.chain import BeatExtractor
from ecg_stream.errors import RecordFormatError
from ecg_stream.evaluation import (
    EC57_LEARNING_S,
    MATCH_TOLERANCE_S,
    DetectionScore,
    Matching,
    match_beats,
    score_detection,
    scored_mask,
)
from ecg_stream.records import Record
from ecg_stream.types import BEAT_CLASSES, BeatWindow, Chunk, IntArray, LabeledBeat

CSV_HEADER = ("sample", "time_s", "rr_ms")
LABEL_COLUMNS = ("label", "confidence", *(f"p_{c.value}" for c in BEAT_CLASSES))


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
    windows += extractor.flush()
    return DetectionResult(record, tuple(windows), time.perf_counter() - started)


def write_beats_csv(
    result: DetectionResult, path: Path, labeled: Sequence[LabeledBeat] | None
) -> None:
    """Write one CSV row per detected beat, indices in the record's own clock.

    Columns ``sample,time_s,rr_ms``, then, when ``labeled`` holds one beat per window,
    ``label,confidence,p_N,p_S,p_V,p_F,p_Q``.
    """
    if labeled is not None and len(labeled) != len(result.windows):
        msg = f"{len(labeled)} labeled beats for {len(result.windows)} windows"
        raise ValueError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_HEADER + (LABEL_COLUMNS if labeled is not None else ()))
        for i, (sample, window) in enumerate(
            zip(result.record_indices, result.windows, strict=True)
        ):
            rr = "" if np.isnan(window.rr.rr_ms) else f"{window.rr.rr_ms:.1f}"
            row = [int(sample), f"{sample / result.record.fs_hz:.4f}", rr]
            if labeled is not None:
                beat = labeled[i]
                row += [beat.label.value, f"{beat.confidence:.4f}"]
                row += [f"{p:.4f}" for p in beat.probabilities]
            writer.writerow(row)


@dataclass(frozen=True, slots=True)
class DetectionEvaluation:
    """Detection figures of one record over one scoring span.

    Args:
        record: Record name.
        score: TP, FN, FP.
        timing_errors_ms: Detection minus reference time of each matched beat, in ms.
    """

    record: str
    score: DetectionScore
    timing_errors_ms: tuple[float, ...]

    @property
    def mean_abs_timing_error_ms(self) -> float:
        """Mean |detection - reference| over matched beats, in ms."""
        return float(np.mean(np.abs(self.timing_errors_ms))) if self.timing_errors_ms else 0.0


def evaluate_detections(
    record: Record, detected: IntArray, *, ec57_span: bool
) -> DetectionEvaluation:
    """Score detections (record clock) against the record's reference beats (docs/protocol.md).

    Raises:
        RecordFormatError: The record has no reference annotations.
    """
    annotations = record.annotations
    if annotations is None:
        msg = f"record {record.name} has no reference annotations ({record.name}.atr) to score"
        raise RecordFormatError(msg)
    start = round(EC57_LEARNING_S * record.fs_hz) if ec57_span else 0
    reference = annotations.beat_indices
    reference = reference[scored_mask(reference, annotations.flutter_spans, start)]
    detected = detected[scored_mask(detected, annotations.flutter_spans, start)]
    matching = match_beats(reference, detected, round(MATCH_TOLERANCE_S * record.fs_hz))
    return DetectionEvaluation(
        record=record.name,
        score=score_detection(matching),
        timing_errors_ms=_timing_errors_ms(reference, detected, matching, record.fs_hz),
    )


def _timing_errors_ms(
    reference: IntArray, detected: IntArray, matching: Matching, fs_hz: float
) -> tuple[float, ...]:
    return tuple(float(detected[d] - reference[r]) * 1000.0 / fs_hz for r, d in matching.pairs)


def gross(evaluations: Iterable[DetectionEvaluation]) -> DetectionEvaluation:
    """Counts summed over records ("gross" figures)."""
    evaluations = list(evaluations)
    total = DetectionScore(0, 0, 0)
    errors: list[float] = []
    for evaluation in evaluations:
        total = total + evaluation.score
        errors += evaluation.timing_errors_ms
    return DetectionEvaluation(record="gross", score=total, timing_errors_ms=tuple(errors))
