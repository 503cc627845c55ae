"""Classification report: a classifier's beat classes scored against annotated records.

What ``ecg-stream evaluate --classifier`` runs: records streamed through
the streaming session (``live/session.py``) as live beats are, labelled detections matched to
the reference beats (docs/protocol.md) and scored in both spans. The report's JSON form,
``classification.json``, is :class:`~ecg_stream.evaluation.figures.ClassificationDocument`.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecg_stream.classify.classifier import OnnxBeatClassifier
from ecg_stream.config import ChainConfig
from ecg_stream.documents import encode_json, make_output_dir, write_atomically
from ecg_stream.errors import ConfigError, RecordFormatError
from ecg_stream.evaluation import plots
from ecg_stream.evaluation.figures import (
    CLASSIFICATION_FILE,
    EC57_CLASSES,
    AverageFigures,
    ClassificationDocument,
    ScoreFigures,
    SpanFigures,
)
from ecg_stream.evaluation.matching import (
    MATCH_TOLERANCE_S,
    ClassScore,
    Span,
    match_beats,
    score_classification,
    scored_mask,
)
from ecg_stream.live.analysis import analyze_record
from ecg_stream.progress import progress
from ecg_stream.records import Annotations, DataDirs, Record, load_record
from ecg_stream.types import BEAT_CLASSES, BeatClass, IntArray, LabeledBeat

REPORT_CHUNK_S = 1.0
"""Chunk length when records are streamed for evaluation: one second at 360 Hz."""


@dataclass(frozen=True, slots=True)
class RecordPredictions:
    """Labelled detections of one record, in the record's own clock.

    Args:
        record: Record name.
        fs_hz: The record's sampling rate, in Hz.
        samples: Detected R-peak sample index of each beat (record clock).
        labels: Predicted class of each beat.
    """

    record: str
    fs_hz: float
    samples: IntArray = field(repr=False)
    labels: tuple[BeatClass, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if self.samples.shape != (len(self.labels),):
            msg = f"record {self.record}: {self.samples.shape} samples, {len(self.labels)} labels"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class RecordScore:
    """Classification counts of one record (or of all, ``record == "gross"``) in one span.

    Args:
        record: Record name, or ``gross``.
        score: Confusion matrix and missed reference beats.
        unmatched_detections: Detections that matched no reference beat.
    """

    record: str
    score: ClassScore
    unmatched_detections: int

    def figures(self) -> ScoreFigures:
        """The record's figures, as written."""
        return ScoreFigures.of(
            self.score, record=self.record, unmatched_detections=self.unmatched_detections
        )


@dataclass(frozen=True, slots=True)
class ClassificationReport:
    """Per-record and gross classification figures for each scoring span.

    Args:
        records: Per span, the score of each record, in input order.
        model: The model's name, if the beats came from one.
        model_path: The ``.onnx`` file evaluated, if any.
    """

    records: Mapping[Span, tuple[RecordScore, ...]]
    model: str | None = None
    model_path: str | None = None

    def gross(self, span: Span) -> RecordScore:
        """Counts summed over the records of a span."""
        scores = self.records[span]
        total = ClassScore(
            np.zeros((len(BEAT_CLASSES), len(BEAT_CLASSES)), dtype=np.int64),
            np.zeros(len(BEAT_CLASSES), dtype=np.int64),
        )
        for record in scores:
            total = total + record.score
        return RecordScore("gross", total, sum(r.unmatched_detections for r in scores))

    def to_document(self) -> ClassificationDocument:
        """The report as ``classification.json`` holds it."""
        spans = {
            span: SpanFigures(
                title=span.title,
                gross=self.gross(span).figures(),
                average=AverageFigures.of([r.score for r in self.records[span]]),
                records=[record.figures() for record in self.records[span]],
            )
            for span in Span
        }
        return ClassificationDocument(
            model=self.model,
            model_path=self.model_path,
            records=[record.record for record in self.records[Span.WHOLE_RECORD]],
            whole_record=spans[Span.WHOLE_RECORD],
            ec57=spans[Span.EC57],
        )

    def to_json(self) -> str:
        """The report as JSON text (undefined ratios are null)."""
        return encode_json(self.to_document())

    def format_table(self, span: Span) -> str:
        """A text table of a span's gross per-class Se/+P, accuracy, macro F1 and EC57 figures."""
        return format_score_table(self.gross(span).score)


def score_records(
    predictions: Sequence[RecordPredictions],
    annotations: Mapping[str, Annotations],
    *,
    model: str | None = None,
    model_path: str | None = None,
) -> ClassificationReport:
    """Score labelled detections against the reference beats, in both spans.

    Matching is one to one within 150 ms; detections and reference beats inside
    ventricular flutter are not scored; the EC57 span also drops the first 5 minutes.

    Raises:
        RecordFormatError: A record has no annotations.
    """
    spans: dict[Span, list[RecordScore]] = {span: [] for span in Span}
    for prediction in predictions:
        reference = annotations.get(prediction.record)
        if reference is None:
            msg = f"record {prediction.record} has no reference annotations (.atr) to score"
            raise RecordFormatError(msg)
        tolerance = round(MATCH_TOLERANCE_S * prediction.fs_hz)
        for span in Span:
            start = span.start_index(prediction.fs_hz)
            ref_keep = scored_mask(reference.beat_indices, reference.flutter_spans, start)
            det_keep = scored_mask(prediction.samples, reference.flutter_spans, start)
            matching = match_beats(
                reference.beat_indices[ref_keep], prediction.samples[det_keep], tolerance
            )
            score = score_classification(
                tuple(c for c, k in zip(reference.beat_classes, ref_keep, strict=True) if k),
                tuple(c for c, k in zip(prediction.labels, det_keep, strict=True) if k),
                matching,
            )
            spans[span].append(
                RecordScore(prediction.record, score, len(matching.unmatched_detection))
            )
    return ClassificationReport(
        {span: tuple(scores) for span, scores in spans.items()}, model, model_path
    )


def read_predictions_csv(path: Path, fs_hz: float) -> RecordPredictions:
    """Read an ``analyze`` CSV (columns ``sample`` and ``label``; record name = file stem).

    Raises:
        ConfigError: The file lacks the ``sample`` or ``label`` column or holds a bad label.
    """
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    try:
        samples = np.array([int(row["sample"]) for row in rows], dtype=np.int64)
        labels = tuple(BeatClass(row["label"]) for row in rows)
    except KeyError as error:
        msg = f"{path}: no column {error.args[0]!r}; write it with `ecg-stream analyze --model`"
        raise ConfigError(msg) from error
    except ValueError as error:
        msg = f"{path}: {error}; labels must be one of {[c.value for c in BEAT_CLASSES]}"
        raise ConfigError(msg) from error
    return RecordPredictions(path.stem, fs_hz, samples, labels)


def classify_record(
    record: Record, classifier: OnnxBeatClassifier, config: ChainConfig
) -> tuple[LabeledBeat, ...]:
    """Stream a whole record through the streaming session, as live beats are."""
    return analyze_record(record, config, classifier, chunk_s=REPORT_CHUNK_S).labeled


def record_predictions(record: Record, beats: Sequence[LabeledBeat]) -> RecordPredictions:
    """The labelled detections of ``beats``, in ``record``'s own clock."""
    return RecordPredictions(
        record=record.name,
        fs_hz=record.fs_hz,
        samples=np.array([record.to_record_index(b.window.peak.index) for b in beats], np.int64),
        labels=tuple(beat.label for beat in beats),
    )


def evaluate_classifier(
    records: Sequence[str],
    model_path: Path,
    out_dir: Path,
    *,
    config: ChainConfig | None = None,
    data_dir: DataDirs = None,
    training_log: Path | None = None,
) -> ClassificationReport:
    """Stream records through detector and classifier, score them, write JSON and pictures.

    Writes ``classification.json``, ``confusion.png``, ``sample_beats.png``,
    ``raw_vs_filtered.png`` (first record) and, given ``training_log``, ``training.png``.

    Args:
        records: Annotated record names (e.g. DS2).
        model_path: The ``.onnx`` model.
        out_dir: Directory for the JSON and PNG files.
        config: The chain's configuration (default ``ChainConfig()``).
        data_dir: Directory holding the WFDB records.
        training_log: ``training_log.csv`` of the model's training run.

    Raises:
        ConfigError: No records given.
        MissingExtraError: matplotlib is not installed.
    """
    if not records:
        msg = "no records to evaluate; give record names or DS2"
        raise ConfigError(msg)
    config = config or ChainConfig()
    make_output_dir(out_dir)
    predictions: list[RecordPredictions] = []
    annotations: dict[str, Annotations] = {}
    examples: list[LabeledBeat] = []
    with OnnxBeatClassifier(model_path, config) as classifier:
        for name in progress(records, len(records), "evaluate --classifier"):
            record = load_record(name, data_dir)
            beats = classify_record(record, classifier, config)
            if record.annotations is not None:
                annotations[record.name] = record.annotations
            predictions.append(record_predictions(record, beats))
            examples.extend(plots.sample_beats(beats, already=examples))
            if len(predictions) == 1:
                plots.plot_raw_vs_filtered(record, beats, config, out_dir / "raw_vs_filtered.png")
        model_name = classifier.name
    report = score_records(predictions, annotations, model=model_name, model_path=str(model_path))
    write_atomically(out_dir / CLASSIFICATION_FILE, report.to_json())
    plots.plot_confusion(
        report.gross(Span.WHOLE_RECORD).score, out_dir / "confusion.png", model_name
    )
    plots.plot_sample_beats(examples, config, out_dir / "sample_beats.png")
    if training_log is not None:
        plots.plot_training_history(training_log, out_dir / "training.png")
    return report


def format_score_table(score: ClassScore) -> str:
    """A text table of per-class Se/+P, accuracy, macro F1 and EC57 figures of a score."""
    lines = [f"{'class':>5} {'ref beats':>9} {'Se %':>7} {'+P %':>7}"]
    for beat_class in BEAT_CLASSES:
        i = beat_class.index
        total = int(score.confusion[i].sum() + score.missed[i])
        lines.append(
            f"{beat_class.value:>5} {total:>9} {100 * score.sensitivity(beat_class):>7.2f} "
            f"{100 * score.positive_predictivity(beat_class):>7.2f}"
        )
    lines.append(f"accuracy {100 * score.accuracy:.2f} %, macro F1 {score.macro_f1:.3f}")
    for key, beat_class in EC57_CLASSES:
        se, pp, fpr = score.ec57(beat_class)
        name = key.upper()
        lines.append(f"{name}: Se {100 * se:.2f} %, +P {100 * pp:.2f} %, FPR {100 * fpr:.2f} %")
    lines.append(
        "confusion (reference rows, predicted columns, "
        + " ".join(c.value for c in BEAT_CLASSES)
        + "):"
    )
    lines.extend("  " + " ".join(f"{n:>7}" for n in row) for row in score.confusion.tolist())
    return "\n".join(lines)
