"""Typed value objects that cross every stage boundary."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.int64]


class BeatClass(Enum):
    """AAMI EC57 beat classes, in the order of every probability vector."""

    N = "N"
    S = "S"
    V = "V"
    F = "F"
    Q = "Q"

    @property
    def index(self) -> int:
        """Position of the class in probability vectors."""
        return BEAT_CLASSES.index(self)


BEAT_CLASSES: tuple[BeatClass, ...] = tuple(BeatClass)


class SignalIssue(Enum):
    """Why a beat's signal is unusable (``detector/quality.py``); such a beat is labelled Q."""

    MISSING = "missing"  # NaN samples in the input
    GAP = "gap"  # samples never arrived (a live source's gap)
    LEAD_OFF = "lead-off"  # a flat line: electrode off
    CLIPPED = "clipped"  # runs at the ADC's extreme value
    NOISE = "noise"  # noise or mains dominate the QRS (low signal-quality index)


class SignalState(Enum):
    """State of a stream's input, announced on the status topic."""

    OK = "ok"
    NOISY = "noisy"
    LEAD_OFF = "lead-off"
    GAP = "gap"


@dataclass(frozen=True, slots=True)
class BeatQuality:
    """Signal quality of one beat, from causal measures of the signal around it.

    Args:
        sqi: Signal-quality index in [0, 1]: 1 clean, 0 unusable.
        issue: Why the beat is unusable, or None when it may be classified.
    """

    sqi: float
    issue: SignalIssue | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.sqi <= 1.0:
            msg = f"BeatQuality.sqi must lie in [0, 1], got {self.sqi}"
            raise ValueError(msg)

    @property
    def usable(self) -> bool:
        """Whether the beat may be classified."""
        return self.issue is None


@dataclass(frozen=True, slots=True)
class Chunk:
    """Consecutive samples of one lead, in mV, at the chain's rate.

    Args:
        start_index: Index of the first sample, counted from stream start.
        samples: The samples, in mV.
        arrival_s: Monotonic clock reading when the chunk became available, in s.
    """

    start_index: int
    samples: FloatArray
    arrival_s: float = math.nan

    def __post_init__(self) -> None:
        if self.start_index < 0:
            msg = f"Chunk.start_index must be >= 0, got {self.start_index}"
            raise ValueError(msg)
        if self.samples.ndim != 1:
            msg = f"Chunk.samples must be 1-D, got shape {self.samples.shape}"
            raise ValueError(msg)

    @property
    def end_index(self) -> int:
        """Index one past the last sample."""
        return self.start_index + int(self.samples.size)


@dataclass(frozen=True, slots=True)
class RPeak:
    """A detected R peak.

    Args:
        index: Sample index of the R peak, from stream start.
        decided_index: Index of the sample whose arrival made the detector decide.
    """

    index: int
    decided_index: int


@dataclass(frozen=True, slots=True)
class RRFeatures:
    """Causal RR-interval features of a beat (only past beats are used).

    Args:
        rr_ms: Interval to the previous R peak, in ms (NaN for a stream's first beat).
        local_mean_rr_ms: Mean of the recent intervals including ``rr_ms``, in ms.
        long_mean_rr_ms: Mean of the intervals of the last few minutes, in ms: the
            patient's own rhythm, against which a premature beat stands out.
        median_rr_ms: Median of the recent intervals including ``rr_ms``, in ms: robust to
            the pauses and ectopic beats that pull a mean.
        upper_rr_ms: Upper percentile of the recent intervals, in ms: in an irregular rhythm
            a premature beat is short against it, a normal one is not.
        irregularity_short: RR irregularity of the last 8 intervals: the median absolute
            difference of successive intervals over their median (about 0 in a regular rhythm,
            above 0.1 in atrial fibrillation; NaN before 3 intervals).
        irregularity_long: The same over the last 64 intervals.
        irregularity_lagged: The AF detector's irregularity of the last 32 intervals, from the
            RR series alone: the smallest, over lags 1 to 3, median absolute difference of
            intervals that lag apart, over their median (low in bigeminy and trigeminy too;
            NaN before 16 intervals).
    """

    rr_ms: float
    local_mean_rr_ms: float
    long_mean_rr_ms: float
    median_rr_ms: float = math.nan
    upper_rr_ms: float = math.nan
    irregularity_short: float = math.nan
    irregularity_long: float = math.nan
    irregularity_lagged: float = math.nan

    @property
    def rr_ratio(self) -> float:
        """``rr_ms / local_mean_rr_ms``: below 1 for a premature beat."""
        return self.rr_ms / self.local_mean_rr_ms

    @property
    def heart_rate_bpm(self) -> float:
        """Instantaneous heart rate from ``rr_ms``."""
        return 60_000.0 / self.rr_ms


@dataclass(frozen=True, slots=True)
class MorphologyFeatures:
    """How a beat's shape compares with the stream's previous beats (causal).

    Args:
        template_correlation: Pearson correlation of the normalised window with the
            per-sample median of the previous beats' normalised windows (1 for a typical beat).
        amplitude_ratio: QRS peak-to-peak amplitude over the median of the previous beats'.
        qrs_width_ratio: QRS width over the template's QRS width (1 for a typical beat).
        p_wave_correlation: Pearson correlation of the stretch before the QRS (250 to 50 ms
            before the R peak, where the P wave lies) with the template's same stretch: a
            premature atrial beat's P wave differs, atrial fibrillation has none (1 typical).
        p_wave_amplitude_ratio: Standard deviation of that stretch over the template's (1
            typical; atrial activity that is absent or different changes it).
        template: The normalised template the beat was compared with (the beat itself for
            a stream's first beat); the model's second window channel.
    """

    template_correlation: float
    amplitude_ratio: float
    qrs_width_ratio: float = 1.0
    p_wave_correlation: float = 1.0
    p_wave_amplitude_ratio: float = 1.0
    template: FloatArray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class BeatWindow:
    """A fixed-length window of filtered signal around one R peak.

    Args:
        peak: The R peak the window is centred on.
        samples: Filtered samples in mV, ``window_before + window_after`` long.
        rr: Causal RR features of the beat.
        morphology: The beat's shape relative to the stream's previous beats.
        ready_index: Index one past the last sample the window needs.
        quality: The beat's signal quality (None: not assessed, taken as usable).
    """

    peak: RPeak
    samples: FloatArray = field(repr=False)
    rr: RRFeatures
    morphology: MorphologyFeatures
    ready_index: int
    quality: BeatQuality | None = None

    @property
    def usable(self) -> bool:
        """Whether the beat may be classified (no quality issue)."""
        return self.quality is None or self.quality.usable


@dataclass(frozen=True, slots=True)
class LabeledBeat:
    """A beat with its class probabilities.

    Args:
        window: The classified window.
        probabilities: One probability per class, in ``BEAT_CLASSES`` order.
    """

    window: BeatWindow
    probabilities: tuple[float, float, float, float, float]

    def __post_init__(self) -> None:
        if len(self.probabilities) != len(BEAT_CLASSES):
            msg = f"expected {len(BEAT_CLASSES)} probabilities, got {len(self.probabilities)}"
            raise ValueError(msg)

    @property
    def label(self) -> BeatClass:
        """The most probable class (the first of equals, as ``np.argmax``)."""
        probabilities = self.probabilities  # five floats: plain Python beats numpy's overhead
        return BEAT_CLASSES[max(range(len(probabilities)), key=probabilities.__getitem__)]

    @property
    def confidence(self) -> float:
        """Probability of the most probable class."""
        return max(self.probabilities)


class RhythmKind(Enum):
    """A rhythm or event of the rhythm stage (``detector/rhythm/``), as named on ``events``."""

    AF = "af"  # atrial fibrillation (or flutter): irregular RR without an ectopic pattern
    SVT = "svt"  # supraventricular run or tachycardia: >= 3 S at > 100 bpm
    VT = "vt"  # ventricular tachycardia: >= 3 V at > 100 bpm (sustained when >= 30 s)
    VENTRICULAR_RUN = "ventricular_run"  # a triplet or run: 3-5 V
    COUPLET = "couplet"  # 2 V in a row
    IDIOVENTRICULAR = "idioventricular"  # >= 3 V at <= 100 bpm
    VENTRICULAR_BIGEMINY = "ventricular_bigeminy"  # N V N V ...
    VENTRICULAR_TRIGEMINY = "ventricular_trigeminy"  # N N V N N V ...
    VF = "vf"  # ventricular flutter/fibrillation: raised from the signal, not from beats
    BRADYCARDIA = "bradycardia"  # heart rate below a limit
    TACHYCARDIA = "tachycardia"  # heart rate above a limit
    PAUSE = "pause"  # one RR interval above a limit
    ASYSTOLE = "asystole"  # no beat for a limit, raised by the passing of time


class EventState(Enum):
    """Whether an event starts an episode, ends it, or stands alone (a couplet, a pause)."""

    START = "start"
    END = "end"
    INSTANT = "instant"


@dataclass(frozen=True, slots=True)
class RhythmEvent:
    """A change of rhythm, in the stream's chain clock (360 Hz sample indices).

    Args:
        kind: What rhythm or event.
        state: Start, end, or instant.
        index: Sample of the event: an episode's first (start) or last (end) beat's R peak, an
            instant event's beat, the moment asystole began.
        decided_index: Sample whose arrival made the stage decide (decision delay =
            ``decided_index - index``).
        beats: Beats involved (an episode's beats so far; a run's length).
        rate_bpm: Mean heart rate of those beats (NaN when there are none).
        detail: Why an episode ended when it did not end by itself (``"stream ended"``,
            ``"lead-off"``, ``"gap"``), or ``"sustained"`` for VT of 30 s; else None.
    """

    kind: RhythmKind
    state: EventState
    index: int
    decided_index: int
    beats: int
    rate_bpm: float
    detail: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.index <= self.decided_index:
            msg = f"event at {self.index} decided at {self.decided_index}: 0 <= index <= decided"
            raise ValueError(msg)
        if self.beats < 0:
            msg = f"beats={self.beats} must be >= 0"
            raise ValueError(msg)
