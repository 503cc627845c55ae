"""The baseline the LSTM must beat: gradient-boosted trees on the same folds (training only).

scikit-learn's ``HistGradientBoostingClassifier`` (300 iterations, square-root balanced class
weights) on the per-beat features plus the beat window decimated by 5. scikit-learn is a
dependency of the ``train`` extra and is imported inside functions, never by the runtime.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ecg_stream.errors import TRAIN_EXTRA, MissingExtraError
from ecg_stream.training.dataset import BeatDataset
from ecg_stream.types import BEAT_CLASSES

BASELINE_ITERATIONS = 300
WINDOW_DECIMATION = 5
"""Every fifth sample of the beat window joins the features (50 of 250)."""


def baseline_inputs(dataset: BeatDataset, features: tuple[str, ...]) -> npt.NDArray[np.float32]:
    """Per-beat features and the decimated beat window, shape (n, features + 50)."""
    return np.concatenate(
        [dataset.feature_columns(features), dataset.windows[:, ::WINDOW_DECIMATION]], axis=1
    )


def fit_predict_baseline(
    train: BeatDataset,
    test: BeatDataset,
    features: tuple[str, ...],
    class_weight: dict[int, float],
    seed: int,
) -> npt.NDArray[np.float32]:
    """Fit the trees on ``train`` and return their class probabilities on ``test``, (n, 5).

    Raises:
        MissingExtraError: scikit-learn is not installed.
    """
    ensemble = _sklearn_ensemble()
    model = ensemble.HistGradientBoostingClassifier(
        max_iter=BASELINE_ITERATIONS, random_state=seed, early_stopping=False
    )
    weights = np.array([class_weight[int(label)] for label in train.labels])
    model.fit(baseline_inputs(train, features), train.labels, sample_weight=weights)
    probabilities = np.zeros((len(test), len(BEAT_CLASSES)), dtype=np.float32)
    probabilities[:, model.classes_] = model.predict_proba(baseline_inputs(test, features))
    return probabilities


def _sklearn_ensemble() -> Any:
    try:
        from sklearn import ensemble
    except ImportError as error:
        raise MissingExtraError(TRAIN_EXTRA, "scikit-learn") from error
    return ensemble
