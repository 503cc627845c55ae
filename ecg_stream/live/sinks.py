"""Sinks that need no broker: CSV and WFDB annotation files per stream, terminal lines, a list.

The MQTT sink is :class:`~ecg_stream.live.mqtt_sink.MqttSink`. Every sink follows
:class:`~ecg_stream.live.session.Sink`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from ecg_stream.config import CHAIN_FS_HZ
from ecg_stream.documents import write_atomically, written_aside
from ecg_stream.live.session import SessionOutput, StreamBeat, StreamEvent
from ecg_stream.types import BEAT_CLASSES, EventState, RhythmKind
from ecg_stream.wire import StatusMessage, StreamState

Held = TypeVar("Held")

CSV_HEADER = ("sample", "time_s", "rr_ms")
LABEL_COLUMNS = ("label", "confidence", *(f"p_{c.value}" for c in BEAT_CLASSES))
QUALITY_COLUMNS = ("sqi", "sqi_issue")
"""Signal-quality index of each beat and, when unusable (label Q), why (detector/quality.py)."""


def format_beat_line(beat: StreamBeat) -> str:
    """The live terminal line of a labeled beat: stream, time, label, confidence, heart rate."""
    labeled = beat.label()
    rr_ms = beat.placed.window.rr.rr_ms
    hr = f"{60_000.0 / rr_ms:5.1f}" if math.isfinite(rr_ms) and rr_ms > 0 else "  -- "
    return (
        f"{beat.stream:>8}  {beat.placed.time_s:9.3f} s  {labeled.label.value}  "
        f"{labeled.confidence:4.2f}  {hr} bpm"
    )


class BeatLines:
    """One terminal line per labeled beat.

    Args:
        say: Where the lines go.
    """

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say

    async def status(self, message: StatusMessage) -> None:
        """Nothing to say about status."""

    async def write(self, output: SessionOutput) -> None:
        """Say a line per beat."""
        self.write_nowait(output)

    def write_nowait(self, output: SessionOutput) -> None:
        """Say a line per beat."""
        for beat in output.beats:
            self.say(format_beat_line(beat))

    async def close(self) -> None:
        """Nothing to release."""


class BeatCollector:
    """Keep every stream's beats and rhythm events in memory (offline evaluation, tests).

    Attributes:
        beats: Each stream's beats, in order.
        events: Each stream's rhythm events, in order.
        statuses: Every status received, in order.
    """

    def __init__(self) -> None:
        self.beats: dict[str, list[StreamBeat]] = {}
        self.events: dict[str, list[StreamEvent]] = {}
        self.statuses: list[StatusMessage] = []

    async def status(self, message: StatusMessage) -> None:
        """Keep it; an online stream starts its lists."""
        self.statuses.append(message)
        self.beats.setdefault(message.stream, [])
        self.events.setdefault(message.stream, [])

    async def write(self, output: SessionOutput) -> None:
        """Keep the beats and events."""
        self.write_nowait(output)

    def write_nowait(self, output: SessionOutput) -> None:
        """Keep the beats and events."""
        self.beats.setdefault(output.stream, []).extend(output.beats)
        self.events.setdefault(output.stream, []).extend(output.events)

    async def close(self) -> None:
        """Nothing to release."""


class FileSink(Generic[Held]):
    """One file per stream in ``out_dir``, written whole when the stream goes offline.

    What a stream's outputs give is held until then (or until the sink closes), so a file is
    never left half written. Subclasses say what is held (:meth:`start`), what an output adds
    (:meth:`hold`) and how the file is written (:meth:`save`).

    Args:
        out_dir: Directory of the files (made if missing).

    Attributes:
        written: Paths written so far, by stream.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.written: dict[str, Path] = {}
        self._held: dict[str, Held] = {}

    def start(self, record: str) -> Held:
        """What a new stream of ``record`` holds."""
        raise NotImplementedError

    def hold(self, held: Held, output: SessionOutput) -> None:
        """Add an output to what a stream holds."""
        raise NotImplementedError

    def save(self, held: Held) -> Path | None:
        """Write a stream's file; the path written (None: nothing to write)."""
        raise NotImplementedError

    async def status(self, message: StatusMessage) -> None:
        """Online starts a stream's file; offline writes it, unless the stream failed.

        A failed stream's offline status carries its ``error``: a file cut short is not written.
        """
        if message.state is StreamState.ONLINE:
            self._held.setdefault(message.stream, self.start(message.record))
        elif message.error is not None:
            self._held.pop(message.stream, None)
        elif message.stream in self._held:
            self._save(message.stream)

    async def write(self, output: SessionOutput) -> None:
        """Hold the output."""
        self.write_nowait(output)

    def write_nowait(self, output: SessionOutput) -> None:
        """Hold the output."""
        self.hold(self._held[output.stream], output)

    async def close(self) -> None:
        """Write the files of streams still open."""
        for stream in list(self._held):
            self._save(stream)

    def _save(self, stream: str) -> None:
        path = self.save(self._held.pop(stream))
        if path is not None:
            self.written[stream] = path


@dataclass(slots=True)
class _Rows:
    record: str
    rows: list[list[str]] = field(default_factory=list)


class RowsSink(FileSink[_Rows]):
    """One CSV file per stream, ``<out_dir>/<record><suffix>``.

    Subclasses say which rows an output gives and what the header is.

    Args:
        out_dir: Directory of the files (made if missing).
        suffix: The files' name after the record's.
    """

    def __init__(self, out_dir: Path, suffix: str) -> None:
        super().__init__(out_dir)
        self.suffix = suffix

    def header(self) -> tuple[str, ...]:
        """The files' first row."""
        raise NotImplementedError

    def rows(self, output: SessionOutput) -> Iterator[list[str]]:
        """The rows an output gives."""
        raise NotImplementedError

    def start(self, record: str) -> _Rows:
        """No rows yet."""
        return _Rows(record)

    def hold(self, held: _Rows, output: SessionOutput) -> None:
        """Hold the output's rows."""
        held.rows.extend(self.rows(output))

    def save(self, held: _Rows) -> Path:
        """The header and the rows, as one CSV file."""
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(self.header())
        writer.writerows(held.rows)
        path = self.out_dir / f"{held.record}{self.suffix}"
        write_atomically(path, text.getvalue())
        return path


class CsvSink(RowsSink):
    """One CSV file per stream, ``<out_dir>/<record>.csv``, one row per beat.

    Columns ``sample,time_s,rr_ms`` (sample in the source's own clock), then, with
    ``labels``, ``label,confidence,p_N,p_S,p_V,p_F,p_Q``, then ``sqi,sqi_issue`` (the beat's
    signal-quality index and, when unusable, why; such a beat is labelled Q).

    Args:
        out_dir: Directory of the files (made if missing).
        labels: Write the label columns (False: detections only).
    """

    def __init__(self, out_dir: Path, *, labels: bool) -> None:
        super().__init__(out_dir, ".csv")
        self.labels = labels

    def header(self) -> tuple[str, ...]:
        """Beat, labels when classified, quality."""
        return CSV_HEADER + (LABEL_COLUMNS if self.labels else ()) + QUALITY_COLUMNS

    def rows(self, output: SessionOutput) -> Iterator[list[str]]:
        """One row per beat."""
        for beat in output.beats:
            placed = beat.placed
            rr_ms = placed.window.rr.rr_ms
            row = [str(placed.sample_index), f"{placed.time_s:.4f}"]
            row.append("" if math.isnan(rr_ms) else f"{rr_ms:.1f}")
            if self.labels:
                labeled = beat.label()
                row += [labeled.label.value, f"{labeled.confidence:.4f}"]
                row += [f"{p:.4f}" for p in labeled.probabilities]
            quality = placed.window.quality
            if quality is None:
                row += ["", ""]
            else:
                issue = "" if quality.issue is None else quality.issue.value
                row += [f"{quality.sqi:.3f}", issue]
            yield row


RHYTHM_CODES: dict[RhythmKind, str] = {
    RhythmKind.VF: "(VFL",
    RhythmKind.ASYSTOLE: "(ASYS",  # no MIT-BIH code
    RhythmKind.VT: "(VT",
    RhythmKind.AF: "(AFIB",
    RhythmKind.SVT: "(SVTA",
    RhythmKind.IDIOVENTRICULAR: "(IVR",
    RhythmKind.VENTRICULAR_BIGEMINY: "(B",
    RhythmKind.VENTRICULAR_TRIGEMINY: "(T",
    RhythmKind.TACHYCARDIA: "(TACH",  # no MIT-BIH code: sinus or not, a fast rate
    RhythmKind.BRADYCARDIA: "(SBR",
}
"""The aux note of a ``+`` (rhythm change) annotation per episode kind, in the stage's priority
(``detector/rhythm/stage.py`` ``PRIORITY``): when episodes overlap, the annotation names the
most urgent. Codes of the MIT-BIH Arrhythmia Database where one exists."""

NORMAL_RHYTHM_CODE = "(N"
"""The aux note of a ``+`` annotation when no episode is open."""

EVENTS_CSV_HEADER = (
    "kind",
    "state",
    "sample",
    "time_s",
    "chain_sample",
    "beats",
    "rate_bpm",
    "delay_s",
    "detail",
)


class EventsCsvSink(RowsSink):
    """One CSV file per stream, ``<out_dir>/<record>.events.csv``, one row per rhythm event.

    Columns ``kind,state,sample,time_s,chain_sample,beats,rate_bpm,delay_s,detail`` (sample in
    the source's clock; ``delay_s`` from the event to the stage's decision, in signal time).

    Args:
        out_dir: Directory of the files (made if missing).
    """

    def __init__(self, out_dir: Path) -> None:
        super().__init__(out_dir, ".events.csv")

    def header(self) -> tuple[str, ...]:
        """The event's fields."""
        return EVENTS_CSV_HEADER

    def rows(self, output: SessionOutput) -> Iterator[list[str]]:
        """One row per event."""
        return (_event_row(event) for event in output.events)


def _event_row(placed: StreamEvent) -> list[str]:
    event = placed.event
    rate = "" if math.isnan(event.rate_bpm) else f"{event.rate_bpm:.1f}"
    delay_s = (event.decided_index - event.index) / CHAIN_FS_HZ
    return [
        event.kind.value,
        event.state.value,
        str(placed.sample_index),
        f"{placed.time_s:.4f}",
        str(event.index),
        str(event.beats),
        rate,
        f"{delay_s:.3f}",
        event.detail or "",
    ]


class WfdbAnnotationSink(FileSink["AnnotationTrack"]):
    """One WFDB annotation file per stream, ``<out_dir>/<record>.<annotator>``.

    One beat annotation per labeled beat at its R peak in the source's clock, symbol ``N``,
    ``S``, ``V``, ``F`` or ``Q``; a ``+`` annotation at each change of the rhythm (the most
    urgent open episode, :data:`RHYTHM_CODES`; ``(N`` when none is open) with the rhythm code as
    its aux note, as the MIT-BIH reference annotations have them; instant events (a pause, a
    couplet, a run) as a note annotation (``"``) whose aux note names them. The header's
    sampling frequency is the source's. PhysioNet's ``rdann``, ``bxb`` and ``rxr`` and
    ``wfdb.rdann(path, annotator)`` read it. Written whole when the stream goes offline.

    Args:
        out_dir: Directory of the files (made if missing).
        annotator: The annotator name (the file's extension).
    """

    def __init__(self, out_dir: Path, annotator: str = "ecgs") -> None:
        super().__init__(out_dir)
        self.annotator = annotator

    def start(self, record: str) -> AnnotationTrack:
        """No annotation yet."""
        return AnnotationTrack(record)

    def hold(self, held: AnnotationTrack, output: SessionOutput) -> None:
        """Annotate the beats and the rhythm changes."""
        for beat in output.beats:
            held.add(beat.placed.sample_index, beat.label().label.value, "", beat.placed.fs_hz)
        for placed in output.events:
            event = placed.event
            held.add_event(event.kind, event.state, placed.sample_index, placed.fs_hz)

    def save(self, held: AnnotationTrack) -> Path | None:
        """The annotations in time order, as one annotation file (none without beats)."""
        return held.write(self.out_dir, self.annotator)


class AnnotationTrack:
    """A stream's WFDB annotations so far: beats and instant events, and its rhythm episodes.

    Args:
        record: The record's name (the annotation file's).
    """

    def __init__(self, record: str) -> None:
        self.record = record
        self.fs_hz = math.nan
        self.samples: list[int] = []
        self.symbols: list[str] = []
        self.notes: list[str] = []
        self.episodes: list[tuple[RhythmKind, int, int | None]] = []  # kind, start, end

    def add(self, sample: int, symbol: str, note: str, fs_hz: float) -> None:
        """One annotation: a beat's class, or a note."""
        self.samples.append(sample)
        self.symbols.append(symbol)
        self.notes.append(note)
        self.fs_hz = fs_hz

    def add_event(self, kind: RhythmKind, state: EventState, sample: int, fs_hz: float) -> None:
        """A rhythm event: an instant becomes a note, a start or end bounds an episode."""
        if state is EventState.INSTANT:
            self.add(sample, '"', kind.value.upper(), fs_hz)
        elif state is EventState.START:
            self.episodes.append((kind, sample, None))
        else:  # the kind's open episode ends
            for k in range(len(self.episodes) - 1, -1, -1):
                open_kind, start, end = self.episodes[k]
                if open_kind is kind and end is None:
                    self.episodes[k] = (kind, start, sample)
                    break

    def write(self, out_dir: Path, annotator: str) -> Path | None:
        """Write ``out_dir/<record>.<annotator>`` whole; None without beats (none written).

        The annotations in time order, with a ``+`` at each rhythm change.
        """
        import wfdb  # as records.py does: wfdb (and pandas) load only where they are used

        if not self.samples:
            return None
        samples, symbols, notes = list(self.samples), list(self.symbols), list(self.notes)
        for sample, code in self.rhythm_changes():
            samples.append(sample)
            symbols.append("+")
            notes.append(code)
        path = out_dir / f"{self.record}.{annotator}"
        order = sorted(range(len(samples)), key=lambda k: (samples[k], k))
        with written_aside(path) as scratch:  # wfdb names the file itself
            wfdb.wrann(
                self.record,
                annotator,
                np.array([samples[k] for k in order], dtype=np.int64),
                symbol=[symbols[k] for k in order],
                aux_note=[notes[k] for k in order],
                fs=self.fs_hz,
                write_dir=str(scratch),
            )
        return path

    def rhythm_changes(self) -> list[tuple[int, str]]:
        """``+`` annotations: where the most urgent open episode changes, and its code."""
        boundaries = sorted(
            {start for _, start, _ in self.episodes}
            | {end for _, _, end in self.episodes if end is not None}
        )
        changes: list[tuple[int, str]] = []
        code = NORMAL_RHYTHM_CODE
        for sample in boundaries:
            open_kinds = {
                kind
                for kind, start, end in self.episodes
                if start <= sample and (end is None or sample < end)
            }
            now = next((c for kind, c in RHYTHM_CODES.items() if kind in open_kinds), None)
            now = NORMAL_RHYTHM_CODE if now is None else now
            if now != code:
                changes.append((sample, now))
                code = now
        return changes
