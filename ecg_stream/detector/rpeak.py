"""Incremental, causal R-peak detector in the Pan-Tompkins / Hamilton-Tompkins family."""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import signal

from ecg_stream.detector.compiled import compiled
from ecg_stream.detector.filter import sos_filter
from ecg_stream.detector.stage import ended_error
from ecg_stream.errors import ConfigError
from ecg_stream.types import FloatArray, RPeak

QRS_BAND_HZ = (5.0, 15.0)
"""Pass band that keeps QRS energy and rejects P and T waves, baseline and muscle noise."""
DERIVATIVE_S = 0.010
INTEGRATION_S = 0.080
"""Moving-window integration: about one QRS width."""
THRESHOLD_FRACTION = 0.3125
"""Hamilton & Tompkins: threshold = noise + 0.3125 (QRS - noise), on medians of 8 peaks."""
LEVEL_PEAKS = 8
LEARNING_S = 3.0
SEARCH_BACK_RR_FACTOR = 1.5
SEARCH_BACK_MIN_GAP_S = 0.36
"""Noise peaks this soon after a QRS may be T waves; they are not searched back."""
T_WAVE_WINDOW_S = 0.36
T_WAVE_SLOPE_FRACTION = 0.5
MIN_SLOPE_FRACTION = 0.2
"""A QRS is at least this steep relative to the median of the last eight."""
SLOPE_WINDOW_S = 0.22
"""Derivative history examined for baseline-shift and T-wave checks (Hamilton's BLSCheck)."""
LOST_S = 8.0
"""With no QRS for this long, the QRS level is re-learned from recent peaks."""
R_SEARCH_BEFORE_S = 0.20
"""R is the largest |filtered| sample in the 200 ms up to the integrated signal's peak."""
INITIAL_RR_S = 1.0


class RPeakDetector:
    """Find R peaks in a filtered ECG stream, one chunk at a time, with bounded delay.

    The QRS-enhanced signal (5-15 Hz band-pass, 10 ms derivative, absolute value, 80 ms
    moving integration) is searched for local maxima that dominate ``hold_s`` on both sides.
    Each is a QRS if it exceeds an adaptive threshold set from the medians of the last eight
    QRS and noise peaks, shows a steep up-and-down slope pair (not a baseline shift), is at
    least 20 % as steep as recent QRS complexes and, within 360 ms of the last QRS, at least
    half as steep as it (not a T wave). The levels are learned from the first 3 s: peaks
    above half the largest set the QRS level, the others the noise level. When no QRS comes
    for 1.5 median RR intervals, the largest noise peak above half the threshold is taken
    (search-back). The reported R index is the largest deflection of the filtered signal
    just before the integrated peak.

    Decision delay: a regular detection is reported ``hold_s`` after the integrated peak,
    which itself lies at most ``R_SEARCH_BEFORE_S`` after the R peak, so at most
    ``decision_delay_samples`` after it. Search-back detections come later (at most 1.5 RR
    after the previous beat); the first beats wait for the ``LEARNING_S`` learning period.
    A ``Stage`` of filtered sample arrays in, lists of R peaks out.

    Args:
        fs_hz: Sampling rate of the filtered input, in Hz.
        hold_s: A peak must be the largest within this time on both sides, in s.

    Attributes:
        decision_delay_samples: Bound on (decision index - R index) for regular detections.

    References:
        Pan J, Tompkins WJ. A real-time QRS detection algorithm. IEEE TBME 32(3), 1985.
        Hamilton PS, Tompkins WJ. Quantitative investigation of QRS detection rules using
        the MIT/BIH arrhythmia database. IEEE TBME 33(12), 1986.

    Example:
        >>> fs_hz = 360.0
        >>> t = np.arange(int(10 * fs_hz)) / fs_hz
        >>> ecg = np.exp(-(((t % 0.8) - 0.4) ** 2) / (2 * 0.01**2))  # a spike every 0.8 s
        >>> detector = RPeakDetector(fs_hz=fs_hz)
        >>> peaks = detector.process(ecg) + detector.flush()
        >>> [round(peak.index / fs_hz, 2) for peak in peaks][:3]
        [0.4, 1.2, 2.0]
    """

    def __init__(self, fs_hz: float, hold_s: float = 0.2) -> None:
        if fs_hz < 100.0:
            msg = f"fs_hz={fs_hz} is too low for QRS detection; resample to >= 100 Hz (360 Hz)"
            raise ConfigError(msg)
        if not 0.05 <= hold_s <= 0.3:
            msg = f"hold_s={hold_s} must lie in [0.05, 0.3] s (QRS complexes are >= 200 ms apart)"
            raise ConfigError(msg)
        self.fs_hz, self.hold_s = fs_hz, hold_s
        self._qrs_sos = signal.butter(1, QRS_BAND_HZ, btype="bandpass", output="sos", fs=fs_hz)
        self._lag = max(1, self._samples(DERIVATIVE_S))
        integration = self._samples(INTEGRATION_S)
        self._integration = np.full(integration, 1.0 / integration)
        self._hold = self._samples(hold_s)
        self._r_before = self._samples(R_SEARCH_BEFORE_S)
        self._slope_window = self._samples(SLOPE_WINDOW_S)
        self._history = self._hold + max(self._r_before, self._slope_window) + 1
        self.decision_delay_samples = self._r_before + self._hold
        self.reset()

    def _samples(self, seconds: float) -> int:
        return round(seconds * self.fs_hz)

    def reset(self) -> None:
        """Forget all past input."""
        self._qrs_delays = np.zeros((self._qrs_sos.shape[0], 2))
        self._magnitude_tail = np.zeros(self._integration.size - 1)  # for the integration
        self._bandpassed_tail = np.zeros(self._lag)  # last samples, for the derivative
        # Recent history of the three signals; index 0 is stream index `_history_start`.
        self._filtered = np.zeros(self._history)
        self._slope = np.zeros(self._history)
        self._feature = np.zeros(self._history)
        self._history_start = -self._history
        self._started = False
        self._next_candidate_index = 0  # candidates before this index were handled
        self._learning: list[_Candidate] = []  # candidates held until the levels are learned
        self._qrs_levels: deque[float] = deque(maxlen=LEVEL_PEAKS)
        self._noise_levels: deque[float] = deque([0.0] * LEVEL_PEAKS, maxlen=LEVEL_PEAKS)
        self._qrs_slopes: deque[float] = deque(maxlen=LEVEL_PEAKS)
        self._recent_peak_levels: deque[float] = deque(maxlen=LEVEL_PEAKS)
        self._rr_samples: deque[int] = deque(
            [self._samples(INITIAL_RR_S)] * LEVEL_PEAKS, maxlen=LEVEL_PEAKS
        )
        self._search_back_wait = self._search_back_samples()  # after the last QRS
        self._threshold = 0.0
        self._last_qrs_index: int | None = None
        self._last_qrs_slope = 0.0
        self._search_back: _Candidate | None = None  # best noise peak since the last QRS
        self._ended = False

    @property
    def _learned(self) -> bool:
        return bool(self._qrs_levels)

    def process(self, chunk: FloatArray) -> list[RPeak]:
        """Take the next filtered samples; return the R peaks decided by their arrival."""
        if self._ended:
            raise ended_error(self)
        if chunk.size == 0:
            return []
        if not self._started:  # steady state at the first sample, as the band-pass does
            self._qrs_delays = signal.sosfilt_zi(self._qrs_sos) * chunk[0]
            self._bandpassed_tail[:] = 0.0
            self._started = True
        slope, magnitude = qrs_slope(
            self._qrs_sos, chunk, self._qrs_delays, self._bandpassed_tail, self._magnitude_tail
        )
        # numpy's convolution, not a compiled one: its sums are BLAS dot products, whose
        # order (and so last bits) a loop would not repeat
        feature = np.convolve(magnitude, self._integration, mode="valid")
        self._append(chunk, slope, feature)
        end_index = self._history_start + self._feature.size
        peaks = self._handle_candidates(final_before=end_index - self._hold)
        peaks += self._learn_or_search_back(now_index=end_index - self._hold - 1)
        self._trim()
        return peaks

    def flush(self) -> list[RPeak]:
        """The stream has ended: decide on everything still held and return it."""
        ended, self._ended = self._ended, True
        if ended or not self._started:
            return []
        end_index = self._history_start + self._feature.size
        # Zeros after the end let the last peaks complete their hold.
        self._append(np.zeros(self._hold), np.zeros(self._hold), np.zeros(self._hold))
        peaks = self._handle_candidates(final_before=end_index)
        peaks += self._learn_or_search_back(now_index=end_index - 1, ending=True)
        # Decisions on the zero padding were in fact made at the end of the stream.
        return [RPeak(p.index, min(p.decided_index, end_index)) for p in peaks]

    def _append(self, filtered: FloatArray, slope: FloatArray, feature: FloatArray) -> None:
        self._filtered = np.concatenate([self._filtered, filtered])
        self._slope = np.concatenate([self._slope, slope])
        self._feature = np.concatenate([self._feature, feature])

    def _trim(self) -> None:
        excess = self._feature.size - self._history - self._hold
        if excess > 0:
            self._filtered = self._filtered[excess:]
            self._slope = self._slope[excess:]
            self._feature = self._feature[excess:]
            self._history_start += excess

    def _handle_candidates(self, final_before: int) -> list[RPeak]:
        """Run the decision rules on local maxima whose hold has passed."""
        first = max(self._next_candidate_index, self._history_start + self._history - self._hold)
        if final_before <= first:
            return []
        offset = self._history_start
        span = self._feature[first - self._hold - offset : final_before + self._hold - offset]
        self._next_candidate_index = final_before
        peaks: list[RPeak] = []
        for relative in dominant_maxima(span, self._hold):
            candidate = self._describe(first + int(relative))
            if not self._learned:
                self._learning.append(candidate)
                continue
            peaks += self._search_back_due(now_index=candidate.index - 1)
            peaks += self._classify(candidate, decided_index=candidate.index + self._hold)
        return peaks

    def _describe(self, index: int) -> _Candidate:
        """Measure a local maximum of the integrated signal while its history is at hand."""
        start = index - self._history_start
        slopes = self._slope[start - self._slope_window : start + 1]
        rise, fall = float(slopes.max()), -float(slopes.min())
        near_r = self._filtered[start - self._r_before : start + 1]
        return _Candidate(
            index=index,
            level=float(self._feature[start]),
            max_slope=max(rise, fall),
            # A QRS has a steep rise and fall close together; a baseline shift has only one.
            slope_pair=rise > fall / 8 and fall > rise / 8,
            r_index=index - self._r_before + int(np.argmax(np.abs(near_r))),
        )

    def _learn_or_search_back(self, now_index: int, *, ending: bool = False) -> list[RPeak]:
        if self._learned:
            return self._search_back_due(now_index)
        learned_index = self._samples(LEARNING_S) - 1
        if now_index < learned_index and not ending:
            return []
        return self._finish_learning(decided_index=min(now_index, learned_index) + self._hold)

    def _finish_learning(self, decided_index: int) -> list[RPeak]:
        """Set the QRS level from the learning period, then decide on its held peaks."""
        if not self._learning:
            return []
        levels = np.array([candidate.level for candidate in self._learning])
        # Peaks above half the largest are taken as QRS, the others as noise.
        large = levels >= levels.max() / 2
        self._qrs_levels.extend([float(np.median(levels[large]))] * LEVEL_PEAKS)
        if not large.all():
            self._noise_levels.extend([float(np.median(levels[~large]))] * LEVEL_PEAKS)
        slopes = [c.max_slope for c, keep in zip(self._learning, large, strict=True) if keep]
        self._qrs_slopes.extend([float(np.median(slopes))] * LEVEL_PEAKS)
        self._update_threshold()
        held, self._learning = self._learning, []
        peaks: list[RPeak] = []
        for candidate in held:
            peaks += self._search_back_due(candidate.index - 1, not_before=decided_index)
            peaks += self._classify(candidate, max(candidate.index + self._hold, decided_index))
        return peaks

    def _classify(self, candidate: _Candidate, decided_index: int) -> list[RPeak]:
        self._recent_peak_levels.append(candidate.level)
        since_qrs = (
            math.inf if self._last_qrs_index is None else candidate.index - self._last_qrs_index
        )
        if math.isfinite(since_qrs) and since_qrs > self._samples(LOST_S):
            self._relearn()
        t_wave_like = since_qrs < self._samples(T_WAVE_WINDOW_S) and (
            candidate.max_slope < T_WAVE_SLOPE_FRACTION * self._last_qrs_slope
        )
        if candidate.level > self._threshold and self._qrs_shaped(candidate) and not t_wave_like:
            return [self._accept(candidate, decided_index)]
        self._noise_levels.append(candidate.level)
        self._update_threshold()
        if since_qrs >= self._samples(SEARCH_BACK_MIN_GAP_S) and (
            self._search_back is None or candidate.level > self._search_back.level
        ):
            self._search_back = candidate
        return []

    def _accept(self, candidate: _Candidate, decided_index: int) -> RPeak:
        if self._last_qrs_index is not None:
            self._rr_samples.append(candidate.index - self._last_qrs_index)
            self._search_back_wait = self._search_back_samples()
        self._qrs_levels.append(candidate.level)
        self._qrs_slopes.append(candidate.max_slope)
        self._update_threshold()
        self._last_qrs_index, self._last_qrs_slope = candidate.index, candidate.max_slope
        self._search_back = None
        return RPeak(index=candidate.r_index, decided_index=decided_index)

    def _search_back_due(self, now_index: int, not_before: int = 0) -> list[RPeak]:
        """Take the best noise peak as a QRS once 1.5 median RR passed without one.

        The decision is dated when the deadline's hold passed (or ``not_before``), whatever
        the chunk that revealed it, so events do not depend on chunking.
        """
        if self._last_qrs_index is None or self._search_back is None:
            return []
        deadline = self._last_qrs_index + self._search_back_wait
        best = self._search_back
        if now_index < deadline or best.level <= self._threshold / 2 or not self._qrs_shaped(best):
            return []
        return [self._accept(best, max(deadline + self._hold, not_before))]

    def _search_back_samples(self) -> int:
        return round(SEARCH_BACK_RR_FACTOR * statistics.median(self._rr_samples))

    def _qrs_shaped(self, candidate: _Candidate) -> bool:
        """Slopes like a QRS: a rise-fall pair, not far flatter than recent QRS complexes."""
        typical = statistics.median(self._qrs_slopes) if self._qrs_slopes else 0.0
        return candidate.slope_pair and candidate.max_slope >= MIN_SLOPE_FRACTION * typical

    def _relearn(self) -> None:
        self._qrs_levels.extend(self._recent_peak_levels)
        self._noise_levels.extend([0.0] * LEVEL_PEAKS)
        self._update_threshold()

    def _update_threshold(self) -> None:
        qrs, noise = statistics.median(self._qrs_levels), statistics.median(self._noise_levels)
        self._threshold = noise + THRESHOLD_FRACTION * (qrs - noise)


@compiled
def qrs_slope(
    sos: FloatArray,
    chunk: FloatArray,
    delays: FloatArray,
    bandpassed_tail: FloatArray,
    magnitude_tail: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """The QRS band's derivative of a chunk, and its magnitude after the integration's tail.

    ``delays`` and both tails (the last band-passed samples, as many as the derivative's lag;
    the last magnitudes, one fewer than the integration's length) carry over to the next chunk
    and are updated in place. Subtractions and ``abs`` only: the same bits as numpy's.

    Returns:
        The derivative (one per sample of ``chunk``), and its magnitude behind
        ``magnitude_tail``: the input of the ``valid`` moving integration.
    """
    bandpassed = sos_filter(sos, chunk, delays)
    lag, kept = bandpassed_tail.size, magnitude_tail.size
    with_tail = np.concatenate((bandpassed_tail, bandpassed))
    slope = with_tail[lag:] - with_tail[:-lag]
    bandpassed_tail[:] = with_tail[with_tail.size - lag :]
    magnitude = np.concatenate((magnitude_tail, np.abs(slope)))
    magnitude_tail[:] = magnitude[magnitude.size - kept :]
    return slope, magnitude


@compiled
def dominant_maxima(span: FloatArray, hold: int) -> npt.NDArray[np.int64]:
    """Positive local maxima of ``span[hold:-hold]`` that are the largest within ``hold``.

    A maximum rises above the sample before it, is not below the sample after it, and no
    sample within ``hold`` on either side exceeds it.

    Returns:
        Their positions, counted from ``span[hold]``.
    """
    found = np.empty(max(span.size - 2 * hold, 0), dtype=np.int64)
    count = 0
    for relative in range(found.size):
        value = span[relative + hold]
        if not (value > span[relative + hold - 1] and value >= span[relative + hold + 1]):
            continue
        if not value > 0.0:
            continue
        if np.any(span[relative : relative + 2 * hold + 1] > value):
            continue
        found[count] = relative
        count += 1
    return found[:count]


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A local maximum of the integrated signal, measured while its history is at hand."""

    index: int
    level: float
    max_slope: float
    slope_pair: bool
    r_index: int
