"""DisplayRing: placement by absolute index, gaps, late samples, bounded memory."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import ecg_stream.viewer.ring
import ecg_stream.viewer.tracker
from ecg_stream.errors import ConfigError
from ecg_stream.viewer.ring import DisplayRing


def test_latest_returns_the_newest_samples_in_order_across_wraps() -> None:
    ring, rng = DisplayRing(100), np.random.default_rng(5)
    signal = rng.normal(size=1000).astype(np.float32)
    edges = np.cumsum(rng.integers(1, 40, size=200))
    for part_start, part in zip(
        np.concatenate([[0], edges[edges < signal.size]]),
        np.split(signal, edges[edges < signal.size]),
        strict=True,
    ):
        ring.append(int(part_start), part)
        end = int(part_start) + part.size
        held = min(end, 100)
        np.testing.assert_array_equal(ring.latest(100), signal[end - held : end])
        np.testing.assert_array_equal(ring.latest(7), signal[max(0, end - 7) : end])
    assert ring.end_index == 1000
    assert ring.start_index == 900
    assert ring.gap_samples == ring.late_samples == 0


def test_chunk_sizes_do_not_change_what_is_held() -> None:
    signal = np.arange(5000, dtype=np.float32)
    whole, pieces = DisplayRing(360), DisplayRing(360)
    whole.append(0, signal)
    for start in range(0, signal.size, 36):
        pieces.append(start, signal[start : start + 36])
    np.testing.assert_array_equal(whole.latest(360), pieces.latest(360))
    assert whole.start_index == pieces.start_index == 5000 - 360


def test_stream_may_start_at_any_index() -> None:
    ring = DisplayRing(10)
    ring.append(3600, np.ones(4))
    assert (ring.start_index, ring.end_index, ring.size) == (3600, 3604, 4)
    assert ring.gap_samples == 0
    assert ring.latest(10).size == 4


def test_missing_message_reads_as_nan_gap() -> None:
    ring = DisplayRing(20)
    ring.append(0, np.ones(5))
    ring.append(8, np.full(4, 2.0))
    got = ring.latest(20)
    np.testing.assert_array_equal(got[:5], np.ones(5))
    assert np.isnan(got[5:8]).all()
    np.testing.assert_array_equal(got[8:], np.full(4, 2.0))
    assert ring.gap_samples == 3
    assert np.isnan(ring.value_at(6))


def test_gap_longer_than_capacity_leaves_only_new_samples() -> None:
    ring = DisplayRing(10)
    ring.append(0, np.ones(10))
    ring.append(1000, np.full(3, 4.0))
    got = ring.latest(10)
    assert np.isnan(got[:7]).all()
    np.testing.assert_array_equal(got[7:], np.full(3, 4.0))
    assert ring.gap_samples == 990


def test_late_and_repeated_samples_are_dropped_and_counted() -> None:
    ring = DisplayRing(50)
    ring.append(0, np.arange(10, dtype=np.float32))
    ring.append(5, np.full(10, 99.0))  # overlaps 5 held samples, brings 5 new ones
    ring.append(2, np.full(3, -1.0))  # entirely old
    np.testing.assert_array_equal(
        ring.latest(15), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 99, 99, 99, 99, 99]
    )
    assert ring.late_samples == 8
    assert ring.end_index == 15


def test_block_longer_than_capacity_keeps_its_tail() -> None:
    ring = DisplayRing(8)
    ring.append(0, np.arange(30, dtype=np.float32))
    np.testing.assert_array_equal(ring.latest(8), np.arange(22, 30))
    assert ring.start_index == 22


def test_value_at_outside_held_span_is_nan() -> None:
    ring = DisplayRing(10)
    ring.append(0, np.arange(25, dtype=np.float32))
    assert ring.value_at(20) == 20.0
    assert np.isnan(ring.value_at(14))
    assert np.isnan(ring.value_at(25))


def test_latest_is_a_read_only_view_and_memory_is_fixed() -> None:
    ring = DisplayRing(360)
    storage = ring._values
    for start in range(0, 360 * 600, 36):  # ten minutes at 360 Hz
        ring.append(start, np.zeros(36))
    assert ring._values is storage
    assert storage.nbytes == 2 * 360 * 4
    view = ring.latest(100)
    assert view.base is not None
    with pytest.raises(ValueError, match="read-only"):
        view[0] = 1.0


def test_reset_equals_fresh() -> None:
    ring, fresh = DisplayRing(16), DisplayRing(16)
    ring.append(3, np.ones(40))
    ring.append(100, np.ones(2))
    ring.reset()
    assert vars_of(ring) == vars_of(fresh)
    np.testing.assert_array_equal(ring._values, fresh._values)


def vars_of(ring: DisplayRing) -> tuple[int | None, int, int, int, int]:
    return (ring._first_index, ring.end_index, ring.gap_samples, ring.late_samples, ring.size)


@pytest.mark.parametrize(("start", "values"), [(-1, np.ones(3)), (0, np.ones((2, 2)))])
def test_bad_append_names_the_values(start: int, values: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="start_index"):
        DisplayRing(4).append(start, values)


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="capacity_samples=0"):
        DisplayRing(0)


def test_docstring_examples_run() -> None:
    for module in (ecg_stream.viewer.ring, ecg_stream.viewer.tracker):
        result = doctest.testmod(module)
        assert result.attempted > 0
        assert result.failed == 0
