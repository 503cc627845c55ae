"""Beat windows cut from a ring buffer of filtered signal, with causal RR and shape features."""

from __future__ import annotations

import itertools
import math
import statistics
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ecg_stream.config import ChainConfig
from ecg_stream.detector.stage import ended_error
from ecg_stream.errors import ConfigError
from ecg_stream.types import BeatWindow, FloatArray, MorphologyFeatures, RPeak, RRFeatures

NORMALISATION = "zscore"
"""Name of the per-window normalisation, as written into the model contract."""
FEATURE_NAMES = (
    "rr_s",
    "local_mean_rr_s",
    "rr_ratio",
    "long_rr_ratio",
    "template_correlation",
    "amplitude_ratio",
    "median_rr_ratio",
    "upper_rr_ratio",
    "qrs_width_ratio",
    "rr_irregularity_8",
    "rr_irregularity_64",
    "af_irregularity",
    "p_wave_correlation",
    "p_wave_amplitude_ratio",
    "sqi",
)
"""Every per-beat feature a model may take as its second input; a model's contract names its own.
The rhythm context (RR irregularity over 8 and 64 intervals and the AF detector's lagged
irregularity, from the RR series alone), the atrial activity before the QRS and the signal
quality index are computed for every beat whether a model takes them or not."""
WINDOW_CHANNELS = ("beat", "template")
"""Every channel a model's window input may hold: the normalised beat, and the normalised
template of the stream's dominant beat it is compared with; a model's contract names its own."""
PRIOR_RR_MS = 800.0
"""RR assumed for a stream's first beat, which has no predecessor: a normal 75 bpm."""
LONG_RR_MEAN_BEATS = 256
"""Past RR intervals in the long mean RR: about 3.5 minutes at 75 bpm."""
ROBUST_RR_BEATS = 64
"""Past RR intervals behind the median and upper-percentile RR, and the long RR irregularity:
about 50 s at 75 bpm."""
SHORT_IRREGULARITY_BEATS = 8
"""Past RR intervals behind the short RR irregularity (the window of AF detectors)."""
IRREGULARITY_LAGS: tuple[int, ...] = (1, 2, 3)
"""Lags of the lagged RR irregularity; 2 and 3 make bigeminy and trigeminy regular."""
LAGGED_IRREGULARITY_BEATS = 32
"""Past RR intervals behind the ``af_irregularity`` feature (the AF detector's window)."""
LAGGED_IRREGULARITY_MIN_BEATS = 16
"""Intervals the lagged irregularity needs; NaN (feature 0) before."""
P_WAVE_SPAN_S = (0.25, 0.05)
"""The stretch before the R peak where the P wave lies: from 250 to 50 ms before it."""
UPPER_RR_PERCENTILE = 90.0
"""Percentile of the recent intervals that ``upper_rr_ms`` takes."""
QRS_WIDTH_LEVEL = 0.3
"""The QRS width counts the samples whose deviation exceeds this fraction of the QRS peak's."""
WIDTH_RATIO_CAP = 8.0
"""QRS width ratios are capped here, as amplitude ratios are."""
TEMPLATE_BEATS = 32
"""Previous non-premature beats whose per-sample median is the template a beat is compared with."""
PREMATURE_RR_RATIO = 0.9
"""A beat whose RR is below this fraction of the local mean RR is premature and stays out of
the template, so that frequent ectopic beats (bigeminy) cannot become the reference shape."""
QRS_HALF_WIDTH_S = 0.1
"""The QRS amplitude is measured within this many seconds either side of the R peak."""
AMPLITUDE_RATIO_CAP = 8.0
"""Amplitude ratios are capped here, so an artefact cannot feed the model an extreme value."""


def normalise_window(samples: FloatArray) -> FloatArray:
    """Z-score a window (zero mean, unit variance): the one normalisation, train and serve.

    Example:
        >>> normalise_window(np.array([1.0, 2.0, 3.0])).round(3).tolist()
        [-1.225, 0.0, 1.225]
    """
    centred = samples - samples.mean()
    spread = float(centred.std())
    return np.asarray(centred / spread if spread > 1e-9 else centred, dtype=np.float64)


def unknown_features(names: Sequence[str]) -> list[str]:
    """The names that are not in ``FEATURE_NAMES``, in order.

    Example:
        >>> unknown_features(["rr_s", "qrs_ms"])
        ['qrs_ms']
    """
    return [name for name in names if name not in FEATURE_NAMES]


def unknown_channels(names: Sequence[str]) -> list[str]:
    """The names that are not in ``WINDOW_CHANNELS``, in order.

    Example:
        >>> unknown_channels(["beat", "derivative"])
        ['derivative']
    """
    return [name for name in names if name not in WINDOW_CHANNELS]


def beat_features(window: BeatWindow) -> dict[str, float]:
    """Every feature of ``FEATURE_NAMES`` for one beat (first beat: ``PRIOR_RR_MS``)."""
    rr = window.rr
    rr_ms, local_ms, long_ms, median_ms, upper_ms = (
        PRIOR_RR_MS if np.isnan(value) else value
        for value in (
            rr.rr_ms,
            rr.local_mean_rr_ms,
            rr.long_mean_rr_ms,
            rr.median_rr_ms,
            rr.upper_rr_ms,
        )
    )
    morphology = window.morphology
    return {
        "rr_s": rr_ms / 1000.0,
        "local_mean_rr_s": local_ms / 1000.0,
        "rr_ratio": rr_ms / local_ms,
        "long_rr_ratio": rr_ms / long_ms,
        "template_correlation": morphology.template_correlation,
        "amplitude_ratio": morphology.amplitude_ratio,
        "median_rr_ratio": rr_ms / median_ms,
        "upper_rr_ratio": rr_ms / upper_ms,
        "qrs_width_ratio": morphology.qrs_width_ratio,
        "rr_irregularity_8": _known_or_zero(rr.irregularity_short),
        "rr_irregularity_64": _known_or_zero(rr.irregularity_long),
        "af_irregularity": _known_or_zero(rr.irregularity_lagged),
        "p_wave_correlation": morphology.p_wave_correlation,
        "p_wave_amplitude_ratio": morphology.p_wave_amplitude_ratio,
        "sqi": 1.0 if window.quality is None else window.quality.sqi,
    }


def feature_vector(window: BeatWindow, names: Sequence[str]) -> FloatArray:
    """The features ``names`` of one beat, in that order (each one of ``FEATURE_NAMES``)."""
    values = beat_features(window)
    return np.array([values[name] for name in names])


def window_channels(window: BeatWindow, names: Sequence[str]) -> FloatArray:
    """The channels ``names`` (of ``WINDOW_CHANNELS``) of one beat, shape (samples, channels)."""
    beat = normalise_window(window.samples)
    template = window.morphology.template
    values = {"beat": beat, "template": beat if template is None else template}
    return np.stack([values[name] for name in names], axis=1)


class MorphologyTracker:
    """Compare each beat window with the median of the stream's previous non-premature windows.

    A patient's own dominant beat is the reference: a bundle-branch-block patient's wide
    normal beats match their template, while an ectopic beat stands out in shape and size.
    Premature beats (and windows padded at a stream's edge) are compared but never join the
    template, so even when ectopic beats are as frequent as normal ones the template keeps the
    normal shape. Not a ``Stage``: one
    whole window in, its features out, called by ``BeatSegmenter`` for each window it cuts.

    Args:
        config: Window geometry; the QRS span is centred on the window's R peak.
        template_beats: Previous beats in the median template.

    Example:
        >>> tracker = MorphologyTracker(ChainConfig())
        >>> beat = np.sin(np.linspace(0, 6, 250))
        >>> tracker.measure(beat).amplitude_ratio, tracker.measure(2 * beat, premature=True)
        (1.0, MorphologyFeatures(template_correlation=1.0, amplitude_ratio=2.0, \
qrs_width_ratio=1.0, p_wave_correlation=1.0, p_wave_amplitude_ratio=1.0))
        >>> tracker.measure(beat).amplitude_ratio
        1.0
    """

    def __init__(self, config: ChainConfig, template_beats: int = TEMPLATE_BEATS) -> None:
        if template_beats < 1:
            msg = f"template_beats={template_beats} must be >= 1"
            raise ConfigError(msg)
        self.config, self.template_beats = config, template_beats
        half_width = round(QRS_HALF_WIDTH_S * config.fs_hz)
        self._qrs = slice(
            max(config.window_before_samples - half_width, 0),
            config.window_before_samples + half_width,
        )
        earliest_s, latest_s = P_WAVE_SPAN_S
        self._p_wave = slice(
            max(config.window_before_samples - round(earliest_s * config.fs_hz), 0),
            max(config.window_before_samples - round(latest_s * config.fs_hz), 1),
        )
        self.reset()

    def reset(self) -> None:
        """Forget all past beats."""
        self._recent_shapes: deque[FloatArray] = deque(maxlen=self.template_beats)
        self._recent_amplitudes: deque[float] = deque(maxlen=self.template_beats)

    def measure(self, samples: FloatArray, *, premature: bool = False) -> MorphologyFeatures:
        """Features of the next beat window, which then joins the template unless premature."""
        shape = normalise_window(samples)
        qrs = samples[self._qrs]
        amplitude = float(qrs.max() - qrs.min())
        features = MorphologyFeatures(template_correlation=1.0, amplitude_ratio=1.0, template=shape)
        if self._recent_shapes:
            template = normalise_window(np.median(np.stack(self._recent_shapes), axis=0))
            typical_amplitude = statistics.median(self._recent_amplitudes)
            typical_width = self._qrs_width(template)
            features = MorphologyFeatures(
                template_correlation=float(np.mean(shape * template)),  # Pearson r; 0 if flat
                amplitude_ratio=min(amplitude / typical_amplitude, AMPLITUDE_RATIO_CAP)
                if typical_amplitude > 1e-9
                else 1.0,
                qrs_width_ratio=min(self._qrs_width(shape) / typical_width, WIDTH_RATIO_CAP)
                if typical_width
                else 1.0,
                p_wave_correlation=_correlation(shape[self._p_wave], template[self._p_wave]),
                p_wave_amplitude_ratio=_spread_ratio(shape[self._p_wave], template[self._p_wave]),
                template=template,
            )
        if not premature:
            self._recent_shapes.append(shape)
            self._recent_amplitudes.append(amplitude)
        return features

    def _qrs_width(self, shape: FloatArray) -> int:
        """Samples of the QRS span that deviate from the median by ``QRS_WIDTH_LEVEL`` of the peak.

        0 for a flat window.
        """
        deviation = np.abs(shape[self._qrs] - np.median(shape))
        peak = float(deviation.max())
        return int(np.count_nonzero(deviation > QRS_WIDTH_LEVEL * peak)) if peak > 1e-9 else 0


@dataclass(frozen=True, slots=True)
class Detected:
    """The segmenter's input: the next filtered samples and the R peaks decided on them.

    Args:
        samples: The next filtered samples of the stream, in mV (empty at the stream's end).
        peaks: R peaks the detector decided on the arrival of ``samples``, in index order; a
            peak may lie in earlier samples.
    """

    samples: FloatArray
    peaks: tuple[RPeak, ...] = ()

    def __post_init__(self) -> None:
        if self.samples.ndim != 1:
            msg = f"Detected.samples must be 1-D, got shape {self.samples.shape}"
            raise ValueError(msg)


class BeatSegmenter:
    """Cut a fixed window of filtered signal around each R peak as soon as it is complete.

    The last ``history_s`` of filtered samples are kept; R peaks arrive from the
    detector, possibly late (search-back). A window is emitted once its last sample has
    arrived. Windows that reach before the stream start are padded with the first sample;
    at ``flush()`` windows that reach past the end are padded with the last. A ``Stage`` of
    ``Detected`` chunks in, lists of beat windows out.

    Args:
        config: Window geometry and RR settings.
        history_s: Signal kept, in s: how late a peak may arrive and still be cut.

    Example:
        >>> segmenter = BeatSegmenter(ChainConfig())
        >>> windows = segmenter.process(Detected(np.zeros(1000), (RPeak(400, decided_index=500),)))
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
        self._morphology = MorphologyTracker(config)
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
        self._long_rr_ms: deque[float] = deque(maxlen=LONG_RR_MEAN_BEATS)
        self._robust_rr_ms: deque[float] = deque(maxlen=ROBUST_RR_BEATS)
        self._morphology.reset()
        self._ended = False

    def process(self, chunk: Detected) -> list[BeatWindow]:
        """Take the next filtered samples and the peaks decided on them; return complete windows."""
        if self._ended:
            raise ended_error(self)
        filtered = chunk.samples
        if filtered.size and self._first_sample is None:
            self._first_sample = float(filtered[0])
        self._recent = np.concatenate([self._recent, filtered])
        self._end_index += filtered.size
        for peak in chunk.peaks:
            self._waiting.append((peak, self._rr_features(peak)))
        windows = self._emit(final=False)
        self._recent = self._recent[-self._capacity :]
        return windows

    def flush(self) -> list[BeatWindow]:
        """The stream has ended: emit every window still waiting, edge-padded."""
        self._ended = True
        return self._emit(final=True)

    def _rr_features(self, peak: RPeak) -> RRFeatures:
        if self._previous_peak_index is None:
            rr_ms = float("nan")
        else:
            rr_ms = (peak.index - self._previous_peak_index) * 1000.0 / self.config.fs_hz
            self._recent_rr_ms.append(rr_ms)
            self._long_rr_ms.append(rr_ms)
            self._robust_rr_ms.append(rr_ms)
        self._previous_peak_index = peak.index
        robust = (
            np.percentile(self._robust_rr_ms, [50.0, UPPER_RR_PERCENTILE])
            if self._robust_rr_ms
            else (float("nan"), float("nan"))
        )
        recent = list(self._robust_rr_ms)
        return RRFeatures(
            rr_ms=rr_ms,
            local_mean_rr_ms=_mean_or_nan(self._recent_rr_ms),
            long_mean_rr_ms=_mean_or_nan(self._long_rr_ms),
            median_rr_ms=float(robust[0]),
            upper_rr_ms=float(robust[1]),
            irregularity_short=rr_irregularity(recent[-SHORT_IRREGULARITY_BEATS:]),
            irregularity_long=rr_irregularity(recent),
            irregularity_lagged=lagged_rr_irregularity(
                self._robust_rr_ms, LAGGED_IRREGULARITY_BEATS, LAGGED_IRREGULARITY_MIN_BEATS
            ),
        )

    def _emit(self, *, final: bool) -> list[BeatWindow]:
        windows: list[BeatWindow] = []
        while self._waiting:
            peak, rr = self._waiting[0]
            ready_index = peak.index + self.config.window_after_samples
            if ready_index > self._end_index and not final:
                break
            self._waiting.popleft()
            samples, padded = self._cut(peak.index)
            # a padded window (the stream's first or last beat) is no beat shape to learn from
            kept_out = padded or _is_premature(rr)
            windows.append(
                BeatWindow(
                    peak=peak,
                    samples=samples,
                    rr=rr,
                    morphology=self._morphology.measure(samples, premature=kept_out),
                    ready_index=ready_index,
                )
            )
        return windows

    def _cut(self, peak_index: int) -> tuple[FloatArray, bool]:
        """The window around ``peak_index``, and whether it was padded at a stream edge."""
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
        padded = np.concatenate([np.full(before, first), window, np.full(after, last)])
        return padded, before > 0 or after > 0


def _is_premature(rr: RRFeatures) -> bool:
    """Whether a beat came early against the local mean RR (never a stream's first beat)."""
    return rr.rr_ms < PREMATURE_RR_RATIO * rr.local_mean_rr_ms  # False when either is NaN


def rr_irregularity(rr_ms: Sequence[float]) -> float:
    """Median absolute difference of successive intervals over their median (NaN: < 3).

    Statistics on lists, as ``lagged_rr_irregularity``: the same medians as numpy's,
    without its call overhead on a few dozen values.

    Example:
        >>> round(rr_irregularity([600.0, 900.0, 700.0]), 3)
        0.357
    """
    if len(rr_ms) < 3:
        return math.nan
    differences = [abs(b - a) for a, b in itertools.pairwise(rr_ms)]
    return statistics.median(differences) / statistics.median(rr_ms)


def lagged_rr_irregularity(rr_ms: Iterable[float], last: int, min_intervals: int) -> float:
    """The smallest, over ``IRREGULARITY_LAGS``, median ``|RR_i - RR_{i-lag}|`` over the median RR.

    Taken over the ``last`` intervals of ``rr_ms``; NaN while fewer than ``min_intervals``.
    Statistics on lists: at most a few dozen values, where numpy's call overhead would dominate.

    Example:
        >>> lagged_rr_irregularity([600.0, 900.0] * 8, last=32, min_intervals=16)  # bigeminy
        0.0
    """
    intervals = list(rr_ms)[-last:]
    if len(intervals) < max(min_intervals, 2 * max(IRREGULARITY_LAGS) + 1):
        return math.nan
    differences = (
        statistics.median([abs(b - a) for a, b in zip(intervals, intervals[lag:], strict=False)])
        for lag in IRREGULARITY_LAGS
    )
    return min(differences) / statistics.median(intervals)


def _correlation(a: FloatArray, b: FloatArray) -> float:
    """Pearson correlation of two stretches; 0 when either is flat."""
    a, b = a - a.mean(), b - b.mean()
    scale = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return float(np.dot(a, b)) / scale if scale > 1e-12 else 0.0


def _spread_ratio(stretch: FloatArray, reference: FloatArray) -> float:
    """Standard deviation of ``stretch`` over ``reference``'s, capped; 1 for a flat reference."""
    spread = float(reference.std())
    return min(float(stretch.std()) / spread, AMPLITUDE_RATIO_CAP) if spread > 1e-9 else 1.0


def _known_or_zero(value: float) -> float:
    """A feature's value, 0 while it is not known yet (a stream's first beats)."""
    return 0.0 if np.isnan(value) else value


def _mean_or_nan(values: deque[float]) -> float:
    return float(np.mean(values)) if values else float("nan")
