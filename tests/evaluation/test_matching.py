from __future__ import annotations

import numpy as np

from ecg_stream.evaluation import match_beats, score_classification, scored_mask
from ecg_stream.types import BeatClass

N, S, V, F = BeatClass.N, BeatClass.S, BeatClass.V, BeatClass.F


def test_matching_is_one_to_one_nearest_first() -> None:
    # Detection 105 is nearest to reference 100; reference 150 is left with detection 160.
    m = match_beats(np.array([100, 150]), np.array([105, 160]), tolerance=54)
    assert m.pairs == ((0, 0), (1, 1))
    m = match_beats(np.array([100, 150]), np.array([130]), tolerance=54)
    assert m.pairs == ((1, 0),)
    assert m.unmatched_reference == (0,)


def test_tolerance_is_inclusive() -> None:
    assert match_beats(np.array([100]), np.array([154]), tolerance=54).pairs == ((0, 0),)
    assert match_beats(np.array([100]), np.array([155]), tolerance=54).pairs == ()


def test_scored_mask_drops_flutter_and_learning_period() -> None:
    indices = np.array([10, 50, 100, 150, 200])
    mask = scored_mask(indices, ((90, 160),), start_index=20)
    assert mask.tolist() == [False, True, False, False, True]


def test_classification_figures_and_ec57_exceptions() -> None:
    reference = (N, N, V, V, F, S)
    predicted = (N, V, V, N, V, S)
    matching = match_beats(np.arange(6) * 300, np.arange(6) * 300, tolerance=54)
    score = score_classification(reference, predicted, matching)
    assert score.sensitivity(V) == 0.5
    assert score.positive_predictivity(V) == 1 / 3
    se, pp, fpr = score.ec57(V)  # F called V is no VEB false positive
    assert (se, pp) == (0.5, 0.5)
    assert fpr == 1 / 4
    assert score.accuracy == 3 / 6
