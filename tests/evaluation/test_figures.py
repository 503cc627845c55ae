"""The written documents read back through their schemas, unchanged (change aversion)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecg_stream.classify.classifier import default_model_path
from ecg_stream.documents import encode_json, read_json
from ecg_stream.errors import ConfigError
from ecg_stream.evaluation.figures import DetectionDocument
from ecg_stream.training.card import ModelCard

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("path", "schema"),
    [
        (ROOT / "docs" / "results" / "detector_all.json", DetectionDocument),
        (default_model_path().parent / "model_card.json", ModelCard),
    ],
    ids=["detector report", "model card"],
)
def test_committed_documents_round_trip_through_their_schema(
    path: Path, schema: type[object]
) -> None:
    document = read_json(path, schema, made_by="the test")
    assert json.loads(encode_json(document)) == json.loads(path.read_text())


def test_the_detection_report_keeps_its_whole_key_under_the_one_span_name() -> None:
    path = ROOT / "docs" / "results" / "detector_all.json"
    document = read_json(path, DetectionDocument, made_by="the test")
    chain = document["ecg-stream"]
    assert chain.whole_record.gross.record == "gross"
    assert json.loads(path.read_text())["ecg-stream"]["whole"]["gross"]["tp"] == (
        chain.whole_record.gross.tp
    )


def test_a_document_of_the_wrong_shape_is_refused_naming_the_file_and_field(
    tmp_path: Path,
) -> None:
    path = tmp_path / "detector.json"
    path.write_text('{"ecg-stream": {"whole": {"records": [], "gross": {"record": 3}}}}')
    with pytest.raises(ConfigError, match=r"detector\.json: .*record"):
        read_json(path, DetectionDocument, made_by="ecg-stream evaluate --detector --json")
    with pytest.raises(ConfigError, match="does not exist; the test writes it"):
        read_json(tmp_path / "none.json", DetectionDocument, made_by="the test")
