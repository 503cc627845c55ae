"""The MQTT sink: each stream's beats, samples and status on its topics, one publisher each.

Every stream gets its own :class:`~ecg_stream.mqtt.publisher.BeatPublisher` (its own
connection, whose last will is the stream's ``offline`` status), opened by the stream's online
status and closed by its offline status. Filtered samples are joined into ``samples`` messages
of a set length (:class:`SamplesCollector`).

Lossless (``--speed max``, ``serve``), a write waits for room in the stream's publish queue;
real time (a finite ``--speed``), a write never waits and a full queue drops (counted): the
display ``samples`` long before beats, which have a buffer of their own.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator

import numpy as np

from ecg_stream.config import CHAIN_FS_HZ, MANY_STREAMS, MqttConfig
from ecg_stream.errors import ConfigError
from ecg_stream.live.session import RunSummary, SessionOutput, StreamBeat, StreamEvent
from ecg_stream.mqtt.publisher import SAMPLES_QUEUE_SIZE, BeatPublisher, Outgoing, PendingBeat
from ecg_stream.types import Chunk, FloatArray
from ecg_stream.wire import EventMessage, SamplesMessage, StatusMessage, StreamState

Clock = Callable[[], float]

SAMPLES_RANGE_S = (0.05, 10.0)
"""Shortest and longest signal one ``samples`` message may carry, in s."""

MANY_STREAMS_SAMPLES_S = 0.5
"""Signal per ``samples`` message when a process carries many streams, in s: fewer, larger
messages, as the per-message cost dominates at scale."""

SAMPLES_SCALE_UV = 1.0
"""Microvolts per count of the ``samples`` payloads (int16: +-32.7 mV at 1 uV)."""


def check_samples_s(samples_s: float | None) -> None:
    """Refuse a ``samples`` message length outside :data:`SAMPLES_RANGE_S` (None: per chunk).

    Raises:
        ConfigError: It is outside (or NaN).
    """
    low, high = SAMPLES_RANGE_S
    if samples_s is not None and not low <= samples_s <= high:
        msg = (
            f"--samples-ms {samples_s * 1e3:g} must lie in [{low * 1e3:g}, {high * 1e3:g}] ms "
            "(signal per samples message)"
        )
        raise ConfigError(msg)


def default_samples_s(streams: int) -> float | None:
    """Signal per ``samples`` message for a process carrying ``streams`` streams, in s.

    Example:
        >>> default_samples_s(1), default_samples_s(MANY_STREAMS)
        (None, 0.5)
    """
    return MANY_STREAMS_SAMPLES_S if streams >= MANY_STREAMS else None


class SamplesCollector:
    """Join a stream's consecutive filtered chunks into ``samples`` messages.

    Args:
        stream_id: The stream.
        duration_s: Signal per message, in s (a message closes with the chunk that reaches it;
            0: one message per chunk).
    """

    def __init__(self, stream_id: str, duration_s: float) -> None:
        self.stream_id = stream_id
        self.limit = max(1, round(duration_s * CHAIN_FS_HZ))
        self._parts: list[FloatArray] = []
        self._start_index = 0
        self._held = 0

    def add(self, chunk: Chunk) -> tuple[SamplesMessage, ...]:
        """Hold ``chunk``; return the messages it completes.

        A jump in the sample index (a gap in the input) first closes what was held.
        """
        done = () if self._start_index + self._held == chunk.start_index else self._taken()
        if not self._parts:
            self._start_index = chunk.start_index
        self._parts.append(chunk.samples)
        self._held += chunk.samples.size
        return done + self._taken() if self._held >= self.limit else done

    def _taken(self) -> tuple[SamplesMessage, ...]:
        message = self.take()
        return () if message is None else (message,)

    def take(self) -> SamplesMessage | None:
        """The samples held so far as one message (None if none are held)."""
        if not self._parts:
            return None
        samples = np.concatenate(self._parts)
        self._parts, self._held = [], 0
        return SamplesMessage.from_mv(
            self.stream_id, self._start_index, CHAIN_FS_HZ, samples, SAMPLES_SCALE_UV
        )


def pending(beat: StreamBeat) -> PendingBeat:
    """A labeled beat as a publisher takes it.

    Raises:
        ValueError: The beat has no label (a session that classifies nothing).
    """
    placed = beat.placed
    return PendingBeat(
        beat.label(),
        stream=beat.stream,
        record=beat.record,
        sample=placed.sample_index,
        chain_sample=placed.chain_index,
        time_s=placed.time_s,
        r_wall_time=beat.r_wall_time,
    )


def event_message(placed: StreamEvent) -> EventMessage:
    """A rhythm event as published on ``events``."""
    event = placed.event
    return EventMessage(
        stream=placed.stream,
        record=placed.record,
        rhythm=event.kind,
        state=event.state,
        sample=placed.sample_index,
        chain_sample=event.index,
        time_s=placed.time_s,
        wall_time=placed.wall_time,
        delay_s=(event.decided_index - event.index) / CHAIN_FS_HZ,
        beats=event.beats,
        rate_bpm=None if math.isnan(event.rate_bpm) else event.rate_bpm,
        detail=event.detail,
    )


class _Open:
    """A stream open at the sink: its publisher, the exit that closes it, its samples."""

    def __init__(self, publisher: BeatPublisher, samples: SamplesCollector | None) -> None:
        self.publisher, self.samples = publisher, samples
        self.exit = contextlib.AsyncExitStack()


class MqttSink:
    """Publish each stream on ``<prefix>/<stream>/{beats,samples,status}``.

    Args:
        mqtt: Broker and topic prefix.
        summary: Where each stream's delivery counters go (``summary.report(...).publisher``).
        lossless: Wait for room in a full publish queue instead of dropping.
        samples_s: Signal per ``samples`` message, in s (None: one message per input chunk,
            or :data:`MANY_STREAMS_SAMPLES_S` for a stream that opens while
            :data:`MANY_STREAMS` or more are open).
        publish_samples: Publish the filtered samples at all.
        queue_size: ``samples`` messages a stream's publisher holds.
        clock: Monotonic clock (the one arrival times were read from), in s.
        wall_clock: Unix time, in s.
    """

    def __init__(
        self,
        mqtt: MqttConfig,
        summary: RunSummary,
        *,
        lossless: bool,
        samples_s: float | None = None,
        publish_samples: bool = True,
        queue_size: int = SAMPLES_QUEUE_SIZE,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        check_samples_s(samples_s)
        self.mqtt, self.summary, self.lossless = mqtt, summary, lossless
        self.samples_s, self.publish_samples, self.queue_size = (
            samples_s,
            publish_samples,
            queue_size,
        )
        self.clock, self.wall_clock = clock, wall_clock
        self._open: dict[str, _Open] = {}

    async def status(self, message: StatusMessage) -> None:
        """Online opens the stream's publisher, offline closes it; updates are published."""
        stream = self._open.get(message.stream)
        if stream is None:
            if message.state is StreamState.ONLINE:
                await self._start(message)
            return
        if message.state is StreamState.OFFLINE:
            await self._stop(message)
        else:
            await self._emit(stream.publisher, message, self.clock())

    async def write(self, output: SessionOutput) -> None:
        """Publish the beats, the events, then the ``samples`` the filtered chunks complete."""
        stream = self._open[output.stream]
        for message, arrival_s in self._messages(stream, output):
            await self._emit(stream.publisher, message, arrival_s)

    def write_nowait(self, output: SessionOutput) -> None:
        """Queue the output without waiting; what does not fit is dropped and counted."""
        stream = self._open[output.stream]
        for message, arrival_s in self._messages(stream, output):
            stream.publisher.submit(message, arrival_s)

    async def close(self) -> None:
        """Close every stream still open: its queue is published, then ``offline``."""
        for stream in list(self._open.values()):
            await self._stop(stream.publisher.status)

    async def _start(self, message: StatusMessage) -> None:
        stats = self.summary.report(message.stream, message.record).publisher
        publisher = BeatPublisher(
            self.mqtt,
            message,
            queue_size=self.queue_size,
            clock=self.clock,
            wall_clock=self.wall_clock,
            stats=stats,
        )
        samples_s = self.samples_s or default_samples_s(len(self._open) + 1)
        samples = (
            SamplesCollector(message.stream, samples_s or 0.0) if self.publish_samples else None
        )
        stream = _Open(publisher, samples)
        await stream.exit.enter_async_context(publisher)
        self._open[message.stream] = stream

    async def _stop(self, message: StatusMessage) -> None:
        stream = self._open.pop(message.stream)
        stream.publisher.status = message  # offline carries the stream's last counters
        if stream.samples is not None and (rest := stream.samples.take()) is not None:
            stream.publisher.submit(rest, self.clock())
        await stream.exit.aclose()

    def _messages(self, stream: _Open, output: SessionOutput) -> Iterator[tuple[Outgoing, float]]:
        """The output's messages with their arrival times.

        Beats first (the latency-critical part), then events, then the display samples.
        """
        for beat in output.beats:
            yield pending(beat), beat.arrival_s
        for event in output.events:
            yield event_message(event), output.arrival_s
        if stream.samples is not None:
            for chunk in output.filtered:
                for samples in stream.samples.add(chunk):
                    yield samples, output.arrival_s

    async def _emit(self, publisher: BeatPublisher, message: Outgoing, arrival_s: float) -> None:
        if self.lossless:
            await publisher.put(message, arrival_s)
        else:
            publisher.submit(message, arrival_s)
