"""Records as live streams: paced (or as fast as possible) chunks, one session each, to the sinks.

:class:`RecordReplay` is what ``replay``, ``analyze`` and ``evaluate`` run: each record is one
stream, a named task in one ``TaskGroup``; its :class:`~ecg_stream.live.sources.ReplaySource`
paces the chunks, its :class:`~ecg_stream.live.session.StreamSession` runs them through the
chain and hands the beats to the sinks, and one
:class:`~ecg_stream.classify.batcher.InferenceBatcher` labels the windows of every stream of one
event-loop turn in one ONNX call. ``replay`` sends the beats to MQTT and the terminal
(``live/replay_command.py``), ``analyze`` to CSV files, ``evaluate`` to a list in memory.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import replace

from ecg_stream.classify.batcher import ClassifierLike, InferenceBatcher
from ecg_stream.config import CHAIN_FS_HZ, DEFAULT_RHYTHM, ChainConfig, RhythmSettings
from ecg_stream.detector.rhythm.stage import RhythmStage
from ecg_stream.errors import ConfigError
from ecg_stream.live.front import RecordFront
from ecg_stream.live.runner import first_error
from ecg_stream.live.session import RunSummary, Sink, StreamSession
from ecg_stream.live.sources import ReplaySource, StreamSpec
from ecg_stream.records import Record
from ecg_stream.types import Chunk
from ecg_stream.wire import StatusMessage, check_stream_id

Clock = Callable[[], float]

REAL_TIME_CHUNK_S = 0.1
"""Chunk duration when paced: one ``samples`` message per 100 ms of signal."""

MAX_SPEED_CHUNK_S = 1.0
"""Chunk duration at ``--speed max``: fewer, larger chunks and messages, same beats."""

NO_MODEL = "none"
"""Model name on the status of streams that are not classified (``analyze --no-classify``)."""


class RecordReplay:
    """Replay records concurrently, each one stream session, to the sinks.

    Args:
        specs: The streams.
        classifier: Labels every stream's beats, batched per event-loop turn (None: beats go
            unlabeled, e.g. detection only).
        sinks: Where every stream's output goes.
        speed: Factor of real time, or ``math.inf``.
        summary: Where the per-stream reports go (readable after Ctrl-C too).
        config: The chain's configuration (the classifier's contract was checked against it).
        rhythm: Limits of each stream's rhythm stage (None: no rhythm events); streams without
            a classifier have none.
        chunk_s: Chunk duration, in s of signal (default: ``REAL_TIME_CHUNK_S`` at a finite
            speed, ``MAX_SPEED_CHUNK_S`` at ``math.inf``; results do not depend on it).
        clock: Monotonic clock, in s.
        wall_clock: Unix time, in s.

    Raises:
        ConfigError: Stream ids are missing or repeat.
    """

    def __init__(
        self,
        specs: Sequence[StreamSpec],
        classifier: ClassifierLike | None,
        sinks: Sequence[Sink],
        *,
        speed: float,
        summary: RunSummary | None = None,
        config: ChainConfig | None = None,
        rhythm: RhythmSettings | None = DEFAULT_RHYTHM,
        chunk_s: float | None = None,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        ids = [spec.stream_id for spec in specs]
        if not specs or len(set(ids)) != len(ids):
            msg = f"stream ids {ids} must be given and distinct; pass one --stream-id per record"
            raise ConfigError(msg)
        self.specs, self.classifier, self.sinks = tuple(specs), classifier, tuple(sinks)
        self.speed, self.clock, self.wall_clock = speed, clock, wall_clock
        self.config, self.rhythm = config or ChainConfig(), rhythm
        if chunk_s is None:
            chunk_s = MAX_SPEED_CHUNK_S if math.isinf(speed) else REAL_TIME_CHUNK_S
        self.chunk_s = chunk_s
        self.summary = summary if summary is not None else RunSummary()
        self.summary.speed = speed
        self.model_name = NO_MODEL if classifier is None else classifier.name

    async def run(self) -> RunSummary:
        """Run every stream to its end (or until cancelled); close the sinks; the summary.

        Raises:
            EcgStreamError: A stream failed (e.g. BrokerError); the first such error.
        """
        batcher = None if self.classifier is None else InferenceBatcher(self.classifier)
        try:
            async with AsyncExitStack() as stack:
                for sink in self.sinks:
                    stack.push_async_callback(sink.close)
                async with asyncio.TaskGroup() as group:
                    for spec in self.specs:
                        group.create_task(
                            self._stream(spec, batcher), name=f"stream-{spec.stream_id}"
                        )
        except BaseExceptionGroup as errors:
            raise first_error(errors) from None
        finally:
            if batcher is not None:
                self.summary.add_inference(batcher)
        return self.summary

    async def _stream(self, spec: StreamSpec, batcher: InferenceBatcher | None) -> None:
        record = spec.record
        report = self.summary.report(spec.stream_id, record.name)
        source = ReplaySource(
            record.samples, CHAIN_FS_HZ, speed=self.speed, chunk_s=self.chunk_s, clock=self.clock
        )
        session: StreamSession[Chunk] = StreamSession(
            RecordFront(record, self.config, self.speed),
            self.sinks,
            StatusMessage.online(spec.stream_id, record.name, self.model_name),
            report,
            batcher=batcher,
            rhythm=None if self.rhythm is None else RhythmStage(self.rhythm, CHAIN_FS_HZ),
            clock=self.clock,
            wall_clock=self.wall_clock,
        )
        paced = not math.isinf(self.speed)
        if paced:
            await asyncio.sleep(spec.start_delay_s)
        async with session:
            async for chunk in source:
                if paced:
                    report.pacing.add(abs(chunk.arrival_s - source.due_s(chunk.start_index)) * 1e3)
                await session.process(chunk, chunk.arrival_s)
            await session.finish()


def spread_starts(specs: Sequence[StreamSpec], over_s: float) -> list[StreamSpec]:
    """The streams with their starts spread evenly over ``over_s`` of wall time.

    Patients join a ward at their own times, not all on one clock tick: spread over a chunk
    period, the streams of a process fall due one after the other instead of all at once.
    """
    return [replace(spec, start_delay_s=k * over_s / len(specs)) for k, spec in enumerate(specs)]


def plan_streams(records: Sequence[Record], stream_ids: Sequence[str] | None) -> list[StreamSpec]:
    """Pair records with stream ids (default: the record names).

    Raises:
        ConfigError: The number of ids differs from the number of records, or ids repeat.
    """
    if stream_ids:
        if len(stream_ids) != len(records):
            msg = (
                f"{len(stream_ids)} --stream-id for {len(records)} records; give one per record "
                "in the same order, or none to use the record names"
            )
            raise ConfigError(msg)
        ids = list(stream_ids)
    else:
        ids = [record.name for record in records]
    for stream_id in ids:
        check_stream_id(stream_id)
    if len(set(ids)) != len(ids):
        msg = f"stream ids {ids} repeat (a record given twice?); pass one --stream-id per record"
        raise ConfigError(msg)
    return [StreamSpec(stream_id, record) for stream_id, record in zip(ids, records, strict=True)]
