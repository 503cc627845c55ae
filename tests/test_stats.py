"""DurationHistogram: bounded memory, percentiles within its stated resolution."""

from __future__ import annotations

import doctest
import importlib
import math

import numpy as np
import pytest

from ecg_stream.errors import ConfigError
from ecg_stream.stats import DurationHistogram


def test_percentiles_err_high_by_at_most_the_resolution(rng: np.random.Generator) -> None:
    values = rng.lognormal(mean=0.5, sigma=1.0, size=5000)
    hist = DurationHistogram(relative_resolution=0.005)
    for value in values:
        hist.add(float(value))
    for q in (50, 95, 99):
        exact = float(np.percentile(values, q, method="inverted_cdf"))
        assert exact <= hist.percentile(q) <= exact * 1.005 + 1e-12
    summary = hist.summary()
    assert summary.max_ms == values.max()
    assert summary.mean_ms == pytest.approx(values.mean())
    assert summary.count == values.size


def test_overflow_reports_the_exact_max() -> None:
    hist = DurationHistogram(ceiling_ms=10.0)
    for value in (1.0, 500.0, 700.0):
        hist.add(value)
    assert hist.percentile(99) == 700.0
    assert hist.percentile(10) == pytest.approx(1.0, rel=0.005)


def test_merge_equals_adding_everything() -> None:
    first, second, both = DurationHistogram(), DurationHistogram(), DurationHistogram()
    for index, value in enumerate([0.5, 2.0, 9.0, 0.0001, 40.0]):
        (first if index % 2 else second).add(value)
        both.add(value)
    first.merge(second)
    assert first.summary() == both.summary()


def test_empty_and_reset() -> None:
    hist = DurationHistogram()
    assert math.isnan(hist.percentile(50))
    assert str(hist.summary()) == "n=0"
    hist.add(3.0)
    hist.reset()
    assert hist.count == 0
    assert math.isnan(hist.max_ms)


def test_bad_bins_are_refused() -> None:
    with pytest.raises(ConfigError, match="relative_resolution"):
        DurationHistogram(relative_resolution=0.0)
    with pytest.raises(ConfigError, match="same bins"):
        DurationHistogram().merge(DurationHistogram(relative_resolution=0.01))


@pytest.mark.parametrize("module", ["ecg_stream.stats", "ecg_stream.config"])
def test_doctests_pass(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0
    assert result.failed == 0
