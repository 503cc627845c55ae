"""Calibration of class probabilities on out-of-fold predictions: temperature and class bias.

Calibrated probabilities are ``softmax((log p + bias) / temperature)``. The temperature alone
never changes the predicted class; the bias moves decisions towards the classes' real
frequencies, undoing the balanced sampling of training. Both are fitted by minimising the
negative log-likelihood of the pooled out-of-fold predictions (never DS2), and the variant
kept is chosen on the same predictions (:func:`choose_calibration`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize

from ecg_stream.evaluation import ClassScore
from ecg_stream.types import BEAT_CLASSES, FloatArray, IntArray

PROBABILITY_FLOOR = 1e-7
"""Added before taking logarithms, so a probability of exactly 0 stays finite."""
CALIBRATION_BINS = 10
"""Confidence bins of the expected calibration error."""


@dataclass(frozen=True, slots=True)
class Calibration:
    """``softmax((log p + bias) / temperature)`` applied to a model's probabilities.

    Args:
        name: ``none``, ``temperature`` or ``temperature+bias``.
        temperature: Divides the log-probabilities (> 1 softens over-confident outputs).
        bias: Added to each class's log-probability, in ``BEAT_CLASSES`` order.

    Example:
        >>> identity = Calibration("none", 1.0, (0.0,) * 5)
        >>> identity.apply(np.array([[0.7, 0.1, 0.1, 0.05, 0.05]])).round(2).tolist()
        [[0.7, 0.1, 0.1, 0.05, 0.05]]
    """

    name: str
    temperature: float
    bias: tuple[float, ...]

    def apply(self, probabilities: FloatArray) -> FloatArray:
        """Calibrated probabilities, same shape as ``probabilities`` (n, classes)."""
        logits = (
            np.log(probabilities + PROBABILITY_FLOOR) + np.array(self.bias)
        ) / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float64)


def negative_log_likelihood(probabilities: FloatArray, labels: IntArray) -> float:
    """Mean -log p(true class)."""
    rows = np.arange(labels.size)
    return float(-np.mean(np.log(probabilities[rows, labels] + PROBABILITY_FLOOR)))


def expected_calibration_error(probabilities: FloatArray, labels: IntArray) -> float:
    """Beat-weighted mean |accuracy - confidence| over ``CALIBRATION_BINS`` confidence bins."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    bins = np.minimum((confidence * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    error = 0.0
    for index in range(CALIBRATION_BINS):
        members = bins == index
        if members.any():
            gap = abs(float(correct[members].mean()) - float(confidence[members].mean()))
            error += gap * float(members.mean())
    return error


def fit_calibrations(probabilities: FloatArray, labels: IntArray) -> tuple[Calibration, ...]:
    """The uncalibrated identity, the NLL-best temperature, and the NLL-best temperature + bias."""
    size = len(BEAT_CLASSES)
    identity = Calibration("none", 1.0, (0.0,) * size)

    def loss(parameters: FloatArray) -> float:
        temperature = float(np.exp(parameters[0]))
        bias = tuple(float(b) for b in parameters[1:]) if parameters.size > 1 else (0.0,) * size
        return negative_log_likelihood(
            Calibration("fit", temperature, bias).apply(probabilities), labels
        )

    scaled = optimize.minimize(loss, np.zeros(1), method="Nelder-Mead")
    biased = optimize.minimize(loss, np.concatenate([scaled.x, np.zeros(size)]), method="Powell")
    return (
        identity,
        Calibration("temperature", float(np.exp(scaled.x[0])), (0.0,) * size),
        Calibration(
            "temperature+bias",
            float(np.exp(biased.x[0])),
            tuple(float(b - biased.x[1:].mean()) for b in biased.x[1:]),
        ),
    )


def score_of(labels: IntArray, probabilities: npt.NDArray[np.floating[Any]]) -> ClassScore:
    """Confusion of the predicted (argmax) classes against ``labels``."""
    size = len(BEAT_CLASSES)
    confusion = np.zeros((size, size), dtype=np.int64)
    np.add.at(confusion, (labels, probabilities.argmax(axis=1)), 1)
    return ClassScore(confusion, np.zeros(size, dtype=np.int64))


def choose_calibration(
    probabilities: FloatArray, labels: IntArray
) -> tuple[Calibration, dict[str, dict[str, float]]]:
    """The calibration with the best macro F1 (ties: lower NLL), and every variant's figures."""
    figures: dict[str, dict[str, float]] = {}
    best: tuple[float, float, Calibration] | None = None
    for calibration in fit_calibrations(probabilities, labels):
        calibrated = calibration.apply(probabilities)
        score = score_of(labels, calibrated)
        nll = negative_log_likelihood(calibrated, labels)
        figures[calibration.name] = {
            "temperature": calibration.temperature,
            "macro_f1": score.macro_f1,
            "nll": nll,
            "ece": expected_calibration_error(calibrated, labels),
            **{f"bias_{c.value}": calibration.bias[c.index] for c in BEAT_CLASSES},
        }
        candidate = (score.macro_f1, -nll, calibration)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    assert best is not None
    return best[2], figures
