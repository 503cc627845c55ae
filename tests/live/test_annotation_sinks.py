"""The rhythm outputs of ``analyze``: a WFDB annotation file that ``wfdb.rdann`` reads back,
and the events CSV, from 3 minutes of record 201 (atrial fibrillation from its start)."""

from __future__ import annotations

import csv
import itertools
from dataclasses import replace
from pathlib import Path

import pytest
import wfdb

from ecg_stream.classify.classifier import OnnxBeatClassifier
from ecg_stream.live.analysis import RecordAnalysis, analyze_record
from ecg_stream.live.session import Sink
from ecg_stream.live.sinks import EventsCsvSink, WfdbAnnotationSink
from ecg_stream.records import Record, load_record
from ecg_stream.types import EventState, RhythmKind


@pytest.fixture(scope="module")
def outputs(
    data_dir: Path, shipped_classifier: OnnxBeatClassifier, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Record, RecordAnalysis, Path]:
    record = load_record("201", data_dir, annotations=False)
    record = replace(record, samples=record.samples[: 180 * 360])
    out_dir = tmp_path_factory.mktemp("annotations")
    sinks: list[Sink] = [WfdbAnnotationSink(out_dir), EventsCsvSink(out_dir)]
    result = analyze_record(record, shipped_classifier.config, shipped_classifier, sinks=sinks)
    return record, result, out_dir


def test_the_annotation_file_holds_every_beat_with_its_label(
    outputs: tuple[Record, RecordAnalysis, Path],
) -> None:
    record, result, out_dir = outputs
    annotation = wfdb.rdann(str(out_dir / "201"), "ecgs")
    beats = [
        (int(s), sym)
        for s, sym in zip(annotation.sample, annotation.symbol, strict=True)
        if sym in "NSVFQ"
    ]
    assert beats == [(b.placed.sample_index, b.label().label.value) for b in result.beats]
    assert annotation.fs == record.fs_hz


def test_rhythm_changes_are_plus_annotations_with_mitbih_codes(
    outputs: tuple[Record, RecordAnalysis, Path],
) -> None:
    _, _, out_dir = outputs
    annotation = wfdb.rdann(str(out_dir / "201"), "ecgs")
    changes = [
        (int(s), note)
        for s, sym, note in zip(
            annotation.sample, annotation.symbol, annotation.aux_note, strict=True
        )
        if sym == "+"
    ]
    with (out_dir / "201.events.csv").open(newline="") as file:
        events = list(csv.DictReader(file))
    af_starts = [
        int(e["sample"])
        for e in events
        if e["kind"] == RhythmKind.AF.value and e["state"] == EventState.START.value
    ]
    assert af_starts, "201 begins in atrial fibrillation"
    assert (af_starts[0], "(AFIB") in changes
    codes = [note for _, note in changes]
    assert all(a != b for a, b in itertools.pairwise(codes))  # a + annotation is a change
    assert [s for s, _ in changes] == sorted(s for s, _ in changes)


def test_rhythm_codes_follow_the_stage_s_priority() -> None:
    from ecg_stream.detector.rhythm.stage import PRIORITY
    from ecg_stream.live.sinks import RHYTHM_CODES

    assert tuple(RHYTHM_CODES) == PRIORITY
