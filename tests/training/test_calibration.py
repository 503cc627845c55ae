from __future__ import annotations

import numpy as np

from ecg_stream.training.calibration import (
    MAX_F_CALLS_PER_F_BEAT,
    Calibration,
    choose_calibration,
    expected_calibration_error,
    fit_calibrations,
)
from ecg_stream.types import BeatClass


def overconfident(rng: np.random.Generator, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities 0.99 on a class that is right 80 % of the time."""
    labels = rng.choice(5, size=n, p=[0.8, 0.08, 0.08, 0.03, 0.01])
    guess = np.where(rng.random(n) < 0.8, labels, rng.integers(0, 5, size=n))
    probabilities = np.full((n, 5), 0.0025)
    probabilities[np.arange(n), guess] = 0.99
    return probabilities, labels


def test_temperature_softens_overconfidence_without_changing_decisions(
    rng: np.random.Generator,
) -> None:
    probabilities, labels = overconfident(rng)
    identity, scaled, _ = fit_calibrations(probabilities, labels)
    assert scaled.temperature > 1.0
    after = scaled.apply(probabilities)
    np.testing.assert_array_equal(after.argmax(axis=1), probabilities.argmax(axis=1))
    np.testing.assert_allclose(after.sum(axis=1), 1.0)
    assert expected_calibration_error(after, labels) < expected_calibration_error(
        identity.apply(probabilities), labels
    )


def test_the_chosen_calibration_never_floods_f(rng: np.random.Generator) -> None:
    probabilities, labels = overconfident(rng)
    probabilities[:, BeatClass.F.index] += 0.3  # a model eager to call F
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    folds = rng.integers(0, 3, size=labels.size)
    chosen, figures = choose_calibration(probabilities, labels, folds)
    f_beats = np.count_nonzero(labels == BeatClass.F.index)
    assert figures[chosen.name]["f_calls"] <= MAX_F_CALLS_PER_F_BEAT * f_beats
    assert set(figures) == {
        "none",
        "temperature",
        "temperature+bias",
        "temperature+decision-bias",
        "temperature+f-limit",
    }
    f_limit = figures["temperature+f-limit"]
    assert f_limit["f_calls"] <= figures["temperature"]["f_calls"]
    assert f_limit["bias_F"] < 0.0  # as far as the grid goes: this model is too sure of F
    assert f_limit["bias_S"] == f_limit["bias_V"] == f_limit["bias_Q"] == 0.0  # F alone


def test_identity_calibration_returns_the_probabilities() -> None:
    probabilities = np.array([[0.6, 0.1, 0.1, 0.1, 0.1], [0.05, 0.05, 0.8, 0.05, 0.05]])
    identity = Calibration("none", 1.0, (0.0,) * 5)
    np.testing.assert_allclose(identity.apply(probabilities), probabilities, atol=1e-6)
