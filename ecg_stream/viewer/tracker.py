"""What the monitor knows about one stream, built from wire messages; pure Python and numpy."""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass

from ecg_stream.errors import ConfigError
from ecg_stream.types import BEAT_CLASSES, BeatClass
from ecg_stream.viewer.ring import DisplayRing
from ecg_stream.wire import BeatMessage, SamplesMessage, StatusMessage, StreamState

RESTART_BACKSTEP_S = 1.0
"""A samples message this far behind the newest sample means the stream started over."""

MAX_BEATS_PER_S = 5
"""Upper bound of the beat rate (300 bpm), sizing the bounded list of recent beats."""


@dataclass(frozen=True, slots=True)
class BeatMark:
    """A labeled beat as the monitor draws it.

    Args:
        chain_sample: R-peak index on the chain's clock (the samples topic's clock).
        time_s: R-peak time in the record, in s.
        wall_time_s: R-peak wall-clock time, in s since the Unix epoch.
        label: Predicted class.
        confidence: Probability of ``label``, in [0, 1].
        probabilities: Probability of every class, in :data:`BEAT_CLASSES` order.
        rr_ms: Interval to the previous beat, in ms (None for the stream's first beat).
    """

    chain_sample: int
    time_s: float
    wall_time_s: float
    label: BeatClass
    confidence: float
    probabilities: tuple[float, ...]
    rr_ms: float | None

    @classmethod
    def from_message(cls, message: BeatMessage) -> BeatMark:
        """Keep what the monitor draws from a decoded beat message."""
        return cls(
            chain_sample=message.chain_sample,
            time_s=message.time_s,
            wall_time_s=message.r_wall_time,
            label=message.label,
            confidence=message.confidence,
            probabilities=tuple(message.probabilities),
            rr_ms=message.rr_ms,
        )

    def describe(self) -> str:
        """One line for a tooltip: class, confidence, time and every class probability."""
        probabilities = " ".join(
            f"{beat_class.value} {p:.2f}"
            for beat_class, p in zip(BEAT_CLASSES, self.probabilities, strict=True)
        )
        rr = "first beat" if self.rr_ms is None else f"RR {self.rr_ms:.0f} ms"
        return (
            f"{self.label.value} ({self.confidence:.0%}) at {format_record_time(self.time_s)}, "
            f"{rr}\n{probabilities}"
        )


def format_record_time(time_s: float) -> str:
    """Format a time in the record as ``m:ss.s`` (or ``h:mm:ss.s``).

    Example:
        >>> format_record_time(754.46), format_record_time(3725.0)
        ('12:34.5', '1:02:05.0')
    """
    tenths = round(time_s * 10)
    minutes, tenths_in_minute = divmod(tenths, 600)
    hours, minutes = divmod(minutes, 60)
    seconds = f"{tenths_in_minute // 10:02d}.{tenths_in_minute % 10}"
    if hours:
        return f"{hours}:{minutes:02d}:{seconds}"
    return f"{minutes}:{seconds}"


class StreamTracker:
    """Trace, beats and live figures of one stream, updated from decoded wire messages.

    Everything is bounded: the trace is a :class:`DisplayRing` of ``history_s`` seconds, the
    beats, RR intervals and latencies are ``deque``s with a ``maxlen``, so memory stays flat
    however long the stream runs.

    Args:
        stream: Stream id (the topic level after the prefix).
        history_s: Seconds of trace and beats kept (what a paused view can scroll back to).
        rr_beats: Number of recent RR intervals in the heart rate.
        latency_beats: Number of recent beats in the median latencies.

    Attributes:
        ring: The filtered trace in mV, on the chain's clock (None before the first samples).
        fs_hz: Sampling rate of the trace, in Hz (NaN before the first samples).
        online: True/False from the status topic, None before any status message.
        record: Record name from the status or beat messages ("" before any).
        model: Model name from the status topic ("" before any).
        counts: Beats per class since the stream started (or restarted).
        beats: The most recent beats, oldest first.
        last_abnormal: The most recent beat not labeled N, if any.
        restarts: How often the stream started over (its sample index went back).
        revision: Incremented whenever ``beats`` changes, so a view redraws markers only then.
    """

    def __init__(
        self, stream: str, history_s: float, rr_beats: int = 8, latency_beats: int = 50
    ) -> None:
        if not history_s > 0 or rr_beats < 1 or latency_beats < 1:
            msg = (
                f"StreamTracker(history_s={history_s}, rr_beats={rr_beats}, latency_beats="
                f"{latency_beats}) needs history_s > 0 and counts >= 1"
            )
            raise ConfigError(msg)
        self.stream, self.history_s = stream, history_s
        self.rr_beats, self.latency_beats = rr_beats, latency_beats
        self.online: bool | None = None
        self.record = ""
        self.model = ""
        self.restarts = 0
        self.revision = 0
        self.reset()

    def reset(self) -> None:
        """Forget trace, beats and figures (status, record and model stay)."""
        self.ring: DisplayRing | None = None
        self.fs_hz = math.nan
        self.counts: dict[BeatClass, int] = dict.fromkeys(BEAT_CLASSES, 0)
        self.beats: deque[BeatMark] = deque(
            maxlen=max(1, math.ceil(self.history_s * MAX_BEATS_PER_S))
        )
        self.last_abnormal: BeatMark | None = None
        self._rr_ms: deque[float] = deque(maxlen=self.rr_beats)
        self._compute_ms: deque[float] = deque(maxlen=self.latency_beats)
        self._end_to_end_ms: deque[float] = deque(maxlen=self.latency_beats)
        self.revision += 1

    def add_status(self, message: StatusMessage) -> None:
        """Take the stream's state, record and model from a status message."""
        self.online = message.state is StreamState.ONLINE
        self.record = message.record
        self.model = message.model

    def add_samples(self, message: SamplesMessage) -> None:
        """Append a chunk of the filtered trace (converted to mV)."""
        if self.ring is not None and message.fs_hz != self.fs_hz:
            self.restarts += 1
            self.reset()
        if (
            self.ring is not None
            and message.start_index < self.ring.end_index - RESTART_BACKSTEP_S * self.fs_hz
        ):
            self.restarts += 1
            self.reset()
        if self.ring is None:
            self.fs_hz = message.fs_hz
            self.ring = DisplayRing(max(1, round(self.history_s * message.fs_hz)))
        self.ring.append(message.start_index, message.samples_mv)

    def add_beat(self, message: BeatMessage, receipt_wall_s: float) -> None:
        """Count and keep a labeled beat; ``receipt_wall_s`` is when it arrived (Unix s)."""
        mark = BeatMark.from_message(message)
        self.record = message.record or self.record
        self.beats.append(mark)
        self.counts[mark.label] += 1
        if mark.label is not BeatClass.N:
            self.last_abnormal = mark
        if mark.rr_ms is not None:
            self._rr_ms.append(mark.rr_ms)
        self._compute_ms.append(message.compute_ms)
        # end-to-end latency (docs/protocol.md): from arrival of the beat's last sample
        # (publish time minus compute latency) to receipt here; both wall clocks, so only as
        # good as their sync.
        arrival_s = message.published_at - message.compute_ms / 1000.0
        self._end_to_end_ms.append((receipt_wall_s - arrival_s) * 1000.0)
        self.revision += 1

    @property
    def heart_rate_bpm(self) -> float | None:
        """Heart rate from the median of the recent RR intervals, in bpm (None before two beats)."""
        if not self._rr_ms:
            return None
        return 60_000.0 / statistics.median(self._rr_ms)

    @property
    def median_compute_ms(self) -> float | None:
        """Median compute latency of the recent beats, in ms (None before any beat)."""
        return statistics.median(self._compute_ms) if self._compute_ms else None

    @property
    def median_end_to_end_ms(self) -> float | None:
        """Median end-to-end latency of the recent beats, in ms (None before any beat)."""
        return statistics.median(self._end_to_end_ms) if self._end_to_end_ms else None
