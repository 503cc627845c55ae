"""One stream from its source through the chain and the classifier to its sinks.

Every way of running the chain is a :class:`StreamSession`: ``replay`` feeds it a record's paced
chunks, ``serve`` a device's ``raw`` chunks, ``analyze`` and ``evaluate`` a whole record as fast
as possible. Per input item the session

1. runs the item through its front end (``live/front.py``: the chain, beats placed in the
   source's clock);
2. classifies the completed windows through an :class:`InferenceBatcher` that the streams of a
   process share (one ONNX call per event-loop turn for every stream's ready windows);
3. hands the labeled beats and the filtered samples to its sinks, and a status when the input's
   state or ingest counters change.

A sink (:class:`Sink`) is where output goes: MQTT topics, a CSV file, terminal lines, a list in
memory. It says nothing about where beats came from; adding an output is one sink class and one
line where a command composes its sinks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Generic, Protocol, TypeVar

import msgspec
import numpy as np

from ecg_stream.classify.batcher import InferenceBatcher
from ecg_stream.config import CHAIN_FS_HZ
from ecg_stream.detector.rhythm.af import conducted_in_af
from ecg_stream.detector.rhythm.stage import RhythmInput, RhythmStage
from ecg_stream.documents import write_json
from ecg_stream.errors import EcgStreamError, ModelContractError
from ecg_stream.live.front import ChunkFate, Front, Ingested, PlacedWindow
from ecg_stream.mqtt.stats import PublisherStats
from ecg_stream.stats import DurationHistogram, Percentiles
from ecg_stream.types import (
    BEAT_CLASSES,
    BeatClass,
    Chunk,
    LabeledBeat,
    RhythmEvent,
    RPeak,
    SignalState,
)
from ecg_stream.wire import MAX_TEXT_CHARS, IngestStatus, StatusMessage, StreamState, TopicKind

In = TypeVar("In")
Clock = Callable[[], float]

STATUS_INTERVAL_S = 5.0
"""A stream's status with ingest counters is re-published at least this often."""

STATUS_MIN_INTERVAL_S = 1.0
"""...and at most this often when a counter that means trouble (gaps, ...) changes."""


@dataclass(frozen=True, slots=True)
class StreamBeat:
    """A beat of a stream, placed in its source's clock.

    Args:
        stream: Stream id.
        record: Record name (a device's stream id).
        placed: The beat window and its R peak in the source's and the chain's clock.
        labeled: The classifier's label (None: the session classifies nothing).
        r_wall_time: Unix time of the R peak, in s.
        arrival_s: Monotonic clock reading when the input that completed the beat arrived.
    """

    stream: str
    record: str
    placed: PlacedWindow
    labeled: LabeledBeat | None
    r_wall_time: float
    arrival_s: float

    def label(self) -> LabeledBeat:
        """The beat's label.

        Raises:
            ValueError: The session classified nothing (a sink that needs labels was given
                a detection-only session).
        """
        if self.labeled is None:
            msg = f"beat at sample {self.placed.sample_index} of {self.stream} has no label"
            raise ValueError(msg)
        return self.labeled


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """A rhythm event of a stream, placed in its source's clock.

    Args:
        stream: Stream id.
        record: Record name (a device's stream id).
        event: The event, in the stream's chain clock (360 Hz).
        sample_index: The event's sample in the source's clock.
        fs_hz: The source's sampling rate, in Hz.
        wall_time: Unix time of the event's sample, in s.
    """

    stream: str
    record: str
    event: RhythmEvent
    sample_index: int
    fs_hz: float
    wall_time: float

    @property
    def time_s(self) -> float:
        """The event's time in the source's clock, in s."""
        return self.sample_index / self.fs_hz


@dataclass(frozen=True, slots=True)
class SessionOutput:
    """What one input item (or the end of the input) gave a stream.

    Args:
        stream: Stream id.
        beats: Beats completed, in R-peak order.
        filtered: Filtered samples in the stream's chain clock (360 Hz), in order.
        arrival_s: Monotonic clock reading when the input arrived.
        events: Rhythm events the beats and the passing time decided, in order.
    """

    stream: str
    beats: tuple[StreamBeat, ...]
    filtered: tuple[Chunk, ...]
    arrival_s: float
    events: tuple[StreamEvent, ...] = ()


class Sink(Protocol):
    """Where a session's output goes: MQTT topics, a CSV file, terminal lines, a database.

    A sink serves any number of streams. ``status`` with state online opens a stream at the
    sink, further online statuses update it, offline closes it.
    """

    async def status(self, message: StatusMessage) -> None:
        """A stream's state: online (opens the stream here), an update, or offline (closes it)."""

    async def write(self, output: SessionOutput) -> None:
        """Take a stream's beats and filtered samples (may wait: back-pressure)."""

    def write_nowait(self, output: SessionOutput) -> None:
        """Take output without waiting (the process is stopping); what does not fit is counted."""

    async def close(self) -> None:
        """Close every stream still open and release the sink's resources; idempotent."""


@dataclass(slots=True)
class StreamReport:
    """What one stream did, over all its sessions.

    Args:
        stream_id: The stream.
        record: Record name (a device's stream id).
        sessions: Sessions run (a device idle past the timeout comes back as a new one).
        beats: Beats handed to the sinks, per class (unlabeled ones are not counted here).
        detected: Beats handed to the sinks, labeled or not.
        pacing: |chunk arrival - due time| of each chunk, in ms (paced replays only).
        publisher: MQTT delivery counters and compute latency (zero without an MQTT sink).
        ingest: The last session's ingest counters (device streams only).
        signal_s: Signal time processed, in s.
        chain_s: Wall time spent in the chain (front end), in s.
        started_s: Clock time of the first input (NaN before).
        finished_s: Clock time the stream ended (NaN before).
        error: Why the stream was stopped by an error of its own (None: it was not).
    """

    stream_id: str
    record: str
    sessions: int = 0
    beats: dict[BeatClass, int] = field(default_factory=lambda: dict.fromkeys(BEAT_CLASSES, 0))
    detected: int = 0
    pacing: DurationHistogram = field(default_factory=DurationHistogram)
    publisher: PublisherStats = field(default_factory=PublisherStats)
    ingest: IngestStatus | None = None
    signal_s: float = 0.0
    chain_s: float = 0.0
    started_s: float = math.nan
    finished_s: float = math.nan
    error: str | None = None

    def add(self, other: StreamReport) -> None:
        """Add another stream's counters (its latency histograms merged)."""
        self.sessions += other.sessions
        self.detected += other.detected
        for beat_class, count in other.beats.items():
            self.beats[beat_class] += count
        self.pacing.merge(other.pacing)
        self.publisher.merge(other.publisher)
        self.signal_s += other.signal_s
        self.chain_s += other.chain_s
        self.error = other.error or self.error

    @property
    def speed_factor(self) -> float:
        """Signal time over wall time."""
        return self.signal_s / max(self.finished_s - self.started_s, 1e-9)


class StreamFigures(msgspec.Struct, kw_only=True):
    """One stream of ``--summary-json`` (or the retired streams folded into one, ``stream`` "")."""

    stream: str
    record: str
    sessions: int
    beats: dict[str, int]
    detected: int
    signal_s: float
    compute_ms: Percentiles
    published: dict[str, int]
    dropped: dict[str, int]
    refused: dict[str, int]
    beats_lost: int
    error: str | None = None

    @classmethod
    def of(cls, report: StreamReport) -> StreamFigures:
        """The figures of one stream's report."""
        publisher = report.publisher
        return cls(
            stream=report.stream_id,
            record=report.record,
            sessions=report.sessions,
            beats={beat_class.value: count for beat_class, count in report.beats.items()},
            detected=report.detected,
            signal_s=report.signal_s,
            compute_ms=publisher.compute.summary(),
            published={kind.value: n for kind, n in publisher.published.items()},
            dropped={kind.value: n for kind, n in publisher.dropped.items()},
            refused={kind.value: n for kind, n in publisher.refused.items()},
            beats_lost=publisher.beats_lost,
            error=report.error,
        )


class SummaryDocument(msgspec.Struct, kw_only=True):
    """``replay --summary-json F`` and ``serve --summary-json F``: the summary, machine-readable.

    Args:
        streams: Each listed stream's figures.
        retired_streams: Streams folded into ``retired`` (idle and freed; ``serve``).
        retired: Their figures together (None when there are none).
        interrupted: The run was stopped by Ctrl-C or SIGTERM.
        beats: Beats handed to the sinks, all streams.
        beats_lost: Beats no subscriber can get (dropped before the broker, or refused).
        refusal: The broker's reason for a refused publish, if any.
        compute_ms: Compute latency of every published beat.
        inference_calls: Classifier calls; ``inference_windows`` the windows they classified.
        received: Raw messages received (``serve``), of which ``malformed`` did not decode,
            ``foreign`` belonged to another shard, ``refused_streams`` to streams past
            ``--max-streams``.
        exit_status: The command's exit status (0, 1 on lost beats or a stream's error, 130
            after Ctrl-C).
    """

    streams: list[StreamFigures]
    retired_streams: int
    retired: StreamFigures | None
    interrupted: bool
    beats: int
    beats_lost: int
    refusal: str | None
    compute_ms: Percentiles
    inference_calls: int
    inference_windows: int
    received: int
    malformed: int
    foreign: int
    refused_streams: int
    exit_status: int


@dataclass(slots=True)
class RunSummary:
    """Every stream's report and the process's counters; printed at the end or on Ctrl-C.

    Args:
        streams: One report per stream, by id, in the order they started.
        speed: Factor of real time of a replay (``math.inf``: as fast as possible; NaN for
            device streams, which come at their own pace).
        interrupted: The run was stopped by Ctrl-C or SIGTERM.
        inference_calls: Classifier calls for all streams together.
        inference_windows: Beat windows those calls classified.
        inference_s: Wall time those calls took, in s.
        retired: The streams :meth:`retire` folded into one report (``serve``: streams that
            went idle once more than ``LISTED_STREAMS`` were listed), and their number.
        received: Raw device messages received (``serve``).
        malformed: Raw messages that did not decode (skipped).
        foreign: Raw messages of streams another shard keeps (not decoded).
        refused_streams: Raw messages of new streams a worker at its ``--max-streams`` dropped.
    """

    streams: dict[str, StreamReport] = field(default_factory=dict)
    retired: StreamReport = field(default_factory=lambda: StreamReport("", ""))
    retired_count: int = 0
    speed: float = math.nan
    interrupted: bool = False
    inference_calls: int = 0
    inference_windows: int = 0
    inference_s: float = 0.0
    received: int = 0
    malformed: int = 0
    foreign: int = 0
    refused_streams: int = 0

    def report(self, stream_id: str, record: str) -> StreamReport:
        """The stream's report, made on first use."""
        return self.streams.setdefault(stream_id, StreamReport(stream_id, record))

    def retire(self, stream_id: str) -> None:
        """Fold a finished stream's report into ``retired`` and forget it (bounded memory)."""
        report = self.streams.pop(stream_id, None)
        if report is None:
            return
        self.retired.add(report)
        self.retired_count += 1

    @property
    def reports(self) -> list[StreamReport]:
        """Every stream's report, the retired ones folded into one."""
        return [*self.streams.values(), *([self.retired] if self.retired_count else [])]

    @property
    def beats(self) -> int:
        """Beats handed to the sinks, all streams."""
        return sum(report.detected for report in self.reports)

    @property
    def total_dropped(self) -> int:
        """Messages dropped by every publisher."""
        return sum(report.publisher.dropped_total for report in self.reports)

    @property
    def beats_lost(self) -> int:
        """Beats no subscriber can get (dropped before the broker, or refused by it)."""
        return sum(report.publisher.beats_lost for report in self.reports)

    @property
    def refused(self) -> int:
        """Messages the broker refused, every stream."""
        return sum(report.publisher.refused_total for report in self.reports)

    @property
    def refusal(self) -> str | None:
        """The broker's reason for a refusal (None: none refused)."""
        return next((r.publisher.refusal for r in self.reports if r.publisher.refusal), None)

    def exit_status(self) -> int:
        """Exit status of a command that ended by itself: 1 on lost beats or a stream error."""
        failed = any(report.error for report in self.reports)
        return 1 if self.beats_lost or failed else 0

    def compute(self) -> DurationHistogram:
        """Compute latency of every stream's published beats."""
        return DurationHistogram.merged(r.publisher.compute for r in self.reports)

    def pacing(self) -> DurationHistogram:
        """Pacing error of every stream's chunks."""
        return DurationHistogram.merged(r.pacing for r in self.reports)

    def chain_s(self) -> float:
        """Time every stream spent in the chain, in s (retired streams included)."""
        return self.retired.chain_s + sum(report.chain_s for report in self.streams.values())

    def add_inference(self, batcher: InferenceBatcher) -> None:
        """Count a batcher's calls."""
        self.inference_calls += batcher.calls
        self.inference_windows += batcher.windows
        self.inference_s += batcher.seconds

    def merge(self, other: RunSummary) -> None:
        """Add another process's streams and counters (a worker's)."""
        self.streams.update(other.streams)
        self.retired.add(other.retired)
        self.retired_count += other.retired_count
        self.speed = other.speed
        self.interrupted |= other.interrupted
        self.inference_calls += other.inference_calls
        self.inference_windows += other.inference_windows
        self.inference_s += other.inference_s
        self.received += other.received
        self.malformed += other.malformed
        self.foreign += other.foreign
        self.refused_streams += other.refused_streams

    def document(self) -> SummaryDocument:
        """The summary as the typed document ``--summary-json`` writes."""
        return SummaryDocument(
            streams=[StreamFigures.of(report) for report in self.streams.values()],
            retired_streams=self.retired_count,
            retired=StreamFigures.of(self.retired) if self.retired_count else None,
            interrupted=self.interrupted,
            beats=self.beats,
            beats_lost=self.beats_lost,
            refusal=self.refusal,
            compute_ms=self.compute().summary(),
            inference_calls=self.inference_calls,
            inference_windows=self.inference_windows,
            received=self.received,
            malformed=self.malformed,
            foreign=self.foreign,
            refused_streams=self.refused_streams,
            exit_status=130 if self.interrupted else self.exit_status(),
        )

    def report_to(self, say: Callable[[str], None], summary_json: Path | None = None) -> None:
        """Say the summary's lines; with ``summary_json``, also write it there (atomically)."""
        say(self.format())
        if summary_json is not None:
            write_json(self.document(), summary_json)
            say(f"wrote {summary_json}")

    def format(self) -> str:
        """The summary as terminal lines."""
        if math.isnan(self.speed):  # device streams
            served = len(self.streams) + self.retired_count
            lines = [f"served {served} streams, {self.beats} beats"]
        elif not self.streams:
            return "nothing replayed"
        else:
            lines = ["interrupted: summary so far" if self.interrupted else "summary"]
        for report in self.streams.values():
            lines += _report_lines(report, replayed=not math.isnan(self.speed))
        if self.retired_count:
            retired = self.retired
            lines.append(
                f"  {self.retired_count} more streams, idle and freed: {retired.detected} beats, "
                f"{retired.signal_s:.1f} s of signal, dropped {retired.publisher.dropped_total}, "
                f"beats lost {retired.publisher.beats_lost}"
            )
        compute, pacing = self.compute().summary(), self.pacing().summary()
        lines.append(
            f"  compute latency (chunk arrival -> publish): {compute}"
            if compute.count
            else "  compute latency: no beat reached the broker"
        )
        if math.isinf(self.speed):
            lines.append(
                "    (at --speed max the chain outruns the broker: compute latency is mostly the "
                "wait in the publish queue; measure latency at --speed 1)"
            )
        if pacing.count:
            lines.append(f"  pacing error |arrival - due|: {pacing}")
        if self.inference_calls:
            lines.append(
                f"  inference: {self.inference_calls} calls for {self.inference_windows} beats "
                f"(mean batch {self.inference_windows / self.inference_calls:.1f})"
            )
        if self.received:
            lines.append(
                f"  raw messages: {self.received} received, {self.malformed} malformed, "
                f"{self.foreign} of other shards"
                + (
                    f", {self.refused_streams} of streams past --max-streams"
                    if self.refused_streams
                    else ""
                )
            )
        lines.append(f"  dropped: {self.total_dropped}; beats lost: {self.beats_lost}")
        if self.refused:
            lines.append(
                f"  refused by the broker: {self.refused} messages ({self.refusal}): these "
                "credentials may not publish these topics; check the broker's ACL, the user "
                "and --topic-prefix / --stream-id"
            )
        return "\n".join(lines)


def _report_lines(report: StreamReport, *, replayed: bool) -> list[str]:
    counts = "  ".join(f"{cls.value} {report.beats[cls]}" for cls in BEAT_CLASSES)
    publisher = report.publisher
    compute = publisher.compute.summary()
    details = [
        f"compute latency mean {compute.mean_ms:.2f} ms, max {compute.max_ms:.2f} ms"
        if compute.count
        else "no beat published",
        f"dropped {publisher.dropped_total} (beats {publisher.beats_dropped}, samples "
        f"{publisher.samples_dropped})",
        f"{report.signal_s:.1f} s of signal"
        + (f" at {report.speed_factor:.0f}x real time" if replayed else ""),
    ]
    if report.error:
        details.append(f"STOPPED: {report.error}")
    if publisher.refused_total:
        details.append(
            f"refused {publisher.refused_total} (beats {publisher.refused[TopicKind.BEATS]})"
        )
    if report.sessions > 1:
        details.append(f"{report.sessions} sessions")
    if (ingest := report.ingest) is not None:
        details.append(
            f"gaps {ingest.gaps}, duplicates {ingest.duplicates}, malformed {ingest.malformed}, "
            f"dropped chunks {ingest.dropped}" + (", INTERLEAVED" if ingest.interleaved else "")
        )
    if publisher.reconnects:
        details.append(
            f"{publisher.reconnects} reconnects"
            + (f", {publisher.republished} re-sent" if publisher.republished else "")
        )
    return [
        f"  stream {report.stream_id} (record {report.record}): {report.detected} beats: {counts}",
        "    " + "; ".join(details),
    ]


class StreamSession(Generic[In]):
    """One stream's run: input through its front end, beats classified, output to the sinks.

    An async context manager: entering announces the stream online to every sink; leaving
    announces it offline (with its last ingest counters). Cancelled (Ctrl-C, SIGTERM) while
    running, it classifies what it holds without waiting for other streams and hands it over
    with :meth:`Sink.write_nowait` before the offline status.

    Args:
        front: The stream's input through the chain.
        sinks: Where output goes.
        status: The stream's online status (stream id, record and model named there).
        report: Where the stream's counters go.
        batcher: Labels the windows, batched with other streams (None: beats unlabeled).
        rhythm: The stream's rhythm stage, fed the labeled beats (None: no rhythm events;
            a session without a classifier has none).
        clock: Monotonic clock, in s (the one arrival times are read from).
        wall_clock: Unix time, in s.

    Raises:
        ModelContractError: The classifier was checked against another chain configuration.
    """

    def __init__(
        self,
        front: Front[In],
        sinks: Sequence[Sink],
        status: StatusMessage,
        report: StreamReport,
        *,
        batcher: InferenceBatcher | None,
        rhythm: RhythmStage | None = None,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        if batcher is not None and batcher.classifier.config != front.config:
            msg = (
                f"the classifier was checked against {batcher.classifier.config}, the chain "
                f"runs {front.config}; build both from the same ChainConfig"
            )
            raise ModelContractError(msg)
        self.front, self.sinks, self.report, self.batcher = front, tuple(sinks), report, batcher
        self.rhythm = rhythm if batcher is not None else None
        self.clock, self.wall_clock = clock, wall_clock
        self.status = status
        self.stream_id = status.stream
        self._in_flight: tuple[PlacedWindow, ...] = ()  # extracted, not back from the batcher
        self._status_s = math.nan  # clock time of the last status with ingest counters
        self._status_trouble = _trouble(status.ingest)
        self._end_index = 0  # chain samples of the stream seen: the rhythm stage's clock

    async def __aenter__(self) -> StreamSession[In]:
        self.report.sessions += 1
        for sink in self.sinks:
            await sink.status(self.status)
        self._status_s = self.clock()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is asyncio.CancelledError:  # the beats held go out all the same
                arrival_s = self.clock()
                try:
                    self._drain(self.front.finish(arrival_s), arrival_s, ending=True)
                except EcgStreamError as failure:  # the stream's own error, said on its status
                    exc = failure
        finally:
            self.report.finished_s = self.clock()
            if (ingest := self.front.ingest()) is not None:
                self.report.ingest = ingest
                self.status = msgspec.structs.replace(self.status, ingest=ingest)
            reason = str(exc)[:MAX_TEXT_CHARS] if isinstance(exc, EcgStreamError) else None
            offline = msgspec.structs.replace(
                self.status, state=StreamState.OFFLINE, error=reason or None
            )
            for sink in self.sinks:
                await sink.status(offline)

    async def process(self, item: In, arrival_s: float) -> None:
        """Run one input item through the chain, classify its beats, hand them to the sinks.

        Args:
            item: The input (a chunk of a record, a device's raw message).
            arrival_s: Clock reading when it arrived, in s.
        """
        if math.isnan(self.report.started_s):
            self.report.started_s = arrival_s
        started = time.perf_counter()
        ingested = self.front.process(item, arrival_s, self._wall_time_of(arrival_s))
        self.report.chain_s += time.perf_counter() - started
        await self._deliver(ingested, arrival_s)
        await self._update_status()

    async def finish(self) -> None:
        """The input has ended: classify and hand over what the chain held back."""
        arrival_s = self.clock()
        await self._deliver(self.front.finish(arrival_s), arrival_s, ending=True)

    async def _deliver(self, ingested: Ingested, arrival_s: float, *, ending: bool = False) -> None:
        self._in_flight = ingested.windows
        labeled = None
        if self.batcher is not None:
            labeled = await self.batcher.classify([w.window for w in self._in_flight])
        self._in_flight = ()
        output = self._output(ingested, labeled, arrival_s, ending=ending)
        for sink in self.sinks:
            await sink.write(output)

    async def _update_status(self) -> None:
        signal = self.front.signal()
        ingest = self.front.ingest()
        now = self.clock()
        status = self.status
        if signal is not None and signal is not (status.signal or SignalState.OK):
            # the input's state changed (retained): a clean stream never says it
            status = msgspec.structs.replace(status, signal=signal)
        if self.rhythm is not None and self.rhythm.current is not status.rhythm:
            status = msgspec.structs.replace(status, rhythm=self.rhythm.current)
        if ingest is not None:
            trouble = _trouble(ingest)
            due = now - self._status_s >= STATUS_INTERVAL_S
            changed = trouble != self._status_trouble
            if due or (changed and now - self._status_s >= STATUS_MIN_INTERVAL_S):
                status = msgspec.structs.replace(status, ingest=ingest)
                self._status_s, self._status_trouble = now, trouble
        if status is not self.status:
            self.status = status
            for sink in self.sinks:
                await sink.status(status)

    def process_nowait(self, item: In, arrival_s: float) -> None:
        """Stopping: run an item received earlier through, classify it here, hand it over.

        What the session holds from an interrupted :meth:`process` goes first.
        """
        self._drain(self.front.process(item, arrival_s, self._wall_time_of(arrival_s)), arrival_s)

    def _wall_time_of(self, clock_s: float) -> float:
        """Unix time at a reading of the monotonic clock."""
        return self.wall_clock() - (self.clock() - clock_s)

    def _drain(self, ingested: Ingested, arrival_s: float, *, ending: bool = False) -> None:
        windows = self._in_flight + ingested.windows
        self._in_flight = ()
        labeled = None
        if self.batcher is not None and windows:
            labeled = self.batcher.classifier.classify([w.window for w in windows])
        stopped = Ingested(ingested.fate, windows, ingested.filtered)
        output = self._output(stopped, labeled, arrival_s, ending=ending)
        for sink in self.sinks:
            sink.write_nowait(output)

    def _output(
        self,
        ingested: Ingested,
        labeled: Sequence[LabeledBeat] | None,
        arrival_s: float,
        *,
        ending: bool = False,
    ) -> SessionOutput:
        events = self._events(ingested, labeled, ending=ending)
        if labeled is not None and self.rhythm is not None:
            labeled = [
                conducted_in_af(beat) if conducted else beat
                for beat, conducted in zip(labeled, self.rhythm.conducted, strict=True)
            ]
        beats = []
        for index, placed in enumerate(ingested.windows):
            label = None if labeled is None else labeled[index]
            wall_s = self.front.wall_time(placed.sample_index)
            beats.append(
                StreamBeat(
                    self.stream_id,
                    self.status.record,
                    placed,
                    label,
                    max(wall_s, 0.0) if math.isfinite(wall_s) else self.wall_clock(),
                    arrival_s,
                )
            )
            self.report.detected += 1
            if label is not None:
                self.report.beats[label.label] += 1
        for filtered in ingested.filtered:
            self.report.signal_s = max(self.report.signal_s, filtered.end_index / CHAIN_FS_HZ)
        return SessionOutput(self.stream_id, tuple(beats), ingested.filtered, arrival_s, events)

    def _events(
        self, ingested: Ingested, labeled: Sequence[LabeledBeat] | None, *, ending: bool
    ) -> tuple[StreamEvent, ...]:
        """The rhythm events the beats and the passing time decide, placed in the source."""
        if self.rhythm is None or labeled is None:
            return ()
        beats = tuple(
            _in_stream_clock(beat, placed)
            for beat, placed in zip(labeled, ingested.windows, strict=True)
        )
        self._end_index = max(
            [self._end_index]
            + [chunk.end_index for chunk in ingested.filtered]
            + [beat.window.ready_index for beat in beats]
        )
        signal = self.front.signal() or SignalState.OK
        if ingested.fate is ChunkFate.AFTER_GAP:
            signal = SignalState.GAP
        samples = None
        if ingested.filtered:  # the stream's newest filtered signal, for VF
            samples = np.concatenate([chunk.samples for chunk in ingested.filtered])
        events = self.rhythm.process(RhythmInput(beats, self._end_index, signal, samples))
        if ending:
            events += self.rhythm.flush()
        return tuple(self._placed(event) for event in events)

    def _placed(self, event: RhythmEvent) -> StreamEvent:
        sample_index = self.front.source_index(event.index)
        wall_s = self.front.wall_time(sample_index)
        return StreamEvent(
            self.stream_id,
            self.status.record,
            event,
            sample_index,
            self.front.fs_hz,
            max(wall_s, 0.0) if math.isfinite(wall_s) else self.wall_clock(),
        )


def _in_stream_clock(beat: LabeledBeat, placed: PlacedWindow) -> LabeledBeat:
    """The beat with its indices in the stream's chain clock.

    A device's chain restarts at 0 after a gap; the rhythm stage's clock runs on.
    """
    window = beat.window
    offset = placed.chain_index - window.peak.index
    if offset == 0:
        return beat
    peak = RPeak(window.peak.index + offset, window.peak.decided_index + offset)
    moved = dataclasses.replace(window, peak=peak, ready_index=window.ready_index + offset)
    return dataclasses.replace(beat, window=moved)


def _trouble(ingest: IngestStatus | None) -> tuple[int, int, int, int, bool] | None:
    """The ingest counters whose change is worth a status update now."""
    if ingest is None:
        return None
    return (ingest.gaps, ingest.duplicates, ingest.malformed, ingest.dropped, ingest.interleaved)
