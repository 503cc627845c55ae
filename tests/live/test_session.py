"""The stream session and its offline sinks, with the shipped model (no broker)."""

from __future__ import annotations

import asyncio
import csv
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ecg_stream.classify.classifier import OnnxBeatClassifier
from ecg_stream.config import ChainConfig
from ecg_stream.detector.chain import BeatExtractor
from ecg_stream.errors import ModelContractError
from ecg_stream.live.analysis import RecordAnalysis, analyze_record
from ecg_stream.live.replay import RecordReplay
from ecg_stream.live.session import RunSummary
from ecg_stream.live.sinks import BeatCollector, CsvSink
from ecg_stream.live.sources import StreamSpec
from ecg_stream.records import Record
from ecg_stream.types import Chunk
from ecg_stream.wire import StreamState, TopicKind

CONFIG = ChainConfig()
FS = 360


@pytest.fixture(scope="module")
def minute(record_100: Record) -> Record:
    return replace(record_100, samples=record_100.samples[: 60 * FS])


def test_beats_and_labels_do_not_depend_on_the_chunk_length(
    minute: Record, classifier: OnnxBeatClassifier
) -> None:
    runs = [analyze_record(minute, CONFIG, classifier, chunk_s=s) for s in (0.1, 1.0, 7.3, 60)]
    extractor = BeatExtractor(CONFIG)
    windows = extractor.process(Chunk(0, minute.samples)).windows + extractor.flush().windows
    for run in runs:
        assert [w.peak for w in run.windows] == [w.peak for w in windows]
        assert [b.label for b in run.labeled] == [b.label for b in runs[0].labeled]
        np.testing.assert_allclose(
            [b.probabilities for b in run.labeled],
            [b.probabilities for b in runs[0].labeled],
            atol=1e-6,
        )


def test_a_classifier_checked_against_another_chain_is_refused(
    minute: Record, classifier: OnnxBeatClassifier
) -> None:
    with pytest.raises(ModelContractError, match="same ChainConfig"):
        analyze_record(minute, ChainConfig(notch_hz=50.0), classifier)


def test_without_a_classifier_beats_are_detections(minute: Record) -> None:
    result = analyze_record(minute, CONFIG)
    assert result.windows
    assert not result.labeled
    assert result.record_indices.tolist() == [w.peak.index for w in result.windows]


def test_csv_sink_writes_one_row_per_beat_in_the_record_clock(
    minute: Record, classifier: OnnxBeatClassifier, tmp_path: Path
) -> None:
    sink = CsvSink(tmp_path, labels=True)
    result = analyze_record(minute, CONFIG, classifier, sinks=[sink])
    with sink.written[minute.name].open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["sample"]) for row in rows] == result.record_indices.tolist()
    assert [row["label"] for row in rows] == [b.label.value for b in result.labeled]
    assert not list(tmp_path.glob(".*.partial"))


def test_sessions_report_online_then_offline_to_every_sink(
    minute: Record, classifier: OnnxBeatClassifier
) -> None:
    collector, summary = BeatCollector(), RunSummary()
    specs = [StreamSpec("a", minute), StreamSpec("b", minute)]
    replay = RecordReplay(specs, classifier, [collector], speed=math.inf, summary=summary)
    asyncio.run(replay.run())
    for stream in ("a", "b"):
        states = [s.state for s in collector.statuses if s.stream == stream]
        assert states[0] is StreamState.ONLINE
        assert states[-1] is StreamState.OFFLINE
        assert len(collector.beats[stream]) == summary.streams[stream].detected
    peaks = {s: [b.placed.sample_index for b in collector.beats[s]] for s in ("a", "b")}
    assert peaks["a"] == peaks["b"]
    assert summary.inference_calls < summary.beats  # the two streams share inference calls


def test_a_record_analysis_knows_its_speed(minute: Record) -> None:
    result: RecordAnalysis = analyze_record(minute, CONFIG)
    assert result.signal_s == pytest.approx(60.0)
    assert result.speed_factor > 1


def test_retired_streams_are_folded_into_one_line_with_their_counts() -> None:
    """A worker sees unbounded stream ids: finished ones are folded, their reports freed."""
    summary = RunSummary()
    for k in range(3):
        report = summary.report(f"bed{k}", f"bed{k}")
        report.detected, report.signal_s = 10, 30.0
        report.publisher.compute.add(2.0)
        report.publisher.dropped[TopicKind.BEATS] = k
    summary.retire("bed0")
    summary.retire("bed1")
    summary.retire("unknown")  # nothing to fold
    assert list(summary.streams) == ["bed2"]
    assert summary.retired_count == 2
    assert summary.beats == 30
    assert summary.beats_lost == 3
    assert summary.compute().count == 3
    assert "2 more streams, idle and freed: 20 beats" in summary.format()
