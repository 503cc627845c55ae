"""StreamTracker: what the monitor derives from wire messages, without Qt."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from ecg_stream.errors import ConfigError
from ecg_stream.types import BeatClass, EventState, RhythmKind
from ecg_stream.viewer.tracker import (
    MAX_ALARMS,
    MAX_CLOSED_EPISODES,
    Episode,
    StreamTracker,
    format_record_time,
)
from ecg_stream.wire import StreamState
from tests.viewer.helpers import beat, event, samples, status


def test_trace_is_appended_in_mv_on_the_chain_clock() -> None:
    tracker = StreamTracker("100", history_s=10.0)
    signal = np.linspace(-1.0, 2.0, 360)
    for start in range(0, 360, 36):
        tracker.add_samples(samples("100", 3600 + start, signal[start : start + 36]))
    assert tracker.ring is not None
    assert tracker.fs_hz == 360.0
    assert (tracker.ring.start_index, tracker.ring.end_index) == (3600, 3960)
    np.testing.assert_allclose(tracker.ring.latest(360), signal, atol=1e-3)  # 1 uV counts


def test_counts_last_abnormal_and_heart_rate_from_recent_rr() -> None:
    tracker = StreamTracker("208", history_s=10.0, rr_beats=4)
    rr_ms = [1000.0, 800.0, 500.0, 900.0, 850.0, 820.0]
    labels = [BeatClass.N, BeatClass.N, BeatClass.V, BeatClass.N, BeatClass.S, BeatClass.N]
    index = 0
    for rr, label in zip(rr_ms, labels, strict=True):
        index += round(rr * 0.36)
        tracker.add_beat(beat("208", index, label, rr_ms=rr), receipt_wall_s=1.7e9)
    assert tracker.counts == {
        BeatClass.N: 4,
        BeatClass.S: 1,
        BeatClass.V: 1,
        BeatClass.F: 0,
        BeatClass.Q: 0,
    }
    assert tracker.last_abnormal is not None
    assert tracker.last_abnormal.label is BeatClass.S
    assert tracker.heart_rate_bpm == pytest.approx(60_000 / statistics.median(rr_ms[-4:]))


def test_first_beat_has_no_heart_rate() -> None:
    tracker = StreamTracker("100", history_s=10.0)
    assert tracker.heart_rate_bpm is None
    tracker.add_beat(beat("100", 370, rr_ms=None), receipt_wall_s=1.7e9)
    assert tracker.heart_rate_bpm is None
    assert tracker.last_abnormal is None


def test_latencies_follow_the_protocol_definitions() -> None:
    tracker = StreamTracker("100", history_s=10.0)
    # last sample arrived at published_at - compute_ms; received 5 ms after publication
    for k, compute_ms in enumerate([1.0, 2.0, 9.0]):
        message = beat("100", 400 * (k + 1), compute_ms=compute_ms, published_at=1.7e9 + k)
        tracker.add_beat(message, receipt_wall_s=1.7e9 + k + 0.005)
    assert tracker.median_compute_ms == pytest.approx(2.0)
    assert tracker.median_end_to_end_ms == pytest.approx(5.0 + 2.0, abs=1e-3)  # epoch floats


def test_status_sets_online_record_and_model() -> None:
    assert StreamTracker("100", history_s=10.0).online is None
    tracker = StreamTracker("100", history_s=10.0)
    tracker.add_status(status("100"))
    assert (tracker.online, tracker.record, tracker.model) == (True, "100", "beat_lstm")
    tracker.add_status(status("100", StreamState.OFFLINE))
    assert tracker.online is False


def test_stream_that_starts_over_is_reset() -> None:
    tracker = StreamTracker("100", history_s=10.0)
    tracker.add_samples(samples("100", 36_000, np.zeros(36)))
    tracker.add_beat(beat("100", 36_010, BeatClass.V), receipt_wall_s=1.7e9)
    tracker.add_samples(samples("100", 0, np.ones(36)))  # a new replay of the same stream
    assert tracker.restarts == 1
    assert tracker.ring is not None
    assert (tracker.ring.start_index, tracker.ring.end_index) == (0, 36)
    assert sum(tracker.counts.values()) == 0
    assert tracker.last_abnormal is None
    assert not tracker.beats


def test_memory_is_bounded_over_a_long_stream() -> None:
    tracker = StreamTracker("100", history_s=10.0)
    for k in range(20_000):  # about 4.6 hours of beats at 72 bpm
        tracker.add_beat(beat("100", 300 * (k + 1)), receipt_wall_s=1.7e9)
    assert len(tracker.beats) == tracker.beats.maxlen == 50
    assert tracker.counts[BeatClass.N] == 20_000


def test_revision_changes_with_every_beat() -> None:
    tracker = StreamTracker("100", history_s=10.0)
    before = tracker.revision
    tracker.add_beat(beat("100", 400), receipt_wall_s=1.7e9)
    assert tracker.revision == before + 1


def test_beat_description_names_class_confidence_and_time() -> None:
    tracker = StreamTracker("208", history_s=10.0)
    tracker.add_beat(beat("208", 360 * 75, BeatClass.V, confidence=0.8), receipt_wall_s=1.7e9)
    text = tracker.beats[-1].describe()
    assert text.startswith("V (80%) at 1:15.0")
    assert "V 0.80" in text


def test_record_time_format() -> None:
    assert format_record_time(0.0) == "0:00.0"
    assert format_record_time(754.46) == "12:34.5"
    assert format_record_time(1805.0) == "30:05.0"
    assert format_record_time(3725.0) == "1:02:05.0"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="history_s=0"):
        StreamTracker("100", history_s=0.0)


def test_status_sets_the_current_rhythm() -> None:
    tracker = StreamTracker("201", history_s=10.0)
    assert tracker.rhythm is None
    tracker.add_status(status("201", rhythm=RhythmKind.AF))
    assert tracker.rhythm is RhythmKind.AF
    tracker.add_status(status("201"))
    assert tracker.rhythm is None


def test_start_and_end_make_an_episode_and_alarm_lines_newest_first() -> None:
    tracker = StreamTracker("bed1", history_s=10.0)
    tracker.add_event(event("bed1", RhythmKind.VT, EventState.START, 3600))
    assert tracker.episodes == [Episode(RhythmKind.VT, 3600, None)]  # open
    tracker.add_event(event("bed1", RhythmKind.COUPLET, EventState.INSTANT, 4000, beats=2))
    tracker.add_event(event("bed1", RhythmKind.VT, EventState.END, 5400, beats=12))
    assert tracker.episodes == [Episode(RhythmKind.VT, 3600, 5400)]
    assert [mark.chain_sample for mark in tracker.instants] == [4000]
    assert [mark.describe() for mark in tracker.alarms] == [
        "VT end, 12 beats at 150 bpm",
        "couplet, 2 beats at 150 bpm",
        "VT start, 6 beats at 150 bpm",
    ]
    line = tracker.alarms[-1].alarm_line()
    assert line.endswith("  VT start, 6 beats at 150 bpm")
    assert line[2] == line[5] == ":"  # local HH:MM:SS first


def test_an_end_without_its_start_is_an_episode_from_before_the_trace() -> None:
    tracker = StreamTracker("201", history_s=10.0)
    tracker.add_event(event("201", RhythmKind.AF, EventState.END, 9000, detail="stream ended"))
    assert tracker.episodes == [Episode(RhythmKind.AF, None, 9000)]
    assert tracker.alarms[0].describe() == "AF end, 6 beats at 150 bpm (stream ended)"


def test_other_episodes_are_listed_not_banded_and_redelivery_is_ignored() -> None:
    tracker = StreamTracker("bed1", history_s=10.0)
    bigeminy = event("bed1", RhythmKind.VENTRICULAR_BIGEMINY, EventState.START, 360)
    tracker.add_event(bigeminy)
    revision = tracker.events_revision
    tracker.add_event(bigeminy)  # QoS 1: delivered again after a reconnection
    assert tracker.events_revision == revision
    assert len(tracker.alarms) == 1
    assert tracker.episodes == []
    assert tracker.alarms[0].describe() == "bigeminy start, 6 beats at 150 bpm"


def test_events_stay_bounded_and_an_open_episode_outlives_many_closed_ones() -> None:
    tracker = StreamTracker("bed1", history_s=10.0)
    tracker.add_event(event("bed1", RhythmKind.AF, EventState.START, 0))
    for k in range(1, 1000):
        tracker.add_event(event("bed1", RhythmKind.VT, EventState.START, 1000 * k))
        tracker.add_event(event("bed1", RhythmKind.VT, EventState.END, 1000 * k + 500))
        tracker.add_event(event("bed1", RhythmKind.PAUSE, EventState.INSTANT, 1000 * k + 700))
    assert len(tracker.alarms) == MAX_ALARMS
    assert len(tracker.instants) == tracker.instants.maxlen == 50
    episodes = tracker.episodes
    assert len(episodes) == MAX_CLOSED_EPISODES + 1
    assert episodes[-1] == Episode(RhythmKind.AF, 0, None)


def test_a_restart_forgets_episodes_and_instants_but_keeps_the_alarm_log() -> None:
    tracker = StreamTracker("bed1", history_s=10.0)
    tracker.add_samples(samples("bed1", 36_000, np.zeros(36)))
    tracker.add_event(event("bed1", RhythmKind.AF, EventState.START, 36_000))
    tracker.add_event(event("bed1", RhythmKind.PAUSE, EventState.INSTANT, 36_010))
    tracker.add_samples(samples("bed1", 0, np.zeros(36)))  # started over
    assert tracker.episodes == []
    assert not tracker.instants
    assert len(tracker.alarms) == 2


def test_joining_during_an_episode_draws_it_from_before_the_trace_until_it_ends() -> None:
    tracker = StreamTracker("201", history_s=10.0)
    tracker.add_status(status("201", rhythm=RhythmKind.AF))  # the retained status, on joining
    assert tracker.episodes == [Episode(RhythmKind.AF, None, None)]
    tracker.add_status(status("201", rhythm=RhythmKind.VT))  # later statuses open nothing
    assert tracker.episodes == [Episode(RhythmKind.AF, None, None)]
    tracker.add_event(event("201", RhythmKind.AF, EventState.END, 9000))
    assert tracker.episodes == [Episode(RhythmKind.AF, None, 9000)]


def test_a_start_arriving_after_its_status_gives_the_episode_its_start() -> None:
    tracker = StreamTracker("201", history_s=10.0)
    tracker.add_status(status("201", rhythm=RhythmKind.AF))
    tracker.add_event(event("201", RhythmKind.AF, EventState.START, 3600))
    tracker.add_event(event("201", RhythmKind.AF, EventState.START, 7200))  # open already
    assert tracker.episodes == [Episode(RhythmKind.AF, 3600, None)]
