"""Offline analysis: whole records through the streaming session, as fast as possible.

A record analysed here is a :class:`~ecg_stream.live.replay.RecordReplay` at ``--speed max``
into a :class:`~ecg_stream.live.sinks.BeatCollector` (and any other sink, e.g. CSV files):
the beats and labels are those a live subscriber receives.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ecg_stream.classify.batcher import ClassifierLike
from ecg_stream.config import CHAIN_FS_HZ, DEFAULT_RHYTHM, ChainConfig, RhythmSettings
from ecg_stream.errors import ConfigError, DataNotFoundError, RecordFormatError
from ecg_stream.live.replay import RecordReplay
from ecg_stream.live.session import RunSummary, Sink, StreamBeat, StreamEvent
from ecg_stream.live.sinks import BeatCollector, CsvSink, EventsCsvSink, WfdbAnnotationSink
from ecg_stream.live.sources import StreamSpec
from ecg_stream.progress import progress
from ecg_stream.records import DataDirs, Record
from ecg_stream.types import BeatWindow, IntArray, LabeledBeat

T = TypeVar("T")

ANALYSIS_CHUNK_S = 1.0
"""Chunk length fed to the chain offline, in s (results do not depend on it; speed does)."""


@dataclass(frozen=True, slots=True)
class RecordAnalysis:
    """A record's beats, as the streaming session gave them, and what they cost.

    Args:
        record: The analysed record.
        beats: Every detected beat, in order (labeled when a classifier ran).
        events: The rhythm events of the session's rhythm stage, in order (none without a
            classifier).
        chain_s: Wall time spent in the chain (filter, detector, windows), in s.
        inference_s: Wall time spent classifying, in s.
    """

    record: Record
    beats: tuple[StreamBeat, ...]
    events: tuple[StreamEvent, ...]
    chain_s: float
    inference_s: float

    @property
    def windows(self) -> tuple[BeatWindow, ...]:
        """The beat windows, indices in the chain's clock."""
        return tuple(beat.placed.window for beat in self.beats)

    @property
    def labeled(self) -> tuple[LabeledBeat, ...]:
        """The labeled beats (empty when no classifier ran)."""
        return tuple(beat.labeled for beat in self.beats if beat.labeled is not None)

    @property
    def record_indices(self) -> IntArray:
        """R-peak indices in the record's own clock."""
        return np.array([beat.placed.sample_index for beat in self.beats], dtype=np.int64)

    @property
    def signal_s(self) -> float:
        """Duration of the record, in s."""
        return self.record.samples.size / CHAIN_FS_HZ

    @property
    def speed_factor(self) -> float:
        """Signal duration over chain wall time: how many times faster than real time."""
        return self.signal_s / max(self.chain_s, 1e-9)


def analyze_record(
    record: Record,
    config: ChainConfig,
    classifier: ClassifierLike | None = None,
    *,
    chunk_s: float = ANALYSIS_CHUNK_S,
    sinks: Sequence[Sink] = (),
    rhythm: RhythmSettings | None = DEFAULT_RHYTHM,
) -> RecordAnalysis:
    """Stream a whole record through the session as fast as possible.

    Runs an event loop of its own; from a coroutine, await :func:`stream_record`.

    Args:
        record: The record (its name is the stream id).
        config: The chain's configuration.
        classifier: Labels the beats (None: detection only).
        chunk_s: Chunk length, in s (results do not depend on it; speed does).
        sinks: Where else the beats go (e.g. a :class:`CsvSink`).
        rhythm: Limits of the rhythm stage (None: none).
    """
    return asyncio.run(
        stream_record(record, config, classifier, chunk_s=chunk_s, sinks=sinks, rhythm=rhythm)
    )


async def stream_record(
    record: Record,
    config: ChainConfig,
    classifier: ClassifierLike | None = None,
    *,
    chunk_s: float = ANALYSIS_CHUNK_S,
    sinks: Sequence[Sink] = (),
    rhythm: RhythmSettings | None = DEFAULT_RHYTHM,
) -> RecordAnalysis:
    """:func:`analyze_record` on the running event loop."""
    collector = BeatCollector()
    summary = RunSummary()
    replay = RecordReplay(
        [StreamSpec(record.name, record)],
        classifier,
        [collector, *sinks],
        speed=math.inf,
        summary=summary,
        config=config,
        rhythm=rhythm,
        chunk_s=chunk_s,
    )
    await replay.run()
    return RecordAnalysis(
        record,
        tuple(collector.beats[record.name]),
        tuple(collector.events[record.name]),
        summary.streams[record.name].chain_s,
        summary.inference_s,
    )


def detect_record(record: Record, config: ChainConfig, chunk_s: float) -> RecordAnalysis:
    """Detection only: :func:`analyze_record` without a classifier."""
    return analyze_record(record, config, chunk_s=chunk_s)


@dataclass(frozen=True, slots=True)
class CsvAnalysis:
    """What ``ecg-stream analyze`` did for one record.

    Args:
        record: Record name.
        beats: Beats written.
        path: The CSV file.
        signal_s: Signal analysed, in s.
        chain_s: Wall time in the chain, in s.
        inference_s: Wall time classifying, in s.
        missing: The record's stretches of missing samples, ``(first, end)`` in its own clock:
            gaps for the chain (the windows touching one are labelled Q, issue ``missing``).
    """

    record: str
    beats: int
    path: Path
    signal_s: float
    chain_s: float
    inference_s: float
    missing: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class RecordFailure:
    """A record of a batch that could not be read: its name and why (the batch goes on)."""

    record: str
    reason: str


def analyze_to_csv(
    name: str,
    data_dir: DataDirs,
    lead: str,
    out_dir: Path,
    chunk_s: float,
    model: Path | None,
    rhythm: RhythmSettings = DEFAULT_RHYTHM,
) -> CsvAnalysis:
    """``ecg-stream analyze`` for one record: ``out_dir/<record>.csv``, labeled with ``model``.

    With a model, also the WFDB annotation file ``out_dir/<record>.ecgs`` (beats and rhythm
    changes) and ``out_dir/<record>.events.csv`` (the rhythm events). A function of plain
    arguments, so that it runs in a worker process too.
    """
    from ecg_stream.classify.classifier import OnnxBeatClassifier
    from ecg_stream.records import load_record

    config = ChainConfig()
    record = load_record(name, data_dir, lead, annotations=False)  # the CSV needs none
    csv_sink = CsvSink(out_dir, labels=model is not None)
    if model is None:
        result = analyze_record(record, config, chunk_s=chunk_s, sinks=[csv_sink])
    else:
        sinks: list[Sink] = [csv_sink, WfdbAnnotationSink(out_dir), EventsCsvSink(out_dir)]
        with OnnxBeatClassifier(model, config) as classifier:
            result = analyze_record(
                record, config, classifier, chunk_s=chunk_s, sinks=sinks, rhythm=rhythm
            )
    return CsvAnalysis(
        record.name,
        len(result.beats),
        csv_sink.written[record.name],
        result.signal_s,
        result.chain_s,
        result.inference_s,
        tuple(record.missing_stretches()),
    )


def analyze_or_fail(*args: Any) -> CsvAnalysis | RecordFailure:
    """:func:`analyze_to_csv`, a record that cannot be read or found answered as a failure.

    Other errors (a model, an output place) concern every record: they are raised.
    """
    try:
        return analyze_to_csv(*args)
    except (RecordFormatError, DataNotFoundError) as error:
        return RecordFailure(str(args[0]), str(error))


def map_records(
    function: Callable[..., T], tasks: list[tuple[Any, ...]], jobs: int, description: str = ""
) -> Iterator[T]:
    """Apply ``function`` to each task's arguments, results in task order, in ``jobs`` processes.

    With ``description``, a progress bar on a terminal's stderr (``ecg_stream/progress.py``).

    Raises:
        ConfigError: ``jobs`` is below 1.
    """
    if jobs < 1:
        msg = f"--jobs {jobs} must be >= 1"
        raise ConfigError(msg)
    if jobs == 1:
        yield from progress(itertools.starmap(function, tasks), len(tasks), description)
        return
    with ProcessPoolExecutor(jobs) as pool:
        results = pool.map(function, *zip(*tasks, strict=True))
        yield from progress(results, len(tasks), description)
