from __future__ import annotations

import math

import numpy as np
import pytest

from ecg_stream.config import ChainConfig
from ecg_stream.detector.segment import (
    PRIOR_RR_MS,
    BeatSegmenter,
    normalise_window,
    rr_feature_vector,
)
from ecg_stream.errors import ConfigError
from ecg_stream.types import RPeak, RRFeatures

CONFIG = ChainConfig()


def peak(index: int) -> RPeak:
    return RPeak(index=index, decided_index=index + 100)


def test_window_is_cut_around_the_peak_once_complete() -> None:
    segmenter = BeatSegmenter(CONFIG)
    ramp = np.arange(2000.0)
    assert segmenter.process(ramp[:1000], [peak(900)]) == []  # needs samples up to 1059
    (window,) = segmenter.process(ramp[1000:], [])
    np.testing.assert_array_equal(window.samples, ramp[900 - 90 : 900 + 160])
    assert window.ready_index == 1060


def test_window_at_stream_start_is_padded_with_first_sample() -> None:
    segmenter = BeatSegmenter(CONFIG)
    (window,) = segmenter.process(np.arange(1.0, 501.0), [peak(10)])
    assert window.samples.size == 250
    np.testing.assert_array_equal(window.samples[:80], 1.0)
    np.testing.assert_array_equal(window.samples[80:], np.arange(1.0, 171.0))


def test_window_at_stream_end_is_padded_on_flush() -> None:
    segmenter = BeatSegmenter(CONFIG)
    assert segmenter.process(np.arange(1000.0), [peak(950)]) == []
    (window,) = segmenter.flush([])
    np.testing.assert_array_equal(window.samples[:140], np.arange(860.0, 1000.0))
    np.testing.assert_array_equal(window.samples[140:], 999.0)


def test_rr_features_are_causal() -> None:
    segmenter = BeatSegmenter(ChainConfig(rr_mean_beats=2))
    windows = segmenter.process(np.zeros(5000), [peak(360), peak(720), peak(900), peak(1620)])
    rr = [w.rr for w in windows]
    assert math.isnan(rr[0].rr_ms)
    assert [r.rr_ms for r in rr[1:]] == [1000.0, 500.0, 2000.0]
    assert [r.local_mean_rr_ms for r in rr[1:]] == [1000.0, 750.0, 1250.0]
    assert rr[2].rr_ratio == pytest.approx(500 / 750)


def test_late_peak_beyond_history_is_an_error() -> None:
    segmenter = BeatSegmenter(CONFIG, history_s=1.0)
    segmenter.process(np.zeros(5000), [])
    with pytest.raises(ConfigError, match="raise history_s"):
        segmenter.process(np.zeros(10), [peak(1000)])


def test_normalisation_is_zero_mean_unit_variance_and_safe_on_flat() -> None:
    out = normalise_window(np.linspace(-3, 7, 250))
    assert out.mean() == pytest.approx(0.0, abs=1e-12)
    assert out.std() == pytest.approx(1.0)
    np.testing.assert_array_equal(normalise_window(np.full(250, 2.0)), 0.0)


def test_first_beat_rr_vector_uses_the_stated_prior() -> None:
    vector = rr_feature_vector(RRFeatures(rr_ms=math.nan, local_mean_rr_ms=math.nan))
    np.testing.assert_allclose(vector, [PRIOR_RR_MS / 1000, PRIOR_RR_MS / 1000, 1.0])
