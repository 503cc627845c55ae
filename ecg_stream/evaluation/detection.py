"""Detection report: R peaks found by the streaming chain (and optionally xqrs) scored.

What ``ecg-stream evaluate --detector`` runs: each record streamed through the chain, its
detections matched to the reference beats within 150 ms (docs/protocol.md), per record and
gross, in both spans. The report's JSON form is
:data:`~ecg_stream.evaluation.figures.DetectionDocument`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ecg_stream.config import ChainConfig
from ecg_stream.documents import encode_json
from ecg_stream.errors import RecordFormatError
from ecg_stream.evaluation.figures import (
    DetectionDocument,
    DetectionFigures,
    DetectionSpan,
    DetectorFigures,
)
from ecg_stream.evaluation.matching import (
    MATCH_TOLERANCE_S,
    DetectionScore,
    Matching,
    Span,
    match_beats,
    score_detection,
    scored_mask,
)
from ecg_stream.live.analysis import detect_record, map_records
from ecg_stream.records import DataDirs, Record, load_record
from ecg_stream.types import IntArray

CHAIN_DETECTOR = "ecg-stream"
"""The streaming chain's name in the report."""
XQRS_DETECTOR = "xqrs"
"""wfdb's ``xqrs_detect``, scored beside the chain for comparison."""
CHUNK_S = 1.0
"""Chunk length the records are streamed in, in s (results do not depend on it)."""


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

    def figures(self) -> DetectionFigures:
        """The figures, as written."""
        s = self.score
        return DetectionFigures(
            record=self.record,
            tp=s.tp,
            fn=s.fn,
            fp=s.fp,
            se=s.sensitivity,
            pp=s.positive_predictivity,
            mean_abs_timing_error_ms=self.mean_abs_timing_error_ms,
        )


@dataclass(frozen=True, slots=True)
class DetectionReport:
    """Per-record and gross detection figures of each detector in each span.

    Args:
        evaluations: Per detector name, per span, each record's figures in input order.
    """

    evaluations: Mapping[str, Mapping[Span, tuple[DetectionEvaluation, ...]]]

    @property
    def detectors(self) -> tuple[str, ...]:
        """The detectors scored, in report order."""
        return tuple(self.evaluations)

    def to_document(self) -> DetectionDocument:
        """The report as its JSON file holds it."""
        return {
            detector: DetectorFigures(
                whole_record=_span_figures(spans[Span.WHOLE_RECORD]),
                ec57=_span_figures(spans[Span.EC57]),
            )
            for detector, spans in self.evaluations.items()
        }

    def to_json(self) -> str:
        """The report as JSON text (undefined ratios are null)."""
        return encode_json(self.to_document())

    def format_table(self, span: Span) -> str:
        """A text table: one row per record then ``gross``, one column group per detector."""
        lines = [
            f"{'record':>7}"
            + "".join(
                f" | {d + ' TP':>13} {'FN':>4} {'FP':>4} {'Se %':>7} {'+P %':>7} {'|dt| ms':>7}"
                for d in self.detectors
            )
        ]
        rows = [self.evaluations[d][span] for d in self.detectors]
        for per_detector in [*zip(*rows, strict=True), tuple(gross(r) for r in rows)]:
            line = f"{per_detector[0].record:>7}"
            for e in per_detector:
                s = e.score
                line += (
                    f" | {s.tp:>13} {s.fn:>4} {s.fp:>4} {100 * s.sensitivity:>7.2f} "
                    f"{100 * s.positive_predictivity:>7.2f} {e.mean_abs_timing_error_ms:>7.1f}"
                )
            lines.append(line)
        return "\n".join(lines)


def evaluate_detector(
    records: Sequence[str],
    *,
    data_dir: DataDirs = None,
    lead: str = "0",
    with_xqrs: bool = False,
    jobs: int = 1,
) -> DetectionReport:
    """Stream annotated records through the chain (and xqrs) and score the detections.

    Args:
        records: Annotated record names.
        data_dir: Directory or directories holding the WFDB records.
        lead: Lead name or index.
        with_xqrs: Also score wfdb's ``xqrs_detect``.
        jobs: Records evaluated in parallel processes.

    Raises:
        ConfigError: ``jobs`` is below 1.
        RecordFormatError: A record has no reference annotations.
    """
    detectors = (CHAIN_DETECTOR, XQRS_DETECTOR) if with_xqrs else (CHAIN_DETECTOR,)
    tasks = [(name, data_dir, lead, with_xqrs) for name in records]
    found: dict[str, dict[Span, list[DetectionEvaluation]]] = {
        detector: {span: [] for span in Span} for detector in detectors
    }
    for evaluations in map_records(_evaluate_record, tasks, jobs, "evaluate --detector"):
        for (detector, span), evaluation in evaluations.items():
            found[detector][span].append(evaluation)
    return DetectionReport(
        {
            detector: {span: tuple(evaluations) for span, evaluations in spans.items()}
            for detector, spans in found.items()
        }
    )


def _evaluate_record(
    name: str, data_dir: DataDirs, lead: str, with_xqrs: bool
) -> dict[tuple[str, Span], DetectionEvaluation]:
    """One record's figures per (detector, span); a top-level function for process pools."""
    config = ChainConfig()
    record = load_record(name, data_dir, lead)
    detections = {CHAIN_DETECTOR: detect_record(record, config, CHUNK_S).record_indices}
    if with_xqrs:
        from wfdb import processing

        found = processing.xqrs_detect(record.samples, fs=config.fs_hz, verbose=False)
        detections[XQRS_DETECTOR] = np.array(
            [record.to_record_index(int(i)) for i in found], np.int64
        )
    return {
        (detector, span): evaluate_detections(record, detected, span)
        for detector, detected in detections.items()
        for span in Span
    }


def evaluate_detections(record: Record, detected: IntArray, span: Span) -> DetectionEvaluation:
    """Score detections (record clock) against the record's reference beats (docs/protocol.md).

    Raises:
        RecordFormatError: The record has no reference annotations.
    """
    annotations = record.annotations
    if annotations is None:
        msg = f"record {record.name} has no reference annotations ({record.name}.atr) to score"
        raise RecordFormatError(msg)
    start = span.start_index(record.fs_hz)
    reference = annotations.beat_indices
    reference = reference[scored_mask(reference, annotations.flutter_spans, start)]
    detected = detected[scored_mask(detected, annotations.flutter_spans, start)]
    matching = match_beats(reference, detected, round(MATCH_TOLERANCE_S * record.fs_hz))
    return DetectionEvaluation(
        record=record.name,
        score=score_detection(matching),
        timing_errors_ms=_timing_errors_ms(reference, detected, matching, record.fs_hz),
    )


def gross(evaluations: Iterable[DetectionEvaluation]) -> DetectionEvaluation:
    """Counts summed over records ("gross" figures)."""
    total = DetectionScore(0, 0, 0)
    errors: list[float] = []
    for evaluation in evaluations:
        total = total + evaluation.score
        errors += evaluation.timing_errors_ms
    return DetectionEvaluation(record="gross", score=total, timing_errors_ms=tuple(errors))


def _span_figures(evaluations: Sequence[DetectionEvaluation]) -> DetectionSpan:
    return DetectionSpan([e.figures() for e in evaluations], gross(evaluations).figures())


def _timing_errors_ms(
    reference: IntArray, detected: IntArray, matching: Matching, fs_hz: float
) -> tuple[float, ...]:
    return tuple(float(detected[d] - reference[r]) * 1000.0 / fs_hz for r, d in matching.pairs)
