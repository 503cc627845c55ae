"""A session's front end: its source's input through the chain, beats placed in the source's clock.

A stream session (``live/session.py``) does not care where its samples come from. Its front end
turns each input item into :class:`Ingested`: the filtered samples and the beat windows the item
completed, each window placed in the source's own clock. Two front ends exist:

- :class:`RecordFront`: consecutive chunks of a record at 360 Hz (replay, analysis,
  evaluation); a beat's sample is in the record's own clock (records of another rate are
  resampled on load);
- :class:`~ecg_stream.live.ingest.IngestSession`: a device's ``raw`` chunks (sequencing, gaps,
  resampling); a beat's sample is in the device's clock.

Both are synchronous and read no clock: arrival times are passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, TypeVar

from ecg_stream.config import CHAIN_FS_HZ, ChainConfig
from ecg_stream.detector.chain import BeatExtractor
from ecg_stream.records import Record
from ecg_stream.types import BeatWindow, Chunk, SignalState
from ecg_stream.wire import IngestStatus

In_contra = TypeVar("In_contra", contravariant=True)


class ChunkFate(Enum):
    """What a front end did with an input item."""

    PROCESSED = "processed"
    AFTER_GAP = "after_gap"  # processed, by a fresh chain (gap or new rate)
    DUPLICATE = "duplicate"  # dropped: seen already
    INTERLEAVED = "interleaved"  # dropped: the stream is split between workers
    REFUSED_SOURCE = "refused_source"  # dropped: a second device on the same stream id


@dataclass(frozen=True, slots=True)
class PlacedWindow:
    """A beat window with its R peak in the source's clock and in the stream's chain clock.

    Args:
        window: The window, as the extractor cut it (indices of its own chain run).
        sample_index: R-peak index in the source's clock.
        chain_index: R-peak index at 360 Hz, from the source's index 0.
        fs_hz: The source's sampling rate when the beat was recorded, in Hz.
    """

    window: BeatWindow
    sample_index: int
    chain_index: int
    fs_hz: float

    @property
    def time_s(self) -> float:
        """R-peak time in the source's clock, in s."""
        return self.sample_index / self.fs_hz


@dataclass(frozen=True, slots=True)
class Ingested:
    """What one input item (or the end of the input) yields.

    Args:
        fate: What was done with the item.
        windows: Beat windows completed, in R-peak order (a gap flushes the old chain first).
        filtered: Filtered samples at 360 Hz in the stream's chain clock, one chunk per chain
            run touched (none, one, or the old run's tail and the new run's start).
    """

    fate: ChunkFate
    windows: tuple[PlacedWindow, ...] = ()
    filtered: tuple[Chunk, ...] = ()


class Front(Protocol[In_contra]):
    """A stream's input through the chain (``RecordFront``, ``IngestSession``)."""

    @property
    def config(self) -> ChainConfig:
        """The chain's configuration."""

    @property
    def record(self) -> str:
        """The name beats and status give as their record."""

    @property
    def fs_hz(self) -> float:
        """The source's sampling rate, in Hz."""

    def process(self, item: In_contra, arrival_s: float, arrival_wall_s: float) -> Ingested:
        """Run one input item through the chain (``arrival_s``: monotonic, ``_wall_s``: Unix)."""

    def finish(self, arrival_s: float) -> Ingested:
        """The input has ended: flush what the chain holds."""

    def wall_time(self, sample_index: int) -> float:
        """Unix time of a sample of the source's clock (NaN: not known)."""

    def source_index(self, chain_index: int) -> int:
        """A sample of the stream's chain clock (360 Hz) in the source's clock."""

    def signal(self) -> SignalState | None:
        """The input's state at its newest sample (None: not reported)."""

    def ingest(self) -> IngestStatus | None:
        """Ingest counters (None: a source that needs none)."""


class RecordFront:
    """A record's consecutive chunks at 360 Hz through one extractor; beats in the record's clock.

    Args:
        record: The record (its ``samples`` may be a slice).
        config: The chain's configuration.
        speed: Factor of real time the chunks arrive at (``math.inf``: as fast as possible);
            places beats in wall time from the first chunk's arrival.

    Attributes:
        extractor: The chain.
        start_wall_s: Unix time of the record's first sample (NaN before the first chunk),
            from the first chunk's arrival: its last sample was recorded just then.
    """

    def __init__(self, record: Record, config: ChainConfig, speed: float) -> None:
        self.record_data, self.config, self.speed = record, config, speed
        self.reset()

    def reset(self) -> None:
        """Forget all input."""
        self.extractor = BeatExtractor(self.config)
        self.start_wall_s = math.nan

    @property
    def record(self) -> str:
        """The record's name."""
        return self.record_data.name

    def process(self, item: Chunk, arrival_s: float, arrival_wall_s: float) -> Ingested:
        """Run the next chunk through the chain."""
        if math.isnan(self.start_wall_s):
            self.start_wall_s = arrival_wall_s - self._replayed_s(item.end_index / CHAIN_FS_HZ)
        out = self.extractor.process(item)
        return Ingested(ChunkFate.PROCESSED, self._placed(out.windows), (out.filtered,))

    def finish(self, arrival_s: float) -> Ingested:
        """The record has ended: the beats the chain held back."""
        return Ingested(ChunkFate.PROCESSED, self._placed(self.extractor.flush().windows))

    def wall_time(self, sample_index: int) -> float:
        """Unix time of a record sample, at the replay's speed (all at once at ``math.inf``)."""
        return self.start_wall_s + self._replayed_s(sample_index / self.record_data.fs_hz)

    def _replayed_s(self, signal_s: float) -> float:
        """Wall time the replay takes for ``signal_s`` of signal, in s."""
        return 0.0 if math.isinf(self.speed) else signal_s / self.speed

    @property
    def fs_hz(self) -> float:
        """The record's own sampling rate, in Hz."""
        return self.record_data.fs_hz

    def source_index(self, chain_index: int) -> int:
        """A chain sample in the record's own clock."""
        return self.record_data.to_record_index(chain_index)

    def signal(self) -> SignalState:
        """The input's state at the newest sample (ok, noisy, lead-off)."""
        return self.extractor.state

    def ingest(self) -> None:
        """A record has no ingest counters."""

    def _placed(self, windows: tuple[BeatWindow, ...]) -> tuple[PlacedWindow, ...]:
        record = self.record_data
        return tuple(
            PlacedWindow(w, record.to_record_index(w.peak.index), w.peak.index, record.fs_hz)
            for w in windows
        )
