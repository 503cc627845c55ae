"""Signal quality of each beat and of the stream's input, causal and pure numpy.

Two kinds of trouble are told apart:

- **Input faults**, found sample by sample in the raw input: NaN samples (``missing``), a flat
  line of at least ``LEAD_OFF_S`` (``lead-off``), and runs of at least ``CLIP_MIN_SAMPLES``
  equal samples at the extreme of the preceding ``CLIP_RANGE_S`` (``clipped``: the ADC's rail).
  A live source's gaps are added by its reader (``add_stretch``). The chain stops at NaN samples
  and lead-off and restarts afresh after them (``BeatExtractor``); a beat whose window touches a
  faulty stretch is unusable, its signal-quality index 0.
- **Noise**, measured per beat on the filtered signal the chain already has (Li & Clifford's
  family of indices), over the ``CONTEXT_S`` up to the beat window's end: its kurtosis (kSQI: a
  QRS train is peaked, noise and mains are not), the share of the QRS band in its power (pSQI),
  and how rough the trace is against the beat's QRS amplitude. Each maps to [0, 1] between a bad
  and a good level; the beat's index is the smallest, and below ``SQI_USABLE`` the beat is
  unusable (``noise``).

Every threshold was chosen on training-pool records only (DS1, with and without NSTDB noise;
see docs/evaluation.md), never on DS2.

References:
    Li Q, Mark RG, Clifford GD. Robust heart rate estimation from multiple asynchronous noisy
    sources using signal quality indices and a Kalman filter. Physiol Meas 29(1), 2008.
    Clifford GD, Behar J, Li Q, Rezek I. Signal quality indices and data fusion for
    determining clinical acceptability of electrocardiograms. Physiol Meas 33(9), 2012.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from ecg_stream.config import ChainConfig
from ecg_stream.detector.compiled import compiled
from ecg_stream.types import (
    BeatQuality,
    BeatWindow,
    Chunk,
    FloatArray,
    SignalIssue,
    SignalState,
)

BoolArray = npt.NDArray[np.bool_]

FLAT_TOLERANCE_MV = 1e-6
"""Consecutive samples closer than this are equal (a flat line, or a run at the rail)."""
LEAD_OFF_S = 1.0
"""A flat line this long is an electrode off; the chain stops until the signal moves again."""
CLIP_MIN_SAMPLES = 12
"""Equal samples in a row at the signal's extreme that make a clipped run. Clean DS1 records hold
at most 10 equal samples in a row at 360 Hz; record 116 (DS1) clips at its ADC's rail in runs up
to 265."""
CLIP_RANGE_S = 2.0
"""A run is at the extreme when it reaches the maximum or minimum of this much signal before it."""
CONTEXT_S = 5.0
"""Filtered signal, up to a beat window's end, over which the kurtosis and band power are taken."""
LATE_S = 8.0
"""A window may be emitted this long after its end (the segmenter's history): the filtered
signal is kept for that long besides ``CONTEXT_S``, so a late beat is measured as an early one."""
QRS_HALF_WIDTH_S = 0.05
"""QRS span around the R peak excluded from the window's roughness, and whose range is the
QRS amplitude."""
QRS_BAND_HZ = (5.0, 15.0)
"""Band of the QRS complex in pSQI (its power over the power from ``POWER_FLOOR_HZ`` up)."""
POWER_FLOOR_HZ = 1.0
KURTOSIS_LEVELS = (3.0, 4.2)
"""kSQI: kurtosis (Pearson) at or below the first is noise (Gaussian noise: 3; a sine: 1.5),
at or above the second clean; the midpoint 3.6 is the usability threshold."""
QRS_POWER_LEVELS = (0.10, 0.15)
"""pSQI: share of the power above 1 Hz in the QRS band; mains (50/60 Hz) or slow drift alone
put it near 0; threshold 0.125."""
ROUGHNESS_LEVELS = (0.040, 0.014)
"""Roughness: median |first difference| over ``CONTEXT_S`` (and over the beat's own window, the
larger) divided by the beat's QRS amplitude (noise riding on the trace, against the QRS it
hides); threshold 0.027."""
SQI_USABLE = 0.5
"""Below this index a beat is unusable (labelled Q, reason ``noise``): each measure's threshold
is the 0.17th percentile of the clean beats of DS1 records 106, 119, 203 and 208 (so about
0.5 % of them are flagged), the records' beats also measured at 12 and 6 dB of NSTDB ``em``."""
MIN_CONTEXT_S = 1.0
"""Near a stream's start or restart, the measures wait for this much filtered signal."""
STATE_WINDOW_S = 3.0
"""The stream is ``noisy`` while an unusable beat or a clipped run lies this close to its end."""
STATE_RECHECK_S = 1.0
"""How often the state measures the recent signal for a missing QRS train, in s of signal."""
MAX_STRETCHES = 64
"""Faulty stretches remembered (the oldest are forgotten first; they lie far behind)."""


def true_runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """``(first, end)`` of each run of True in a 1-D boolean array, in order.

    Example:
        >>> true_runs(np.array([False, True, True, False, True]))
        [(1, 3), (4, 5)]
    """
    edges = np.flatnonzero(np.diff(np.concatenate(([False], mask, [False])).astype(np.int8)))
    return [(int(first), int(end)) for first, end in zip(edges[::2], edges[1::2], strict=True)]


@compiled
def equal_runs(
    samples: FloatArray, start_index: int, last_value: float, run_start_index: int
) -> tuple[BoolArray, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Where samples are missing, and the run of equal samples each one ends.

    Samples within ``FLAT_TOLERANCE_MV`` of the one before are equal (never next to NaN).

    Args:
        samples: The next raw samples.
        start_index: Stream index of ``samples[0]``.
        last_value: The sample before them (NaN: none).
        run_start_index: Where the run of equal samples holding ``last_value`` began.

    Returns:
        Whether each sample is missing (NaN, infinite), and the start index and length of
        the run of equal samples up to it.
    """
    missing = np.empty(samples.size, dtype=np.bool_)
    run_start = np.empty(samples.size, dtype=np.int64)
    run_length = np.empty(samples.size, dtype=np.int64)
    previous = last_value
    for position, value in enumerate(samples):
        index = start_index + position
        missing[position] = not np.isfinite(value)
        if not abs(value - previous) <= FLAT_TOLERANCE_MV:
            run_start_index = index
        run_start[position] = run_start_index
        run_length[position] = index - run_start_index + 1
        previous = value
    return missing, run_start, run_length


@dataclass(frozen=True, slots=True)
class Stretch:
    """Samples ``start_index`` to ``end_index`` (exclusive) of the input had ``issue``."""

    start_index: int
    end_index: int
    issue: SignalIssue


_ISSUE_ORDER = (
    SignalIssue.MISSING,
    SignalIssue.GAP,
    SignalIssue.LEAD_OFF,
    SignalIssue.CLIPPED,
)
"""When a window touches several faults, the first of these is its reason."""


class SignalQuality:
    """Find input faults sample by sample and give each beat a signal-quality index.

    ``scan`` takes each raw chunk before the filter and says where the chain must stop (NaN
    samples, a lead-off); ``assess`` takes the chain's filtered chunk and the beat windows it
    completed and returns the windows with their quality. Results do not depend on chunking.
    Not a ``Stage``: the chain calls it on both sides of the filter, so its state is checked
    with the chain's (``tests/test_conformance.py``).

    Args:
        config: The chain's configuration (rate and window geometry).

    Attributes:
        stretches: Recent faulty stretches of the input, oldest first (bounded).

    Example:
        >>> quality = SignalQuality(ChainConfig())
        >>> samples = np.r_[np.sin(np.arange(400.0)), np.full(400, 0.3), np.nan]
        >>> quality.scan(Chunk(0, samples)).nonzero()[0][[0, -1]].tolist()  # stop here
        [759, 800]
        >>> sorted((s.start_index, s.end_index, s.issue.value) for s in quality.stretches)
        [(400, 800, 'lead-off'), (800, 801, 'missing')]
    """

    def __init__(self, config: ChainConfig) -> None:
        self.config = config
        fs_hz = config.fs_hz
        self._lead_off_samples = round(LEAD_OFF_S * fs_hz)
        self._range_samples = round(CLIP_RANGE_S * fs_hz)
        self._context_samples = round(CONTEXT_S * fs_hz)
        self._min_context_samples = round(MIN_CONTEXT_S * fs_hz)
        self._kept_samples = self._context_samples + round(LATE_S * fs_hz)
        self._qrs_half_width = round(QRS_HALF_WIDTH_S * fs_hz)
        self._state_samples = round(STATE_WINDOW_S * fs_hz)
        self._state_recheck_samples = round(STATE_RECHECK_S * fs_hz)
        self.reset()

    def reset(self) -> None:
        """Forget all past input."""
        self.stretches: deque[Stretch] = deque(maxlen=MAX_STRETCHES)
        self._end_index = 0  # one past the newest raw sample scanned
        self._last_value = np.nan  # the newest raw sample
        self._run_start = 0  # where the run of equal samples holding the newest sample began
        self._run_clipped = False  # whether that run was found at the extreme
        self._recent_raw = np.empty(0)  # the last `_range_samples + CLIP_MIN_SAMPLES` raw samples
        self._filtered = np.empty(0)  # the last `_kept_samples` filtered samples
        self._filtered_end = 0  # one past the newest filtered sample
        self._context_start = 0  # where the chain's filter last (re)started
        self._last_unusable_index: int | None = None  # R peak of the newest noisy beat
        self._context_checked_end = -1  # `_filtered_end` when the context was last measured
        self._context_noisy = False  # what that measurement found
        self._held: list[BeatWindow] = []  # windows a run of equal samples may still touch
        # The last context size measured: its Hann window, and its spectrum's bins in the QRS
        # band and above the power floor (made once per size, not per beat).
        self._taper = np.empty(0)
        self._in_band = np.empty(0, dtype=bool)
        self._above_floor = np.empty(0, dtype=bool)

    @property
    def held(self) -> tuple[BeatWindow, ...]:
        """Windows waiting for a run of equal samples begun inside them to be judged."""
        return tuple(self._held)

    def restart(self, index: int) -> None:
        """The chain's filter restarts at ``index``: measure no context from before it."""
        self._context_start = index

    def add_stretch(self, start_index: int, end_index: int, issue: SignalIssue) -> None:
        """Record a faulty stretch found elsewhere (a live source's gap)."""
        self.stretches.append(Stretch(start_index, end_index, issue))

    def scan(self, chunk: Chunk) -> BoolArray:
        """Find the faults of the next raw chunk; return where the chain must stop (True).

        The chain stops at NaN samples and on a flat line once it has lasted ``LEAD_OFF_S``.
        """
        samples, start = chunk.samples, chunk.start_index
        if samples.size == 0:
            return np.zeros(0, dtype=bool)
        missing, run_start, run_length = equal_runs(
            samples, start, self._last_value, self._run_start
        )
        lead_off = run_length >= self._lead_off_samples
        clipped = self._clipped(samples, start, run_start, run_length)
        for mask, issue in (
            (missing, SignalIssue.MISSING),
            (lead_off, SignalIssue.LEAD_OFF),
            (clipped, SignalIssue.CLIPPED),
        ):
            self._record(mask, run_start, start, issue)
        self._last_value = float(samples[-1])
        self._run_start = int(run_start[-1])
        keep = self._range_samples + CLIP_MIN_SAMPLES
        self._recent_raw = np.concatenate([self._recent_raw, samples])[-keep:]
        self._end_index = chunk.end_index
        return np.asarray(missing | lead_off)

    def _clipped(
        self,
        samples: FloatArray,
        start: int,
        run_start: npt.NDArray[np.int64],
        run_length: npt.NDArray[np.int64],
    ) -> BoolArray:
        """Samples in runs of equal samples that reached the preceding signal's extreme."""
        clipped_runs = {self._run_start} if self._run_clipped else set()
        long_enough = np.flatnonzero(run_length == CLIP_MIN_SAMPLES)  # runs just long enough
        history = np.concatenate([self._recent_raw, samples]) if long_enough.size else samples
        history_start = start - self._recent_raw.size
        for position in long_enough:
            run = int(run_start[position])
            before = history[
                max(run - self._range_samples - history_start, 0) : run - history_start
            ]
            before = before[np.isfinite(before)]
            if before.size == 0 or np.ptp(before) <= FLAT_TOLERANCE_MV:
                continue  # nothing to compare with, or flat all along: not a rail
            value = samples[position]
            if value >= before.max() or value <= before.min():
                clipped_runs.add(run)
        if not clipped_runs:  # nearly every chunk: no run at a rail
            self._run_clipped = False
            return np.zeros(samples.size, dtype=bool)
        clipped = (run_length >= CLIP_MIN_SAMPLES) & np.isin(run_start, list(clipped_runs))
        self._run_clipped = bool(clipped[-1])
        return np.asarray(clipped)

    def _record(
        self,
        mask: BoolArray,
        run_start: npt.NDArray[np.int64],
        start: int,
        issue: SignalIssue,
    ) -> None:
        """Add the stretches of ``mask``, the chunk's from stream index ``start``.

        A run's stretch starts where the run does.
        """
        if not mask.any():
            return
        for first, stop in true_runs(mask):
            begin = int(run_start[first]) if issue is not SignalIssue.MISSING else start + first
            end = start + stop
            position = next(
                (
                    k
                    for k in range(len(self.stretches) - 1, -1, -1)
                    if self.stretches[k].issue is issue
                ),
                None,
            )
            last = None if position is None else self.stretches[position]
            if position is not None and last is not None and last.end_index >= begin:
                self.stretches[position] = Stretch(min(last.start_index, begin), end, issue)
            else:
                self.stretches.append(Stretch(begin, end, issue))

    def assess(
        self, filtered: Chunk, windows: tuple[BeatWindow, ...], *, final: bool = False
    ) -> tuple[BeatWindow, ...]:
        """Take the chain's next filtered chunk and windows; return the settled ones, judged.

        A flat or clipped run is found some samples after it starts, so a window is held (in
        order) while the run of equal samples at the newest input began inside it and may
        still turn out to be one: until a sample differs or the run lasts ``LEAD_OFF_S``. Every
        window is judged with all the faults that touch it, whatever the chunking. ``final``
        (the stream ended) releases every window.
        """
        self._filtered = np.concatenate([self._filtered, filtered.samples])
        self._filtered_end = filtered.end_index
        self._held += windows
        settled = len(self._held)
        if not final:
            settled = next(
                (k for k, window in enumerate(self._held) if self._may_change(window)), settled
            )
        ready, self._held = self._held[:settled], self._held[settled:]
        assessed = tuple(replace(window, quality=self.quality_of(window)) for window in ready)
        self._filtered = self._filtered[-self._kept_samples :]
        return assessed

    def _may_change(self, window: BeatWindow) -> bool:
        """Whether a run of equal samples begun inside ``window`` is too short to judge yet."""
        end = window.peak.index + self.config.window_after_samples
        return self._run_start < end and self._end_index - self._run_start < self._lead_off_samples

    def quality_of(self, window: BeatWindow) -> BeatQuality:
        """The quality of a window whose samples up to its end have been seen."""
        peak = window.peak.index
        first = peak - self.config.window_before_samples
        last = peak + self.config.window_after_samples
        issue = self._fault_between(first, last)
        if issue is not None:
            return BeatQuality(0.0, issue)
        sqi = self._noise_index(window)
        if sqi < SQI_USABLE:
            self._last_unusable_index = peak
            return BeatQuality(sqi, SignalIssue.NOISE)
        return BeatQuality(sqi)

    def _fault_between(self, first: int, last: int) -> SignalIssue | None:
        found = {s.issue for s in self.stretches if s.start_index < last and s.end_index > first}
        return next((issue for issue in _ISSUE_ORDER if issue in found), None)

    def _noise_index(self, window: BeatWindow) -> float:
        """The smallest of kSQI, pSQI and the roughness index, each in [0, 1]."""
        end = min(window.ready_index, self._filtered_end)
        start = max(end - self._context_samples, self._context_start)
        offset = self._filtered_end - self._filtered.size  # stream index of `_filtered[0]`
        context = self._filtered[max(start - offset, 0) : max(end - offset, 0)]
        if context.size < self._min_context_samples:
            return 1.0  # too early in a stream (or after a restart) to measure
        centre = self.config.window_before_samples
        qrs = window.samples[
            max(centre - self._qrs_half_width, 0) : centre + self._qrs_half_width + 1
        ]
        amplitude = float(np.ptp(qrs))
        if amplitude <= FLAT_TOLERANCE_MV:
            return 0.0
        # over the context and over the window alone: noise that starts within the window
        # barely moves the measures of the whole context
        roughness = (
            max(
                float(np.median(np.abs(np.diff(context)))),
                float(np.median(np.abs(np.diff(window.samples)))),
            )
            / amplitude
        )
        return min(_ramp(roughness, *ROUGHNESS_LEVELS), self._context_index(context))

    def _context_index(self, context: FloatArray) -> float:
        """The smaller of kSQI and pSQI over ``CONTEXT_S`` of filtered signal."""
        centred = context - context.mean()
        variance = float(np.mean(centred**2))
        if variance <= FLAT_TOLERANCE_MV**2:
            return 0.0
        kurtosis = float(np.mean(centred**4)) / variance**2
        if self._taper.size != centred.size:  # nearly always the whole context's size
            self._taper = np.hanning(centred.size)
            frequencies = np.fft.rfftfreq(centred.size, 1.0 / self.config.fs_hz)
            self._in_band = (frequencies >= QRS_BAND_HZ[0]) & (frequencies <= QRS_BAND_HZ[1])
            self._above_floor = frequencies >= POWER_FLOOR_HZ
        power = np.abs(np.fft.rfft(centred * self._taper)) ** 2
        qrs_share = float(power[self._in_band].sum()) / max(
            float(power[self._above_floor].sum()), 1e-30
        )
        return min(_ramp(kurtosis, *KURTOSIS_LEVELS), _ramp(qrs_share, *QRS_POWER_LEVELS))

    @property
    def state(self) -> SignalState:
        """The input's state at the newest sample scanned."""
        end = self._end_index
        if end == 0:
            return SignalState.OK
        recent = [s for s in self.stretches if s.end_index >= end - self._state_samples]
        if not np.isfinite(self._last_value) or any(
            s.issue is SignalIssue.GAP and s.end_index >= end for s in recent
        ):
            return SignalState.GAP
        if end - self._run_start >= self._lead_off_samples:
            return SignalState.LEAD_OFF
        noisy_beat = (
            self._last_unusable_index is not None
            and self._last_unusable_index >= end - self._state_samples
        )
        if noisy_beat or any(s.issue is SignalIssue.CLIPPED for s in recent):
            return SignalState.NOISY
        return SignalState.NOISY if self._context_is_noisy() else SignalState.OK

    def _context_is_noisy(self) -> bool:
        """Whether the last ``CONTEXT_S`` hold no QRS train (mains alone, noise alone).

        Such a stretch need not yield a beat to be seen. Measured at most once per
        ``STATE_RECHECK_S`` of signal: the state is read after every chunk.
        """
        if self._filtered_end - self._context_checked_end < self._state_recheck_samples:
            return self._context_noisy
        self._context_checked_end = self._filtered_end
        latest = self._filtered[-self._context_samples :]
        self._context_noisy = (
            self._filtered_end - self._context_start >= self._context_samples
            and latest.size == self._context_samples
            and self._context_index(latest) < SQI_USABLE
        )
        return self._context_noisy


def _ramp(value: float, bad: float, good: float) -> float:
    """0 at or beyond ``bad``, 1 at or beyond ``good``, linear between (either order).

    Example:
        >>> _ramp(4.0, 3.0, 5.0), _ramp(0.0, 0.1, 0.05)
        (0.5, 1.0)
    """
    share = (value - bad) / (good - bad)
    return float(min(max(share, 0.0), 1.0))
