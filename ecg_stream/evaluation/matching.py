"""The evaluation protocol (docs/protocol.md) in code: scoring spans, matching and scores."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt

from ecg_stream.types import BEAT_CLASSES, BeatClass, IntArray

MATCH_TOLERANCE_S = 0.150
EC57_LEARNING_S = 300.0
"""EC57 scoring span ignores the first 5 minutes (the learning period), as bxb does."""


class Span(Enum):
    """The two scoring spans, both reported (docs/protocol.md).

    The value is the span's key in ``classification.json``; the detection report keeps its
    shorter key ``whole`` for the whole record (``evaluation/detection.py``).
    """

    WHOLE_RECORD = "whole_record"
    """The whole record: the primary, stricter figure."""
    EC57 = "ec57"
    """From minute 5 on: EC57's learning period is not scored."""

    @property
    def title(self) -> str:
        """The span in words, as tables and reports head it."""
        if self is Span.WHOLE_RECORD:
            return "whole record"
        return f"EC57 span (from {EC57_LEARNING_S / 60:g} min)"

    def start_index(self, fs_hz: float) -> int:
        """First scored sample index at ``fs_hz``, in Hz.

        Example:
            >>> Span.EC57.start_index(360.0), Span.WHOLE_RECORD.start_index(360.0)
            (108000, 0)
        """
        return round(EC57_LEARNING_S * fs_hz) if self is Span.EC57 else 0


@dataclass(frozen=True, slots=True)
class Matching:
    """One-to-one pairing of detections with reference beats.

    Args:
        pairs: (reference position, detection position) for each match, by reference order.
        unmatched_reference: Positions of reference beats with no detection (FN).
        unmatched_detection: Positions of detections with no reference beat (FP).
    """

    pairs: tuple[tuple[int, int], ...]
    unmatched_reference: tuple[int, ...]
    unmatched_detection: tuple[int, ...]


def match_beats(reference: IntArray, detected: IntArray, tolerance: int) -> Matching:
    """Pair detections with reference beats at most ``tolerance`` samples apart.

    Pairs are formed nearest first, each beat used at most once (as PhysioNet's ``bxb``).

    Example:
        >>> m = match_beats(np.array([100, 400]), np.array([110, 300, 700]), tolerance=54)
        >>> m.pairs, m.unmatched_reference, m.unmatched_detection
        (((0, 0),), (1,), (1, 2))
    """
    order = np.argsort(detected, kind="stable")
    sorted_detected = detected[order]
    candidates: list[tuple[int, int, int]] = []
    for ref_position, ref_index in enumerate(reference):
        low = np.searchsorted(sorted_detected, ref_index - tolerance, side="left")
        high = np.searchsorted(sorted_detected, ref_index + tolerance, side="right")
        candidates.extend(
            (abs(int(sorted_detected[k]) - int(ref_index)), ref_position, int(order[k]))
            for k in range(low, high)
        )
    candidates.sort()
    used_reference: set[int] = set()
    used_detection: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for _, ref_position, det_position in candidates:
        if ref_position in used_reference or det_position in used_detection:
            continue
        used_reference.add(ref_position)
        used_detection.add(det_position)
        pairs.append((ref_position, det_position))
    pairs.sort()
    return Matching(
        pairs=tuple(pairs),
        unmatched_reference=tuple(sorted(set(range(reference.size)) - used_reference)),
        unmatched_detection=tuple(sorted(set(range(detected.size)) - used_detection)),
    )


def scored_mask(
    indices: IntArray, flutter_spans: tuple[tuple[int, int], ...], start_index: int = 0
) -> npt.NDArray[np.bool_]:
    """True for samples scored: from ``start_index`` on and outside ventricular flutter."""
    keep = indices >= start_index
    for start, end in flutter_spans:
        keep &= (indices < start) | (indices > end)
    return keep


@dataclass(frozen=True, slots=True)
class DetectionScore:
    """QRS detection counts of one record or summed over records."""

    tp: int
    fn: int
    fp: int

    @property
    def sensitivity(self) -> float:
        """Se = TP / (TP + FN)."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def positive_predictivity(self) -> float:
        """+P = TP / (TP + FP)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    def __add__(self, other: DetectionScore) -> DetectionScore:
        return DetectionScore(self.tp + other.tp, self.fn + other.fn, self.fp + other.fp)


def score_detection(matching: Matching) -> DetectionScore:
    """Count TP, FN, FP of a matching."""
    return DetectionScore(
        tp=len(matching.pairs),
        fn=len(matching.unmatched_reference),
        fp=len(matching.unmatched_detection),
    )


@dataclass(frozen=True, slots=True)
class ClassScore:
    """Classification figures of matched beats.

    Args:
        confusion: 5x5 counts, reference class rows, predicted class columns (AAMI order).
        missed: Reference beats per class that no detection matched (counted as FN).
    """

    confusion: IntArray
    missed: IntArray

    def __add__(self, other: ClassScore) -> ClassScore:
        return ClassScore(self.confusion + other.confusion, self.missed + other.missed)

    def sensitivity(self, beat_class: BeatClass) -> float:
        """Se of a class: correct / (all reference beats of the class, missed included)."""
        i = beat_class.index
        total = self.confusion[i].sum() + self.missed[i]
        return float(self.confusion[i, i] / total) if total else float("nan")

    def positive_predictivity(self, beat_class: BeatClass) -> float:
        """+P of a class: correct / all matched beats predicted as the class."""
        i = beat_class.index
        called = self.confusion[:, i].sum()
        return float(self.confusion[i, i] / called) if called else float("nan")

    @property
    def accuracy(self) -> float:
        """Correct matched beats / all matched beats."""
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else float("nan")

    @property
    def macro_f1(self) -> float:
        """Mean F1 over the classes present in the reference."""
        scores = []
        for beat_class in BEAT_CLASSES:
            i = beat_class.index
            if self.confusion[i].sum() + self.missed[i] == 0:
                continue
            se, pp = self.sensitivity(beat_class), self.positive_predictivity(beat_class)
            scores.append(0.0 if not se + pp > 0 else 2 * se * pp / (se + pp))
        return float(np.mean(scores)) if scores else float("nan")

    def ec57(self, beat_class: BeatClass) -> tuple[float, float, float]:
        """EC57 (Se, +P, FPR) for V (VEB) or S (SVEB).

        F and Q beats called V are not VEB false positives; FPR = false positives over all
        non-class reference beats that were matched.
        """
        i = beat_class.index
        excused = {BeatClass.F.index, BeatClass.Q.index} if beat_class is BeatClass.V else set()
        tp = int(self.confusion[i, i])
        fn = int(self.confusion[i].sum() - tp + self.missed[i])
        fp = int(
            sum(
                self.confusion[r, i]
                for r in range(len(BEAT_CLASSES))
                if r != i and r not in excused
            )
        )
        negatives = int(self.confusion.sum() - self.confusion[i].sum())
        se = tp / (tp + fn) if tp + fn else float("nan")
        pp = tp / (tp + fp) if tp + fp else float("nan")
        fpr = fp / negatives if negatives else float("nan")
        return se, pp, fpr


def score_classification(
    reference_classes: tuple[BeatClass, ...],
    predicted_classes: tuple[BeatClass, ...],
    matching: Matching,
) -> ClassScore:
    """Confusion matrix of matched beats and per-class missed counts."""
    size = len(BEAT_CLASSES)
    confusion = np.zeros((size, size), dtype=np.int64)
    for ref_position, det_position in matching.pairs:
        confusion[reference_classes[ref_position].index, predicted_classes[det_position].index] += 1
    missed = np.zeros(size, dtype=np.int64)
    for ref_position in matching.unmatched_reference:
        missed[reference_classes[ref_position].index] += 1
    return ClassScore(confusion, missed)
