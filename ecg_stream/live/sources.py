"""Records as streams: which record goes out as which stream, and its chunks paced in time."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

from ecg_stream.errors import ConfigError
from ecg_stream.records import Record
from ecg_stream.types import Chunk, FloatArray

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


SPEED_RANGE = (0.01, 10_000.0)
"""Slowest and fastest finite ``--speed``; faster than that, ``max`` is what is meant."""


def parse_speed(text: str) -> float:
    """Parse ``--speed``: a factor of real time in :data:`SPEED_RANGE`, or ``max`` (``math.inf``).

    Example:
        >>> parse_speed("2"), parse_speed("max")
        (2.0, inf)

    Raises:
        ConfigError: ``text`` is neither ``max`` nor a number within the range.
    """
    if text.strip().lower() == "max":
        return math.inf
    try:
        speed = float(text)
    except ValueError:
        speed = math.nan
    low, high = SPEED_RANGE
    if not low <= speed <= high:  # also refuses NaN and infinities
        msg = (
            f"--speed {text!r} is not valid; use a positive factor from {low:g} to {high:g} "
            "(1 = real time, 10) or 'max' (as fast as possible)"
        )
        raise ConfigError(msg)
    return speed


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One stream to replay.

    Args:
        stream_id: Topic level of the stream (default: the record name).
        record: The record (its ``samples`` may be a slice, e.g. in tests).
        start_delay_s: Wall time the stream waits before its first chunk, in s (finite speeds).
    """

    stream_id: str
    record: Record
    start_delay_s: float = 0.0


class ReplaySource:
    """Yield a lead's samples in fixed-size chunks at ``speed`` times real time.

    Chunk ``k`` is released at ``start + k * chunk duration / speed`` on the injected
    monotonic clock, so pacing never drifts however long the record; with ``speed`` infinite
    chunks come as fast as the consumer takes them.

    Args:
        samples: The lead, in mV, at ``fs_hz``.
        fs_hz: Sampling rate of ``samples``, in Hz.
        speed: Factor of real time (1 = real time), or ``math.inf`` for as fast as possible.
        chunk_s: Duration of one chunk, in s of signal time.
        clock: Monotonic clock, in s.
        sleep: Coroutine that waits a number of seconds.

    Attributes:
        chunk_samples: Samples per chunk (the last chunk may be shorter).
        start_s: Clock reading when the first chunk was released (NaN before).
    """

    def __init__(
        self,
        samples: FloatArray,
        fs_hz: float,
        speed: float = 1.0,
        chunk_s: float = 0.1,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not speed > 0:
            msg = f"speed={speed} must be > 0 (1 = real time, math.inf = as fast as possible)"
            raise ConfigError(msg)
        chunk_samples = round(chunk_s * fs_hz)
        if chunk_samples < 1:
            msg = f"chunk_s={chunk_s} is shorter than one sample at {fs_hz:g} Hz"
            raise ConfigError(msg)
        self.samples, self.fs_hz, self.speed, self.chunk_s = samples, fs_hz, speed, chunk_s
        self.clock, self.sleep = clock, sleep
        self.chunk_samples = chunk_samples
        self.start_s = math.nan

    def due_s(self, start_index: int) -> float:
        """Clock time at which the chunk starting at ``start_index`` is complete."""
        if math.isinf(self.speed):
            return self.start_s
        end_index = min(start_index + self.chunk_samples, self.samples.size)
        return self.start_s + end_index / self.fs_hz / self.speed

    def chunks(self) -> Iterator[Chunk]:
        """All chunks at once, unpaced, with no arrival time (for offline analysis)."""
        for start in range(0, self.samples.size, self.chunk_samples):
            yield Chunk(start, self.samples[start : start + self.chunk_samples])

    async def __aiter__(self) -> AsyncIterator[Chunk]:
        self.start_s = self.clock()
        for chunk in self.chunks():
            due = self.due_s(chunk.start_index)
            wait = due - self.clock()
            if wait > 0:
                await self.sleep(wait)
            else:
                await asyncio.sleep(0)  # let other streams and the publisher run
            yield Chunk(chunk.start_index, chunk.samples, arrival_s=self.clock())
