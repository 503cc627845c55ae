"""Rhythm scoring (docs/protocol.md, "Rhythm scoring") on hand-made episodes and record 201."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ecg_stream.evaluation.rhythm import (
    Episode,
    RhythmFamily,
    RhythmReport,
    RhythmScore,
    detected_episodes,
    gross,
    reference_episodes,
    score_episodes,
)
from ecg_stream.records import RhythmChange, load_record
from ecg_stream.types import EventState, RhythmEvent, RhythmKind


def score(reference: list[Episode], detected: list[Episode], name: str = "r") -> RhythmScore:
    return score_episodes(name, 10.0, 1000, reference, detected)


def test_overlap_counts_episodes_and_time() -> None:
    reference = [Episode(100, 200), Episode(400, 500), Episode(700, 800)]
    detected = [Episode(150, 250, 180), Episode(450, 460, 455), Episode(900, 950, 920)]
    s = score(reference, detected)
    assert (s.detected_reference_episodes, s.reference_episodes) == (2, 3)
    assert (s.true_detected_episodes, s.detected_episodes) == (2, 3)
    assert s.overlap_s == pytest.approx((50 + 10) / 10.0)
    assert s.duration_se == pytest.approx(6.0 / 30.0)
    assert s.duration_pp == pytest.approx(6.0 / 16.0)
    assert s.decision_delays_s == pytest.approx((3.0, 0.5, 2.0))
    assert s.onset_delays_s == pytest.approx((8.0, 5.5))  # decision minus reference onset


def test_one_detection_over_two_reference_episodes_counts_both() -> None:
    s = score([Episode(100, 200), Episode(300, 400)], [Episode(150, 350, 160)])
    assert (s.episode_se, s.episode_pp) == (1.0, 1.0)
    assert s.duration_se == pytest.approx(100 / 200)


def test_touching_episodes_do_not_overlap() -> None:
    s = score([Episode(100, 200)], [Episode(200, 300, 250)])
    assert (s.episode_se, s.episode_pp, s.duration_pp) == (0.0, 0.0, 0.0)


def test_empty_cases() -> None:
    nothing = score([], [])
    assert all(
        math.isnan(x)
        for x in (nothing.episode_se, nothing.episode_pp, nothing.duration_se, nothing.duration_pp)
    )
    missed = score([Episode(0, 100)], [])
    assert (missed.episode_se, missed.duration_se) == (0.0, 0.0)
    assert math.isnan(missed.episode_pp)
    false = score([], [Episode(0, 600, 10)])
    assert false.detected_s == 60.0
    assert math.isnan(false.duration_se)


def test_gross_sums_before_dividing() -> None:
    a = score([Episode(0, 100)], [Episode(0, 100, 50)], "a")  # 10 s reference, all found
    b = score([Episode(0, 900)], [Episode(0, 100, 50)], "b")  # 90 s reference, 10 s found
    total = gross([a, b])
    assert total.record == "gross"
    assert total.duration_se == pytest.approx(20 / 100)  # not the mean of 1.0 and 0.11
    assert (total.reference_episodes, total.detected_episodes) == (2, 2)
    assert total.record_s == 200.0
    empty = gross([])
    assert empty.reference_episodes == 0
    assert math.isnan(empty.duration_se)


def test_false_detections_count_records_without_the_family() -> None:
    with_af = score([Episode(0, 100)], [Episode(0, 200, 50)], "a")
    without = score([], [Episode(0, 300, 50)], "b")
    report = RhythmReport({RhythmFamily.AF: (with_af, without)})
    false = report.false_detections(RhythmFamily.AF)
    assert (false.records, false.record_s, false.detected_s) == (1, 100.0, 30.0)
    document = json.loads(report.to_json())
    assert document["af"]["false_detected_min"] == pytest.approx(0.5)
    assert document["af"]["records"][1]["duration_se"] is None
    assert "gross" in report.format_table(RhythmFamily.AF)


def test_reference_episodes_join_a_family_and_run_to_the_end() -> None:
    changes = [
        RhythmChange(0, "(N"),
        RhythmChange(100, "(AFIB"),
        RhythmChange(200, "(AFL"),
        RhythmChange(300, "(VT"),
        RhythmChange(350, "(AFIB"),
    ]
    assert reference_episodes(changes, RhythmFamily.AF, 1000) == (
        Episode(100, 300),
        Episode(350, 1000),
    )
    assert reference_episodes(changes, RhythmFamily.VT, 1000) == (Episode(300, 350),)
    assert reference_episodes(changes, RhythmFamily.SVT, 1000) == ()


def test_detected_episodes_pair_start_and_end_events() -> None:
    def event(state: EventState, index: int, kind: RhythmKind = RhythmKind.AF) -> RhythmEvent:
        return RhythmEvent(kind, state, index, index + 36, 10, 80.0)

    events = [
        event(EventState.START, 360),
        event(EventState.START, 400, RhythmKind.VT),
        event(EventState.END, 720),
        event(EventState.INSTANT, 800),
        event(EventState.START, 1080),
    ]
    half = detected_episodes(events, RhythmKind.AF, lambda i: i // 2, 5000)
    assert half == (Episode(180, 360, 198), Episode(540, 5000, 558))


def test_record_201_rhythm_annotations(data_dir: Path) -> None:
    record = load_record("201", data_dir)
    assert record.annotations is not None
    rhythms = record.annotations.rhythms
    assert rhythms[:2] == (RhythmChange(60, "(AFIB"), RhythmChange(136226, "(NOD"))
    assert [r.index for r in rhythms] == sorted(r.index for r in rhythms)
    episodes = reference_episodes(rhythms, RhythmFamily.AF, record.samples.size)
    assert len(episodes) == 3
    assert episodes[:2] == (Episode(60, 136226), Episode(171815, 185068))
    assert episodes[-1].end_index < record.samples.size
    assert sum(e.samples for e in episodes) / record.fs_hz / 60 == pytest.approx(10.1, abs=0.1)


def test_onset_delay_is_not_taken_from_a_detection_still_running() -> None:
    # One detection over two reference episodes (split by a VT): only the first onset counts.
    s = score([Episode(100, 200), Episode(220, 400)], [Episode(120, 400, 150)])
    assert s.onset_delays_s == pytest.approx((5.0,))
