"""What the monitor knows about one stream, built from wire messages; pure Python and numpy."""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from ecg_stream.errors import ConfigError
from ecg_stream.types import BEAT_CLASSES, BeatClass, EventState, RhythmKind
from ecg_stream.viewer.ring import DisplayRing
from ecg_stream.wire import BeatMessage, EventMessage, SamplesMessage, StatusMessage, StreamState

RESTART_BACKSTEP_S = 1.0
"""A samples message this far behind the newest sample means the stream started over."""

MAX_BEATS_PER_S = 5
"""Upper bound of the beat rate (300 bpm), sizing the bounded list of recent beats."""

MAX_ALARMS = 50
"""Alarm lines (rhythm events) kept per stream for the side panel."""

MAX_CLOSED_EPISODES = 32
"""Ended episodes kept per stream for drawing as bands (open ones are kept until they end)."""

BANDED_RHYTHMS: frozenset[RhythmKind] = frozenset(
    {RhythmKind.AF, RhythmKind.SVT, RhythmKind.VT, RhythmKind.VF, RhythmKind.ASYSTOLE}
)
"""Episodes drawn as bands on the strip; the others are only listed in the side panel."""

RHYTHM_LABELS: dict[RhythmKind, str] = {
    RhythmKind.AF: "AF",
    RhythmKind.SVT: "SVT",
    RhythmKind.VT: "VT",
    RhythmKind.VENTRICULAR_RUN: "V run",
    RhythmKind.COUPLET: "couplet",
    RhythmKind.IDIOVENTRICULAR: "IVR",
    RhythmKind.VENTRICULAR_BIGEMINY: "bigeminy",
    RhythmKind.VENTRICULAR_TRIGEMINY: "trigeminy",
    RhythmKind.VF: "VF",
    RhythmKind.BRADYCARDIA: "brady",
    RhythmKind.TACHYCARDIA: "tachy",
    RhythmKind.PAUSE: "pause",
    RhythmKind.ASYSTOLE: "asystole",
}
"""Short name of each rhythm, as the panel and the strip show it (a narrow panel)."""


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


@dataclass(frozen=True, slots=True)
class EventMark:
    """A rhythm event as the monitor lists and draws it.

    Args:
        rhythm: What rhythm or event.
        state: Start or end of an episode, or an instant event.
        chain_sample: The event's sample on the chain's clock (the samples topic's clock).
        time_s: The event's time in the record, in s.
        wall_time_s: The event's wall-clock time, in s since the Unix epoch.
        delay_s: From the event's sample to the decision, in s of signal.
        beats: Beats involved (an episode's beats so far; a run's length).
        rate_bpm: Mean heart rate of those beats, in bpm (None when there are none).
        detail: Why an episode ended when it did not end by itself, or ``sustained``.
    """

    rhythm: RhythmKind
    state: EventState
    chain_sample: int
    time_s: float
    wall_time_s: float
    delay_s: float
    beats: int
    rate_bpm: float | None
    detail: str | None

    @classmethod
    def from_message(cls, message: EventMessage) -> EventMark:
        """Keep what the monitor shows from a decoded event message."""
        return cls(
            rhythm=message.rhythm,
            state=message.state,
            chain_sample=message.chain_sample,
            time_s=message.time_s,
            wall_time_s=message.wall_time,
            delay_s=message.delay_s,
            beats=message.beats,
            rate_bpm=message.rate_bpm,
            detail=message.detail,
        )

    def describe(self) -> str:
        """What happened, e.g. ``VT start, 6 beats at 150 bpm``."""
        text = RHYTHM_LABELS[self.rhythm]
        if self.state is not EventState.INSTANT:
            text += f" {self.state.value}"
        if self.beats:
            text += f", {self.beats} beat{'s' if self.beats != 1 else ''}"
        if self.rate_bpm is not None:
            text += f" at {self.rate_bpm:.0f} bpm"
        if self.detail:
            text += f" ({self.detail})"
        return text

    def alarm_line(self) -> str:
        """The side panel's line: local wall-clock time of the event, then what happened."""
        clock = datetime.fromtimestamp(self.wall_time_s).strftime("%H:%M:%S")
        return f"{clock}  {self.describe()}"

    def where(self) -> str:
        """Its time in the record and decision delay, for a tooltip."""
        return (
            f"at {format_record_time(self.time_s)} in the record, "
            f"decided {self.delay_s:.1f} s later"
        )


@dataclass(frozen=True, slots=True)
class Episode:
    """A rhythm episode as drawn on the strip: from its first beat to its last.

    Args:
        rhythm: The episode's rhythm (one of :data:`BANDED_RHYTHMS`).
        start_sample: Its first sample on the chain's clock, or None when it started before
            the monitor saw it (an end without a start): drawn from the oldest sample held.
        end_sample: Its last sample on the chain's clock, or None while it is open: drawn up
            to the newest sample.
    """

    rhythm: RhythmKind
    start_sample: int | None
    end_sample: int | None


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
        rhythm: The ongoing rhythm episode of highest priority, from the status topic (None
            when none is, or before any status).
        alarms: The most recent rhythm events, newest first (kept when the stream restarts:
            they are a log in wall-clock time).
        instants: The most recent instant events (a pause, a couplet, a run), oldest first.
        events_revision: Incremented whenever ``alarms``, ``instants`` or the episodes change.
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
        self.rhythm: RhythmKind | None = None
        self.alarms: deque[EventMark] = deque(maxlen=MAX_ALARMS)
        self.events_revision = 0
        self.reset()

    def reset(self) -> None:
        """Forget trace, beats, figures, episodes and instants.

        Status, record, model and the alarm lines stay: the chain's clock starts over, the
        alarms' wall-clock times do not.
        """
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
        self.instants: deque[EventMark] = deque(maxlen=self.beats.maxlen)
        # episodes drawn as bands: the open ones by rhythm (their start), the ended ones in order
        self._open_episodes: dict[RhythmKind, int | None] = {}  # None: began before we joined
        self._closed_episodes: deque[Episode] = deque(maxlen=MAX_CLOSED_EPISODES)
        self.revision += 1
        self.events_revision += 1

    def add_status(self, message: StatusMessage) -> None:
        """Take the stream's state, record, model and current rhythm from a status message.

        The first status of a stream online (on joining, the retained one) may name an episode
        that began before the monitor joined: it is drawn from the oldest sample held until its
        end comes (or its start, if the events were only late).
        """
        joined = self.online is not True
        self.online = message.state is StreamState.ONLINE
        self.record = message.record
        self.model = message.model
        self.rhythm = message.rhythm
        if joined and self.online and message.rhythm in BANDED_RHYTHMS:
            self._open_episodes.setdefault(message.rhythm, None)
            self.events_revision += 1

    def add_event(self, message: EventMessage) -> None:
        """List a rhythm event; open or close its episode, or keep it as an instant mark.

        An event already listed (delivered again after a reconnection) is ignored. An end
        without its start (it began before the monitor joined) makes an episode from the oldest
        sample held; a second start of an episode already open changes nothing, but gives one
        known from the status alone its start.
        """
        mark = EventMark.from_message(message)
        if mark in self.alarms:
            return
        self.record = message.record or self.record
        self.alarms.appendleft(mark)
        if mark.state is EventState.INSTANT:
            self.instants.append(mark)
        elif mark.rhythm in BANDED_RHYTHMS:
            if mark.state is EventState.START:
                if self._open_episodes.get(mark.rhythm) is None:
                    self._open_episodes[mark.rhythm] = mark.chain_sample
            else:
                start = self._open_episodes.pop(mark.rhythm, None)
                self._closed_episodes.append(Episode(mark.rhythm, start, mark.chain_sample))
        self.events_revision += 1

    @property
    def episodes(self) -> list[Episode]:
        """Episodes to draw as bands: the recently ended ones, then the open ones."""
        open_episodes = [
            Episode(rhythm, start, None) for rhythm, start in self._open_episodes.items()
        ]
        return [*self._closed_episodes, *open_episodes]

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
