"""The streaming chain: filter, R-peak detector and segmenter, one chunk at a time."""

from __future__ import annotations

from dataclasses import dataclass

from ecg_stream.config import ChainConfig
from ecg_stream.detector.filter import CausalBandpass
from ecg_stream.detector.rpeak import RPeakDetector
from ecg_stream.detector.segment import BeatSegmenter
from ecg_stream.types import BeatWindow, Chunk


@dataclass(frozen=True, slots=True)
class Extracted:
    """What one chunk yields: its filtered samples and the beat windows it completed.

    Args:
        filtered: The chunk after the band-pass, same indices and arrival time.
        windows: Windows whose last sample arrived with this chunk, in R-peak order.
    """

    filtered: Chunk
    windows: tuple[BeatWindow, ...]


class BeatExtractor:
    """Filter -> R-peak detector -> segmenter: raw chunks in, beat windows out.

    Args:
        config: The chain's configuration.

    Attributes:
        bandpass: The causal filter stage.
        detector: The R-peak detector stage.
        segmenter: The windowing stage.

    Example:
        >>> import numpy as np
        >>> extractor = BeatExtractor(ChainConfig())
        >>> out = extractor.process(Chunk(start_index=0, samples=np.zeros(36)))
        >>> out.filtered.samples.shape, out.windows
        ((36,), ())
    """

    def __init__(self, config: ChainConfig) -> None:
        self.config = config
        self.bandpass = CausalBandpass.from_config(config)
        self.detector = RPeakDetector(fs_hz=config.fs_hz)
        self.segmenter = BeatSegmenter(config)
        self._next_index = 0

    def reset(self) -> None:
        """Forget all past input."""
        self.bandpass.reset()
        self.detector.reset()
        self.segmenter.reset()
        self._next_index = 0

    def process(self, chunk: Chunk) -> Extracted:
        """Run one chunk through the chain; chunks must be consecutive."""
        if chunk.start_index != self._next_index:
            msg = (
                f"chunk starts at sample {chunk.start_index}, expected {self._next_index}: "
                "chunks must be consecutive (call reset() for a new stream)"
            )
            raise ValueError(msg)
        self._next_index = chunk.end_index
        filtered = self.bandpass.process(chunk.samples)
        windows = self.segmenter.process(filtered, self.detector.process(filtered))
        return Extracted(
            filtered=Chunk(chunk.start_index, filtered, chunk.arrival_s), windows=tuple(windows)
        )

    def flush(self) -> tuple[BeatWindow, ...]:
        """The stream has ended: return the beats still held back, then start afresh."""
        windows = tuple(self.segmenter.flush(self.detector.flush()))
        self.reset()
        return windows
