"""Classification figures and pictures of a classifier on annotated records (docs/protocol.md).

An offline edge used by ``ecg-stream evaluate --classifier``: scoring is pure numpy on
per-record detections with labels (what ``analyze`` writes); matplotlib is imported inside
the plotting functions only (the ``train`` extra).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecg_stream.config import ChainConfig
from ecg_stream.detector.chain import BeatExtractor
from ecg_stream.errors import ConfigError, MissingExtraError, RecordFormatError
from ecg_stream.evaluation import (
    EC57_LEARNING_S,
    MATCH_TOLERANCE_S,
    ClassScore,
    match_beats,
    score_classification,
    scored_mask,
)
from ecg_stream.model.classifier import OnnxBeatClassifier
from ecg_stream.model.dataset import TRAIN_EXTRA
from ecg_stream.pipeline import BeatPipeline
from ecg_stream.records import Annotations, DataDirs, Record, load_record
from ecg_stream.types import BEAT_CLASSES, BeatClass, Chunk, IntArray, LabeledBeat

SPANS: tuple[tuple[str, str], ...] = (
    ("whole_record", "whole record"),
    ("ec57", f"EC57 span (from {EC57_LEARNING_S / 60:g} min)"),
)
"""Scoring spans, each reported (key, title)."""
REPORT_CHUNK_SAMPLES = 360
"""Chunk length when records are streamed for evaluation: one second at 360 Hz."""
SAMPLE_BEATS_PER_CLASS = 4


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


@dataclass(frozen=True, slots=True)
class ClassificationReport:
    """Per-record and gross classification figures for each scoring span.

    Args:
        records: Per span key (``SPANS``), the score of each record, in input order.
    """

    records: Mapping[str, tuple[RecordScore, ...]]

    def gross(self, span: str) -> RecordScore:
        """Counts summed over the records of a span."""
        scores = self.records[span]
        total = ClassScore(
            np.zeros((len(BEAT_CLASSES), len(BEAT_CLASSES)), dtype=np.int64),
            np.zeros(len(BEAT_CLASSES), dtype=np.int64),
        )
        for record in scores:
            total = total + record.score
        return RecordScore("gross", total, sum(r.unmatched_detections for r in scores))

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: per span the gross figures, EC57 averages and every record."""
        return {
            span: {
                "title": title,
                "gross": _score_json(self.gross(span)),
                "average": _average_json(self.records[span]),
                "records": [_score_json(record) for record in self.records[span]],
            }
            for span, title in SPANS
        }


def score_records(
    predictions: Sequence[RecordPredictions], annotations: Mapping[str, Annotations]
) -> ClassificationReport:
    """Score labelled detections against the reference beats, in both spans.

    Matching is one to one within 150 ms; detections and reference beats inside
    ventricular flutter are not scored; the EC57 span also drops the first 5 minutes.

    Raises:
        RecordFormatError: A record has no annotations.
    """
    spans: dict[str, list[RecordScore]] = {span: [] for span, _ in SPANS}
    for prediction in predictions:
        reference = annotations.get(prediction.record)
        if reference is None:
            msg = f"record {prediction.record} has no reference annotations (.atr) to score"
            raise RecordFormatError(msg)
        tolerance = round(MATCH_TOLERANCE_S * prediction.fs_hz)
        for span, _ in SPANS:
            start = round(EC57_LEARNING_S * prediction.fs_hz) if span == "ec57" else 0
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
    return ClassificationReport({span: tuple(scores) for span, scores in spans.items()})


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
    """Stream a whole record through :class:`BeatPipeline` in 1 s chunks, as live beats are."""
    pipeline = BeatPipeline(BeatExtractor(config), classifier)
    beats: list[LabeledBeat] = []
    for start in range(0, record.samples.size, REPORT_CHUNK_SAMPLES):
        chunk = Chunk(start, record.samples[start : start + REPORT_CHUNK_SAMPLES])
        beats.extend(pipeline.process(chunk).beats)
    beats.extend(pipeline.flush())
    return tuple(beats)


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
    out_dir.mkdir(parents=True, exist_ok=True)
    predictions: list[RecordPredictions] = []
    annotations: dict[str, Annotations] = {}
    examples: list[LabeledBeat] = []
    with OnnxBeatClassifier(model_path, config) as classifier:
        for name in records:
            record = load_record(name, data_dir)
            beats = classify_record(record, classifier, config)
            if record.annotations is not None:
                annotations[record.name] = record.annotations
            predictions.append(record_predictions(record, beats))
            examples.extend(_examples(beats, already=examples))
            if len(predictions) == 1:
                plot_raw_vs_filtered(record, beats, config, out_dir / "raw_vs_filtered.png")
        model_name = classifier.name
    report = score_records(predictions, annotations)
    summary = {"model": model_name, "model_path": str(model_path), "records": list(records)}
    (out_dir / "classification.json").write_text(
        json.dumps({**summary, **report.to_json()}, indent=2) + "\n"
    )
    plot_confusion(report.gross("whole_record").score, out_dir / "confusion.png", model_name)
    plot_sample_beats(examples, config, out_dir / "sample_beats.png")
    if training_log is not None:
        plot_training_history(training_log, out_dir / "training.png")
    return report


def format_table(report: ClassificationReport, span: str) -> str:
    """A text table of a span's gross per-class Se/+P, accuracy, macro F1 and EC57 figures."""
    return score_table(report.gross(span).score)


def score_table(score: ClassScore) -> str:
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
    for name, beat_class in (("VEB", BeatClass.V), ("SVEB", BeatClass.S)):
        se, pp, fpr = score.ec57(beat_class)
        lines.append(f"{name}: Se {100 * se:.2f} %, +P {100 * pp:.2f} %, FPR {100 * fpr:.2f} %")
    lines.append(
        "confusion (reference rows, predicted columns, "
        + " ".join(c.value for c in BEAT_CLASSES)
        + "):"
    )
    lines.extend("  " + " ".join(f"{n:>7}" for n in row) for row in score.confusion.tolist())
    return "\n".join(lines)


def plot_confusion(score: ClassScore, path: Path, title: str) -> None:
    """Draw the confusion matrix (reference rows, predicted columns), counts and row shares."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 4.8))
    rows = score.confusion.sum(axis=1, keepdims=True)
    shares = np.divide(score.confusion, rows, out=np.zeros(score.confusion.shape), where=rows > 0)
    axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    for (r, c), count in np.ndenumerate(score.confusion):
        colour = "white" if shares[r, c] > 0.6 else "black"
        axes.text(
            c,
            r,
            f"{count}\n{100 * shares[r, c]:.1f}%",
            ha="center",
            va="center",
            fontsize=8,
            color=colour,
        )
    names = [c.value for c in BEAT_CLASSES]
    axes.set(
        xticks=range(len(names)),
        yticks=range(len(names)),
        xticklabels=names,
        yticklabels=names,
        xlabel="predicted",
        ylabel="reference",
        title=f"{title}: matched beats",
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_training_history(log_path: Path, path: Path) -> None:
    """Draw loss and accuracy per epoch (training and validation) from a training log CSV."""
    plt = _pyplot()
    with log_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    epochs = [int(row["epoch"]) + 1 for row in rows]
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(9, 3.5))
    for key, axes in (("loss", loss_axes), ("accuracy", accuracy_axes)):
        axes.plot(epochs, [float(row[key]) for row in rows], label="training (weighted)")
        axes.plot(epochs, [float(row[f"val_{key}"]) for row in rows], label="validation")
        axes.set(xlabel="epoch", ylabel=key)
        axes.legend()
    figure.suptitle(f"training history: {log_path.parent.name}")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_sample_beats(beats: Sequence[LabeledBeat], config: ChainConfig, path: Path) -> None:
    """Draw beats grouped by predicted class, each titled with its class and confidence."""
    plt = _pyplot()
    columns = SAMPLE_BEATS_PER_CLASS
    figure, grid = plt.subplots(
        len(BEAT_CLASSES), columns, figsize=(2.4 * columns, 1.6 * len(BEAT_CLASSES)), squeeze=False
    )
    time_ms = (np.arange(config.window_samples) - config.window_before_samples) / config.fs_hz
    for row, beat_class in enumerate(BEAT_CLASSES):
        chosen = [beat for beat in beats if beat.label is beat_class][:columns]
        for column in range(columns):
            axes = grid[row][column]
            axes.set_xticks([])
            axes.set_yticks([])
            if column < len(chosen):
                beat = chosen[column]
                axes.plot(1000 * time_ms, beat.window.samples, linewidth=0.8)
                axes.set_title(f"{beat_class.value} {100 * beat.confidence:.0f}%", fontsize=8)
            elif column == 0:
                axes.set_title(f"no beat predicted {beat_class.value}", fontsize=8)
    figure.suptitle("sample beats: predicted class and confidence (filtered mV, 250 samples)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_raw_vs_filtered(
    record: Record,
    beats: Sequence[LabeledBeat],
    config: ChainConfig,
    path: Path,
    seconds: float = 10.0,
) -> None:
    """Draw the first ``seconds`` after the learning period: raw and filtered, beats labelled."""
    plt = _pyplot()
    start = round(5.0 * config.fs_hz)  # past the detector's learning period
    stop = min(record.samples.size, start + round(seconds * config.fs_hz))
    extractor = BeatExtractor(config)
    filtered = extractor.process(Chunk(0, record.samples[:stop])).filtered.samples
    time_s = np.arange(start, stop) / config.fs_hz
    figure, axes = plt.subplots(figsize=(10, 3.5))
    axes.plot(time_s, record.samples[start:stop], linewidth=0.7, label="raw")
    axes.plot(time_s, filtered[start:stop], linewidth=0.7, label=f"filtered {config.band_hz} Hz")
    for beat in beats:
        index = beat.window.peak.index
        if start <= index < stop:
            axes.annotate(
                beat.label.value,
                (index / config.fs_hz, filtered[index]),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=8,
            )
    axes.set(xlabel="time (s)", ylabel="mV", title=f"record {record.name} ({record.lead})")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _examples(beats: Sequence[LabeledBeat], already: Sequence[LabeledBeat]) -> list[LabeledBeat]:
    """Up to ``SAMPLE_BEATS_PER_CLASS`` more beats of each predicted class not yet shown."""
    counts = {c: sum(1 for b in already if b.label is c) for c in BEAT_CLASSES}
    chosen: list[LabeledBeat] = []
    for beat in beats[:: max(1, len(beats) // 200)]:
        if counts[beat.label] < SAMPLE_BEATS_PER_CLASS:
            counts[beat.label] += 1
            chosen.append(beat)
    return chosen


def _score_json(record: RecordScore) -> dict[str, Any]:
    return {
        "record": record.record,
        "unmatched_detections": record.unmatched_detections,
        **score_json(record.score),
    }


def score_json(score: ClassScore) -> dict[str, Any]:
    """Per-class Se/+P, accuracy, macro F1, EC57 VEB/SVEB and the confusion matrix, as JSON."""
    classes = {
        c.value: {
            "reference_beats": int(score.confusion[c.index].sum() + score.missed[c.index]),
            "se": _number(score.sensitivity(c)),
            "pp": _number(score.positive_predictivity(c)),
        }
        for c in BEAT_CLASSES
    }
    ec57 = {
        name: dict(zip(("se", "pp", "fpr"), (_number(v) for v in score.ec57(c)), strict=True))
        for name, c in (("veb", BeatClass.V), ("sveb", BeatClass.S))
    }
    return {
        "matched_beats": int(score.confusion.sum()),
        "missed_reference_beats": int(score.missed.sum()),
        "accuracy": _number(score.accuracy),
        "macro_f1": _number(score.macro_f1),
        "classes": classes,
        **ec57,
        "confusion": score.confusion.tolist(),
        "missed": score.missed.tolist(),
    }


def _average_json(records: Sequence[RecordScore]) -> dict[str, Any]:
    """EC57 "average" figures: mean of per-record ratios over records where defined."""
    average: dict[str, Any] = {}
    for name, beat_class in (("veb", BeatClass.V), ("sveb", BeatClass.S)):
        values = np.array([r.score.ec57(beat_class) for r in records], dtype=np.float64)
        average[name] = {
            key: _number(float(np.nanmean(column))) if np.isfinite(column).any() else None
            for key, column in zip(("se", "pp", "fpr"), values.T, strict=True)
        }
    return average


def _number(value: float) -> float | None:
    """JSON has no NaN: an undefined ratio (no beats of the class) becomes null."""
    return None if math.isnan(value) else value


def _pyplot() -> Any:
    try:
        import matplotlib as mpl
    except ImportError as error:
        raise MissingExtraError(TRAIN_EXTRA, "matplotlib") from error
    mpl.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt
