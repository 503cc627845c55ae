"""The shipped default model: it loads with the default chain and labels real beats."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_stream.classify.classifier import OnnxBeatClassifier, default_model_path
from ecg_stream.config import ChainConfig
from ecg_stream.evaluation import Span
from ecg_stream.evaluation.classification import (
    RecordPredictions,
    classify_record,
    score_records,
)
from ecg_stream.records import Record

ACCURACY_FLOOR_100 = 0.95
"""Record 100 (DS2, never trained on) is almost all N beats; a sane model gets them right."""


def test_shipped_model_fits_the_default_chain_and_is_small() -> None:
    path = default_model_path()
    assert path.stat().st_size < 5_000_000
    with OnnxBeatClassifier(path, ChainConfig()) as classifier:
        assert classifier.contract.training_protocol == "inter-patient"
        assert "100" not in classifier.contract.training_records.split()
        assert classifier.contract.rr_features


@pytest.mark.slow
def test_shipped_model_labels_record_100_above_the_floor(record_100: Record) -> None:
    config = ChainConfig()
    assert record_100.annotations is not None
    with OnnxBeatClassifier(default_model_path(), config) as classifier:
        beats = classify_record(record_100, classifier, config)
    prediction = RecordPredictions(
        "100",
        record_100.fs_hz,
        np.array([beat.window.peak.index for beat in beats], dtype=np.int64),
        tuple(beat.label for beat in beats),
    )
    score = score_records([prediction], {"100": record_100.annotations}).gross(Span.WHOLE_RECORD)
    assert score.score.accuracy >= ACCURACY_FLOOR_100
