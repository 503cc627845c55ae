from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ecg_stream.errors import ConfigError, RecordFormatError
from ecg_stream.evaluation import Span
from ecg_stream.evaluation.classification import (
    RecordPredictions,
    read_predictions_csv,
    score_records,
)
from ecg_stream.records import Annotations, Record
from ecg_stream.types import BeatClass


@pytest.fixture(scope="module")
def annotations_100(record_100: Record) -> Annotations:
    assert record_100.annotations is not None
    return record_100.annotations


def perfect(annotations: Annotations) -> RecordPredictions:
    return RecordPredictions("100", 360.0, annotations.beat_indices + 5, annotations.beat_classes)


def test_perfect_labels_score_one_in_both_spans(annotations_100: Annotations) -> None:
    report = score_records([perfect(annotations_100)], {"100": annotations_100})
    whole, ec57 = report.gross(Span.WHOLE_RECORD).score, report.gross(Span.EC57).score
    assert whole.accuracy == 1.0
    assert whole.sensitivity(BeatClass.S) == 1.0
    assert whole.ec57(BeatClass.V) == (1.0, 1.0, 0.0)
    assert whole.confusion.sum() == annotations_100.beat_indices.size
    assert 0 < ec57.confusion.sum() < whole.confusion.sum()  # first 5 minutes not scored


def test_errors_land_in_the_right_cells(annotations_100: Annotations) -> None:
    labels = list(annotations_100.beat_classes)
    first_s = labels.index(BeatClass.S)
    labels[first_s] = BeatClass.N  # one S beat called N
    samples = np.append(annotations_100.beat_indices, 649_000)  # one extra detection
    prediction = RecordPredictions("100", 360.0, samples, (*labels, BeatClass.V))
    report = score_records([prediction], {"100": annotations_100})
    gross = report.gross(Span.WHOLE_RECORD)
    assert gross.score.confusion[BeatClass.S.index, BeatClass.N.index] == 1
    assert gross.unmatched_detections == 1
    text = report.to_json()
    assert "NaN" not in text  # undefined ratios are null
    figures = json.loads(text)
    assert figures["whole_record"]["records"][0]["classes"]["S"]["reference_beats"] == 33
    assert figures["whole_record"]["average"]["sveb"]["se"] == pytest.approx(32 / 33)
    assert "SVEB: Se 96.97 %" in report.format_table(Span.WHOLE_RECORD)


def test_record_without_annotations_is_refused(annotations_100: Annotations) -> None:
    with pytest.raises(RecordFormatError, match="no reference annotations"):
        score_records([perfect(annotations_100)], {})


def test_analyze_csv_is_read_back(tmp_path: Path) -> None:
    path = tmp_path / "100.csv"
    path.write_text(
        "sample,time_s,rr_ms,label,confidence\n77,0.2139,,N,0.9\n370,1.0278,813.9,V,0.8\n"
    )
    prediction = read_predictions_csv(path, 360.0)
    assert prediction.record == "100"
    assert prediction.samples.tolist() == [77, 370]
    assert prediction.labels == (BeatClass.N, BeatClass.V)
    path.write_text("sample,time_s\n77,0.2\n")
    with pytest.raises(ConfigError, match="no column 'label'"):
        read_predictions_csv(path, 360.0)
