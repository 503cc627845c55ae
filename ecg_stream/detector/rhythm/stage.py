"""Rhythm events of one stream, from its labeled beats and the passing of time; causal.

The stage runs after the classifier. Each chunk of a stream hands it the labeled beats the chunk
completed, the stream's clock (``end_index``) and the input's state; it answers with the rhythm
events those decided, in chain samples (360 Hz). The rules, per beat in R-peak order:

- **Ventricular runs.** Consecutive usable V beats form a run; one unusable beat between two
  V beats joins it (the classifier often calls a beat of fast VT Q), and while VT is open,
  unusable beats faster than ``vt_bpm`` continue it. Once a run has ``run_min_beats`` beats,
  its mean rate above ``vt_bpm`` starts a VT episode, else an idioventricular one (the kind is
  kept for the whole run); VT that reaches ``sustained_vt_s`` gives an instant VT event with
  detail ``"sustained"``. A beat that does not continue the run ends it: a usable non-V beat
  ends its episode and, for a run of 2 beats, gives a ``couplet``, for ``run_min_beats`` to
  ``run_max_beats`` beats, a ``ventricular_run`` (both instants at the run's first beat). A
  run ended by an unusable beat (the held one, then a non-V beat; or a second one) ends the
  episode with detail ``"unusable beat"`` and gives no instant: what it was is unknown.
- **SVT.** The same for usable S beats above ``svt_bpm`` (no episode at or below it), but
  none starts during AF, whose irregular beats the classifier often calls S.
- **Bigeminy, trigeminy.** ``pattern_cycles`` cycles of (N V), or (N N V), in a row (N: an N
  or S beat) start an episode at the first beat of the pattern; the first beat that does not
  continue the pattern ends it, at the last beat that did.
- **Bradycardia, tachycardia.** The heart rate is the mean over the last ``rate_beats`` RR
  intervals between two usable beats. Below ``bradycardia_bpm`` (above ``tachycardia_bpm``)
  starts an episode at the first beat of those intervals; it ends once the rate is back by
  ``rate_hysteresis_bpm``, at the beat before.
- **Pause.** An RR interval between two usable beats longer than ``pause_s``: an instant at
  the second beat (unless asystole was raised over that interval).
- **Asystole**, raised by time: when no beat has come for ``asystole_s`` plus
  ``asystole_margin_s`` since the last beat (or the stream's start, or the end of a lead-off
  or gap), an episode starts at last beat + ``asystole_s``; the next beat ends it.
- **AF**: :class:`~ecg_stream.detector.rhythm.af.AfDetector` sees every beat first; its onset
  and end (placed back by the detector) start and end the episode. An onset decided at an
  unusable beat waits for the next usable beat. While AF is open, with ``af_gate``, a beat
  called S is read as a conducted AF beat (N) by the rules below and in
  ``RhythmStage.conducted``.

A chunk whose input is ``lead-off`` or ``gap`` ends every open episode, with the state's value
as detail, and forgets the beats before it: no RR interval, run or pattern spans it, and
asystole counts from its end. The chain restarts after such input; a beat without an RR
interval (``rr_ms`` NaN) after the stream's first beat shows a restart within one chunk, which
ends the episodes likewise, with detail ``"restart"``. ``flush()`` ends them with ``"stream
ended"``.

Decision delays: a beat's events are decided when the beat is complete
(``decided_index`` = the later of its R-peak decision and its window's last sample, about 0.44 s
after the R peak); a run's or pattern's end waits for the next beat (after an unusable beat
in a V run, for the one after it); asystole is decided
``asystole_margin_s`` after its limit.

- **VF** (ventricular flutter or fibrillation), raised from the signal, not from the beats:
  :class:`~ecg_stream.detector.rhythm.vf.VfDetector` sees ``RhythmInput.samples`` and decides
  once per second on the last 4 s (spectral band share, VF-filter leakage, threshold crossing
  count); its onset and end (placed back by the detector to the middle of the first and of
  the last VF-like window) start and end the episode, decided about 4 s and 6 s after them.
  A chunk without samples leaves a hole in the signal, which ends VF.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace
from itertools import pairwise

from ecg_stream.config import RhythmSettings
from ecg_stream.detector.rhythm.af import AfDetector, AfSettings, conducted_in_af
from ecg_stream.detector.rhythm.vf import VfDetector, VfSettings
from ecg_stream.detector.stage import ended_error
from ecg_stream.errors import ConfigError
from ecg_stream.types import (
    BeatClass,
    EventState,
    FloatArray,
    LabeledBeat,
    RhythmEvent,
    RhythmKind,
    SignalState,
)

PRIORITY: tuple[RhythmKind, ...] = (
    RhythmKind.VF,
    RhythmKind.ASYSTOLE,
    RhythmKind.VT,
    RhythmKind.AF,
    RhythmKind.SVT,
    RhythmKind.IDIOVENTRICULAR,
    RhythmKind.VENTRICULAR_BIGEMINY,
    RhythmKind.VENTRICULAR_TRIGEMINY,
    RhythmKind.TACHYCARDIA,
    RhythmKind.BRADYCARDIA,
)
"""Episode kinds, most urgent first: what ``RhythmStage.current`` reports when several are open."""

SUSTAINED = "sustained"
"""Detail of the instant VT event raised when VT lasts ``sustained_vt_s``."""
STREAM_ENDED = "stream ended"
"""Detail of the episodes ``flush()`` ends."""
UNUSABLE_BEAT = "unusable beat"
"""Detail of a run or pattern ended by an unusable beat (its class is unknown)."""
RESTART = "restart"
"""Detail of the episodes ended by a restart of the chain seen only in the beats."""
INTERRUPTING_STATES = frozenset({SignalState.LEAD_OFF, SignalState.GAP})
"""Input states that end every episode and raise neither pause nor asystole across them."""
PATTERNS: dict[RhythmKind, tuple[bool, ...]] = {
    RhythmKind.VENTRICULAR_BIGEMINY: (False, True),
    RhythmKind.VENTRICULAR_TRIGEMINY: (False, False, True),
}
"""One cycle of each ventricular pattern: True a V beat, False an N or S beat."""


@dataclass(frozen=True, slots=True)
class RhythmInput:
    """What one chunk of a stream gives the rhythm stage.

    Args:
        beats: Labeled beats completed by the chunk, in R-peak order.
        end_index: Chain samples of the stream seen so far: the stage's clock.
        signal: The input's state at ``end_index``.
        samples: The chunk's filtered samples ending at ``end_index`` (mV), for VF; None when
            the chunk brought none (a hole in the signal for VF when the clock moved on).
    """

    beats: tuple[LabeledBeat, ...]
    end_index: int
    signal: SignalState = SignalState.OK
    samples: FloatArray | None = None

    def __post_init__(self) -> None:
        if self.end_index < 0:
            msg = f"RhythmInput.end_index={self.end_index} must be >= 0 (chain samples seen)"
            raise ValueError(msg)
        peaks = [beat.window.peak.index for beat in self.beats]
        if any(later <= earlier for earlier, later in pairwise(peaks)):
            msg = f"RhythmInput.beats must be in R-peak order, got R peaks {peaks}"
            raise ValueError(msg)


@dataclass(slots=True)
class _Episode:
    """Beats in a row that make one run, pattern or episode (chain samples)."""

    start_index: int
    last_index: int
    beats: int

    def extend(self, index: int) -> None:
        self.last_index = index
        self.beats += 1

    def rate_bpm(self, fs_hz: float) -> float:
        """Mean rate of the beats, NaN with fewer than two."""
        if self.beats < 2 or self.last_index <= self.start_index:
            return math.nan
        return 60.0 * fs_hz * (self.beats - 1) / (self.last_index - self.start_index)


def ready_index(beat: LabeledBeat) -> int:
    """The sample whose arrival completed the beat: its R-peak decision or its window's end."""
    return max(beat.window.peak.decided_index, beat.window.ready_index - 1)


def _class_of(beat: LabeledBeat) -> BeatClass | None:
    """The beat's class for rhythm rules, None when unusable (Q or a quality issue)."""
    label = beat.label
    return None if label is BeatClass.Q or not beat.window.usable else label


class RhythmStage:
    """Causal rhythm events of one stream: labeled beats and the clock in, events out.

    The rules and decision delays are in the module docstring. A ``Stage`` of
    :class:`RhythmInput` in, ``list[RhythmEvent]`` out.

    Args:
        settings: Rate, run, pause and asystole limits.
        fs_hz: Sampling rate of the chain clock, in Hz.
        af_settings: Settings of the AF detector (None: its defaults); unused when
            ``settings.af_enabled`` is False.
        vf_settings: Settings of the VF detector (None: its defaults).

    Attributes:
        af_detector: The AF detector, None when AF is off.
        conducted: For each beat of the last chunk, whether the AF gate read it as a
            conducted AF beat (an S beat while AF is open), which the session publishes as N.
        vf_detector: The VF detector.
        current: The most urgent open episode (``PRIORITY``), for the status topic.

    State (private, set in ``reset()``, bounded): the open episodes (one per kind), the
    current V and S runs, the last ``rate_beats`` RR intervals, the last beats' V/N pattern
    (``pattern_cycles`` trigeminy cycles), recent R peaks for AF (``window_beats`` plus the
    AF streak), the previous beat, the sample since which no beat came, and the VF detector's
    last 4 s of signal.

    Example:
        >>> stage = RhythmStage(RhythmSettings(af_enabled=False), fs_hz=360.0)
        >>> events = stage.process(RhythmInput(beats=(), end_index=5 * 360))
        >>> [(e.kind.value, e.state.value, e.index, e.decided_index) for e in events]
        [('asystole', 'start', 1440, 1620)]
        >>> stage.current
        <RhythmKind.ASYSTOLE: 'asystole'>
    """

    def __init__(
        self,
        settings: RhythmSettings,
        fs_hz: float,
        af_settings: AfSettings | None = None,
        vf_settings: VfSettings | None = None,
    ) -> None:
        if not fs_hz > 0.0:
            msg = f"fs_hz={fs_hz} must be > 0; pass the chain's rate (360 Hz)"
            raise ConfigError(msg)
        self.settings, self.fs_hz = settings, fs_hz
        self.af_detector = AfDetector(af_settings) if settings.af_enabled else None
        self.vf_detector = VfDetector(vf_settings, fs_hz)
        self._recent_beats = 0  # R peaks kept to count an AF onset's beats, placed back
        if self.af_detector is not None:
            af = self.af_detector.settings
            self._recent_beats = af.window_beats + max(af.enter_beats, af.exit_beats) + 1
        self._pause_samples = settings.pause_s * fs_hz
        self._asystole_samples = round(settings.asystole_s * fs_hz)
        self._margin_samples = round(settings.asystole_margin_s * fs_hz)
        self._sustained_samples = settings.sustained_vt_s * fs_hz
        self._pattern_beats = max(len(cycle) for cycle in PATTERNS.values())
        self._pattern_beats *= settings.pattern_cycles
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the stage is as freshly built."""
        if self.af_detector is not None:
            self.af_detector.reset()
        self.vf_detector.reset()
        self._end_index = 0  # chain samples seen
        self._newest_decided_index = 0  # latest sample an event could have been decided at
        self._quiet_since_index = 0  # last beat, or stream start, or end of lead-off/gap
        self._previous_index: int | None = None  # R peak of the previous beat
        self._previous_usable = False  # whether the previous beat was usable
        self._open: dict[RhythmKind, _Episode] = {}  # open episodes, at most one per kind
        self._v_run: _Episode | None = None  # consecutive usable V beats
        self._v_bridge_index: int | None = None  # an unusable beat inside the V run, held
        self._s_run: _Episode | None = None  # consecutive usable S beats
        self._vt_sustained = False  # the open VT episode was reported sustained
        self._rr_samples: deque[int] = deque(maxlen=self.settings.rate_beats)
        self._rr_first_indices: deque[int] = deque(maxlen=self.settings.rate_beats)
        self._pattern_v: deque[bool] = deque(maxlen=self._pattern_beats)  # V (True) or N/S
        self._pattern_indices: deque[int] = deque(maxlen=self._pattern_beats)
        self._af_pending_start_index: int | None = None  # AF onset decided at an unusable beat
        self._recent_indices: deque[int] = deque(maxlen=self._recent_beats)  # R peaks, for AF
        self.conducted: tuple[bool, ...] = ()
        self._ended = False

    @property
    def current(self) -> RhythmKind | None:
        """The open episode of highest priority (``PRIORITY``), None when none is open."""
        return next((kind for kind in PRIORITY if kind in self._open), None)

    def process(self, chunk: RhythmInput) -> list[RhythmEvent]:
        """Take the next chunk of the stream; return the events it decided, in order.

        Raises:
            RuntimeError: The stream was ended by ``flush()`` (call ``reset()``).
            ValueError: ``chunk.end_index`` goes back in time.
        """
        if self._ended:
            raise ended_error(self)
        if chunk.end_index < self._end_index:
            msg = (
                f"RhythmInput.end_index={chunk.end_index} is before the previous "
                f"{self._end_index}: chunks must follow the stream (call reset() for a new one)"
            )
            raise ValueError(msg)
        events: list[RhythmEvent] = []
        conducted = []
        for beat in chunk.beats:
            self._raise_asystole_if_due(ready_index(beat) - 1, events)
            conducted.append(self._take(beat, events))
        self.conducted = tuple(conducted)
        self._end_index = chunk.end_index
        last_sample_index = chunk.end_index - 1
        self._newest_decided_index = max(self._newest_decided_index, last_sample_index)
        if chunk.signal in INTERRUPTING_STATES:
            self._interrupt(chunk.signal.value, last_sample_index, events)
            self._quiet_since_index = chunk.end_index
            self.vf_detector.process(None, chunk.end_index)  # a hole: VF waits for new signal
        else:
            self._raise_asystole_if_due(last_sample_index, events)
            peaks = [(beat.window.peak.index, ready_index(beat)) for beat in chunk.beats]
            self._take_vf(chunk.samples, chunk.end_index, peaks, events)
        return events

    def flush(self) -> list[RhythmEvent]:
        """The stream has ended: end the open episodes (detail ``"stream ended"``)."""
        if self._ended:
            return []
        self._ended = True
        events: list[RhythmEvent] = []
        self._end_all(STREAM_ENDED, self._newest_decided_index, events)
        return events

    def _raise_asystole_if_due(self, last_sample_index: int, events: list[RhythmEvent]) -> None:
        """Start asystole if its decision sample arrived (``last_sample_index`` reached it)."""
        if RhythmKind.ASYSTOLE in self._open:
            return
        start_index = self._quiet_since_index + self._asystole_samples
        decided_index = start_index + self._margin_samples
        if last_sample_index >= decided_index:
            self._open[RhythmKind.ASYSTOLE] = _Episode(start_index, start_index, 0)
            events.append(
                RhythmEvent(
                    RhythmKind.ASYSTOLE,
                    EventState.START,
                    start_index,
                    decided_index,
                    beats=0,
                    rate_bpm=math.nan,
                )
            )

    def _take(self, beat: LabeledBeat, events: list[RhythmEvent]) -> bool:
        """The events one beat decides, in the order of the module docstring's rules.

        Returns whether the AF gate read the beat as a conducted AF beat.
        """
        index, decided_index = beat.window.peak.index, ready_index(beat)
        self._newest_decided_index = max(self._newest_decided_index, decided_index)
        if self._previous_index is not None and math.isnan(beat.window.rr.rr_ms):
            self._interrupt(RESTART, decided_index, events)
        asystole = self._open.pop(RhythmKind.ASYSTOLE, None)
        if asystole is not None:
            events.append(
                RhythmEvent(
                    RhythmKind.ASYSTOLE,
                    EventState.END,
                    max(index, asystole.start_index),
                    decided_index,
                    beats=0,
                    rate_bpm=math.nan,
                )
            )
        usable = _class_of(beat) is not None
        self._take_af(beat, usable, decided_index, events)
        conducted = (
            self.settings.af_gate and RhythmKind.AF in self._open and beat.label is BeatClass.S
        )
        if conducted:
            beat = conducted_in_af(beat)
        beat_class = _class_of(beat)
        if usable and self._previous_usable and self._previous_index is not None:
            # No pause when the asystole episode already covers this interval.
            pause = asystole is None
            self._take_interval(self._previous_index, index, decided_index, events, pause=pause)
        self._take_run(beat_class, index, decided_index, events)
        self._take_pattern(beat_class, index, decided_index, events)
        self._recent_indices.append(index)
        self._previous_index, self._previous_usable = index, usable
        self._quiet_since_index = index
        return conducted

    def _take_interval(
        self,
        first_index: int,
        index: int,
        decided_index: int,
        events: list[RhythmEvent],
        *,
        pause: bool,
    ) -> None:
        """Pause, bradycardia and tachycardia from one RR interval between usable beats."""
        rr_samples = index - first_index
        if pause and rr_samples > self._pause_samples:
            events.append(
                RhythmEvent(
                    RhythmKind.PAUSE,
                    EventState.INSTANT,
                    index,
                    decided_index,
                    beats=2,
                    rate_bpm=60.0 * self.fs_hz / rr_samples,
                )
            )
        self._rr_samples.append(rr_samples)
        self._rr_first_indices.append(first_index)
        for kind in (RhythmKind.BRADYCARDIA, RhythmKind.TACHYCARDIA):
            if kind in self._open:
                self._open[kind].extend(index)
        if len(self._rr_samples) < self.settings.rate_beats:
            return
        rate_bpm = 60.0 * self.fs_hz * len(self._rr_samples) / sum(self._rr_samples)
        settings = self.settings
        band = settings.rate_hysteresis_bpm
        for kind, starts, ends in (
            (
                RhythmKind.BRADYCARDIA,
                rate_bpm < settings.bradycardia_bpm,
                rate_bpm >= settings.bradycardia_bpm + band,
            ),
            (
                RhythmKind.TACHYCARDIA,
                rate_bpm > settings.tachycardia_bpm,
                rate_bpm <= settings.tachycardia_bpm - band,
            ),
        ):
            episode = self._open.get(kind)
            if episode is None and starts:
                start = _Episode(self._rr_first_indices[0], index, len(self._rr_samples) + 1)
                self._start(kind, start, decided_index, events, rate_bpm)
            elif episode is not None and ends:
                episode.beats -= 1  # it ended at the beat before
                episode.last_index = first_index
                self._end(kind, decided_index, None, events)

    def _take_run(
        self,
        beat_class: BeatClass | None,
        index: int,
        decided_index: int,
        events: list[RhythmEvent],
    ) -> None:
        """Ventricular runs (couplet, run, VT, idioventricular) and supraventricular ones."""
        detail = None if beat_class is not None else UNUSABLE_BEAT
        minimum = self.settings.run_min_beats
        run = self._v_run
        vt_samples = 60.0 * self.fs_hz / self.settings.vt_bpm  # RR at the VT rate limit
        if run is not None and beat_class is None and RhythmKind.VT in self._open:
            fast = index - run.last_index < vt_samples
        else:
            fast = False
        if fast and run is not None:
            run.extend(index)  # an unusable beat at the VT rate does not end open VT
        elif beat_class is None and run is not None and self._v_bridge_index is None:
            self._v_bridge_index = index  # held: a V beat next bridges it into the run
        elif beat_class is BeatClass.V:
            if run is not None and self._v_bridge_index is not None:
                run.extend(self._v_bridge_index)
            self._v_bridge_index = None
            self._v_run = run = self._extended(run, index)
            ventricular = RhythmKind.VT in self._open or RhythmKind.IDIOVENTRICULAR in self._open
            if run.beats >= minimum and not ventricular:  # a bridge may step past minimum
                fast = run.rate_bpm(self.fs_hz) > self.settings.vt_bpm
                kind = RhythmKind.VT if fast else RhythmKind.IDIOVENTRICULAR
                self._start(kind, run, decided_index, events)
                self._vt_sustained = False
            elif (
                RhythmKind.VT in self._open
                and not self._vt_sustained
                and index - run.start_index >= self._sustained_samples
            ):
                self._vt_sustained = True
                events.append(
                    self._event(
                        RhythmKind.VT,
                        EventState.INSTANT,
                        run,
                        decided_index,
                        index=index,
                        detail=SUSTAINED,
                    )
                )
        elif run is not None:
            if self._v_bridge_index is not None:  # the run was followed by an unusable beat
                detail, self._v_bridge_index = UNUSABLE_BEAT, None
            self._v_run = None
            for kind in (RhythmKind.VT, RhythmKind.IDIOVENTRICULAR):
                if kind in self._open:
                    self._end(kind, decided_index, detail, events)
            instant = None
            if run.beats == 2:
                instant = RhythmKind.COUPLET
            elif minimum <= run.beats <= self.settings.run_max_beats:
                instant = RhythmKind.VENTRICULAR_RUN
            if instant is not None and detail is None:
                events.append(self._event(instant, EventState.INSTANT, run, decided_index))
        detail = None if beat_class is not None else UNUSABLE_BEAT
        if beat_class is BeatClass.S:
            self._s_run = self._extended(self._s_run, index)
            run = self._s_run
            fast = run.rate_bpm(self.fs_hz) > self.settings.svt_bpm
            if run.beats == minimum and fast and RhythmKind.AF not in self._open:
                self._start(RhythmKind.SVT, run, decided_index, events)
        elif self._s_run is not None:
            self._s_run = None
            if RhythmKind.SVT in self._open:
                self._end(RhythmKind.SVT, decided_index, detail, events)

    def _take_pattern(
        self,
        beat_class: BeatClass | None,
        index: int,
        decided_index: int,
        events: list[RhythmEvent],
    ) -> None:
        """Ventricular bigeminy and trigeminy: their cycles, repeated."""
        if beat_class not in (BeatClass.N, BeatClass.S, BeatClass.V):
            self._pattern_v.clear()  # an unusable or fusion beat breaks every pattern
            self._pattern_indices.clear()
            for kind in PATTERNS:
                if kind in self._open:
                    detail = None if beat_class is not None else UNUSABLE_BEAT
                    self._end(kind, decided_index, detail, events)
            return
        is_v = beat_class is BeatClass.V
        self._pattern_v.append(is_v)
        self._pattern_indices.append(index)
        for kind, cycle in PATTERNS.items():
            episode = self._open.get(kind)
            if episode is not None:
                if cycle[episode.beats % len(cycle)] == is_v:
                    episode.extend(index)
                else:
                    self._end(kind, decided_index, None, events)
                continue
            size = len(cycle) * self.settings.pattern_cycles
            if len(self._pattern_v) >= size and is_v:
                recent = list(self._pattern_v)[-size:]
                if recent == list(cycle) * self.settings.pattern_cycles:
                    first_index = self._pattern_indices[-size]
                    self._start(kind, _Episode(first_index, index, size), decided_index, events)

    def _take_af(
        self, beat: LabeledBeat, usable: bool, decided_index: int, events: list[RhythmEvent]
    ) -> None:
        """AF onset and end from the AF detector; an onset waits for a usable beat."""
        if self.af_detector is None:
            return
        index = beat.window.peak.index
        decision = self.af_detector.process(beat)
        episode = self._open.get(RhythmKind.AF)
        if episode is not None:
            episode.extend(index)
            if decision.changed and not decision.in_af:
                end_index = decision.episode_end_index
                if end_index is not None:  # placed back: the beats after it were not AF
                    last_index = min(max(end_index, episode.start_index), index)
                    after = sum(1 for peak in (*self._recent_indices, index) if peak > last_index)
                    episode.last_index, episode.beats = last_index, max(1, episode.beats - after)
                self._end(RhythmKind.AF, decided_index, None, events)
            return
        if decision.changed and decision.in_af:
            start_index = decision.episode_start_index
            self._af_pending_start_index = index if start_index is None else start_index
        elif decision.changed:  # AF ended before a usable beat confirmed its onset
            self._af_pending_start_index = None
        start_index = self._af_pending_start_index
        if start_index is not None and usable and self.af_detector.in_af:
            self._af_pending_start_index = None
            beats = 1 + sum(1 for peak in self._recent_indices if peak >= start_index)
            self._start(RhythmKind.AF, _Episode(start_index, index, beats), decided_index, events)

    def _take_vf(
        self,
        samples: FloatArray | None,
        end_index: int,
        peaks: list[tuple[int, int]],
        events: list[RhythmEvent],
    ) -> None:
        """VF onset and end from the VF detector, placed back by it."""
        for change in self.vf_detector.process(samples, end_index, peaks):
            self._newest_decided_index = max(self._newest_decided_index, change.decided_index)
            if change.in_vf:
                episode = _Episode(change.index, change.index, 0)
                self._start(RhythmKind.VF, episode, change.decided_index, events)
            elif RhythmKind.VF in self._open:
                episode = self._open[RhythmKind.VF]
                episode.last_index = max(change.index, episode.start_index)
                self._end(RhythmKind.VF, change.decided_index, None, events)

    def _interrupt(self, detail: str, decided_index: int, events: list[RhythmEvent]) -> None:
        """End every episode and forget the beats: the input was cut (lead-off, gap, restart)."""
        self._end_all(detail, decided_index, events)
        self._previous_index, self._previous_usable = None, False
        self._v_run = self._s_run = None
        self._v_bridge_index = None
        self._rr_samples.clear()
        self._rr_first_indices.clear()
        self._pattern_v.clear()
        self._pattern_indices.clear()
        self._recent_indices.clear()
        self._af_pending_start_index = None
        if self.af_detector is not None:
            self.af_detector.reset()
        if self.vf_detector.in_vf:  # its episode ended: VF must be found anew
            self.vf_detector.reset()
            self.vf_detector.process(None, self._end_index)

    def _end_all(self, detail: str, decided_index: int, events: list[RhythmEvent]) -> None:
        for kind in PRIORITY:
            if kind in self._open:
                self._end(kind, decided_index, detail, events)

    def _start(
        self,
        kind: RhythmKind,
        episode: _Episode,
        decided_index: int,
        events: list[RhythmEvent],
        rate_bpm: float | None = None,
    ) -> None:
        self._open[kind] = episode
        event = self._event(kind, EventState.START, episode, decided_index)
        if rate_bpm is not None:
            event = replace(event, rate_bpm=rate_bpm)
        events.append(event)

    def _end(
        self, kind: RhythmKind, decided_index: int, detail: str | None, events: list[RhythmEvent]
    ) -> None:
        episode = self._open.pop(kind)
        index = episode.last_index
        events.append(
            self._event(
                kind,
                EventState.END,
                episode,
                max(decided_index, index),
                index=index,
                detail=detail,
            )
        )

    def _event(
        self,
        kind: RhythmKind,
        state: EventState,
        episode: _Episode,
        decided_index: int,
        *,
        index: int | None = None,
        detail: str | None = None,
    ) -> RhythmEvent:
        """An event about ``episode``, at its first beat unless ``index`` is given."""
        return RhythmEvent(
            kind,
            state,
            episode.start_index if index is None else index,
            decided_index,
            beats=episode.beats,
            rate_bpm=episode.rate_bpm(self.fs_hz),
            detail=detail,
        )

    @staticmethod
    def _extended(run: _Episode | None, index: int) -> _Episode:
        if run is None:
            return _Episode(index, index, 1)
        run.extend(index)
        return run
