"""The figures the evaluation protocol reports, as they are written: one schema each.

``classification.json`` is :class:`ClassificationDocument`, the detection report
:data:`DetectionDocument`; :class:`ScoreFigures` is also the form of every other set of class
figures written (``cv.json``, the model card). The reports that fill them stream records
(``detection``, ``classification``); these schemas need only the protocol (``matching``), so
the training run and the model card read them without the runtime.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec
import numpy as np

from ecg_stream.evaluation.matching import ClassScore, Span
from ecg_stream.types import BEAT_CLASSES, BeatClass

CLASSIFICATION_FILE = "classification.json"
"""The classification report's name in its output directory."""
EC57_CLASSES: tuple[tuple[str, BeatClass], ...] = (("veb", BeatClass.V), ("sveb", BeatClass.S))
"""EC57's ventricular and supraventricular ectopic beat figures: (key, class)."""


class ClassFigures(msgspec.Struct):
    """Figures of one class.

    Args:
        reference_beats: Reference beats of the class, missed ones included.
        se: Sensitivity (None: no beat of the class).
        pp: Positive predictivity (None: no beat called the class).
    """

    reference_beats: int
    se: float | None
    pp: float | None


class Ec57Figures(msgspec.Struct):
    """EC57 figures of VEB or SVEB: Se, +P and false-positive rate (None where undefined)."""

    se: float | None
    pp: float | None
    fpr: float | None


class ScoreFigures(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Class figures of a set of matched beats (a record, a span's gross, pooled folds).

    Args:
        record: Record name, or ``gross``, where the figures are a record's (absent else).
        unmatched_detections: Detections that matched no reference beat, with ``record``.
        matched_beats: Reference beats a detection matched.
        missed_reference_beats: Reference beats no detection matched.
        accuracy: Correct matched beats over matched beats.
        macro_f1: Mean F1 over the classes present in the reference.
        classes: Per class (``N``, ``S``, ...), its figures.
        veb: EC57 figures of V.
        sveb: EC57 figures of S.
        confusion: Counts, reference class rows, predicted class columns (AAMI order).
        missed: Missed reference beats per class.
    """

    record: str | None = None
    unmatched_detections: int | None = None
    matched_beats: int
    missed_reference_beats: int
    accuracy: float | None
    macro_f1: float | None
    classes: dict[str, ClassFigures]
    veb: Ec57Figures
    sveb: Ec57Figures
    confusion: list[list[int]]
    missed: list[int]

    @classmethod
    def of(
        cls,
        score: ClassScore,
        *,
        record: str | None = None,
        unmatched_detections: int | None = None,
    ) -> ScoreFigures:
        """The figures of a confusion matrix and its missed beats (of ``record``, if given)."""
        ec57 = {
            key: Ec57Figures(*(_number(value) for value in score.ec57(beat_class)))
            for key, beat_class in EC57_CLASSES
        }
        return cls(
            record=record,
            unmatched_detections=unmatched_detections,
            matched_beats=int(score.confusion.sum()),
            missed_reference_beats=int(score.missed.sum()),
            accuracy=_number(score.accuracy),
            macro_f1=_number(score.macro_f1),
            classes={
                c.value: ClassFigures(
                    reference_beats=int(score.confusion[c.index].sum() + score.missed[c.index]),
                    se=_number(score.sensitivity(c)),
                    pp=_number(score.positive_predictivity(c)),
                )
                for c in BEAT_CLASSES
            },
            veb=ec57["veb"],
            sveb=ec57["sveb"],
            confusion=score.confusion.tolist(),
            missed=score.missed.tolist(),
        )


class AverageFigures(msgspec.Struct):
    """EC57 "average" figures: the mean of per-record ratios over the records where defined."""

    veb: Ec57Figures
    sveb: Ec57Figures

    @classmethod
    def of(cls, scores: Sequence[ClassScore]) -> AverageFigures:
        """The averages of the records' scores."""
        average: dict[str, Ec57Figures] = {}
        for key, beat_class in EC57_CLASSES:
            values = np.array([score.ec57(beat_class) for score in scores], dtype=np.float64)
            columns = values.reshape(-1, 3).T  # se, pp, fpr over the records, also for none
            average[key] = Ec57Figures(
                *(_number(float(np.nanmean(c))) if np.isfinite(c).any() else None for c in columns)
            )
        return cls(**average)


class SpanFigures(msgspec.Struct):
    """A scoring span's figures: gross (counts summed), EC57 averages, and every record."""

    title: str
    gross: ScoreFigures
    average: AverageFigures
    records: list[ScoreFigures]


class ClassificationDocument(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``classification.json``: the model, the records and the figures of both spans.

    Args:
        model: The model's name (absent for predictions scored without one).
        model_path: The ``.onnx`` file evaluated.
        records: Names of the records, in order.
        whole_record: Figures over the whole records.
        ec57: Figures over the EC57 span.
    """

    model: str | None = None
    model_path: str | None = None
    records: list[str]
    whole_record: SpanFigures
    ec57: SpanFigures

    def span(self, span: Span) -> SpanFigures:
        """The figures of ``span``."""
        return self.whole_record if span is Span.WHOLE_RECORD else self.ec57


class DetectionFigures(msgspec.Struct):
    """Detection figures of one record (or ``gross``) in one span, as written.

    Args:
        record: Record name, or ``gross``.
        tp: Reference beats matched.
        fn: Reference beats missed.
        fp: Detections that matched no reference beat.
        se: Sensitivity (None: no reference beat).
        pp: Positive predictivity (None: no detection).
        mean_abs_timing_error_ms: Mean |detection - reference| of matched beats, in ms.
    """

    record: str
    tp: int
    fn: int
    fp: int
    se: float | None
    pp: float | None
    mean_abs_timing_error_ms: float


class DetectionSpan(msgspec.Struct):
    """A span's figures of one detector: every record, then the gross counts."""

    records: list[DetectionFigures]
    gross: DetectionFigures


class DetectorFigures(msgspec.Struct):
    """One detector's figures in both spans.

    The whole-record span is written under the key ``whole`` (as in reports written before
    the spans were one :class:`Span`); ``classification.json`` calls it ``whole_record``.
    """

    whole_record: DetectionSpan = msgspec.field(name="whole")
    ec57: DetectionSpan

    def span(self, span: Span) -> DetectionSpan:
        """The figures of ``span``."""
        return self.whole_record if span is Span.WHOLE_RECORD else self.ec57


DetectionDocument = dict[str, DetectorFigures]
"""The JSON of ``evaluate --detector --json``: per detector name, its figures."""


def _number(value: float) -> float | None:
    """JSON has no NaN: an undefined ratio (no beats of the class) becomes null."""
    return None if math.isnan(value) else value
