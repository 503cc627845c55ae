"""Calibration of class probabilities on out-of-fold predictions: temperature and class bias.

Calibrated probabilities are ``softmax((log p + bias) / temperature)``. The temperature alone
never changes the predicted class and is fitted by minimising the negative log-likelihood of
the pooled out-of-fold predictions (never DS2). A bias moves decisions: fitted by likelihood it
undoes the balanced sampling of training; fitted for macro F1 it sets the decision thresholds;
an F bias alone keeps F calls within ``MAX_F_CALLS_PER_F_BEAT``. The variant kept is chosen on
out-of-fold figures (:func:`choose_calibration`); a decision bias (and the F limit) is scored
cross-fitted (fitted on the other folds' predictions), so its figure is not the in-sample one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize

from ecg_stream.evaluation import ClassScore
from ecg_stream.types import BEAT_CLASSES, BeatClass, FloatArray, IntArray

PROBABILITY_FLOOR = 1e-7
"""Added before taking logarithms, so a probability of exactly 0 stays finite."""
CALIBRATION_BINS = 10
"""Confidence bins of the expected calibration error."""
DECISION_BIAS_GRID = np.linspace(-3.0, 3.0, 25)
"""Values tried for each class's decision bias (N stays at 0), in log-probability units."""
MAX_F_CALLS_PER_F_BEAT = 1.5
"""A calibration may not make the model call more beats F than 1.5 times the F beats: with
about 440 training beats the model does not learn fusion well, and F must not flood the
predictions (issues 10 and 21)."""
DECISION_BIAS_SWEEPS = 3
"""Coordinate-ascent sweeps over the classes when fitting a decision bias."""


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


def fit_decision_bias(
    probabilities: FloatArray, labels: IntArray, temperature: float
) -> tuple[float, ...]:
    """Per-class biases that maximise macro F1 (coordinate ascent on a grid; N fixed at 0).

    Biases that call more than ``MAX_F_CALLS_PER_F_BEAT`` beats F per F beat are not taken.
    """
    bias = np.zeros(len(BEAT_CLASSES))
    f_calls_allowed = MAX_F_CALLS_PER_F_BEAT * np.count_nonzero(labels == BeatClass.F.index)

    def macro_f1(candidate: FloatArray) -> float:
        calibrated = Calibration("fit", temperature, tuple(candidate)).apply(probabilities)
        score = score_of(labels, calibrated)
        f_calls = score.confusion[:, BeatClass.F.index].sum()
        return score.macro_f1 if f_calls <= f_calls_allowed else -1.0

    best = macro_f1(bias)
    for _ in range(DECISION_BIAS_SWEEPS):
        for beat_class in BEAT_CLASSES[1:]:
            for value in DECISION_BIAS_GRID:
                candidate = bias.copy()
                candidate[beat_class.index] = value
                figure = macro_f1(candidate)
                if figure > best:
                    best, bias = figure, candidate
    return tuple(float(b) for b in bias)


def fit_f_limit(
    probabilities: FloatArray, labels: IntArray, temperature: float
) -> tuple[float, ...]:
    """The mildest negative F bias (others 0) that keeps F calls within the limit.

    A model that does not learn fusion must not flood its labels with F: this moves only the
    F decisions, as far as ``MAX_F_CALLS_PER_F_BEAT`` needs and no further.
    """
    allowed = MAX_F_CALLS_PER_F_BEAT * np.count_nonzero(labels == BeatClass.F.index)
    bias = np.zeros(len(BEAT_CLASSES))
    for value in sorted((v for v in DECISION_BIAS_GRID if v <= 0.0), reverse=True):
        bias[BeatClass.F.index] = value
        calibrated = Calibration("fit", temperature, tuple(bias)).apply(probabilities)
        if score_of(labels, calibrated).confusion[:, BeatClass.F.index].sum() <= allowed:
            break
    return tuple(float(b) for b in bias)


def choose_calibration(
    probabilities: FloatArray, labels: IntArray, folds: IntArray
) -> tuple[Calibration, dict[str, dict[str, float]]]:
    """The calibration with the best out-of-fold macro F1 (ties: lower NLL), and all figures.

    A variant that calls more than ``MAX_F_CALLS_PER_F_BEAT`` beats F per F beat is not chosen.

    Args:
        probabilities: Out-of-fold probabilities, (n, classes).
        labels: Reference classes, (n,).
        folds: Fold of each beat (-1: not scored, left out).
    """
    scored = folds >= 0
    probabilities, labels, folds = probabilities[scored], labels[scored], folds[scored]
    variants = list(fit_calibrations(probabilities, labels))
    temperature = variants[1].temperature
    cross_fitted: dict[str, FloatArray] = {}
    fitted: list[Calibration] = []
    for name, fit in (
        ("temperature+decision-bias", fit_decision_bias),
        ("temperature+f-limit", fit_f_limit),
    ):
        fitted.append(Calibration(name, temperature, fit(probabilities, labels, temperature)))
        cross_fitted[name] = np.empty_like(probabilities)
        for fold in np.unique(folds):
            inside = folds == fold
            bias = fit(probabilities[~inside], labels[~inside], temperature)
            calibration = Calibration("fold", temperature, bias)
            cross_fitted[name][inside] = calibration.apply(probabilities[inside])
    figures: dict[str, dict[str, float]] = {}
    best: tuple[float, float, Calibration] | None = None
    for calibration in [*variants, *fitted]:
        calibrated = cross_fitted.get(calibration.name)
        if calibrated is None:
            calibrated = calibration.apply(probabilities)
        score = score_of(labels, calibrated)
        nll = negative_log_likelihood(calibrated, labels)
        f_calls = int(score.confusion[:, BeatClass.F.index].sum())
        figures[calibration.name] = {
            "f_calls": f_calls,
            "temperature": calibration.temperature,
            "macro_f1": score.macro_f1,
            "nll": nll,
            "ece": expected_calibration_error(calibrated, labels),
            **{f"bias_{c.value}": calibration.bias[c.index] for c in BEAT_CLASSES},
            **{f"se_{c.value}": score.sensitivity(c) for c in BEAT_CLASSES},
            **{f"pp_{c.value}": score.positive_predictivity(c) for c in BEAT_CLASSES},
        }
        allowed = f_calls <= MAX_F_CALLS_PER_F_BEAT * np.count_nonzero(labels == BeatClass.F.index)
        candidate = (score.macro_f1 if allowed else -1.0, -nll, calibration)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    assert best is not None
    return best[2], figures
