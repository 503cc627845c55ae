"""``ecg-stream serve``: devices' raw samples in over MQTT, labeled beats out, one chain per stream.

A worker subscribes to ``<prefix>/+/raw`` with one MQTT session (the project's transport:
reconnects with capped, jittered backoff). Each stream appears when its first chunk arrives:
it gets a :class:`~ecg_stream.live.session.StreamSession` whose front end is an
:class:`~ecg_stream.live.ingest.IngestSession` (sequencing, resampling to 360 Hz, the same
``BeatExtractor`` that ``replay`` and ``analyze`` run), a bounded inbox and a named task in
one ``TaskGroup``. The windows of every stream of one event-loop turn are classified in one
ONNX call (:class:`~ecg_stream.classify.batcher.InferenceBatcher`). The sinks ``serve``
composes are those of ``replay``: the MQTT sink gives each stream a publisher of its own,
whose connection's last will is the stream's ``offline`` status (if the worker dies, the
broker announces each of its streams offline); the status also carries the stream's ingest
counters (gaps, duplicates, malformed, ...).

A stream idle for ``idle_timeout_s`` is flushed, announced ``offline`` and freed; its next
chunk starts a new session. Ctrl-C or SIGTERM: the chunks received are processed, every
chain is flushed, the beats are published, then every stream's ``offline``.

Several workers share the streams in one of three ways:

- ``--partition K/N``: the broker hashes the streams into N partitions and republishes each
  raw message under ``<prefix>/part/<K>/``; a worker receives only its partition's (a NATS
  cluster, ``docs/cluster.md``: scales out);
- ``--shard I/N``: every worker receives every raw message and keeps the streams whose
  :func:`stream_hash` modulo N is I (any broker; N workers do N times the receiving);
- ``--share GROUP``: the shared subscription ``$share/GROUP/<prefix>/+/raw``; the broker must
  keep each topic on one member (EMQX: ``hash_topic``). A broker that hands a topic's messages
  round-robin (mosquitto) splits a stream: the session detects it and says so on ``status``
  (``interleaved``) instead of classifying fragments.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Self

from ecg_stream.classify.batcher import ClassifierLike, InferenceBatcher
from ecg_stream.config import (
    CHAIN_FS_HZ,
    DEFAULT_MAX_STREAMS,
    DEFAULT_RHYTHM,
    MANY_STREAMS,
    Backoff,
    ChainConfig,
    MqttConfig,
    RhythmSettings,
)
from ecg_stream.detector.chain import warm_up
from ecg_stream.detector.rhythm.stage import RhythmStage
from ecg_stream.errors import (
    BrokerError,
    ConfigError,
    EcgStreamError,
    ModelOutputError,
    PayloadError,
)
from ecg_stream.live.ingest import IngestSession
from ecg_stream.live.mqtt_sink import MqttSink, check_samples_s
from ecg_stream.live.runner import first_error
from ecg_stream.live.session import RunSummary, Sink, StreamSession
from ecg_stream.live.sinks import BeatLines
from ecg_stream.mqtt.transport import (
    Client,
    MqttError,
    Reconnect,
    ReconnectingSession,
    payloads,
    subscribe,
)
from ecg_stream.wire import (
    IngestStatus,
    RawMessage,
    StatusMessage,
    TopicKind,
    check_topic_prefix,
    decode_raw,
    parse_topic,
    partition_prefix,
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
class _ShareOf:
    """Share ``index`` of ``count`` (from 0), given on the command line as ``I/N``."""

    index: int
    count: int
    option: ClassVar[str]
    """The option that gives it, for messages."""

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS or not 0 <= self.index < self.count:
            msg = (
                f"{self.option} {self.index}/{self.count} is not valid; use I/N with 1 <= N <= "
                f"{MAX_SHARDS} and 0 <= I < N, {self._example()}"
            )
            raise ConfigError(msg)

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse ``I/N``.

        Raises:
            ConfigError: ``text`` is not two integers ``I/N`` with ``0 <= I < N``.
        """
        index_text, slash, count_text = text.strip().partition("/")
        try:
            index, count = int(index_text), int(count_text)
        except ValueError:
            slash = ""
        if not slash:
            msg = f"{cls.option} {text!r} is not valid; use I/N, {cls._example()}"
            raise ConfigError(msg)
        return cls(index, count)

    @classmethod
    def _example(cls) -> str:
        return (
            f"this worker's share I of N from 0, e.g. {cls.option} 0/2 and {cls.option} 1/2 "
            "for two workers"
        )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


class Shard(_ShareOf):
    """The share of the streams one of ``count`` workers keeps: ``stream_hash % count == index``.

    Every worker receives every raw message and drops the others' (any broker).

    Example:
        >>> shard = Shard.parse("1/2")
        >>> shard, shard.owns("100"), shard.owns("105")
        (Shard(index=1, count=2), False, True)
    """

    __slots__ = ()
    option = "--shard"

    def owns(self, stream_id: str) -> bool:
        """Whether this worker keeps the stream."""
        return stream_hash(stream_id) % self.count == self.index


class Partition(_ShareOf):
    """Partition ``index`` of ``count`` that the broker made of the raw topics.

    A broker that partitions streams (NATS: a subject mapping with ``partition(count, 1)``,
    ``docs/cluster.md``) republishes ``<prefix>/<stream>/raw`` on
    ``<prefix>/part/<index>/<stream>/raw``: the worker of a partition receives only its
    streams' messages.

    Example:
        >>> Partition.parse("1/3").topic_filter("ecg")
        'ecg/part/1/+/raw'
    """

    __slots__ = ()
    option = "--partition"

    def topic_filter(self, prefix: str) -> str:
        """The raw topics of this partition's streams."""
        return subscription_for(partition_prefix(prefix, self.index), None, TopicKind.RAW)


def default_worker_id() -> str:
    """``host-pid``: names the worker on each stream's status."""
    return f"{socket.gethostname()}-{os.getpid()}"


RATE_LIMIT_FACTOR = 2.0
"""A stream may send its samples at most this many times faster than its ``fs_hz`` on average
(a device catching up after a lost link sends faster than real time for a while)."""
RATE_BURST_S = 600.0
"""Signal a stream may send at once beyond its rate, in s: a backlog the broker kept while the
link was down, or a recording sent as fast as possible (10 minutes of it)."""
LISTED_STREAMS = 64
"""Streams the summary lists one by one; beyond, a stream that went idle is folded into one
line and its report freed (a worker sees unbounded stream ids over its life)."""


BATCH_TICK_S = 0.005
"""How long a stream's beat windows wait for other streams' before one ONNX call, in s, while
the worker serves :data:`~ecg_stream.config.MANY_STREAMS` streams or more (``--batch-tick-ms``;
fewer streams do not wait: too few beats would join)."""

BATCH_TICK_RANGE_S = (0.0, 0.1)
"""Shortest and longest ``--batch-tick-ms``, in s."""


def check_batch_tick_s(batch_tick_s: float) -> None:
    """Refuse a ``--batch-tick-ms`` outside :data:`BATCH_TICK_RANGE_S`.

    Raises:
        ConfigError: It is outside.
    """
    low, high = BATCH_TICK_RANGE_S
    if not low <= batch_tick_s <= high:
        msg = (
            f"--batch-tick-ms {batch_tick_s * 1e3:g} must lie in [{low * 1e3:g}, {high * 1e3:g}] ms"
        )
        raise ConfigError(msg)


REORDER_RANGE_S = (0.0, 60.0)
"""Shortest and longest ``--reorder-s``."""


def check_reorder_s(reorder_s: float) -> None:
    """Refuse a ``--reorder-s`` outside :data:`REORDER_RANGE_S`.

    Raises:
        ConfigError: It is outside.
    """
    low, high = REORDER_RANGE_S
    if not low <= reorder_s <= high:
        msg = f"--reorder-s {reorder_s} must lie in [{low:g}, {high:g}] s (e.g. 10 with NATS)"
        raise ConfigError(msg)


def check_max_streams(max_streams: int) -> None:
    """Refuse a ``--max-streams`` below 1.

    Raises:
        ConfigError: It is below 1.
    """
    if max_streams < 1:
        msg = f"--max-streams {max_streams} must be >= 1"
        raise ConfigError(msg)


class RateLimit:
    """A stream's token bucket of samples: refilled at ``RATE_LIMIT_FACTOR`` times its rate.

    It holds at most ``RATE_BURST_S`` of signal, and starts full.

    Args:
        fs_hz: The stream's sampling rate (its first chunk's), in Hz.
        now_s: Clock reading at the first chunk, in s.

    Example:
        >>> limit = RateLimit(360.0, now_s=0.0)
        >>> limit.take(360 * 600, now_s=0.0), limit.take(360, now_s=0.0)
        (True, False)
        >>> limit.take(360, now_s=1.0)  # refilled: 720 samples a second
        True
    """

    def __init__(self, fs_hz: float, now_s: float) -> None:
        self.rate = RATE_LIMIT_FACTOR * fs_hz
        self.capacity = fs_hz * RATE_BURST_S
        self.tokens, self.now_s = self.capacity, now_s

    def take(self, samples: int, now_s: float) -> bool:
        """Whether ``samples`` more fit the stream's rate now (then they are taken)."""
        self.tokens = min(self.tokens + (now_s - self.now_s) * self.rate, self.capacity)
        self.now_s = now_s
        if samples > self.tokens:
            return False
        self.tokens -= samples
        return True


@dataclass(frozen=True, slots=True)
class _Arrival:
    message: RawMessage
    arrival_s: float


@dataclass(slots=True)
class _Stream:
    """A stream's live session in the worker: the session, its inbox, the task that drains it."""

    session: StreamSession[RawMessage]
    inbox: asyncio.Queue[_Arrival]
    front: IngestSession
    rate: RateLimit
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class ServeWorker:
    """Serve every device stream that publishes on ``<prefix>/+/raw`` (or this shard's share).

    Args:
        classifier: The beat classifier every stream shares (one call per loop turn).
        mqtt: Broker and topic prefix the raw chunks come from.
        sinks: Where every stream's output goes (``serve``: MQTT, and a line per beat).
        summary: Filled as the worker runs (readable after it stops).
        shard: Keep only this shard's streams (every worker receives every message).
        share_group: Subscribe as a member of ``$share/<group>/``.
        partition: Subscribe to the raw topics of this partition of a partitioning broker.
        idle_timeout_s: A stream silent this long is flushed, announced offline and freed.
        reorder_s: A chunk that arrives after a gap in its stream waits this long for the
            missing ones (0: not at all): a broker that sends unacknowledged messages again
            after an ack wait (NATS, after a node was lost) sends them behind newer ones.
        batch_tick_s: How long a stream's windows wait for other streams' to be classified in
            one call, in s (devices are not synchronised), while the worker serves
            :data:`~ecg_stream.config.MANY_STREAMS` streams or more.
        max_streams: Streams served at once; the chunks of a stream beyond are dropped and
            counted (``refused_streams``) until one goes idle.
        worker_id: Names this worker on the status topic. Given, it also names the worker's
            persistent broker session (with the topic prefix): the raw chunks published while
            the worker is down (a crash, a restart, a lost link) wait for it at the broker, up
            to the broker's queue limits. Default: host-pid, a fresh session each start.
        rhythm: Limits of each stream's rhythm stage.
        say: Where notices go (None: nowhere).
        clock: Monotonic clock, in s.
        wall_clock: Unix time, in s.
    """

    def __init__(
        self,
        classifier: ClassifierLike,
        mqtt: MqttConfig,
        sinks: Sequence[Sink],
        *,
        summary: RunSummary | None = None,
        shard: Shard | None = None,
        share_group: str | None = None,
        partition: Partition | None = None,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        reorder_s: float = 0.0,
        batch_tick_s: float = BATCH_TICK_S,
        max_streams: int = DEFAULT_MAX_STREAMS,
        worker_id: str | None = None,
        rhythm: RhythmSettings = DEFAULT_RHYTHM,
        say: Say | None = None,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        if sum(split is not None for split in (shard, share_group, partition)) > 1:
            msg = (
                "--shard, --share and --partition are three ways to split streams between "
                "workers; give one (--shard I/N with any broker, --share GROUP with a "
                "hash_topic broker, --partition K/N with a partitioning broker such as NATS)"
            )
            raise ConfigError(msg)
        low, high = IDLE_TIMEOUT_RANGE_S
        if not low <= idle_timeout_s <= high:
            msg = f"--idle-timeout-s {idle_timeout_s} must lie in [{low:g}, {high:g}] s"
            raise ConfigError(msg)
        check_reorder_s(reorder_s)
        check_batch_tick_s(batch_tick_s)
        check_max_streams(max_streams)
        if share_group is not None and (
            not share_group or any(char in share_group for char in "/+#\x00")
        ):
            msg = f"--share {share_group!r} must be one topic level, without '/', '+', '#'"
            raise ConfigError(msg)
        self.classifier, self.mqtt, self.sinks = classifier, mqtt, tuple(sinks)
        self.config, self.model_name = classifier.config, classifier.name
        self.shard, self.share_group, self.partition = shard, share_group, partition
        self.idle_timeout_s, self.reorder_s = idle_timeout_s, reorder_s
        self.max_streams = max_streams
        self.worker_id = worker_id or default_worker_id()
        self.session_id = (
            None if worker_id is None else f"ecg-stream-serve-{mqtt.topic_prefix}-{worker_id}"
        )
        self.rhythm, self.say, self.clock, self.wall_clock = rhythm, say, clock, wall_clock
        self.summary = summary if summary is not None else RunSummary()
        topic = subscription_for(mqtt.topic_prefix, None, TopicKind.RAW)
        if partition is not None:
            topic = partition.topic_filter(mqtt.topic_prefix)
        self.topic_filter = topic if share_group is None else f"$share/{share_group}/{topic}"
        self.batch_tick_s = batch_tick_s
        self._batcher = InferenceBatcher(classifier)
        self._streams: dict[str, _Stream] = {}
        self._closing: dict[str, asyncio.Event] = {}  # streams whose last session is closing
        self._group: asyncio.TaskGroup | None = None
        self._subscribed = asyncio.Event()  # set once, on the first subscription

    async def wait_subscribed(self) -> None:
        """Return once the worker is subscribed (it receives every chunk published from then)."""
        await self._subscribed.wait()

    async def run(self) -> RunSummary:
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
            async with AsyncExitStack() as stack:
                for sink in self.sinks:
                    stack.push_async_callback(sink.close)
                async with asyncio.TaskGroup() as group:
                    self._group = group
                    try:
                        await session.run(self._receive)
                    except MqttError as error:  # the first connection failed
                        msg = (
                            f"cannot connect to the MQTT broker at {self.mqtt.url} ({error}); "
                            "start one (mosquitto) or pass --broker URL"
                        )
                        raise BrokerError(msg) from error
        except BaseExceptionGroup as errors:
            raise first_error(errors) from None
        finally:
            self.summary.add_inference(self._batcher)
        return self.summary

    async def _on_connect(self, client: Client) -> None:
        await subscribe(client, [self.topic_filter])
        if not self._subscribed.is_set():
            self._subscribed.set()
            if self.say is not None:
                where = "every stream"
                if self.shard is not None or self.partition is not None:
                    where = f"shard {self.shard}" if self.shard else f"partition {self.partition}"
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

    async def _receive(self, client: Client) -> None:
        async for topic, payload in payloads(client):
            self.dispatch(topic, payload, self.clock())

    def dispatch(self, topic: str, payload: bytes, arrival_s: float) -> None:
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
                stream.front.count_malformed()
            logger.warning("skipped a malformed raw message: %s", error)
            return
        if stream is None:
            if len(self._streams) >= self.max_streams:
                self.summary.refused_streams += 1
                return
            stream = self._start(message, arrival_s)
        if not stream.rate.take(message.end_index - message.start_index, arrival_s):
            stream.front.count_dropped()  # a flood: the stream's own loss, the others go on
            return
        try:
            stream.inbox.put_nowait(_Arrival(message, arrival_s))
        except asyncio.QueueFull:
            stream.front.count_dropped()

    def _tune_batcher(self) -> None:
        """Wait for other streams' windows only while there are many streams."""
        many = len(self._streams) >= MANY_STREAMS
        self._batcher.tick_s = self.batch_tick_s if many else 0.0

    def _start(self, first: RawMessage, arrival_s: float) -> _Stream:
        stream_id = first.stream
        front = IngestSession(stream_id, self.config, self.worker_id)
        status = StatusMessage.online(
            stream_id,
            stream_id,
            self.model_name,
            IngestStatus.starting(self.worker_id, first.fs_hz),
        )
        session: StreamSession[RawMessage] = StreamSession(
            front,
            self.sinks,
            status,
            self.summary.report(stream_id, stream_id),
            batcher=self._batcher,
            rhythm=RhythmStage(self.rhythm, CHAIN_FS_HZ),
            clock=self.clock,
            wall_clock=self.wall_clock,
        )
        rate = RateLimit(first.fs_hz, arrival_s)
        stream = _Stream(session, asyncio.Queue(maxsize=INBOX_CHUNKS), front, rate)
        self._streams[stream_id] = stream
        self._tune_batcher()
        assert self._group is not None  # set by run
        previous = self._closing.get(stream_id)
        self._closing[stream_id] = stream.closed
        self._group.create_task(self._serve(stream, previous), name=f"serve-{stream_id}")
        return stream

    async def _serve(self, stream: _Stream, previous: asyncio.Event | None) -> None:
        stream_id = stream.session.stream_id
        if previous is not None:  # the last session's offline goes out before this online
            await previous.wait()
        try:
            async with stream.session:
                await self._pump(stream)
        except BrokerError as error:
            logger.warning("stream %s: %s; its chunks are dropped", stream_id, error)
        except ModelOutputError as error:  # that stream's error: the others go on
            self.summary.report(stream_id, stream_id).error = str(error)
            if self.say is not None:
                self.say(f"stream {stream_id} stopped: {error}")
        finally:
            if self._streams.get(stream_id) is stream:
                del self._streams[stream_id]
            self._tune_batcher()
            stream.closed.set()
            if self._closing.get(stream_id) is stream.closed:
                del self._closing[stream_id]
            if stream_id not in self._streams and len(self.summary.streams) > LISTED_STREAMS:
                self.summary.retire(stream_id)

    async def _pump(self, stream: _Stream) -> None:
        session = stream.session
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
                for ordered in await self._reordered(stream, arrival):
                    await session.process(ordered.message, ordered.arrival_s)
            await session.finish()
        except asyncio.CancelledError:
            # Stopping: what was received is processed and handed over here (the loop is ending);
            # the stream's own error (a bad model batch) ends that, never the stopping
            with contextlib.suppress(EcgStreamError):
                while not stream.inbox.empty():
                    arrival = stream.inbox.get_nowait()
                    session.process_nowait(arrival.message, arrival.arrival_s)
            raise

    async def _reordered(self, stream: _Stream, arrival: _Arrival) -> list[_Arrival]:
        """``arrival``, and after a gap the chunks that came within ``reorder_s``, in order.

        Waiting ends early once the held chunks continue the stream without a hole.
        """
        expected = stream.front.next_index
        held = [arrival]
        if self.reorder_s <= 0 or expected is None or arrival.message.start_index <= expected:
            return held
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.reorder_s):
                while not _continues(expected, held):
                    held.append(await stream.inbox.get())
                    held.sort(key=lambda item: item.message.start_index)
        return held


def _continues(expected: int, held: list[_Arrival]) -> bool:
    """Whether ``held``, in order, continues a stream that expects ``expected`` without a hole."""
    for item in held:
        if item.message.start_index > expected:
            return False
        expected = max(expected, item.message.end_index)
    return True


SERVE_SAMPLES_QUEUE = 1000
"""``samples`` messages a stream's publisher holds in a worker (devices come in bursts)."""


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """What ``ecg-stream serve`` was asked to do.

    Args:
        broker_url: ``mqtt://host:port`` or ``mqtts://...`` (default: ``mqtt://localhost:1883``).
        topic_prefix: First topic level(s).
        shard: ``I/N``: keep only the streams of shard I of N.
        share_group: Join the shared subscription ``$share/<group>/...``.
        partition: ``K/N``: subscribe to partition K of N of a partitioning broker.
        idle_timeout_s: A stream silent this long goes offline.
        reorder_s: After a gap, how long a stream's chunks wait for the missing ones.
        batch_tick_s: How long beat windows wait for other streams' before classification.
        max_streams: Streams served at once (``DEFAULT_MAX_STREAMS``).
        metrics_port: Serve Prometheus metrics on ``127.0.0.1:PORT/metrics``.
        worker_id: Names this worker on the status topic (and its persistent session).
        samples_s: Signal per ``samples`` message, in s (None: one per raw chunk).
        model_path: ONNX model (None: the shipped one).
        quiet: No per-beat lines.
        rhythm: Limits of each stream's rhythm stage.
    """

    broker_url: str | None = None
    topic_prefix: str = "ecg"
    shard: Shard | None = None
    share_group: str | None = None
    partition: Partition | None = None
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    reorder_s: float = 0.0
    batch_tick_s: float = BATCH_TICK_S
    max_streams: int = DEFAULT_MAX_STREAMS
    metrics_port: int | None = None
    worker_id: str | None = None
    samples_s: float | None = None
    model_path: Path | None = None
    quiet: bool = False
    rhythm: RhythmSettings = DEFAULT_RHYTHM

    def mqtt(self) -> MqttConfig:
        """The broker and topic prefix (checked).

        Raises:
            ConfigError: The URL or the prefix is not valid.
        """
        from ecg_stream.mqtt.broker import DEFAULT_BROKER_URL

        check_topic_prefix(self.topic_prefix)
        return MqttConfig.from_url(self.broker_url or DEFAULT_BROKER_URL, self.topic_prefix)

    def check(self) -> None:
        """Refuse a bad option before the model loads.

        Raises:
            ConfigError: An option is not valid.
        """
        check_samples_s(self.samples_s)
        check_max_streams(self.max_streams)
        check_reorder_s(self.reorder_s)
        check_batch_tick_s(self.batch_tick_s)
        self.mqtt()


async def run_serve(settings: ServeSettings, say: Say, summary: RunSummary) -> RunSummary:
    """``ecg-stream serve``: load the model, subscribe, serve until cancelled.

    Args:
        settings: What to serve, and how.
        say: Where terminal lines go.
        summary: Filled as the worker runs (print it after Ctrl-C).

    Raises:
        EcgStreamError: An option, the model or the broker is not usable.
    """
    from ecg_stream.classify.classifier import OnnxBeatClassifier, default_model_path

    settings.check()
    mqtt = settings.mqtt()
    model_path = settings.model_path or default_model_path()
    warm_up(ChainConfig())
    with OnnxBeatClassifier(model_path, ChainConfig(), threads=1) as classifier:
        sinks: list[Sink] = [
            MqttSink(
                mqtt,
                summary,
                lossless=True,  # a stream that outruns its connection waits; its inbox absorbs it
                samples_s=settings.samples_s,
                queue_size=SERVE_SAMPLES_QUEUE,
            )
        ]
        if not settings.quiet:
            sinks.append(BeatLines(say))
        if settings.metrics_port is not None:
            from ecg_stream.live.metrics import start_metrics  # prometheus only when asked

            sinks.append(start_metrics(settings.metrics_port, summary, say))
        worker = ServeWorker(
            classifier,
            mqtt,
            sinks,
            summary=summary,
            shard=settings.shard,
            share_group=settings.share_group,
            partition=settings.partition,
            idle_timeout_s=settings.idle_timeout_s,
            reorder_s=settings.reorder_s,
            batch_tick_s=settings.batch_tick_s,
            max_streams=settings.max_streams,
            worker_id=settings.worker_id,
            rhythm=settings.rhythm,
            say=say,
        )
        return await worker.run()


def serve_main(settings: ServeSettings, say: Say, summary_json: Path | None = None) -> int:
    """Run :func:`run_serve` until Ctrl-C or SIGTERM, then print the summary.

    Returns:
        0 once stopped, 1 when beats were lost (dropped before the broker or refused by it).
    """
    from ecg_stream.live.runner import run_until_stopped

    summary = RunSummary()
    run_until_stopped(run_serve(settings, say, summary))
    summary.report_to(say, summary_json)
    return summary.exit_status()
