"""``ecg-stream serve``: devices' raw samples in over MQTT, labeled beats out, one chain per stream.

A worker subscribes to ``<prefix>/+/raw`` with one MQTT session (the project's transport:
reconnects with capped, jittered backoff). Each stream appears when its first chunk arrives:
it gets an :class:`~ecg_stream.live.ingest.IngestSession` (sequencing, resampling to 360 Hz,
the same ``BeatExtractor`` that ``replay`` and ``analyze`` run), a bounded inbox, a named task
in one ``TaskGroup``, and a :class:`~ecg_stream.mqtt.publisher.BeatPublisher` of its own,
whose connection's last will is the stream's ``offline`` status: if the worker dies, the
broker announces each of its streams offline. The windows of every stream of one event-loop
turn are classified in one ONNX call (:class:`~ecg_stream.classify.batcher.InferenceBatcher`).
Beats, samples and status go out exactly as ``replay`` publishes them; the status also
carries the stream's ingest counters (gaps, duplicates, malformed, ...).

A stream idle for ``idle_timeout_s`` is flushed, announced ``offline`` and freed; its next
chunk starts a new session. Ctrl-C or SIGTERM: the chunks received are processed, every
chain is flushed, the beats are published, then every stream's ``offline``.

Several workers share the streams in one of two ways:

- ``--shard I/N``: every worker receives every raw message and keeps the streams whose
  :func:`stream_hash` modulo N is I (any broker);
- ``--share GROUP``: the shared subscription ``$share/GROUP/<prefix>/+/raw``; the broker must
  keep each topic on one member (EMQX: ``hash_topic``). A broker that hands a topic's messages
  round-robin (mosquitto) splits a stream: the session detects it and says so on ``status``
  (``interleaved``) instead of classifying fragments.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import msgspec

from ecg_stream.classify.batcher import ClassifierLike, InferenceBatcher
from ecg_stream.config import Backoff, ChainConfig, MqttConfig
from ecg_stream.errors import BrokerError, ConfigError, PayloadError
from ecg_stream.live.ingest import ChunkFate, DeviceWindow, Ingested, IngestSession
from ecg_stream.live.replay import SamplesCollector, check_samples_s, format_beat_line
from ecg_stream.mqtt.publisher import BeatPublisher, PublisherStats
from ecg_stream.mqtt.transport import Reconnect, ReconnectingSession, payloads, subscribe
from ecg_stream.stats import DurationHistogram
from ecg_stream.types import BEAT_CLASSES, BeatClass, LabeledBeat
from ecg_stream.wire import (
    BeatMessage,
    IngestStatus,
    RawMessage,
    StatusMessage,
    TopicKind,
    check_topic_prefix,
    decode_raw,
    parse_topic,
    subscription_for,
)

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Say = Callable[[str], None]

DEFAULT_IDLE_TIMEOUT_S = 10.0
"""A device silent this long is marked offline and its state freed."""

IDLE_TIMEOUT_RANGE_S = (0.1, 3600.0)
"""Shortest and longest ``--idle-timeout-s``."""

INBOX_CHUNKS = 10_000
"""Chunks a stream's inbox holds before new ones are dropped (counted; each makes a gap)."""

STATUS_INTERVAL_S = 5.0
"""A stream's status (with its ingest counters) is re-published at least this often."""

STATUS_MIN_INTERVAL_S = 1.0
"""...and at most this often when a counter that means trouble (gaps, ...) changes."""

MAX_SHARDS = 1024
"""Most workers ``--shard I/N`` can split the streams between."""


def stream_hash(stream_id: str) -> int:
    """A stable hash of a stream id, the same in every process and language.

    The first 8 bytes of the BLAKE2b digest (``digest_size=8``) of the id's UTF-8 bytes, as a
    big-endian integer. Not Python's ``hash()``, which is salted per process; not CRC-32,
    whose linearity sends ids that differ in one character (``bed0`` ... ``bed3``) to the
    same shard.

    Example:
        >>> stream_hash("100")
        18202925246650630366
    """
    digest = hashlib.blake2b(stream_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True, slots=True)
class Shard:
    """The share of the streams one of ``count`` workers keeps: ``stream_hash % count == index``.

    Args:
        index: This worker's shard, from 0.
        count: Number of workers (shards).

    Example:
        >>> shard = Shard.parse("1/2")
        >>> shard, shard.owns("100"), shard.owns("105")
        (Shard(index=1, count=2), False, True)
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS or not 0 <= self.index < self.count:
            msg = (
                f"--shard {self.index}/{self.count} is not valid; use I/N with 1 <= N <= "
                f"{MAX_SHARDS} and 0 <= I < N, e.g. --shard 0/2 and --shard 1/2 for two workers"
            )
            raise ConfigError(msg)

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Parse ``I/N``.

        Raises:
            ConfigError: ``text`` is not two integers ``I/N`` with ``0 <= I < N``.
        """
        index_text, slash, count_text = text.strip().partition("/")
        try:
            index, count = int(index_text), int(count_text)
        except ValueError:
            index = count = -1
        if not slash or index < 0:
            msg = (
                f"--shard {text!r} is not valid; use I/N (this worker's shard I of N, from 0), "
                "e.g. --shard 0/2 and --shard 1/2 for two workers"
            )
            raise ConfigError(msg)
        return cls(index, count)

    def owns(self, stream_id: str) -> bool:
        """Whether this worker keeps the stream."""
        return stream_hash(stream_id) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def default_worker_id() -> str:
    """``host-pid``: names the worker on each stream's status."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(slots=True)
class ServedStream:
    """What a worker did for one stream, over all its sessions.

    Args:
        stream_id: The stream.
        sessions: Sessions started (a stream idle past the timeout comes back as a new one).
        beats: Beats published or queued, per class.
        ingest: The last session's ingest counters (None before the first chunk).
        publisher: Counters and compute latency of every session's publisher.
    """

    stream_id: str
    sessions: int = 0
    beats: dict[BeatClass, int] = field(default_factory=lambda: dict.fromkeys(BEAT_CLASSES, 0))
    ingest: IngestStatus | None = None
    publisher: PublisherStats = field(default_factory=PublisherStats)


@dataclass(slots=True)
class ServeSummary:
    """A worker's counters; printed when it stops.

    Args:
        streams: One entry per stream served, by id.
        received: Raw messages received.
        malformed: Raw messages that did not decode (skipped).
        foreign: Raw messages of streams another shard keeps (not decoded).
        inference_calls: Classifier calls for all streams together.
        inference_windows: Beat windows those calls classified.
    """

    streams: dict[str, ServedStream] = field(default_factory=dict)
    received: int = 0
    malformed: int = 0
    foreign: int = 0
    inference_calls: int = 0
    inference_windows: int = 0

    @property
    def beats(self) -> int:
        """Beats published or queued, all streams."""
        return sum(sum(stream.beats.values()) for stream in self.streams.values())

    def compute(self) -> DurationHistogram:
        """Compute latency of every stream's published beats."""
        merged = DurationHistogram()
        for stream in self.streams.values():
            merged.merge(stream.publisher.compute)
        return merged

    def format(self) -> str:
        """The summary as terminal lines."""
        lines = [f"served {len(self.streams)} streams, {self.beats} beats"]
        for stream in sorted(self.streams.values(), key=lambda s: s.stream_id):
            counts = "  ".join(f"{cls.value} {stream.beats[cls]}" for cls in BEAT_CLASSES)
            ingest = stream.ingest
            problems = (
                ""
                if ingest is None
                else f"; gaps {ingest.gaps}, duplicates {ingest.duplicates}, malformed "
                f"{ingest.malformed}, dropped {ingest.dropped}"
                + (", INTERLEAVED" if ingest.interleaved else "")
            )
            lines.append(
                f"  stream {stream.stream_id}: {stream.sessions} session(s), "
                f"{sum(stream.beats.values())} beats: {counts}{problems}; publish dropped "
                f"{stream.publisher.dropped_total}"
            )
        lines.append(f"  compute latency (chunk arrival -> publish): {self.compute().summary()}")
        if self.inference_calls:
            lines.append(
                f"  inference: {self.inference_calls} calls for {self.inference_windows} beats "
                f"(mean batch {self.inference_windows / self.inference_calls:.1f})"
            )
        lines.append(
            f"  raw messages: {self.received} received, {self.malformed} malformed, "
            f"{self.foreign} of other shards"
        )
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class _Arrival:
    message: RawMessage
    arrival_s: float
    arrival_wall_s: float


@dataclass(slots=True)
class _Stream:
    """A stream's live session in the worker: state, inbox, and the task that drains it."""

    session: IngestSession
    inbox: asyncio.Queue[_Arrival]
    report: ServedStream
    samples: SamplesCollector | None
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class ServeWorker:
    """Serve every device stream that publishes on ``<prefix>/+/raw`` (or this shard's share).

    Args:
        classifier: The beat classifier every stream shares (one call per loop turn).
        model_name: Classifier name for the status topic.
        mqtt: Broker and topic prefix.
        config: The chain's configuration (the classifier's contract was checked against it).
        shard: Keep only this shard's streams (every worker receives every message).
        share_group: Subscribe as a member of ``$share/<group>/``.
        idle_timeout_s: A stream silent this long is flushed, announced offline and freed.
        worker_id: Names this worker on the status topic. Given, it also names the worker's
            persistent broker session (with the topic prefix): the raw chunks published while
            the worker is down (a crash, a restart, a lost link) wait for it at the broker, up
            to the broker's queue limits. Default: host-pid, a fresh session each start.
        say: Where notices and per-beat lines go (None: nowhere).
        beat_lines: Say one line per beat.
        summary: Filled as the worker runs (readable after it stops).
        queue_size: Publish queue length per stream.
        publish_samples: Also publish the filtered samples (``samples`` topic).
        samples_s: Signal per ``samples`` message, in s (None: one per raw chunk).
        clock: Monotonic clock, in s.
        wall_clock: Unix time, in s.
    """

    def __init__(
        self,
        classifier: ClassifierLike,
        model_name: str,
        mqtt: MqttConfig,
        *,
        config: ChainConfig,
        shard: Shard | None = None,
        share_group: str | None = None,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        worker_id: str | None = None,
        say: Say | None = None,
        beat_lines: bool = False,
        summary: ServeSummary | None = None,
        queue_size: int = 1000,
        publish_samples: bool = True,
        samples_s: float | None = None,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        check_samples_s(samples_s)
        if shard is not None and share_group is not None:
            msg = (
                "--shard and --share are two ways to split streams between workers; give one "
                "(--shard I/N with any broker, --share GROUP with a hash_topic broker)"
            )
            raise ConfigError(msg)
        low, high = IDLE_TIMEOUT_RANGE_S
        if not low <= idle_timeout_s <= high:
            msg = f"--idle-timeout-s {idle_timeout_s} must lie in [{low:g}, {high:g}] s"
            raise ConfigError(msg)
        if share_group is not None and (
            not share_group or any(char in share_group for char in "/+#\x00")
        ):
            msg = f"--share {share_group!r} must be one topic level, without '/', '+', '#'"
            raise ConfigError(msg)
        self.classifier, self.model_name, self.mqtt, self.config = (
            classifier,
            model_name,
            mqtt,
            config,
        )
        self.shard, self.share_group, self.idle_timeout_s = shard, share_group, idle_timeout_s
        self.worker_id = worker_id or default_worker_id()
        self.session_id = (
            None if worker_id is None else f"ecg-stream-serve-{mqtt.topic_prefix}-{worker_id}"
        )
        self.say, self.beat_lines = say, beat_lines
        self.queue_size, self.publish_samples = queue_size, publish_samples
        self.samples_s = samples_s
        self.clock, self.wall_clock = clock, wall_clock
        self.summary = summary if summary is not None else ServeSummary()
        topic = subscription_for(mqtt.topic_prefix, None, TopicKind.RAW)
        self.topic_filter = topic if share_group is None else f"$share/{share_group}/{topic}"
        self._batcher = InferenceBatcher(classifier)
        self._streams: dict[str, _Stream] = {}
        self._closing: dict[str, asyncio.Event] = {}  # streams whose last session is closing
        self._group: asyncio.TaskGroup | None = None
        self._subscribed = asyncio.Event()  # set once, on the first subscription

    async def wait_subscribed(self) -> None:
        """Return once the worker is subscribed (it receives every chunk published from then)."""
        await self._subscribed.wait()

    async def run(self) -> ServeSummary:
        """Serve until cancelled (Ctrl-C, SIGTERM), then flush every stream and say offline.

        Raises:
            BrokerError: The broker cannot be reached at start.
        """
        session = ReconnectingSession(
            self.mqtt,
            client_prefix="ecg-stream-serve",
            backoff=Backoff(),
            rng=random.Random(),  # jitter, not cryptography
            on_connect=self._on_connect,
            on_retry=self._report_lost,
            client_id=self.session_id,
            persistent=self.session_id is not None,
        )
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                try:
                    await session.run(self._receive)
                except aiomqtt.MqttError as error:  # the first connection failed: not retried
                    msg = (
                        f"cannot connect to the MQTT broker at {self.mqtt.url} ({error}); "
                        "start one (mosquitto) or pass --broker URL"
                    )
                    raise BrokerError(msg) from error
        except BaseExceptionGroup as errors:
            first = errors.exceptions[0]
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None
        finally:
            self.summary.inference_calls = self._batcher.calls
            self.summary.inference_windows = self._batcher.windows
        return self.summary

    async def _on_connect(self, client: aiomqtt.Client) -> None:
        await subscribe(client, [self.topic_filter])
        if not self._subscribed.is_set():
            self._subscribed.set()
            if self.say is not None:
                where = f"shard {self.shard}" if self.shard is not None else "every stream"
                self.say(
                    f"serving {where} from {self.topic_filter} at {self.mqtt.url} as worker "
                    f"{self.worker_id}; Ctrl-C stops"
                )

    def _report_lost(self, retry: Reconnect) -> None:
        logger.warning(
            "lost the broker at %s (%s); reconnecting in %.1f s (chunks published meanwhile "
            "are missed: gaps)",
            self.mqtt.url,
            retry.error,
            retry.delay_s,
        )

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for topic, payload in payloads(client):
            self.dispatch(topic, payload, self.clock(), self.wall_clock())

    def dispatch(self, topic: str, payload: bytes, arrival_s: float, arrival_wall_s: float) -> None:
        """Route one received raw message to its stream (sync: never waits, never raises)."""
        self.summary.received += 1
        try:
            stream_id = parse_topic(topic).stream
        except PayloadError:  # a topic outside the contract is just malformed
            self.summary.malformed += 1
            return
        if self.shard is not None and not self.shard.owns(stream_id):
            self.summary.foreign += 1
            return
        stream = self._streams.get(stream_id)
        try:
            message = decode_raw(topic, payload)
        except PayloadError as error:  # counted and skipped, never a crash
            self.summary.malformed += 1
            if stream is not None:
                stream.session.count_malformed()
            logger.warning("skipped a malformed raw message on %s: %s", topic, error)
            return
        if stream is None:
            stream = self._start(message)
        try:
            stream.inbox.put_nowait(_Arrival(message, arrival_s, arrival_wall_s))
        except asyncio.QueueFull:
            stream.session.count_dropped()

    def _start(self, first: RawMessage) -> _Stream:
        stream_id = first.stream
        report = self.summary.streams.setdefault(stream_id, ServedStream(stream_id))
        report.sessions += 1
        session = IngestSession(stream_id, self.config, self.worker_id)
        samples = (
            SamplesCollector(stream_id, self.samples_s or 0.0) if self.publish_samples else None
        )
        stream = _Stream(session, asyncio.Queue(maxsize=INBOX_CHUNKS), report, samples)
        self._streams[stream_id] = stream
        assert self._group is not None  # set by run
        previous = self._closing.get(stream_id)
        self._closing[stream_id] = stream.closed
        self._group.create_task(
            self._serve(stream, first.fs_hz, previous), name=f"serve-{stream_id}"
        )
        return stream

    async def _serve(self, stream: _Stream, fs_hz: float, previous: asyncio.Event | None) -> None:
        session = stream.session
        stream_id = session.stream_id
        if previous is not None:  # the last session's offline goes out before this online
            await previous.wait()
        ingest = IngestStatus.starting(self.worker_id, fs_hz)
        status = StatusMessage.online(stream_id, stream_id, self.model_name, ingest)
        publisher = BeatPublisher(
            self.mqtt,
            status,
            queue_size=self.queue_size,
            clock=self.clock,
            wall_clock=self.wall_clock,
        )
        try:
            async with publisher:
                await self._pump(stream, publisher)
        except BrokerError as error:
            logger.warning("stream %s: %s; its chunks are dropped", stream_id, error)
        finally:
            if self._streams.get(stream_id) is stream:
                del self._streams[stream_id]
            stream.report.ingest = session.status()
            merge_publisher_stats(stream.report.publisher, publisher.stats)
            stream.closed.set()
            if self._closing.get(stream_id) is stream.closed:
                del self._closing[stream_id]

    async def _pump(self, stream: _Stream, publisher: BeatPublisher) -> None:
        session = stream.session
        in_flight: tuple[DeviceWindow, ...] = ()  # extracted, not yet back from the batcher
        last_status_s = self.clock()
        published = session.status()
        try:
            while True:
                try:
                    async with asyncio.timeout(self.idle_timeout_s):
                        arrival = await stream.inbox.get()
                except TimeoutError:
                    if stream.inbox.empty():  # idle: free the state now, new chunks start anew
                        del self._streams[session.stream_id]
                        break
                    continue
                output = session.process(arrival.message, arrival.arrival_s, arrival.arrival_wall_s)
                in_flight = output.windows
                beats = await self._batcher.classify([w.window for w in in_flight])
                await self._publish(stream, publisher, in_flight, beats, output, arrival.arrival_s)
                in_flight = ()
                now = self.clock()
                current = session.status()
                troubled = _trouble(current) != _trouble(published)
                if now - last_status_s >= STATUS_INTERVAL_S or (
                    troubled and now - last_status_s >= STATUS_MIN_INTERVAL_S
                ):
                    publisher.submit(msgspec.structs.replace(publisher.status, ingest=current))
                    last_status_s, published = now, current
            arrival_s = self.clock()
            output = session.finish(arrival_s)
            in_flight = output.windows
            beats = await self._batcher.classify([w.window for w in in_flight])
            await self._publish(stream, publisher, in_flight, beats, output, arrival_s)
            in_flight = ()
            if stream.samples is not None and (rest := stream.samples.take()):
                await publisher.put(rest, arrival_s)
        except asyncio.CancelledError:
            # Stopping: what was received is processed and published here (the loop is ending)
            self._drain(stream, publisher, in_flight)
            raise
        finally:
            publisher.status = msgspec.structs.replace(publisher.status, ingest=session.status())

    def _drain(
        self, stream: _Stream, publisher: BeatPublisher, in_flight: tuple[DeviceWindow, ...]
    ) -> None:
        session = stream.session
        outputs: list[tuple[Ingested, float]] = [(Ingested(ChunkFate.PROCESSED, in_flight), 0.0)]
        while not stream.inbox.empty():
            arrival = stream.inbox.get_nowait()
            outputs.append(
                (
                    session.process(arrival.message, arrival.arrival_s, arrival.arrival_wall_s),
                    arrival.arrival_s,
                )
            )
        arrival_s = self.clock()
        outputs.append((session.finish(arrival_s), arrival_s))
        for output, when in outputs:
            windows = output.windows
            beats = self.classifier.classify([w.window for w in windows]) if windows else []
            for window, beat in zip(windows, beats, strict=True):
                message = self._describe(stream, window, beat)
                publisher.submit(message, when if when > 0 else arrival_s)

    async def _publish(
        self,
        stream: _Stream,
        publisher: BeatPublisher,
        windows: Sequence[DeviceWindow],
        beats: Sequence[LabeledBeat],
        output: Ingested,
        arrival_s: float,
    ) -> None:
        # Lossless: a stream that outruns its broker connection waits; its inbox absorbs it
        for window, beat in zip(windows, beats, strict=True):
            await publisher.put(self._describe(stream, window, beat), arrival_s)
        if stream.samples is not None:
            for filtered in output.filtered:
                for samples in stream.samples.add(filtered):
                    await publisher.put(samples, arrival_s)

    def _describe(self, stream: _Stream, window: DeviceWindow, beat: LabeledBeat) -> BeatMessage:
        session = stream.session
        wall_s = session.wall_time(window.sample_index)
        message = BeatMessage.from_beat(
            beat,
            stream=session.stream_id,
            record=session.stream_id,
            sample=window.sample_index,
            time_s=window.sample_index / window.fs_hz,
            r_wall_time=max(wall_s, 0.0) if math.isfinite(wall_s) else self.wall_clock(),
        )
        stream.report.beats[message.label] += 1
        if self.say is not None and self.beat_lines:
            self.say(format_beat_line(message))
        return msgspec.structs.replace(message, chain_sample=window.chain_index)


def _trouble(status: IngestStatus) -> tuple[int, int, int, int, bool]:
    """The counters whose change is worth a status update now."""
    return (status.gaps, status.duplicates, status.malformed, status.dropped, status.interleaved)


def merge_publisher_stats(into: PublisherStats, other: PublisherStats) -> None:
    """Add one session's publisher counters to a stream's."""
    for kind in TopicKind:
        into.published[kind] += other.published[kind]
        into.dropped[kind] += other.dropped[kind]
    into.reconnects += other.reconnects
    into.republished += other.republished
    into.compute.merge(other.compute)


async def run_serve(
    *,
    say: Say,
    summary: ServeSummary,
    broker_url: str | None = None,
    topic_prefix: str = "ecg",
    shard: str | None = None,
    share_group: str | None = None,
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    worker_id: str | None = None,
    samples_s: float | None = None,
    model_path: Path | None = None,
    quiet: bool = False,
) -> ServeSummary:
    """``ecg-stream serve``: load the model, subscribe, serve until cancelled.

    Args:
        say: Where terminal lines go.
        summary: Filled as the worker runs (print it after Ctrl-C).
        broker_url: ``mqtt://host:port`` or ``mqtts://...`` (default: ``mqtt://localhost:1883``).
        topic_prefix: First topic level(s).
        shard: ``I/N``: keep only the streams of shard I of N.
        share_group: Join the shared subscription ``$share/<group>/...``.
        idle_timeout_s: A stream silent this long goes offline.
        worker_id: Names this worker on the status topic.
        samples_s: Signal per ``samples`` message, in s (None: one per raw chunk).
        model_path: ONNX model (default: the shipped one).
        quiet: No per-beat lines.

    Raises:
        EcgStreamError: An option, the model or the broker is not usable.
    """
    from ecg_stream.classify.classifier import OnnxBeatClassifier, default_model_path
    from ecg_stream.mqtt.broker import DEFAULT_BROKER_URL

    check_topic_prefix(topic_prefix)
    mqtt = MqttConfig.from_url(broker_url or DEFAULT_BROKER_URL, topic_prefix)
    parsed = Shard.parse(shard) if shard is not None else None
    config = ChainConfig()
    with OnnxBeatClassifier(model_path or default_model_path(), config, threads=1) as classifier:
        worker = ServeWorker(
            classifier,
            classifier.name,
            mqtt,
            config=config,
            shard=parsed,
            share_group=share_group,
            idle_timeout_s=idle_timeout_s,
            worker_id=worker_id,
            samples_s=samples_s,
            say=say,
            beat_lines=not quiet,
            summary=summary,
        )
        return await worker.run()


def serve_main(*, say: Say, **options: Any) -> int:
    """Run :func:`run_serve` until Ctrl-C or SIGTERM, then print the summary.

    Returns:
        0 once stopped.
    """
    from ecg_stream.live.runner import run_until_stopped

    summary = ServeSummary()
    run_until_stopped(run_serve(say=say, summary=summary, **options))
    say(summary.format())
    return 0
