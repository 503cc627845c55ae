from __future__ import annotations

import math

import numpy as np
import pytest

from ecg_stream.config import ChainConfig
from ecg_stream.detector.segment import (
    AMPLITUDE_RATIO_CAP,
    FEATURE_NAMES,
    PRIOR_RR_MS,
    BeatSegmenter,
    Detected,
    MorphologyTracker,
    feature_vector,
    normalise_window,
)
from ecg_stream.errors import ConfigError
from ecg_stream.types import BeatWindow, MorphologyFeatures, RPeak, RRFeatures

CONFIG = ChainConfig()


def peak(index: int) -> RPeak:
    return RPeak(index=index, decided_index=index + 100)


def test_window_is_cut_around_the_peak_once_complete() -> None:
    segmenter = BeatSegmenter(CONFIG)
    ramp = np.arange(2000.0)
    assert segmenter.process(Detected(ramp[:1000], (peak(900),))) == []  # needs up to 1059
    (window,) = segmenter.process(Detected(ramp[1000:]))
    np.testing.assert_array_equal(window.samples, ramp[900 - 90 : 900 + 160])
    assert window.ready_index == 1060


def test_window_at_stream_start_is_padded_with_first_sample() -> None:
    segmenter = BeatSegmenter(CONFIG)
    (window,) = segmenter.process(Detected(np.arange(1.0, 501.0), (peak(10),)))
    assert window.samples.size == 250
    np.testing.assert_array_equal(window.samples[:80], 1.0)
    np.testing.assert_array_equal(window.samples[80:], np.arange(1.0, 171.0))


def test_window_at_stream_end_is_padded_on_flush() -> None:
    segmenter = BeatSegmenter(CONFIG)
    assert segmenter.process(Detected(np.arange(1000.0), (peak(950),))) == []
    (window,) = segmenter.flush()
    np.testing.assert_array_equal(window.samples[:140], np.arange(860.0, 1000.0))
    np.testing.assert_array_equal(window.samples[140:], 999.0)


def test_rr_features_are_causal() -> None:
    segmenter = BeatSegmenter(ChainConfig(rr_mean_beats=2))
    peaks = (peak(360), peak(720), peak(900), peak(1620))
    windows = segmenter.process(Detected(np.zeros(5000), peaks))
    rr = [w.rr for w in windows]
    assert math.isnan(rr[0].rr_ms)
    assert [r.rr_ms for r in rr[1:]] == [1000.0, 500.0, 2000.0]
    assert [r.local_mean_rr_ms for r in rr[1:]] == [1000.0, 750.0, 1250.0]
    assert rr[2].rr_ratio == pytest.approx(500 / 750)


def test_late_peak_beyond_history_is_an_error() -> None:
    segmenter = BeatSegmenter(CONFIG, history_s=1.0)
    segmenter.process(Detected(np.zeros(5000)))
    with pytest.raises(ConfigError, match="raise history_s"):
        segmenter.process(Detected(np.zeros(10), (peak(1000),)))


def test_normalisation_is_zero_mean_unit_variance_and_safe_on_flat() -> None:
    out = normalise_window(np.linspace(-3, 7, 250))
    assert out.mean() == pytest.approx(0.0, abs=1e-12)
    assert out.std() == pytest.approx(1.0)
    np.testing.assert_array_equal(normalise_window(np.full(250, 2.0)), 0.0)


def test_first_beat_features_use_the_stated_prior() -> None:
    window = BeatWindow(
        peak=peak(10),
        samples=np.zeros(250),
        rr=RRFeatures(rr_ms=math.nan, local_mean_rr_ms=math.nan, long_mean_rr_ms=math.nan),
        morphology=MorphologyFeatures(template_correlation=1.0, amplitude_ratio=1.0),
        ready_index=170,
    )
    prior_s = PRIOR_RR_MS / 1000
    np.testing.assert_allclose(
        feature_vector(window, FEATURE_NAMES),
        [prior_s, prior_s, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0],
    )
    np.testing.assert_allclose(feature_vector(window, ("amplitude_ratio", "rr_s")), [1, prior_s])


def test_long_mean_rr_covers_more_beats_than_the_local_mean() -> None:
    segmenter = BeatSegmenter(ChainConfig(rr_mean_beats=2))
    peaks = tuple(peak(index) for index in (360, 720, 1080, 1440, 1620))
    last = segmenter.process(Detected(np.zeros(5000), peaks))[-1].rr
    assert last.local_mean_rr_ms == pytest.approx(750.0)
    assert last.long_mean_rr_ms == pytest.approx((3 * 1000 + 500) / 4)


def test_robust_rr_statistics_ignore_a_single_long_pause() -> None:
    segmenter = BeatSegmenter(CONFIG)
    indices = [360 * k for k in range(1, 12)] + [360 * 11 + 1440, 360 * 11 + 1440 + 252]
    peaks = tuple(peak(index) for index in indices)
    last = segmenter.process(Detected(np.zeros(9000), peaks))[-1].rr
    assert last.median_rr_ms == pytest.approx(1000.0)  # the 4 s pause does not move it
    assert last.rr_ms / last.median_rr_ms == pytest.approx(0.7)  # premature stands out
    assert last.upper_rr_ms >= last.median_rr_ms


def test_morphology_compares_a_beat_with_the_median_of_the_previous_ones(
    rng: np.random.Generator,
) -> None:
    tracker = MorphologyTracker(CONFIG, template_beats=8)
    time_s = np.arange(250) / CONFIG.fs_hz
    normal = np.exp(-(((time_s - 0.25) / 0.02) ** 2))
    assert tracker.measure(normal) == MorphologyFeatures(1.0, 1.0)  # first beat: typical
    for _ in range(8):
        typical = tracker.measure(normal + 0.01 * rng.standard_normal(250))
    assert typical.template_correlation > 0.99
    assert typical.amplitude_ratio == pytest.approx(1.0, abs=0.05)
    wide_and_tall = 3 * np.exp(-(((time_s - 0.27) / 0.06) ** 2))
    ectopic = tracker.measure(wide_and_tall)
    assert ectopic.template_correlation < 0.8
    assert ectopic.amplitude_ratio == pytest.approx(3.0, rel=0.05)
    assert ectopic.qrs_width_ratio == pytest.approx(3.0, rel=0.2)  # 0.06 s against 0.02 s
    assert typical.qrs_width_ratio == pytest.approx(1.0, abs=0.1)
    assert tracker.measure(1e6 * normal).amplitude_ratio == AMPLITUDE_RATIO_CAP


def test_morphology_of_a_flat_window_is_uncorrelated_not_nan() -> None:
    tracker = MorphologyTracker(CONFIG)
    tracker.measure(np.sin(np.arange(250.0)))
    flat = tracker.measure(np.zeros(250))
    assert flat == MorphologyFeatures(
        template_correlation=0.0,
        amplitude_ratio=0.0,
        qrs_width_ratio=0.0,
        p_wave_correlation=0.0,
        p_wave_amplitude_ratio=0.0,
    )


def test_premature_beats_never_become_the_template_even_in_bigeminy() -> None:
    fs_hz = CONFIG.fs_hz
    peaks = np.cumsum(np.tile([round(0.6 * fs_hz), round(1.2 * fs_hz)], 40))  # ectopic, normal
    time_s = np.arange(peaks[-1] + fs_hz) / fs_hz
    signal = np.zeros_like(time_s)
    for number, index in enumerate(peaks):
        width_s, height = (0.06, 3.0) if number % 2 == 0 else (0.02, 1.0)  # ectopic, normal
        signal += height * np.exp(-(((time_s - index / fs_hz) / width_s) ** 2))
    detected = Detected(signal, tuple(peak(int(index)) for index in peaks))
    windows = BeatSegmenter(CONFIG).process(detected)
    late = windows[len(windows) // 2 :]
    ectopic_beats = [w.morphology for w in late if w.rr.rr_ms < 1000.0]
    normal_beats = [w.morphology for w in late if w.rr.rr_ms > 1000.0]
    assert all(beat.template_correlation > 0.99 for beat in normal_beats)
    assert all(beat.template_correlation < 0.8 for beat in ectopic_beats)
    assert all(beat.amplitude_ratio > 2.5 for beat in ectopic_beats)


def test_rhythm_context_is_the_rr_irregularity_of_the_last_8_and_64_intervals() -> None:
    segmenter = BeatSegmenter(ChainConfig())
    rr = [300 if k % 2 else 250 for k in range(70)]  # alternating intervals, in samples
    peaks = np.cumsum([400, *rr])
    signal = np.zeros(int(peaks[-1]) + 400)
    windows = segmenter.process(Detected(signal, tuple(RPeak(int(p), int(p)) for p in peaks)))
    windows += segmenter.flush()
    last = windows[-1].rr
    assert last.irregularity_short == pytest.approx(50 / 275)
    assert last.irregularity_long == pytest.approx(50 / 275)
    assert math.isnan(windows[1].rr.irregularity_short)  # one interval: not known yet
    assert last.irregularity_lagged == 0.0  # alternation repeats at lag 2: bigeminy, not AF
    assert math.isnan(windows[15].rr.irregularity_lagged)  # 15 intervals: too few


def test_p_wave_measures_compare_the_stretch_before_the_qrs_with_the_template() -> None:
    config = ChainConfig()
    time = np.arange(config.window_samples)
    qrs = np.exp(-(((time - config.window_before_samples) / 4.0) ** 2))
    p_wave = 0.15 * np.exp(-(((time - config.window_before_samples + 50) / 10.0) ** 2))
    tracker = MorphologyTracker(config)
    for _ in range(5):
        tracker.measure(qrs + p_wave)
    typical = tracker.measure(qrs + p_wave)
    without_p = tracker.measure(qrs + 0.01 * np.sin(time / 3.0), premature=True)
    assert typical.p_wave_correlation == pytest.approx(1.0)
    assert typical.p_wave_amplitude_ratio == pytest.approx(1.0)
    assert without_p.p_wave_correlation < 0.5
    assert without_p.p_wave_amplitude_ratio < 0.5
