"""The AF detector: real records (201's AF, 100's sinus rhythm), synthetic RR series."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pytest

from ecg_stream.classify.classifier import OnnxBeatClassifier
from ecg_stream.config import ChainConfig
from ecg_stream.detector.rhythm.af import AfDecision, AfDetector, AfSettings
from ecg_stream.errors import ConfigError
from ecg_stream.live.analysis import analyze_record
from ecg_stream.records import load_record
from ecg_stream.types import (
    BEAT_CLASSES,
    BeatClass,
    BeatWindow,
    LabeledBeat,
    MorphologyFeatures,
    RPeak,
    RRFeatures,
)

FS_HZ = 360.0


def synthetic_beats(rr_ms: Sequence[float], labels: str | None = None) -> list[LabeledBeat]:
    """Beats with the given RR intervals (the first beat has none) and labels (default N)."""
    beats: list[LabeledBeat] = []
    index = 0
    for position, rr in enumerate([math.nan, *rr_ms]):
        index += 0 if math.isnan(rr) else round(rr * FS_HZ / 1000)
        label = BeatClass(labels[position % len(labels)]) if labels else BeatClass.N
        probabilities = tuple(1.0 if c is label else 0.0 for c in BEAT_CLASSES)
        window = BeatWindow(
            peak=RPeak(index, index),
            samples=np.zeros(1),
            rr=RRFeatures(rr, math.nan, math.nan),
            morphology=MorphologyFeatures(1.0, 1.0),
            ready_index=index,
        )
        beats.append(LabeledBeat(window, probabilities))  # type: ignore[arg-type]
    return beats


def decide(beats: Iterable[LabeledBeat], detector: AfDetector | None = None) -> list[AfDecision]:
    detector = detector or AfDetector()
    return [detector.process(beat) for beat in beats]


@pytest.fixture(scope="module")
def beats_201(data_dir: Path, shipped_classifier: OnnxBeatClassifier) -> tuple[LabeledBeat, ...]:
    return analyze_record(load_record("201", data_dir), ChainConfig(), shipped_classifier).labeled


def test_af_found_inside_201s_first_afib_episode(beats_201: tuple[LabeledBeat, ...]) -> None:
    # 201 opens in AF: (AFIB at sample 60 until (NOD at 136226 (record clock = chain clock).
    decisions = decide(beats_201)
    inside = [
        d.in_af
        for beat, d in zip(beats_201, decisions, strict=True)
        if 20 * FS_HZ <= beat.window.peak.index < 136226
    ]
    assert np.mean(inside) > 0.95
    starts = [d.episode_start_index for d in decisions if d.episode_start_index is not None]
    assert starts[0] < 20 * FS_HZ  # placed back near the record's start, not at the decision


def test_no_af_in_sinus_record_100(data_dir: Path, shipped_classifier: OnnxBeatClassifier) -> None:
    beats = analyze_record(load_record("100", data_dir), ChainConfig(), shipped_classifier).labeled
    assert not any(d.in_af for d in decide(beats))


@pytest.mark.parametrize(
    ("pattern_ms", "labels"),
    [
        ((500.0, 900.0), "NS"),  # atrial bigeminy, the S beats called N or S
        ((500.0, 900.0), "N"),
        ((600.0, 600.0, 1000.0), "N"),  # trigeminy, short-short-long
        ((480.0, 1040.0, 800.0, 800.0), "N"),  # a premature beat and its pause every fourth
    ],
)
def test_repeating_ectopic_patterns_are_not_af(pattern_ms: tuple[float, ...], labels: str) -> None:
    rng = np.random.default_rng(7)
    rr_ms = np.tile(pattern_ms, 420 // len(pattern_ms)) + rng.normal(0.0, 10.0, 420)
    assert not any(d.in_af for d in decide(synthetic_beats(list(rr_ms), labels)))


def test_random_rr_is_af_and_ends_with_regular_rhythm() -> None:
    rng = np.random.default_rng(8)
    irregular = list(rng.uniform(400.0, 1000.0, 300))
    decisions = decide(synthetic_beats([800.0] * 100 + irregular + [800.0] * 200))
    assert [d.in_af for d in decisions if d.changed] == [True, False]
    start = next(i for i, d in enumerate(decisions) if d.changed)
    assert 100 < start < 100 + 2 * AfSettings().window_beats  # decided within two windows


def test_intervals_touching_ventricular_beats_are_left_out() -> None:
    # Ventricular trigeminy with very short coupling: the sinus intervals between stay regular.
    rr_ms = [800.0, 400.0, 1200.0] * 200
    assert not any(d.in_af for d in decide(synthetic_beats(rr_ms, "NNV")))


def test_reset_equals_fresh() -> None:
    rng = np.random.default_rng(9)
    beats = synthetic_beats(list(rng.uniform(400.0, 1000.0, 200)) + [800.0] * 100)
    used = AfDetector()
    decide(beats[:150], used)
    used.reset()
    assert decide(beats, used) == decide(beats, AfDetector())


def test_state_stays_bounded_over_a_long_stream() -> None:
    rng = np.random.default_rng(10)
    segments = [rng.uniform(400.0, 1000.0, 500), np.full(500, 800.0)] * 10
    detector = AfDetector()
    changes = sum(
        d.changed for d in decide(synthetic_beats(list(np.concatenate(segments))), detector)
    )
    window = detector.settings.window_beats
    assert changes == 20
    assert len(detector._intervals_ms) <= window
    assert len(detector._peak_indices) <= window


def test_irregularity_is_nan_until_enough_intervals() -> None:
    decisions = decide(synthetic_beats([800.0] * 40))
    known = [not math.isnan(d.irregularity) for d in decisions]
    assert known.index(True) == AfSettings().min_intervals


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"window_beats": 4}, "window_beats=4"),
        ({"threshold": 0.0}, "threshold=0.0"),
        ({"exit_threshold": 0.5}, "exit_threshold=0.5"),
        ({"enter_beats": 0}, "enter_beats=0"),
        ({"lookback_beats": 32}, "lookback_beats=32"),
        ({"min_intervals": 40}, "min_intervals=40"),
        ({"ectopic_fraction": 1.0}, "ectopic_fraction=1.0"),
    ],
)
def test_settings_are_validated(settings: dict[str, float], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        AfSettings(**settings)  # type: ignore[arg-type]
