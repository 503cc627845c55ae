from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from ecg_stream.detector.filter import CausalBandpass, sos_filter
from ecg_stream.errors import ConfigError
from ecg_stream.records import Record

FS_HZ = 360.0


def test_steady_offset_is_removed_without_transient() -> None:
    out = CausalBandpass(FS_HZ, (0.5, 40.0)).process(np.full(3600, -2.3))
    np.testing.assert_allclose(out, 0.0, atol=1e-9)


def test_passes_the_qrs_band_and_rejects_baseline_wander() -> None:
    t = np.arange(int(20 * FS_HZ)) / FS_HZ
    bandpass = CausalBandpass(FS_HZ, (0.5, 40.0))
    in_band = bandpass.process(np.sin(2 * np.pi * 10 * t))
    bandpass.reset()
    wander = bandpass.process(np.sin(2 * np.pi * 0.05 * t))
    assert np.abs(in_band[-3600:]).max() > 0.9
    assert np.abs(wander[-3600:]).max() < 0.05


def test_notch_removes_mains() -> None:
    t = np.arange(int(10 * FS_HZ)) / FS_HZ
    mains = np.sin(2 * np.pi * 60 * t)
    out = CausalBandpass(FS_HZ, (0.5, 100.0), notch_hz=60.0).process(mains)
    assert np.abs(out[-1800:]).max() < 0.05


def test_is_causal() -> None:
    impulse = np.zeros(1000)
    impulse[500] = 1.0
    out = CausalBandpass(FS_HZ, (0.5, 40.0)).process(impulse)
    np.testing.assert_array_equal(out[:500], 0.0)


def test_matches_scipy_sosfilt_on_a_record(record_100: Record) -> None:
    bandpass = CausalBandpass(FS_HZ, (0.5, 40.0))
    x = record_100.samples[:36000]
    expected = signal.sosfilt(bandpass.sos, x, zi=signal.sosfilt_zi(bandpass.sos) * x[0])[0]
    np.testing.assert_allclose(bandpass.process(x), expected, atol=1e-12)


@pytest.mark.parametrize("notch_hz", [None, 60.0])
def test_compiled_sections_equal_lfilter_bit_for_bit(
    record_100: Record, notch_hz: float | None
) -> None:
    sos = CausalBandpass(FS_HZ, (0.5, 40.0), notch_hz=notch_hz).sos
    x = record_100.samples[:36000]
    delays = signal.sosfilt_zi(sos) * x[0]
    lfilter_delays = delays.copy()
    for part in np.split(x, np.arange(36, x.size, 36)):
        want = part
        for section, state in zip(sos, lfilter_delays, strict=True):
            want, state[:] = signal.lfilter(section[:3], section[3:], want, zi=state)
        np.testing.assert_array_equal(sos_filter(sos, part, delays), want)
    np.testing.assert_array_equal(delays, lfilter_delays)


def test_compiled_sections_take_read_only_and_strided_chunks(record_100: Record) -> None:
    sos = CausalBandpass(FS_HZ, (0.5, 40.0)).sos
    strided = record_100.samples[:7200:2]
    read_only = strided.copy()
    read_only.flags.writeable = False
    want = sos_filter(sos, strided.copy(), np.zeros((sos.shape[0], 2)))
    for chunk in (strided, read_only):
        np.testing.assert_array_equal(sos_filter(sos, chunk, np.zeros((sos.shape[0], 2))), want)


@pytest.mark.parametrize("band_hz", [(0.0, 40.0), (40.0, 0.5), (0.5, 180.0), (-1.0, 10.0)], ids=str)
def test_bad_band_names_the_value(band_hz: tuple[float, float]) -> None:
    with pytest.raises(ConfigError, match=r"band_hz=.*fs_hz/2"):
        CausalBandpass(FS_HZ, band_hz)
