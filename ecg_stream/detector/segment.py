"""Beat windows cut from a ring buffer of filtered signal, with causal RR features."""

from __future__ import annotations

from collections import deque

import numpy as np

from ecg_stream.config import ChainConfig
from ecg_stream.errors import ConfigError
from ecg_stream.types import BeatWindow, FloatArray, RPeak, RRFeatures

NORMALISATION = "zscore"
"""Name of the per-window normalisation, as written into the model contract."""
RR_FEATURES = ("rr_s", "local_mean_rr_s", "rr_ratio")
"""Names of the model's RR inputs, in order, as written into the model contract."""
PRIOR_RR_MS = 800.0
"""RR assumed for a stream's first beat, which has no predecessor: a normal 75 bpm."""


def normalise_window(samples: FloatArray) -> FloatArray:
    """Z-score a window (zero mean, unit variance): the one normalisation, train and serve.

    Example:
        >>> normalise_window(np.array([1.0, 2.0, 3.0])).round(3).tolist()
        [-1.225, 0.0, 1.225]
    """
    centred = samples - samples.mean()
    spread = float(centred.std())
    return np.asarray(centred / spread if spread > 1e-9 else centred, dtype=np.float64)


def rr_feature_vector(rr: RRFeatures) -> FloatArray:
    """The model's RR input, in ``RR_FEATURES`` order (first beat: ``PRIOR_RR_MS``)."""
    rr_ms = PRIOR_RR_MS if np.isnan(rr.rr_ms) else rr.rr_ms
    mean_ms = PRIOR_RR_MS if np.isnan(rr.local_mean_rr_ms) else rr.local_mean_rr_ms
    return np.array([rr_ms / 1000.0, mean_ms / 1000.0, rr_ms / mean_ms])


class BeatSegmenter:
    """Cut a fixed window of filtered signal around each R peak as soon as it is complete.

    The last ``history_s`` of filtered samples are kept; R peaks arrive from the
    detector, possibly late (search-back). A window is emitted once its last sample has
    arrived. Windows that reach before the stream start are padded with the first sample;
    at ``flush()`` windows that reach past the end are padded with the last.

    Args:
        config: Window geometry and RR settings.
        history_s: Signal kept, in s: how late a peak may arrive and still be cut.

    Example:
        >>> segmenter = BeatSegmenter(ChainConfig())
        >>> windows = segmenter.process(np.zeros(1000), [RPeak(index=400, decided_index=500)])
        >>> windows[0].samples.shape, windows[0].ready_index
        ((250,), 560)
    """

    def __init__(self, config: ChainConfig, history_s: float = 8.0) -> None:
        capacity = round(history_s * config.fs_hz)
        if capacity < config.window_samples:
            msg = f"history_s={history_s} holds fewer samples than one window; use >= 1 s"
            raise ConfigError(msg)
        self.config, self.history_s = config, history_s
        self._capacity = capacity
        self.reset()

    def reset(self) -> None:
        """Forget all past input."""
        self._recent = np.empty(0)  # the newest samples, at most `_capacity` between chunks
        self._end_index = 0  # one past the newest sample
        self._first_sample: float | None = None
        self._waiting: deque[tuple[RPeak, RRFeatures]] = (
            deque()
        )  # peaks whose window is not complete
        self._previous_peak_index: int | None = None
        self._recent_rr_ms: deque[float] = deque(maxlen=self.config.rr_mean_beats)

    def process(self, filtered: FloatArray, peaks: list[RPeak]) -> list[BeatWindow]:
        """Take the next filtered samples and newly detected peaks; return complete windows."""
        if filtered.size and self._first_sample is None:
            self._first_sample = float(filtered[0])
        self._recent = np.concatenate([self._recent, filtered])
        self._end_index += filtered.size
        for peak in peaks:
            self._waiting.append((peak, self._rr_features(peak)))
        windows = self._emit(final=False)
        self._recent = self._recent[-self._capacity :]
        return windows

    def flush(self, peaks: list[RPeak]) -> list[BeatWindow]:
        """The stream has ended: take the last peaks and emit every window, edge-padded."""
        for peak in peaks:
            self._waiting.append((peak, self._rr_features(peak)))
        windows = self._emit(final=True)
        self.reset()
        return windows

    def _rr_features(self, peak: RPeak) -> RRFeatures:
        if self._previous_peak_index is None:
            rr_ms = float("nan")
        else:
            rr_ms = (peak.index - self._previous_peak_index) * 1000.0 / self.config.fs_hz
            self._recent_rr_ms.append(rr_ms)
        self._previous_peak_index = peak.index
        mean_ms = float(np.mean(self._recent_rr_ms)) if self._recent_rr_ms else float("nan")
        return RRFeatures(rr_ms=rr_ms, local_mean_rr_ms=mean_ms)

    def _emit(self, *, final: bool) -> list[BeatWindow]:
        windows: list[BeatWindow] = []
        while self._waiting:
            peak, rr = self._waiting[0]
            ready_index = peak.index + self.config.window_after_samples
            if ready_index > self._end_index and not final:
                break
            self._waiting.popleft()
            windows.append(
                BeatWindow(peak=peak, samples=self._cut(peak.index), rr=rr, ready_index=ready_index)
            )
        return windows

    def _cut(self, peak_index: int) -> FloatArray:
        start = peak_index - self.config.window_before_samples
        stop = peak_index + self.config.window_after_samples
        recent_start = self._end_index - self._recent.size
        if max(start, 0) < recent_start:
            msg = (
                f"R peak at sample {peak_index} arrived after its window left the "
                f"{self.history_s} s history; raise history_s"
            )
            raise ConfigError(msg)
        window = self._recent[max(start, 0) - recent_start : max(stop - recent_start, 0)]
        before = max(-start, 0)
        after = stop - start - before - window.size
        first = self._first_sample if self._first_sample is not None else 0.0
        last = float(window[-1]) if window.size else first
        return np.concatenate([np.full(before, first), window, np.full(after, last)])
