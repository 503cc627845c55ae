from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from ecg_stream.config import ChainConfig
from ecg_stream.detector.rpeak import RPeakDetector
from ecg_stream.errors import ConfigError
from ecg_stream.evaluation import Span
from ecg_stream.evaluation.detection import evaluate_detections
from ecg_stream.live.analysis import RecordAnalysis, detect_record
from ecg_stream.records import load_record

# Floors a little under what the detector measures (docs/evaluation.md), whole record, 150 ms
# matching.
FLOORS = {"100": (1.0, 1.0), "105": (0.995, 0.975), "119": (0.999, 0.999), "208": (0.995, 0.995)}

Detected = Callable[[str], RecordAnalysis]


@pytest.fixture(scope="module")
def detected(data_dir: Path) -> Detected:
    """A whole record through the chain in 1 s chunks, once per module for all its tests."""
    return cache(lambda name: detect_record(load_record(name, data_dir), ChainConfig(), 1.0))


@pytest.mark.slow
@pytest.mark.parametrize("name", FLOORS)
def test_detection_meets_floor(name: str, detected: Detected) -> None:
    result = detected(name)
    score = evaluate_detections(result.record, result.record_indices, Span.WHOLE_RECORD).score
    min_se, min_pp = FLOORS[name]
    assert score.sensitivity >= min_se
    assert score.positive_predictivity >= min_pp


def test_decision_delay_is_bounded_after_learning(detected: Detected) -> None:
    detector = RPeakDetector(fs_hz=360.0)
    peaks = detected("100").windows  # the floor test's run of record 100
    delays = np.array([w.peak.decided_index - w.peak.index for w in peaks[10:]])
    assert delays.max() <= detector.decision_delay_samples


def test_reported_peaks_are_increasing(detected: Detected) -> None:
    windows = detected("203").windows
    assert np.all(np.diff([w.peak.index for w in windows]) > 0)


def test_silence_gives_no_beats() -> None:
    detector = RPeakDetector(fs_hz=360.0)
    assert detector.process(np.zeros(36_000)) + detector.flush() == []


@pytest.mark.parametrize(("fs_hz", "hold_s"), [(50.0, 0.2), (360.0, 0.01), (360.0, 1.0)])
def test_bad_settings_are_refused(fs_hz: float, hold_s: float) -> None:
    with pytest.raises(ConfigError, match=r"must|too low"):
        RPeakDetector(fs_hz=fs_hz, hold_s=hold_s)
