"""Atrial fibrillation from the RR series, decided beat by beat, causal and pure numpy.

AF is an irregularly irregular ventricular rhythm: successive RR intervals differ by a large,
random amount. Regular rhythms that are irregular beat to beat (bigeminy, trigeminy, frequent
ectopy) repeat at their period, so their RR differences at a lag of two or three beats are
small. Per beat, over the last ``window_beats`` RR intervals, the detector takes for each lag
``k`` in ``LAGS`` the median of ``|RR_i - RR_{i-k}|`` over the median RR, and keeps the smallest
of these ratios: the beat's *irregularity*. Intervals that touch a ventricular (V or F) or
unusable (Q, or a window with a quality issue) beat are left out, as are intervals that end in a
premature-compensatory pair (``ectopic_fraction``), as the ectopic-beat filter of Petrenas
et al. does; the medians make the measure robust to the few left. AF begins after
``enter_beats`` beats in a row at or above ``threshold`` and ends after ``exit_beats`` beats in
a row below ``exit_threshold``; its onset and end are placed back ``lookback_beats`` beats, to
where the irregular intervals began to fill (or leave) the window.

Every default was chosen on DS1 records only (AF in 201 and 203; false AF counted over all 22;
a grid over window, thresholds, ectopic filter and hysteresis, a point on a plateau taken).
With them, whole record, gross, through ``ecg-stream evaluate --rhythm``: DS1 AF duration
Se 99.3 % / +P 89.3 %, 0.23 min false AF on 20 records without AF; DS2, scored once: duration
Se 64.8 % / +P 87.3 %, episode Se 77.8 % / +P 100 %, no false AF on 17 records without AF.

References:
    Petrenas A, Marozas V, Sornmo L. Low-complexity detection of atrial fibrillation in
    continuous long-term monitoring. Comput Biol Med 65, 2015.
    Tateno K, Glass L. Automatic detection of atrial fibrillation using the coefficient of
    variation and density histograms of RR and deltaRR intervals. Med Biol Eng Comput 39, 2001.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass

from ecg_stream.detector.segment import IRREGULARITY_LAGS as LAGS
from ecg_stream.detector.segment import lagged_rr_irregularity
from ecg_stream.errors import ConfigError
from ecg_stream.types import BeatClass, LabeledBeat

EXCLUDED_CLASSES: frozenset[BeatClass] = frozenset({BeatClass.V, BeatClass.F, BeatClass.Q})
"""Beats whose intervals (to and from them) are left out: ventricular, fusion, unclassifiable.
S labels are not used: the classifier calls many AF beats S."""
MIN_RR_MS = 200.0
"""Shortest interval kept, in ms (300 bpm): a shorter one is a double detection."""
MAX_RR_MS = 2500.0
"""Longest interval kept, in ms (24 bpm): a longer one is a missed beat or a pause."""

DEFAULT_WINDOW_BEATS = 32
DEFAULT_THRESHOLD = 0.10
DEFAULT_EXIT_THRESHOLD = 0.10
DEFAULT_ENTER_BEATS = 16
DEFAULT_EXIT_BEATS = 16
DEFAULT_LOOKBACK_BEATS = 16
DEFAULT_MIN_INTERVALS = 16
DEFAULT_ECTOPIC_FRACTION = 0.15


def conducted_in_af(beat: LabeledBeat) -> LabeledBeat:
    """The beat read as a conducted AF beat: its S probability moved to N.

    In atrial fibrillation there is no premature atrial beat: the ventricles answer an
    irregular atrial activity, and annotators label those beats N.
    """
    n, s, v, f, q = beat.probabilities
    return LabeledBeat(beat.window, (n + s, 0.0, v, f, q))


@dataclass(frozen=True, slots=True)
class AfSettings:
    """Settings of :class:`AfDetector`; the defaults were chosen on DS1 only.

    Args:
        window_beats: RR intervals over which the irregularity is measured (default 32).
        threshold: Irregularity (median RR difference over median RR, a ratio) at or above
            which a beat counts toward AF onset (default 0.10).
        exit_threshold: Irregularity below which a beat counts toward AF end; at most
            ``threshold`` (default 0.10).
        enter_beats: Irregular beats in a row that start AF (default 16).
        exit_beats: Regular beats in a row that end AF (default 16).
        lookback_beats: Beats before the first beat of the deciding streak at which the
            onset (or end) is placed: where the irregular (or regular) intervals began to fill
            the window; below ``window_beats`` (default 16).
        min_intervals: Kept RR intervals the window must hold for the irregularity to be
            known; it is NaN before, and a NaN neither counts toward a change nor breaks a
            streak (default 16).
        ectopic_fraction: An interval this much shorter than the window's median followed by
            one this much longer is a premature beat and its compensatory pause: both are left
            out. 0 turns the filter off (default 0.15).
    """

    window_beats: int = DEFAULT_WINDOW_BEATS
    threshold: float = DEFAULT_THRESHOLD
    exit_threshold: float = DEFAULT_EXIT_THRESHOLD
    enter_beats: int = DEFAULT_ENTER_BEATS
    exit_beats: int = DEFAULT_EXIT_BEATS
    lookback_beats: int = DEFAULT_LOOKBACK_BEATS
    min_intervals: int = DEFAULT_MIN_INTERVALS
    ectopic_fraction: float = DEFAULT_ECTOPIC_FRACTION

    def __post_init__(self) -> None:
        lag = max(LAGS)
        checks = (
            (
                self.window_beats > 2 * lag,
                f"window_beats={self.window_beats} must be > {2 * lag} (twice the largest lag)",
            ),
            (
                0.0 < self.threshold < 1.0,
                f"threshold={self.threshold} must lie in (0, 1): a median RR difference over "
                "the median RR",
            ),
            (
                0.0 < self.exit_threshold <= self.threshold,
                f"exit_threshold={self.exit_threshold} must lie in (0, threshold={self.threshold}]",
            ),
            (self.enter_beats >= 1, f"enter_beats={self.enter_beats} must be >= 1"),
            (self.exit_beats >= 1, f"exit_beats={self.exit_beats} must be >= 1"),
            (
                0 <= self.lookback_beats < self.window_beats,
                f"lookback_beats={self.lookback_beats} must lie in [0, window_beats="
                f"{self.window_beats})",
            ),
            (
                2 * lag < self.min_intervals <= self.window_beats,
                f"min_intervals={self.min_intervals} must lie in ({2 * lag}, window_beats="
                f"{self.window_beats}]",
            ),
            (
                0.0 <= self.ectopic_fraction < 1.0,
                f"ectopic_fraction={self.ectopic_fraction} must lie in [0, 1) (0: no filter)",
            ),
        )
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)


@dataclass(frozen=True, slots=True)
class AfDecision:
    """The AF decision at one beat.

    Args:
        in_af: Whether the rhythm is AF at this beat.
        irregularity: The beat's irregularity, a ratio (NaN while too few intervals).
        changed: Whether ``in_af`` changed at this beat.
        episode_start_index: When AF starts at this beat, the R peak (chain samples) of the
            episode's first beat, placed back ``lookback_beats``; else None.
        episode_end_index: When AF ends at this beat, the R peak (chain samples) of the
            episode's last beat, placed back likewise; else None.
    """

    in_af: bool
    irregularity: float
    changed: bool
    episode_start_index: int | None = None
    episode_end_index: int | None = None


class AfDetector:
    """Causal beat-by-beat atrial fibrillation detector on RR intervals and beat labels.

    Args:
        settings: Window, thresholds and hysteresis (default: :class:`AfSettings`).

    Attributes:
        intervals_ms: The last ``window_beats`` RR intervals, in ms (NaN: left out).
        peak_indices: R peaks (chain samples) of the last ``window_beats`` beats.
        previous_excluded: Whether the previous beat was left out (its next interval is).
        streak_beats: Beats in a row that count toward a change of state.
        streak_anchor_index: R peak where the change will be placed, set at the streak's start.

    Example:
        >>> detector = AfDetector()
        >>> detector.in_af, detector.settings.window_beats
        (False, 32)
    """

    def __init__(self, settings: AfSettings | None = None) -> None:
        self.settings = settings or AfSettings()
        self.reset()

    def reset(self) -> None:
        """Forget all past beats: the detector is as freshly built."""
        window = self.settings.window_beats
        self._intervals_ms: deque[float] = deque(maxlen=window)
        self._peak_indices: deque[int] = deque(maxlen=window)
        self._previous_excluded = True  # the first beat has no interval
        self._previous_kept_ms = math.nan
        self._in_af = False
        self._streak_beats = 0
        self._streak_anchor_index: int | None = None

    @property
    def in_af(self) -> bool:
        """Whether the rhythm is AF after the last beat processed."""
        return self._in_af

    def process(self, beat: LabeledBeat) -> AfDecision:
        """Take the next beat (in stream order) and decide whether the rhythm is AF."""
        excluded = beat.label in EXCLUDED_CLASSES or not beat.window.usable
        rr_ms = beat.window.rr.rr_ms
        keep = not (excluded or self._previous_excluded) and MIN_RR_MS <= rr_ms <= MAX_RR_MS
        self._previous_excluded = excluded
        self._peak_indices.append(beat.window.peak.index)
        if keep and self._is_compensatory_pause(rr_ms):
            self._intervals_ms.pop()  # the premature interval, appended at the previous beat
            keep = False
        if keep:
            self._intervals_ms.append(rr_ms)
        self._previous_kept_ms = rr_ms if keep else math.nan
        return self._decide(self.irregularity())

    def irregularity(self) -> float:
        """The smallest median lagged RR difference over the median RR (NaN if unknown).

        The differences are taken between the kept intervals in order, those left out skipped:
        in ventricular trigeminy the sinus intervals between the ectopic pairs remain.
        """
        settings = self.settings
        return lagged_rr_irregularity(
            self._intervals_ms, settings.window_beats, settings.min_intervals
        )

    def _is_compensatory_pause(self, rr_ms: float) -> bool:
        """Whether ``rr_ms`` and the previous beat's kept interval are premature, then long."""
        fraction = self.settings.ectopic_fraction
        premature_ms = self._previous_kept_ms
        if fraction == 0.0 or math.isnan(premature_ms) or len(self._intervals_ms) < max(LAGS):
            return False
        median_rr_ms = statistics.median(self._intervals_ms)
        short = premature_ms < (1 - fraction) * median_rr_ms
        return short and rr_ms > (1 + fraction) * median_rr_ms

    def _decide(self, irregularity: float) -> AfDecision:
        settings = self.settings
        if math.isnan(irregularity):  # unknown: neither counts toward a change nor breaks it
            return AfDecision(self._in_af, irregularity, changed=False)
        if self._in_af:
            counts = irregularity < settings.exit_threshold
            needed = settings.exit_beats
        else:
            counts = irregularity >= settings.threshold
            needed = settings.enter_beats
        if not counts:
            self._streak_beats = 0
            self._streak_anchor_index = None
            return AfDecision(self._in_af, irregularity, changed=False)
        if self._streak_beats == 0:
            back = min(settings.lookback_beats, len(self._peak_indices) - 1)
            # The first regular beat's lookback marks the episode's last beat: one before it.
            back = min(back + (1 if self._in_af else 0), len(self._peak_indices) - 1)
            self._streak_anchor_index = self._peak_indices[-1 - back]
        self._streak_beats += 1
        if self._streak_beats < needed:
            return AfDecision(self._in_af, irregularity, changed=False)
        anchor = self._streak_anchor_index
        self._in_af = not self._in_af
        self._streak_beats = 0
        self._streak_anchor_index = None
        if self._in_af:
            return AfDecision(True, irregularity, changed=True, episode_start_index=anchor)
        return AfDecision(False, irregularity, changed=True, episode_end_index=anchor)
