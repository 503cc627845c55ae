"""Sinks that need no broker: a CSV file per stream, terminal lines, a list in memory.

The MQTT sink is :class:`~ecg_stream.live.mqtt_sink.MqttSink`. Every sink follows
:class:`~ecg_stream.live.session.Sink`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from pathlib import Path

from ecg_stream.documents import write_atomically
from ecg_stream.live.session import SessionOutput, StreamBeat
from ecg_stream.types import BEAT_CLASSES
from ecg_stream.wire import StatusMessage, StreamState

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
    """Keep every stream's beats in memory (offline evaluation, tests).

    Attributes:
        beats: Each stream's beats, in order.
        statuses: Every status received, in order.
    """

    def __init__(self) -> None:
        self.beats: dict[str, list[StreamBeat]] = {}
        self.statuses: list[StatusMessage] = []

    async def status(self, message: StatusMessage) -> None:
        """Keep it; an online stream starts a list."""
        self.statuses.append(message)
        self.beats.setdefault(message.stream, [])

    async def write(self, output: SessionOutput) -> None:
        """Keep the beats."""
        self.write_nowait(output)

    def write_nowait(self, output: SessionOutput) -> None:
        """Keep the beats."""
        self.beats.setdefault(output.stream, []).extend(output.beats)

    async def close(self) -> None:
        """Nothing to release."""


class CsvSink:
    """One CSV file per stream, ``<out_dir>/<record>.csv``, one row per beat, written at its end.

    Columns ``sample,time_s,rr_ms`` (sample in the source's own clock), then, with
    ``labels``, ``label,confidence,p_N,p_S,p_V,p_F,p_Q``, then ``sqi,sqi_issue`` (the beat's
    signal-quality index and, when unusable, why; such a beat is labelled Q). A file is
    replaced whole when its stream goes offline, never left half written.

    Args:
        out_dir: Directory of the files (made if missing).
        labels: Write the label columns (False: detections only).

    Attributes:
        written: Paths written so far, by stream.
    """

    def __init__(self, out_dir: Path, *, labels: bool) -> None:
        self.out_dir, self.labels = out_dir, labels
        self.written: dict[str, Path] = {}
        self._rows: dict[str, list[list[str]]] = {}
        self._records: dict[str, str] = {}

    async def status(self, message: StatusMessage) -> None:
        """Online starts a stream's rows; offline writes its file."""
        if message.state is StreamState.ONLINE:
            self._records[message.stream] = message.record
            self._rows.setdefault(message.stream, [])
        elif message.stream in self._rows:
            self._save(message.stream)

    async def write(self, output: SessionOutput) -> None:
        """Hold the rows of the beats."""
        self.write_nowait(output)

    def write_nowait(self, output: SessionOutput) -> None:
        """Hold the rows of the beats."""
        self._rows[output.stream].extend(self._row(beat) for beat in output.beats)

    async def close(self) -> None:
        """Write the files of streams still open."""
        for stream in list(self._rows):
            self._save(stream)

    def _save(self, stream: str) -> None:
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(CSV_HEADER + (LABEL_COLUMNS if self.labels else ()) + QUALITY_COLUMNS)
        writer.writerows(self._rows.pop(stream))
        path = self.out_dir / f"{self._records.pop(stream)}.csv"
        write_atomically(path, text.getvalue())
        self.written[stream] = path

    def _row(self, beat: StreamBeat) -> list[str]:
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
            row += [f"{quality.sqi:.3f}", "" if quality.issue is None else quality.issue.value]
        return row
