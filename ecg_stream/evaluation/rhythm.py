"""Rhythm report: detected rhythm episodes scored against the reference rhythm annotations.

What ``ecg-stream evaluate --rhythm`` runs (docs/protocol.md, "Rhythm scoring", after EC57
and PhysioNet's ``epicmp``): a reference episode of a family lasts from its ``+`` annotation to
the next ``+`` (or the record's end), consecutive episodes of one family joined; a detected
episode from a ``RhythmEvent`` start to its end (or the stream's end). Episode Se and +P count
episodes that any episode of the other side overlaps; duration Se and +P divide the overlapping
time by the reference and by the detected time. Gross figures sum the counts and times over
records before dividing; the whole record is scored. The onset delays and the false detections
on records without the family are reported beside them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import msgspec
import numpy as np

from ecg_stream.classify.classifier import OnnxBeatClassifier
from ecg_stream.config import ChainConfig
from ecg_stream.documents import encode_json
from ecg_stream.errors import RecordFormatError
from ecg_stream.live.analysis import analyze_record, map_records
from ecg_stream.records import DataDirs, Record, RhythmChange, load_record
from ecg_stream.types import EventState, RhythmEvent, RhythmKind

SECONDS_PER_HOUR = 3600.0


class RhythmFamily(Enum):
    """A family of reference rhythms that a detected kind is scored against."""

    AF = "af"
    VT = "vt"
    SVT = "svt"
    BIGEMINY = "bigeminy"
    TRIGEMINY = "trigeminy"
    VFL = "vfl"

    @property
    def codes(self) -> tuple[str, ...]:
        """The reference aux notes of the family (docs/protocol.md)."""
        return FAMILY_CODES[self]

    @property
    def kind(self) -> RhythmKind:
        """The rhythm stage's kind whose episodes are scored against the family."""
        return FAMILY_KINDS[self]


FAMILY_CODES: dict[RhythmFamily, tuple[str, ...]] = {
    RhythmFamily.AF: ("(AFIB", "(AFL"),
    RhythmFamily.VT: ("(VT",),
    RhythmFamily.SVT: ("(SVTA",),
    RhythmFamily.BIGEMINY: ("(B",),
    RhythmFamily.TRIGEMINY: ("(T",),
    RhythmFamily.VFL: ("(VFL", "(VF"),
}
"""Reference rhythm codes of each family (MIT-BIH aux notes)."""
FAMILY_KINDS: dict[RhythmFamily, RhythmKind] = {
    RhythmFamily.AF: RhythmKind.AF,
    RhythmFamily.VT: RhythmKind.VT,
    RhythmFamily.SVT: RhythmKind.SVT,
    RhythmFamily.BIGEMINY: RhythmKind.VENTRICULAR_BIGEMINY,
    RhythmFamily.TRIGEMINY: RhythmKind.VENTRICULAR_TRIGEMINY,
    RhythmFamily.VFL: RhythmKind.VF,
}
"""The detected kind scored against each family (MIT-BIH ``(B``/``(T`` are ventricular)."""


@dataclass(frozen=True, slots=True)
class Episode:
    """A stretch of one rhythm, in the record's clock.

    Args:
        start_index: First sample of the episode.
        end_index: Sample where the episode ends (exclusive), at least ``start_index``.
        decided_index: Sample whose arrival made a detector start the episode (None for a
            reference episode).
    """

    start_index: int
    end_index: int
    decided_index: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.start_index <= self.end_index:
            msg = f"episode [{self.start_index}, {self.end_index}): need 0 <= start <= end"
            raise ValueError(msg)

    @property
    def samples(self) -> int:
        """Length of the episode, in samples."""
        return self.end_index - self.start_index

    def overlap(self, other: Episode) -> int:
        """Samples the two episodes share."""
        return max(
            0, min(self.end_index, other.end_index) - max(self.start_index, other.start_index)
        )

    def overlaps(self, other: Episode) -> bool:
        """Whether the two episodes share a sample; an empty episode overlaps one that holds it."""
        if self.samples == 0 or other.samples == 0:
            point, span = (self, other) if self.samples == 0 else (other, self)
            return span.start_index <= point.start_index <= span.end_index
        return self.overlap(other) > 0


def reference_episodes(
    rhythms: Sequence[RhythmChange], family: RhythmFamily, length: int
) -> tuple[Episode, ...]:
    """The family's reference episodes: each of its rhythms to the next change or ``length``.

    Consecutive changes within the family (``(AFIB`` then ``(AFL``) make one episode.

    Example:
        >>> changes = [RhythmChange(0, "(N"), RhythmChange(100, "(AFIB"), RhythmChange(300, "(N")]
        >>> reference_episodes(changes, RhythmFamily.AF, 1000)
        (Episode(start_index=100, end_index=300, decided_index=None),)
    """
    episodes: list[Episode] = []
    start: int | None = None
    for change in rhythms:
        inside = change.code in family.codes
        if inside and start is None:
            start = change.index
        elif not inside and start is not None:
            episodes.append(Episode(start, change.index))
            start = None
    if start is not None:
        episodes.append(Episode(start, max(start, length)))
    return tuple(episodes)


def detected_episodes(
    events: Iterable[RhythmEvent],
    kind: RhythmKind,
    to_record_index: Callable[[int], int],
    length: int,
) -> tuple[Episode, ...]:
    """The episodes of ``kind`` from its start and end events, in the record's clock.

    An episode runs from its start event's beat to its end event's beat; one still open when
    the events end runs to ``length``. Instant events and repeated starts are ignored.

    Args:
        events: Rhythm events in stream order (chain clock).
        kind: The kind whose episodes are wanted.
        to_record_index: Converts a chain sample index to the record's clock.
        length: The record's length, in its own samples.
    """
    episodes: list[Episode] = []
    start: RhythmEvent | None = None
    for event in events:
        if event.kind is not kind:
            continue
        if event.state is EventState.START and start is None:
            start = event
        elif event.state is EventState.END and start is not None:
            first = to_record_index(start.index)
            end = max(first, to_record_index(event.index))
            episodes.append(Episode(first, end, to_record_index(start.decided_index)))
            start = None
    if start is not None:
        first = to_record_index(start.index)
        episodes.append(Episode(first, max(first, length), to_record_index(start.decided_index)))
    return tuple(episodes)


@dataclass(frozen=True, slots=True)
class RhythmScore:
    """Episode and duration counts of one family on one record (or gross, summed).

    Args:
        record: Record name, or ``gross``.
        record_s: Scored time, in s.
        reference_episodes: Reference episodes.
        detected_reference_episodes: Reference episodes a detected episode overlaps.
        detected_episodes: Detected episodes.
        true_detected_episodes: Detected episodes that overlap a reference episode.
        reference_s: Reference time, in s.
        detected_s: Detected time, in s.
        overlap_s: Time both reference and detected, in s.
        decision_delays_s: Per detected episode, its decision minus its placed onset, in s.
        onset_delays_s: Per reference episode that a new detection overlaps (one that
            overlapped no earlier reference episode: not a detection still running from one),
            its first decision minus the reference onset, in s (negative: decided before it).
    """

    record: str
    record_s: float
    reference_episodes: int
    detected_reference_episodes: int
    detected_episodes: int
    true_detected_episodes: int
    reference_s: float
    detected_s: float
    overlap_s: float
    decision_delays_s: tuple[float, ...] = field(default=(), repr=False)
    onset_delays_s: tuple[float, ...] = field(default=(), repr=False)

    @property
    def episode_se(self) -> float:
        """Reference episodes detected over reference episodes (NaN: none)."""
        return _ratio(self.detected_reference_episodes, self.reference_episodes)

    @property
    def episode_pp(self) -> float:
        """Detected episodes that are true over detected episodes (NaN: none)."""
        return _ratio(self.true_detected_episodes, self.detected_episodes)

    @property
    def duration_se(self) -> float:
        """Overlapping time over reference time (NaN: none)."""
        return _ratio(self.overlap_s, self.reference_s)

    @property
    def duration_pp(self) -> float:
        """Overlapping time over detected time (NaN: none)."""
        return _ratio(self.overlap_s, self.detected_s)

    def __add__(self, other: RhythmScore) -> RhythmScore:
        return RhythmScore(
            record="gross",
            record_s=self.record_s + other.record_s,
            reference_episodes=self.reference_episodes + other.reference_episodes,
            detected_reference_episodes=self.detected_reference_episodes
            + other.detected_reference_episodes,
            detected_episodes=self.detected_episodes + other.detected_episodes,
            true_detected_episodes=self.true_detected_episodes + other.true_detected_episodes,
            reference_s=self.reference_s + other.reference_s,
            detected_s=self.detected_s + other.detected_s,
            overlap_s=self.overlap_s + other.overlap_s,
            decision_delays_s=self.decision_delays_s + other.decision_delays_s,
            onset_delays_s=self.onset_delays_s + other.onset_delays_s,
        )


def score_episodes(
    record: str,
    fs_hz: float,
    length: int,
    reference: Sequence[Episode],
    detected: Sequence[Episode],
) -> RhythmScore:
    """Score one record's detected episodes of a family against its reference episodes.

    Args:
        record: Record name.
        fs_hz: The record's sampling rate, in Hz.
        length: The record's length, in its samples.
        reference: Reference episodes (record clock), not overlapping one another.
        detected: Detected episodes (record clock), not overlapping one another.

    Example:
        >>> score = score_episodes("x", 1.0, 100, [Episode(10, 30)], [Episode(20, 40, 25)])
        >>> score.episode_se, score.episode_pp, score.duration_se, score.duration_pp
        (1.0, 1.0, 0.5, 0.5)
    """
    overlap = sum(r.overlap(d) for r in reference for d in detected)
    onset_delays: list[float] = []
    credited: set[int] = set()  # detections that already overlapped an earlier reference
    for episode in sorted(reference, key=lambda e: e.start_index):
        found = [i for i, d in enumerate(detected) if d.overlaps(episode)]
        decisions = [
            d.decided_index
            for i in found
            if i not in credited and (d := detected[i]).decided_index is not None
        ]
        if decisions:
            onset_delays.append((min(decisions) - episode.start_index) / fs_hz)
        credited.update(found)
    return RhythmScore(
        record=record,
        record_s=length / fs_hz,
        reference_episodes=len(reference),
        detected_reference_episodes=sum(any(d.overlaps(r) for d in detected) for r in reference),
        detected_episodes=len(detected),
        true_detected_episodes=sum(any(r.overlaps(d) for r in reference) for d in detected),
        reference_s=sum(r.samples for r in reference) / fs_hz,
        detected_s=sum(d.samples for d in detected) / fs_hz,
        overlap_s=overlap / fs_hz,
        decision_delays_s=tuple(
            (d.decided_index - d.start_index) / fs_hz
            for d in detected
            if d.decided_index is not None
        ),
        onset_delays_s=tuple(onset_delays),
    )


def score_record(
    record: Record, events: Sequence[RhythmEvent], family: RhythmFamily
) -> RhythmScore:
    """Score a record's rhythm events (chain clock) of one family against its annotations.

    Raises:
        RecordFormatError: The record has no reference annotations.
    """
    if record.annotations is None:
        msg = f"record {record.name} has no reference annotations ({record.name}.atr) to score"
        raise RecordFormatError(msg)
    length = record.to_record_index(record.samples.size)
    reference = reference_episodes(record.annotations.rhythms, family, length)
    detected = detected_episodes(events, family.kind, record.to_record_index, length)
    return score_episodes(record.name, record.fs_hz, length, reference, detected)


def gross(scores: Iterable[RhythmScore]) -> RhythmScore:
    """Counts and times summed over records ("gross" figures)."""
    total = RhythmScore("gross", 0.0, 0, 0, 0, 0, 0.0, 0.0, 0.0)
    for score in scores:
        total = total + score
    return total


class RhythmFigures(msgspec.Struct):
    """Rhythm figures of one family on one record (or ``gross``), as written.

    Args:
        record: Record name, or ``gross``.
        reference_episodes: Reference episodes.
        detected_episodes: Detected episodes.
        episode_se: Reference episodes overlapped over reference episodes (None: none).
        episode_pp: Detected episodes overlapping a reference one over detected (None: none).
        reference_s: Reference time, in s.
        detected_s: Detected time, in s.
        duration_se: Overlapping over reference time (None: no reference time).
        duration_pp: Overlapping over detected time (None: no detected time).
    """

    record: str
    reference_episodes: int
    detected_episodes: int
    episode_se: float | None
    episode_pp: float | None
    reference_s: float
    detected_s: float
    duration_se: float | None
    duration_pp: float | None


class FamilyFigures(msgspec.Struct):
    """A family's figures: every record, the gross counts, delays and false detections.

    Args:
        records: Per record, in input order.
        gross: Counts and times summed over the records.
        decision_delay_p50_s: Median of the detected episodes' decision delays, in s.
        decision_delay_p95_s: Their 95th percentile, in s.
        onset_delay_p50_s: Median delay from a detected reference onset to the decision, in s.
        onset_delay_p95_s: Its 95th percentile, in s.
        records_without: Records without the family's rhythm.
        hours_without: Their length, in hours.
        false_detected_min: Detected time on them, in minutes.
        false_detected_min_per_hour: The same per hour of those records.
    """

    records: list[RhythmFigures]
    gross: RhythmFigures
    decision_delay_p50_s: float | None
    decision_delay_p95_s: float | None
    onset_delay_p50_s: float | None
    onset_delay_p95_s: float | None
    records_without: int
    hours_without: float
    false_detected_min: float
    false_detected_min_per_hour: float | None


RhythmDocument = dict[str, FamilyFigures]
"""The rhythm report's JSON form: per family (``af``, ``vt``, ...), its figures."""


@dataclass(frozen=True, slots=True)
class FalseDetections:
    """Detections of a family on the records without its rhythm.

    Args:
        records: Records without the family's rhythm.
        record_s: Their length, in s.
        detected_s: Time detected on them, in s.
    """

    records: int
    record_s: float
    detected_s: float

    @property
    def per_hour_s(self) -> float:
        """Detected seconds per hour of those records (NaN: no such record)."""
        return _ratio(self.detected_s * SECONDS_PER_HOUR, self.record_s)


@dataclass(frozen=True, slots=True)
class RhythmReport:
    """Per-record and gross rhythm figures of each family scored.

    Args:
        scores: Per family, each record's score in input order.
        detector: What made the detections (e.g. ``AfDetector``), for the tables.
    """

    scores: Mapping[RhythmFamily, tuple[RhythmScore, ...]]
    detector: str = ""

    @property
    def families(self) -> tuple[RhythmFamily, ...]:
        """The families scored, in report order."""
        return tuple(self.scores)

    def false_detections(self, family: RhythmFamily) -> FalseDetections:
        """The family's detections on records that hold none of its rhythm."""
        free = [s for s in self.scores[family] if s.reference_episodes == 0]
        return FalseDetections(
            len(free), sum(s.record_s for s in free), sum(s.detected_s for s in free)
        )

    def to_document(self) -> RhythmDocument:
        """The report as its JSON file holds it."""
        document: RhythmDocument = {}
        for family, scores in self.scores.items():
            total = gross(scores)
            false = self.false_detections(family)
            document[family.value] = FamilyFigures(
                records=[_figures(s) for s in scores],
                gross=_figures(total),
                decision_delay_p50_s=_optional(_percentile(total.decision_delays_s, 50)),
                decision_delay_p95_s=_optional(_percentile(total.decision_delays_s, 95)),
                onset_delay_p50_s=_optional(_percentile(total.onset_delays_s, 50)),
                onset_delay_p95_s=_optional(_percentile(total.onset_delays_s, 95)),
                records_without=false.records,
                hours_without=false.record_s / SECONDS_PER_HOUR,
                false_detected_min=false.detected_s / 60,
                false_detected_min_per_hour=_optional(false.per_hour_s / 60),
            )
        return document

    def to_json(self) -> str:
        """The report as JSON text (undefined ratios are null)."""
        return encode_json(self.to_document())

    def format_table(self, family: RhythmFamily) -> str:
        """A text table of one family: one row per record, ``gross``, then delays and false time."""
        scores = self.scores[family]
        lines = [
            f"{'record':>7} | {'ref ep':>6} {'det ep':>6} {'ep Se %':>7} {'ep +P %':>7} | "
            f"{'ref min':>7} {'det min':>7} {'dur Se %':>8} {'dur +P %':>8}"
        ]
        lines.extend(
            f"{score.record:>7} | {score.reference_episodes:>6} {score.detected_episodes:>6} "
            f"{_percent(score.episode_se):>7} {_percent(score.episode_pp):>7} | "
            f"{score.reference_s / 60:>7.2f} {score.detected_s / 60:>7.2f} "
            f"{_percent(score.duration_se):>8} {_percent(score.duration_pp):>8}"
            for score in [*scores, gross(scores)]
        )
        total = gross(scores)
        false = self.false_detections(family)
        lines.append(
            f"decision delay p50/p95: {_seconds(total.decision_delays_s)}; reference onset to "
            f"decision p50/p95: {_seconds(total.onset_delays_s)}"
        )
        lines.append(
            f"false {family.value}: {false.detected_s / 60:.2f} min on {false.records} record(s) "
            f"without it ({false.record_s / SECONDS_PER_HOUR:.2f} h, "
            f"{_number(false.per_hour_s / 60, '.2f')} min/h)"
        )
        return "\n".join(lines)


def _figures(score: RhythmScore) -> RhythmFigures:
    return RhythmFigures(
        record=score.record,
        reference_episodes=score.reference_episodes,
        detected_episodes=score.detected_episodes,
        episode_se=_optional(score.episode_se),
        episode_pp=_optional(score.episode_pp),
        reference_s=score.reference_s,
        detected_s=score.detected_s,
        duration_se=_optional(score.duration_se),
        duration_pp=_optional(score.duration_pp),
    )


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def _optional(value: float) -> float | None:
    return None if math.isnan(value) else value


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def _number(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


def _percent(value: float) -> str:
    return _number(100 * value, ".1f")


def _seconds(values: Sequence[float]) -> str:
    p50, p95 = _percentile(values, 50), _percentile(values, 95)
    return f"{_number(p50, '.1f')}/{_number(p95, '.1f')} s"


def evaluate_rhythm(
    records: Sequence[str],
    model: Path,
    *,
    data_dir: DataDirs = None,
    lead: str = "0",
    jobs: int = 1,
) -> RhythmReport:
    """Stream annotated records through the session and the rhythm stage; score each family.

    Each record runs through the live session (``analyze_record``), whose rhythm stage sees the
    beats and the filtered signal chunk by chunk, as a live stream's does.

    Args:
        records: Annotated record names.
        model: The ONNX beat classifier.
        data_dir: Directory or directories holding the WFDB records.
        lead: Lead name or index.
        jobs: Records evaluated in parallel processes.

    Raises:
        ConfigError: ``jobs`` is below 1.
        RecordFormatError: A record has no reference annotations.
    """
    tasks = [(name, model, data_dir, lead) for name in records]
    found: dict[RhythmFamily, list[RhythmScore]] = {family: [] for family in RhythmFamily}
    for scores in map_records(_evaluate_record, tasks, jobs, "evaluate --rhythm"):
        for family, score in scores.items():
            found[family].append(score)
    return RhythmReport(
        {family: tuple(scores) for family, scores in found.items()}, detector="RhythmStage"
    )


def _evaluate_record(
    name: str, model: Path, data_dir: DataDirs, lead: str
) -> dict[RhythmFamily, RhythmScore]:
    """One record's score per family; a top-level function for process pools."""
    config = ChainConfig()
    record = load_record(name, data_dir, lead)
    if record.annotations is None:
        msg = f"record {name} has no reference annotations ({name}.atr) to score"
        raise RecordFormatError(msg)
    with OnnxBeatClassifier(model, config) as classifier:
        events = [placed.event for placed in analyze_record(record, config, classifier).events]
    return {family: score_record(record, events, family) for family in RhythmFamily}
