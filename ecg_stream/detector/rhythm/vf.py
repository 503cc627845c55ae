"""Ventricular flutter and fibrillation from the filtered signal, causal and pure numpy.

During VF the chain sees no regular QRS: the signal is a fast, near-sinusoidal (flutter) or
chaotic (fibrillation) wave, so the detector looks at the signal, not at the beats. Once per
``step_s`` of signal (at absolute sample indices, so chunking changes nothing) it takes the last
``window_s`` of the filtered signal and computes four low-complexity features (Amann et al.
2005 review them):

- **band**: the share of the 0.5-40 Hz power (Hann-windowed spectrum) in 2.5-9 Hz, where VF
  puts nearly all of its power and sinus rhythm, whose QRS is sharp, far less;
- **high**: the share in 12-40 Hz, which the sharp QRS of a wide-complex tachycardia keeps and
  flutter waves do not;
- **leakage** (the VF filter of Kuo and Dillman): with ``N`` the mean period estimated as
  ``pi * sum|x| / sum|x_i - x_{i-1}|``, ``sum|x_i + x_{i-N}| / sum(|x_i| + |x_{i-N}|)``:
  small for a sinusoid of period ``2N``;
- **tcsc** (threshold crossing sample count, after Arafat et al.): the share of samples whose
  magnitude is above 0.2 times the window's largest: large for a wave, small for spiky QRS.

A window is *VF-like* when band >= ``min_band``, high <= ``max_high``, leakage <=
``max_leakage``, tcsc >= ``min_tcsc`` and its 5-95 percentile range is at least
``min_amplitude_mv`` (a flat or stopped signal is not VF); while an episode is open,
``stay_max_high`` and ``stay_max_leakage`` replace ``max_high`` and ``max_leakage``
(hysteresis: flutter whose waves sharpen for a while stays one episode). ``enter_windows``
VF-like windows in a row start an episode; ``exit_windows`` windows in a row that are not end
it. A window is
VF-like once about half of it is VF, so the onset is placed back to the middle of the first
VF-like window, and the end to the middle of the last.
A hole in the samples (a lead-off, a gap, a chunk without samples) empties the window: the
next decision waits for ``window_s`` of new signal.

A window that holds ``ORGANIZED_BEATS`` detected beats in a row at a steady rate of at most
``ORGANIZED_MAX_BPM`` (each RR within ``ORGANIZED_TOLERANCE`` of their median; any label,
paced beats too) is organized ventricular activity, not VF, and is not VF-like; its features
are not computed. Only beats decided by the window's end count, so chunking changes nothing.

Every default was chosen on DS1 records only: ventricular flutter in record 207 (six ``(VFL``
episodes, 2.4 min), no VF allowed in the other 21 DS1 records (203, 205 and 208, with fast VT
and many V beats, are the hard negatives), nor in record 100 with NSTDB electrode motion,
muscle or baseline noise added at -6 dB. Features were computed per second on 4 s windows and
a grid searched for no false episode outside 207 with ``enter_windows`` to spare; ``max_high``
is what keeps the fast VT of 203 and 205 out, the hysteresis what keeps 207's long episode
whole. Through ``ecg-stream evaluate --rhythm DS1``, whole record: ``(VFL`` in 207, episode
Se 6/6, +P 7/7, duration Se 85.5 % / +P 100 %, onset decided 4.9 s (median) after the
reference; no false VF in 10.5 h on the other 21 records.
Missing VF is preferred to false VF.

References:
    Amann A, Tratnig R, Unterkofler K. Reliability of old and new ventricular fibrillation
    detection algorithms for automated external defibrillators. Biomed Eng Online 4:60, 2005.
    Kuo S, Dillman R. Computer detection of ventricular fibrillation. Computers in Cardiology
    1978.
    Arafat MA, Chowdhury AW, Hasan MK. A simple time domain algorithm for the detection of
    ventricular fibrillation in electrocardiogram. Signal Image Video Process 5, 2011.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from ecg_stream.errors import ConfigError
from ecg_stream.types import FloatArray

BAND_HZ = (2.5, 9.0)
"""Where VF puts its power, in Hz."""
HIGH_HZ = (12.0, 40.0)
"""Where a QRS keeps power that flutter waves lack, in Hz."""
TOTAL_HZ = (0.5, 40.0)
"""The filtered signal's band, in Hz: the denominator of both shares."""
TCSC_FRACTION = 0.2
"""Threshold of the threshold crossing sample count, as a share of the window's largest |x|."""

ORGANIZED_BEATS = 4
"""Detected beats in a row at a steady rate that make a window organized (not VF)."""
ORGANIZED_MAX_BPM = 150.0
"""Fastest steady rate of organized activity: flutter waves (about 200-300 bpm) stay VF-like."""
ORGANIZED_TOLERANCE = 0.15
"""How far each RR interval of organized beats may lie from their median, a fraction of it."""

DEFAULT_WINDOW_S = 4.0
DEFAULT_STEP_S = 1.0
DEFAULT_MIN_BAND = 0.6
DEFAULT_MAX_HIGH = 0.03
DEFAULT_MAX_LEAKAGE = 0.65
DEFAULT_MIN_TCSC = 0.35
DEFAULT_MIN_AMPLITUDE_MV = 0.2
DEFAULT_STAY_MAX_HIGH = 0.07
DEFAULT_STAY_MAX_LEAKAGE = 0.7
DEFAULT_ENTER_WINDOWS = 3
DEFAULT_EXIT_WINDOWS = 4


@dataclass(frozen=True, slots=True)
class VfSettings:
    """Window, thresholds and persistence of the VF detector (defaults chosen on DS1).

    Args:
        window_s: Length of the analysed window, in s.
        step_s: Time between two decisions, in s.
        min_band: Least share of power in 2.5-9 Hz.
        max_high: Largest share of power in 12-40 Hz.
        max_leakage: Largest leakage of the VF filter.
        min_tcsc: Least share of samples above 0.2 times the window's largest magnitude.
        min_amplitude_mv: Least 5-95 percentile range of the window, in mV.
        stay_max_high: ``max_high`` while an episode is open (hysteresis).
        stay_max_leakage: ``max_leakage`` while an episode is open (hysteresis).
        enter_windows: VF-like windows in a row that start an episode.
        exit_windows: Windows in a row, not VF-like, that end it.
    """

    window_s: float = DEFAULT_WINDOW_S
    step_s: float = DEFAULT_STEP_S
    min_band: float = DEFAULT_MIN_BAND
    max_high: float = DEFAULT_MAX_HIGH
    max_leakage: float = DEFAULT_MAX_LEAKAGE
    min_tcsc: float = DEFAULT_MIN_TCSC
    min_amplitude_mv: float = DEFAULT_MIN_AMPLITUDE_MV
    stay_max_high: float = DEFAULT_STAY_MAX_HIGH
    stay_max_leakage: float = DEFAULT_STAY_MAX_LEAKAGE
    enter_windows: int = DEFAULT_ENTER_WINDOWS
    exit_windows: int = DEFAULT_EXIT_WINDOWS

    def __post_init__(self) -> None:
        if not 0.0 < self.step_s <= self.window_s:
            msg = (
                f"VfSettings step_s={self.step_s}, window_s={self.window_s}: "
                "need 0 < step_s <= window_s"
            )
            raise ConfigError(msg)
        shares = ("min_band", "max_high", "max_leakage", "min_tcsc")
        for name in (*shares, "stay_max_high", "stay_max_leakage"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                msg = f"VfSettings.{name}={value} must be a share in [0, 1]"
                raise ConfigError(msg)
        if self.min_amplitude_mv < 0.0:
            msg = f"VfSettings.min_amplitude_mv={self.min_amplitude_mv} must be >= 0"
            raise ConfigError(msg)
        if self.enter_windows < 1 or self.exit_windows < 1:
            msg = (
                f"VfSettings enter_windows={self.enter_windows}, exit_windows="
                f"{self.exit_windows}: both must be >= 1"
            )
            raise ConfigError(msg)


@dataclass(frozen=True, slots=True)
class VfFeatures:
    """The features of one window (see the module docstring)."""

    band: float
    high: float
    leakage: float
    tcsc: float
    amplitude_mv: float


@dataclass(frozen=True, slots=True)
class VfChange:
    """VF started or ended.

    Args:
        in_vf: True at an onset, False at an end.
        index: The onset, or the end, placed back to the middle of the first, or the last,
            VF-like window.
        decided_index: The sample whose arrival decided it.
    """

    in_vf: bool
    index: int
    decided_index: int


def vf_features(samples: FloatArray, fs_hz: float) -> VfFeatures:
    """The VF features of one window of filtered signal (mV at ``fs_hz``)."""
    x = samples - float(np.mean(samples))
    taper, freqs = _spectrum_frame(x.size, fs_hz)
    power = np.abs(np.fft.rfft(x * taper)) ** 2

    def share(band_hz: tuple[float, float]) -> float:
        return float(power[(freqs >= band_hz[0]) & (freqs <= band_hz[1])].sum())

    total = max(share(TOTAL_HZ), 1e-12)
    magnitude = np.abs(x)
    period = max(
        1, round(math.pi * float(magnitude.sum()) / max(float(np.abs(np.diff(x)).sum()), 1e-12))
    )
    leakage = 1.0
    if period < x.size:
        ahead, behind = x[period:], x[:-period]
        denominator = float(np.abs(ahead).sum() + np.abs(behind).sum())
        leakage = float(np.abs(ahead + behind).sum()) / max(denominator, 1e-12)
    tcsc = _tcsc(magnitude)
    low, high = _percentile(x, 0.05), _percentile(x, 0.95)
    return VfFeatures(
        band=share(BAND_HZ) / total,
        high=share(HIGH_HZ) / total,
        leakage=leakage,
        tcsc=tcsc,
        amplitude_mv=float(high - low),
    )


def _tcsc(magnitude: FloatArray) -> float:
    """Share of samples above ``TCSC_FRACTION`` of the largest magnitude (0 when flat)."""
    largest = float(magnitude.max(initial=0.0))
    return (
        float(np.count_nonzero(magnitude > TCSC_FRACTION * largest)) / magnitude.size
        if largest > 0.0
        else 0.0
    )


@functools.cache
def _spectrum_frame(size: int, fs_hz: float) -> tuple[FloatArray, FloatArray]:
    """The Hann taper and the bin frequencies of a window: the same every second."""
    freqs = np.asarray(np.fft.rfftfreq(size, 1.0 / fs_hz), dtype=np.float64)
    return np.hanning(size), freqs


def _percentile(x: FloatArray, fraction: float) -> float:
    """``np.percentile(x, 100 * fraction)`` (linear method, the same value) by a partial sort."""
    position = fraction * (x.size - 1)
    below = math.floor(position)
    above = min(below + 1, x.size - 1)
    part = np.partition(x, (below, above))
    a, b, weight = float(part[below]), float(part[above]), position - below
    return b - (b - a) * (1.0 - weight) if weight >= 0.5 else a + (b - a) * weight


class VfDetector:
    """Causal VF episodes of one stream from its filtered signal, decided once per step.

    Args:
        settings: Window, thresholds and persistence (None: the DS1 defaults).
        fs_hz: Sampling rate of the filtered signal, in Hz.

    Attributes:
        in_vf: Whether a VF episode is open.

    State (private, set in ``reset()``, bounded): the last ``window_s`` of signal (a fixed-size
    array), how many of its samples are valid since the last hole, the stream clock, the
    runs of VF-like and not VF-like windows, and the onset and last VF-like sample.

    Example:
        >>> detector = VfDetector(fs_hz=360.0)
        >>> t = np.arange(20 * 360) / 360.0
        >>> changes = detector.process(np.sin(2 * np.pi * 4.0 * t), 20 * 360)
        >>> [(c.in_vf, c.index, c.decided_index) for c in changes]
        [(True, 720, 2159)]
    """

    def __init__(self, settings: VfSettings | None = None, fs_hz: float = 360.0) -> None:
        if not fs_hz > 0.0:
            msg = f"fs_hz={fs_hz} must be > 0; pass the chain's rate (360 Hz)"
            raise ConfigError(msg)
        self.settings = VfSettings() if settings is None else settings
        self.fs_hz = fs_hz
        self._window_samples = round(self.settings.window_s * fs_hz)
        self._step_samples = round(self.settings.step_s * fs_hz)
        self._recent_peaks = math.ceil(5.0 * self.settings.window_s) + ORGANIZED_BEATS
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the detector is as freshly built."""
        self._ring = np.zeros(self._window_samples)  # the newest samples, a circular buffer
        self._ring_next = 0  # where the next sample goes: the oldest sample's position
        # (R peak, decided at) of the last beats decided, enough to fill a window at 300 bpm
        self._peaks: deque[tuple[int, int]] = deque(maxlen=self._recent_peaks)
        self._valid_samples = 0  # samples of the window seen since the last hole
        self._end_index = 0  # samples of the stream seen
        self._like_run = 0  # VF-like windows in a row
        self._unlike_run = 0  # windows in a row that are not VF-like
        self._run_start_index = 0  # middle of the first window of the current VF-like run
        self._last_like_index = 0  # middle of the newest VF-like window
        self.in_vf = False

    def process(
        self,
        samples: FloatArray | None,
        end_index: int,
        peaks: Sequence[tuple[int, int]] = (),
    ) -> list[VfChange]:
        """Take the stream's samples ending at ``end_index``; return the changes they decided.

        ``peaks`` are the beats the chain decided with these samples, as (R peak, the sample
        it was decided at), in order: organized beats keep a window from being VF-like.

        Samples that start after the previous ``end_index`` (or None while the clock moved on)
        leave a hole: the window is emptied and an open episode ends (placed back as
        usual). Samples before the previous ``end_index`` are skipped.

        Raises:
            ValueError: ``end_index`` goes back in time.
        """
        if end_index < self._end_index:
            msg = f"end_index={end_index} is before the previous {self._end_index}"
            raise ValueError(msg)
        changes: list[VfChange] = []
        pending = deque(peaks)  # each joins the recent beats once its decision sample is reached
        size = 0 if samples is None else samples.size
        if end_index - size > self._end_index:
            self._hole(end_index - size, changes)
        if samples is None:
            self._peaks.extend(pending)
            return changes
        new = samples[max(0, samples.size - (end_index - self._end_index)) :]
        start_index = end_index - new.size
        step = self._step_samples
        taken = 0
        # Decisions at absolute samples: each window ends at a multiple of the step.
        first_boundary = (start_index // step + 1) * step
        for boundary in range(first_boundary, end_index + 1, step):
            while pending and pending[0][1] < boundary:
                self._peaks.append(pending.popleft())
            self._append(new[taken : boundary - start_index])
            taken = boundary - start_index
            if self._valid_samples >= self._window_samples:
                self._decide(boundary - 1, changes)
        self._append(new[taken:])
        self._peaks.extend(pending)
        self._end_index = end_index
        return changes

    def _hole(self, end_index: int, changes: list[VfChange]) -> None:
        """The signal up to ``end_index`` is missing: empty the window, end an open episode."""
        if self.in_vf:
            self.in_vf = False
            changes.append(VfChange(False, self._last_like_index, end_index - 1))
        self._valid_samples = 0
        self._like_run = self._unlike_run = 0
        self._end_index = end_index

    def _append(self, samples: FloatArray) -> None:
        capacity = self._window_samples
        size = min(samples.size, capacity)
        if size == 0:
            return
        start = self._ring_next
        first = min(size, capacity - start)
        self._ring[start : start + first] = samples[
            samples.size - size : samples.size - size + first
        ]
        self._ring[: size - first] = samples[samples.size - size + first :]
        self._ring_next = (start + size) % capacity
        self._valid_samples = min(self._valid_samples + samples.size, capacity)

    def _window(self) -> FloatArray:
        """The last ``window_s`` of signal, oldest first."""
        return np.concatenate((self._ring[self._ring_next :], self._ring[: self._ring_next]))

    def _is_vf_like(self, last_index: int) -> bool:
        """Whether the window is VF-like; organized beats, then a cheap count, screen first."""
        if self._is_organized(last_index):
            return False
        settings, window = self.settings, self._window()
        if _tcsc(np.abs(window - float(np.mean(window)))) < settings.min_tcsc:
            return False  # the same answer as below, at a tenth of the cost
        features = vf_features(window, self.fs_hz)
        max_high = settings.stay_max_high if self.in_vf else settings.max_high
        max_leakage = settings.stay_max_leakage if self.in_vf else settings.max_leakage
        return (
            features.band >= settings.min_band
            and features.high <= max_high
            and features.leakage <= max_leakage
            and features.tcsc >= settings.min_tcsc
            and features.amplitude_mv >= settings.min_amplitude_mv
        )

    def _is_organized(self, last_index: int) -> bool:
        """Whether the window ending at ``last_index`` holds organized beats decided by then."""
        first_index = last_index + 1 - self._window_samples
        peaks = [
            peak for peak, decided in self._peaks if first_index <= peak and decided <= last_index
        ]
        if len(peaks) < ORGANIZED_BEATS:
            return False
        recent = peaks[-ORGANIZED_BEATS:]
        rr = [b - a for a, b in pairwise(recent)]
        median = sorted(rr)[len(rr) // 2]
        steady = all(abs(interval - median) <= ORGANIZED_TOLERANCE * median for interval in rr)
        return steady and median >= 60.0 / ORGANIZED_MAX_BPM * self.fs_hz

    def _decide(self, last_index: int, changes: list[VfChange]) -> None:
        settings = self.settings
        like = self._is_vf_like(last_index)
        if like:
            if self._like_run == 0:
                self._run_start_index = last_index + 1 - self._window_samples // 2
            self._like_run += 1
            self._unlike_run = 0
            self._last_like_index = last_index - self._window_samples // 2
            if not self.in_vf and self._like_run >= settings.enter_windows:
                self.in_vf = True
                changes.append(VfChange(True, self._run_start_index, last_index))
            return
        self._like_run = 0
        self._unlike_run += 1
        if self.in_vf and self._unlike_run >= settings.exit_windows:
            self.in_vf = False
            changes.append(VfChange(False, self._last_like_index, last_index))
