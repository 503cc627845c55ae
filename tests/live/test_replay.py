from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from ecg_stream.errors import ConfigError
from ecg_stream.live.sources import ReplaySource, parse_speed


class FakeClock:
    """A clock that advances only when the source sleeps, plus a fixed cost per chunk."""

    def __init__(self, cost_s: float) -> None:
        self.now_s = 1000.0
        self.cost_s = cost_s
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now_s

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_s += seconds


async def collect(source: ReplaySource, clock: FakeClock) -> list[float]:
    arrivals = []
    async for chunk in source:
        arrivals.append(chunk.arrival_s)
        clock.now_s += clock.cost_s  # the consumer's work takes time
    return arrivals


def test_pacing_is_scheduled_from_start_and_does_not_drift() -> None:
    clock = FakeClock(cost_s=0.003)
    samples = np.zeros(360 * 60 * 30)  # 30 minutes
    source = ReplaySource(samples, 360.0, speed=1.0, chunk_s=0.1, clock=clock, sleep=clock.sleep)
    arrivals = asyncio.run(collect(source, clock))
    due = 1000.0 + 0.1 * np.arange(1, len(arrivals) + 1)
    assert len(arrivals) == 18_000
    np.testing.assert_allclose(arrivals, due, atol=1e-6)


def test_speed_scales_time_and_max_never_sleeps() -> None:
    clock = FakeClock(cost_s=0.0)
    source = ReplaySource(np.zeros(3600), 360.0, speed=10.0, clock=clock, sleep=clock.sleep)
    arrivals = asyncio.run(collect(source, clock))
    assert arrivals[-1] - 1000.0 == pytest.approx(1.0)
    clock = FakeClock(cost_s=0.0)
    fast = ReplaySource(np.zeros(3600), 360.0, speed=math.inf, clock=clock, sleep=clock.sleep)
    asyncio.run(collect(fast, clock))
    assert clock.sleeps == []


def test_chunks_cover_the_record_with_indices() -> None:
    source = ReplaySource(np.arange(100.0), 360.0, chunk_s=0.1)
    chunks = list(source.chunks())
    assert [c.start_index for c in chunks] == [0, 36, 72]
    np.testing.assert_array_equal(np.concatenate([c.samples for c in chunks]), np.arange(100.0))


@pytest.mark.parametrize("text", ["0", "-1", "fast", "nan", "inf", "", "0.009", "10001", "1e400"])
def test_bad_speed_is_refused_with_the_fix(text: str) -> None:
    with pytest.raises(ConfigError, match="positive factor"):
        parse_speed(text)


def test_speed_parsing() -> None:
    assert parse_speed("1") == 1.0
    assert parse_speed("MAX") == math.inf


def test_speed_bounds_are_accepted() -> None:
    assert parse_speed("0.01") == 0.01
    assert parse_speed("10000") == 10_000.0
