"""Bounded running statistics of durations (compute latency, pacing error)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ecg_stream.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Percentiles:
    """A duration distribution's summary, in ms.

    Args:
        count: Number of values.
        mean_ms: Mean.
        p50_ms: Median (to the histogram's resolution).
        p95_ms: 95th percentile.
        p99_ms: 99th percentile.
        max_ms: Largest value (exact).
    """

    count: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    def __str__(self) -> str:
        if not self.count:
            return "n=0"
        return (
            f"mean {self.mean_ms:.2f} ms, p50 {self.p50_ms:.2f}, p95 {self.p95_ms:.2f}, "
            f"p99 {self.p99_ms:.2f}, max {self.max_ms:.2f} ms (n={self.count})"
        )


class DurationHistogram:
    """Count, mean, exact max and percentiles of durations, in constant memory.

    Values are counted in geometric bins (each ``1 + relative_resolution`` times the last) from
    ``floor_ms`` to ``ceiling_ms``; a percentile is the upper edge of the bin holding it, capped
    by the exact max, so it errs high by at most ``relative_resolution`` (or ``floor_ms``).

    Args:
        relative_resolution: Relative width of a bin.
        floor_ms: Upper edge of the first bin, in ms.
        ceiling_ms: Lower edge of the overflow bin, in ms (percentiles there report the max).

    Attributes:
        count: Number of values added.
        total_ms: Sum of the values.
        max_ms: Largest value (NaN before the first).

    Example:
        >>> hist = DurationHistogram()
        >>> for value in (1.0, 2.0, 3.0, 50.0):
        ...     hist.add(value)
        >>> summary = hist.summary()
        >>> summary.max_ms, round(summary.p50_ms, 2), summary.count
        (50.0, 2.0, 4)
    """

    def __init__(
        self,
        relative_resolution: float = 0.005,
        floor_ms: float = 0.001,
        ceiling_ms: float = 3_600_000.0,
    ) -> None:
        if not (0 < relative_resolution < 1 and 0 < floor_ms < ceiling_ms):
            msg = (
                f"relative_resolution={relative_resolution}, floor_ms={floor_ms}, "
                f"ceiling_ms={ceiling_ms}: need 0 < resolution < 1 and 0 < floor < ceiling"
            )
            raise ConfigError(msg)
        self.relative_resolution, self.floor_ms, self.ceiling_ms = (
            relative_resolution,
            floor_ms,
            ceiling_ms,
        )
        self._log_step = math.log1p(relative_resolution)
        self._bins = math.ceil(math.log(ceiling_ms / floor_ms) / self._log_step) + 1
        self.reset()

    def reset(self) -> None:
        """Forget all values."""
        self._counts = np.zeros(self._bins + 1, dtype=np.int64)  # last bin: overflow
        self.count = 0
        self.total_ms = 0.0
        self.max_ms = math.nan

    def _upper_edge(self, index: int) -> float:
        return self.floor_ms * math.exp(index * self._log_step)

    def add(self, value_ms: float) -> None:
        """Add one duration, in ms (negative values count as 0)."""
        value_ms = max(value_ms, 0.0)
        if value_ms <= self.floor_ms:
            index = 0
        else:
            index = min(
                math.ceil(math.log(value_ms / self.floor_ms) / self._log_step - 1e-9), self._bins
            )
        self._counts[index] += 1
        self.count += 1
        self.total_ms += value_ms
        self.max_ms = value_ms if not self.max_ms >= value_ms else self.max_ms

    def merge(self, other: DurationHistogram) -> None:
        """Add every value of ``other`` (same bins)."""
        if self._counts.shape != other._counts.shape or (
            other.relative_resolution,
            other.floor_ms,
        ) != (self.relative_resolution, self.floor_ms):
            msg = "can only merge histograms with the same bins"
            raise ConfigError(msg)
        self._counts += other._counts
        self.count += other.count
        self.total_ms += other.total_ms
        if other.count:
            self.max_ms = other.max_ms if not self.max_ms >= other.max_ms else self.max_ms

    def count_at_most(self, value_ms: float) -> int:
        """How many values lie at or below ``value_ms``, to the bins' resolution.

        Every value of the bin that holds ``value_ms`` counts.
        """
        if value_ms < 0:
            return 0
        if value_ms <= self.floor_ms:
            return int(self._counts[0])
        index = min(
            math.ceil(math.log(value_ms / self.floor_ms) / self._log_step - 1e-9), self._bins
        )
        return int(self._counts[: index + 1].sum())

    @classmethod
    def merged(cls, histograms: Iterable[DurationHistogram]) -> DurationHistogram:
        """One histogram holding every value of ``histograms`` (default bins)."""
        merged = cls()
        for histogram in histograms:
            merged.merge(histogram)
        return merged

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100), in ms (NaN when empty)."""
        if not self.count:
            return math.nan
        rank = max(1, math.ceil(q / 100.0 * self.count))
        index = int(np.searchsorted(np.cumsum(self._counts), rank))
        if index >= self._bins:
            return self.max_ms
        return min(self._upper_edge(index), self.max_ms)

    def summary(self) -> Percentiles:
        """Count, mean, p50, p95, p99 and max."""
        mean = self.total_ms / self.count if self.count else math.nan
        return Percentiles(
            count=self.count,
            mean_ms=mean,
            p50_ms=self.percentile(50),
            p95_ms=self.percentile(95),
            p99_ms=self.percentile(99),
            max_ms=self.max_ms,
        )
