"""The streaming chain: quality scan, filter, R-peak detector and segmenter, chunk by chunk."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ecg_stream.config import ChainConfig
from ecg_stream.detector.filter import CausalBandpass
from ecg_stream.detector.quality import SignalQuality
from ecg_stream.detector.rpeak import RPeakDetector
from ecg_stream.detector.segment import BeatSegmenter, Detected
from ecg_stream.detector.stage import ended_error
from ecg_stream.types import BeatWindow, Chunk, FloatArray, RPeak, SignalState

WARM_UP_S = 2.0
"""Signal :func:`warm_up` runs through the chain, in s."""

RESTART_REFRACTORY_S = 0.2
"""After a restart, an R peak this close to the last one emitted is the same QRS seen again."""


@dataclass(frozen=True, slots=True)
class Extracted:
    """What one chunk yields: its filtered samples and the beat windows it completed.

    Args:
        filtered: The chunk after the band-pass, same indices and arrival time (at
            ``flush()``, an empty chunk at the stream's end).
        windows: Windows whose last sample arrived with this chunk, in R-peak order.
    """

    filtered: Chunk
    windows: tuple[BeatWindow, ...]


class BeatExtractor:
    """Quality scan -> filter -> R-peak detector -> segmenter: raw chunks in, beat windows out.

    The filter, detector and segmenter run over one *segment* of usable input at a time. NaN
    samples and a lead-off (a flat line) end the segment: the beats it holds are flushed, the
    stopped samples come out of the filter as zeros, and a fresh filter, detector and segmenter
    start at the first usable sample after them, so no NaN reaches the filter state and no RR
    interval spans the fault. Every window carries its signal quality (``detector/quality.py``).
    On input without such faults there is one segment and the windows are those of the bare
    filter, detector and segmenter. A ``Stage`` of chunks in, ``Extracted`` out.

    Args:
        config: The chain's configuration.

    Attributes:
        bandpass: The causal filter stage (of the current segment).
        detector: The R-peak detector stage (of the current segment).
        segmenter: The windowing stage (of the current segment).
        quality: The signal-quality stage (over the whole stream).

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
        self.quality = SignalQuality(config)
        self._refractory = round(RESTART_REFRACTORY_S * config.fs_hz)
        self.reset()

    def reset(self) -> None:
        """Forget all past input."""
        self.bandpass.reset()
        self.detector.reset()
        self.segmenter.reset()
        self.quality.reset()
        self._next_index = 0
        self._segment_start: int | None = 0  # None while stopped (NaN, lead-off)
        self._last_peak_index: int | None = None  # newest R peak found
        self._fence_index: int | None = None  # a restarted segment's peaks must come after it
        self._ended = False

    @property
    def state(self) -> SignalState:
        """The state of the input at the newest sample (for the status topic)."""
        return self.quality.state

    def process(self, chunk: Chunk) -> Extracted:
        """Run one chunk through the chain; chunks must be consecutive."""
        if self._ended:
            raise ended_error(self)
        if chunk.start_index != self._next_index:
            msg = (
                f"chunk starts at sample {chunk.start_index}, expected {self._next_index}: "
                "chunks must be consecutive (call reset() for a new stream)"
            )
            raise ValueError(msg)
        self._next_index = chunk.end_index
        stopped = self.quality.scan(chunk)
        if not stopped.any() and self._segment_start == 0:  # the common case: one segment
            filtered = self.bandpass.process(chunk.samples)
            windows = self._noted(self._segmented(filtered))
        else:
            filtered, windows = self._process_segments(chunk, stopped)
        out = Chunk(chunk.start_index, filtered, chunk.arrival_s)
        return Extracted(filtered=out, windows=self.quality.assess(out, tuple(windows)))

    def flush(self) -> Extracted:
        """The stream has ended: the beats still held back, after an empty filtered chunk."""
        self._ended = True
        end = Chunk(self._next_index, np.empty(0))
        windows = self.quality.assess(end, tuple(self._end_segment()), final=True)
        return Extracted(filtered=end, windows=windows)

    def _process_segments(
        self, chunk: Chunk, stopped: npt.NDArray[np.bool_]
    ) -> tuple[FloatArray, list[BeatWindow]]:
        """Feed the usable parts of ``chunk`` to their segments; zeros where stopped."""
        filtered = np.zeros(chunk.samples.size)
        windows: list[BeatWindow] = []
        edges = np.flatnonzero(np.diff(stopped.astype(np.int8))) + 1
        for first, stop in zip(
            np.concatenate([[0], edges]), np.concatenate([edges, [stopped.size]]), strict=True
        ):
            index = chunk.start_index + int(first)
            if stopped[first]:
                windows += self._end_segment()
                continue
            if self._segment_start is None:  # usable again: a fresh segment from here
                self.bandpass.reset()
                self.detector.reset()
                self.segmenter.reset()
                self._segment_start = index
                self.quality.restart(index)
                if self._last_peak_index is not None:
                    self._fence_index = self._last_peak_index + self._refractory
            part = self.bandpass.process(chunk.samples[first:stop])
            filtered[first:stop] = part
            windows += self._shifted(self._segmented(part))
        return filtered, windows

    def _segmented(self, filtered: FloatArray) -> list[BeatWindow]:
        """The current segment's windows completed by its next filtered samples."""
        return self.segmenter.process(Detected(filtered, tuple(self.detector.process(filtered))))

    def _end_segment(self) -> list[BeatWindow]:
        """Flush the current segment's filter, detector and segmenter (nothing if stopped).

        They stay ended until a usable sample starts a fresh segment.
        """
        if self._segment_start is None:
            return []
        self.bandpass.flush()
        last = self.segmenter.process(Detected(np.empty(0), tuple(self.detector.flush())))
        windows = self._shifted(last + self.segmenter.flush())
        self._segment_start = None
        return windows

    def _shifted(self, windows: list[BeatWindow]) -> list[BeatWindow]:
        """Windows of the current segment, indices moved to the stream's clock."""
        offset = self._segment_start or 0
        if offset:
            windows = [
                BeatWindow(
                    peak=RPeak(w.peak.index + offset, w.peak.decided_index + offset),
                    samples=w.samples,
                    rr=w.rr,
                    morphology=w.morphology,
                    ready_index=w.ready_index + offset,
                )
                for w in windows
            ]
        if self._fence_index is not None:  # the same QRS, cut by a fault and found again
            windows = [w for w in windows if w.peak.index > self._fence_index]
        return self._noted(windows)

    def _noted(self, windows: list[BeatWindow]) -> list[BeatWindow]:
        if windows:
            self._last_peak_index = windows[-1].peak.index
        return windows


def warm_up(config: ChainConfig) -> None:
    """Load the chain's compiled kernels now, before any stream's first chunk waits for them.

    numba loads a kernel's machine code (from its cache, or compiles it) at its first call: a
    process that serves streams pays it at start instead of in the first beat's latency, and
    its memory before the streams start holds the compiler's.
    """
    noise = np.random.default_rng(0).normal(0.0, 0.1, round(WARM_UP_S * config.fs_hz))
    BeatExtractor(config).process(Chunk(start_index=0, samples=noise))
