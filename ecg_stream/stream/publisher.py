"""Publish one stream's messages to an MQTT broker, through a bounded queue, surviving reconnects.

One :class:`BeatPublisher` owns one MQTT connection for one stream, so the broker can announce
that stream's death: the connection's last will is the stream's ``offline`` status (retained),
and every (re)connection first publishes ``online`` (retained). The stream's task hands messages
over with :meth:`BeatPublisher.submit` (never waits; a full queue drops the message and counts
it) or :meth:`BeatPublisher.put` (waits for room: lossless back-pressure for replays faster than
real time). A named background task publishes them in order, stamping each beat's compute
latency and publication time just before it is encoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from types import TracebackType

import aiomqtt

from ecg_stream import wire
from ecg_stream.config import Backoff, MqttConfig
from ecg_stream.errors import BrokerError, ConfigError
from ecg_stream.stream.stats import DurationHistogram
from ecg_stream.stream.transport import Reconnect, ReconnectingSession
from ecg_stream.stream.transport import client_identifier as client_identifier  # bench.py
from ecg_stream.stream.transport import make_client as make_client  # bench.py
from ecg_stream.wire import BeatMessage, StatusMessage, StreamState, TopicKind, WireMessage

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


class PublisherState(Enum):
    """Lifecycle of a :class:`BeatPublisher`."""

    NEW = "new"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(slots=True)
class PublisherStats:
    """What a publisher did, for the summary.

    Args:
        published: Messages handed to the broker, per topic kind.
        dropped: Messages dropped (queue full, or undelivered at shutdown), per topic kind.
        reconnects: Successful reconnections after a lost connection.
        compute: Compute latency of the published beats, in ms.
    """

    published: dict[TopicKind, int] = field(default_factory=lambda: dict.fromkeys(TopicKind, 0))
    dropped: dict[TopicKind, int] = field(default_factory=lambda: dict.fromkeys(TopicKind, 0))
    reconnects: int = 0
    compute: DurationHistogram = field(default_factory=DurationHistogram)

    @property
    def dropped_total(self) -> int:
        """Messages dropped, all kinds."""
        return sum(self.dropped.values())


@dataclass(frozen=True, slots=True)
class _Outgoing:
    message: WireMessage
    arrival_s: float


class BeatPublisher:
    """Publish a stream's beats, samples and status; an async context manager.

    Entering connects (or raises :class:`~ecg_stream.errors.BrokerError`) and publishes the
    retained ``online`` status; leaving, also on Ctrl-C (cancellation), publishes what is queued,
    then the retained ``offline`` status, then disconnects, within ``drain_timeout_s``.

    Args:
        config: Broker and topic prefix.
        status: The stream's status (its ``state`` is replaced by online/offline).
        queue_size: Messages the queue holds before :meth:`submit` drops.
        backoff: Reconnect delays.
        drain_timeout_s: How long leaving may take to publish what is queued, in s.
        clock: Monotonic clock (the one chunk arrival times were read from), in s.
        wall_clock: Unix time, in s.
        rng: Randomness for the backoff jitter.

    Attributes:
        state: Lifecycle state.
        stats: Counters and the compute latency histogram.
    """

    def __init__(
        self,
        config: MqttConfig,
        status: StatusMessage,
        *,
        queue_size: int = 1000,
        backoff: Backoff | None = None,
        drain_timeout_s: float = 10.0,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if queue_size < 1:
            msg = f"queue_size={queue_size} must be >= 1"
            raise ConfigError(msg)
        self.config, self.status = config, status
        self.queue_size, self.drain_timeout_s = queue_size, drain_timeout_s
        self.backoff = backoff or Backoff()
        self.clock, self.wall_clock = clock, wall_clock
        self.rng = rng or random.Random()  # jitter, not cryptography
        self.stream = status.stream
        self.topics = {
            kind: wire.topic_for(config.topic_prefix, self.stream, kind) for kind in TopicKind
        }
        self.state = PublisherState.NEW
        self.stats = PublisherStats()
        self._session = ReconnectingSession(
            config,
            client_prefix=f"ecg-stream-{self.stream}",
            backoff=self.backoff,
            rng=self.rng,
            will=aiomqtt.Will(
                self.topics[TopicKind.STATUS],
                self._status_payload(StreamState.OFFLINE),
                qos=TopicKind.STATUS.qos,
                retain=True,
            ),
            on_connect=self._announce,
            on_retry=self._report_lost,
        )
        # None in the queue tells the worker to finish: what precedes it is published first.
        self._queue: asyncio.Queue[_Outgoing | None] = asyncio.Queue(maxsize=queue_size)
        self._in_flight: _Outgoing | None = None  # taken from the queue, not yet acknowledged
        self._tasks = contextlib.AsyncExitStack()  # the task group running the worker
        self._worker: asyncio.Task[None] | None = None
        self._first_connection: asyncio.Future[None] | None = None
        self._warned_drop = False

    @property
    def connected(self) -> bool:
        """Whether the connection is up now."""
        return self._session.connected

    def _status_payload(self, state: StreamState) -> bytes:
        return wire.encode(replace(self.status, state=state))

    async def __aenter__(self) -> BeatPublisher:
        if self.state is not PublisherState.NEW:
            msg = f"cannot enter a publisher that is {self.state.value}: create a new one"
            raise RuntimeError(msg)
        self.state = PublisherState.OPEN
        self._first_connection = asyncio.get_running_loop().create_future()
        task_group = await self._tasks.enter_async_context(asyncio.TaskGroup())
        self._worker = task_group.create_task(self._run(), name=f"mqtt-publish-{self.stream}")
        try:
            await self._first_connection
        except BaseException:
            self.state = PublisherState.CLOSED
            self._worker.cancel()
            # Closed without the error: the task group only waits for the worker, and the
            # error leaves as itself, not wrapped in an exception group.
            await self._tasks.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.state is not PublisherState.OPEN:
            return
        self.state = PublisherState.CLOSING
        assert self._worker is not None  # set on enter
        try:
            async with asyncio.timeout(self.drain_timeout_s):
                await self._queue.put(None)
                await asyncio.shield(self._worker)
        except TimeoutError:
            logger.warning(
                "stream %s: gave up publishing after %.1f s; %d queued messages not delivered",
                self.stream,
                self.drain_timeout_s,
                self._queue.qsize(),
            )
            self._worker.cancel()
        finally:
            # The worker is done or cancelled: the task group only waits for it.
            await self._tasks.aclose()
            self._count_undelivered()
            self.state = PublisherState.CLOSED

    def _count_undelivered(self) -> None:
        leftovers: list[_Outgoing | None] = [self._in_flight]
        while not self._queue.empty():
            leftovers.append(self._queue.get_nowait())
        for item in leftovers:
            if item is not None:
                self.stats.dropped[wire.kind_of(item.message)] += 1
        self._in_flight = None

    def _check_message(self, message: WireMessage, arrival_s: float) -> None:
        if self.state is not PublisherState.OPEN:
            msg = f"cannot publish on a publisher that is {self.state.value}"
            raise RuntimeError(msg)
        if message.stream != self.stream:
            msg = f"message of stream {message.stream!r} given to the publisher of {self.stream!r}"
            raise ValueError(msg)
        if isinstance(message, BeatMessage) and not math.isfinite(arrival_s):
            msg = "a beat needs the arrival time of the chunk that completed it (arrival_s)"
            raise ValueError(msg)

    def submit(self, message: WireMessage, arrival_s: float = math.nan) -> bool:
        """Queue a message without waiting; if the queue is full, drop it and count it.

        Args:
            message: The message (a beat's ``compute_ms``/``published_at`` are filled here).
            arrival_s: For a beat, clock time the chunk that completed its window arrived, in s.

        Returns:
            Whether the message was queued.
        """
        self._check_message(message, arrival_s)
        try:
            self._queue.put_nowait(_Outgoing(message, arrival_s))
        except asyncio.QueueFull:
            kind = wire.kind_of(message)
            self.stats.dropped[kind] += 1
            if not self._warned_drop:
                self._warned_drop = True
                logger.warning(
                    "stream %s: publish queue full (%d messages, broker slow or away); dropping "
                    "new messages, counted in the summary",
                    self.stream,
                    self.queue_size,
                )
            return False
        return True

    async def put(self, message: WireMessage, arrival_s: float = math.nan) -> None:
        """Queue a message, waiting for room (back-pressure instead of drops)."""
        self._check_message(message, arrival_s)
        await self._queue.put(_Outgoing(message, arrival_s))

    async def _run(self) -> None:
        """Connect, publish until told to stop, reconnect with backoff when the link drops."""
        assert self._first_connection is not None  # set on enter
        try:
            await self._session.run(self._serve)
        except aiomqtt.MqttError as error:  # the first connection failed: not retried
            msg = (
                f"cannot connect to the MQTT broker at {self.config.url} ({error}); "
                "start one (mosquitto, or `ecg-stream broker`) or pass --broker URL"
            )
            self._first_connection.set_exception(BrokerError(msg))

    async def _announce(self, client: aiomqtt.Client) -> None:
        """Each (re)connection first publishes the retained ``online`` status."""
        assert self._first_connection is not None  # set on enter
        if self._first_connection.done():
            self.stats.reconnects += 1
            logger.warning("stream %s: reconnected to %s", self.stream, self.config.url)
        await self._publish_status(client, StreamState.ONLINE)

    async def _serve(self, client: aiomqtt.Client) -> None:
        """Publish until the stop mark, then the retained ``offline`` status."""
        assert self._first_connection is not None  # set on enter
        if not self._first_connection.done():
            self._first_connection.set_result(None)
        await self._pump(client)
        with contextlib.suppress(aiomqtt.MqttError):  # lost while saying goodbye: the will says it
            await self._publish_status(client, StreamState.OFFLINE)

    def _report_lost(self, retry: Reconnect) -> None:
        logger.warning(
            "stream %s: lost the broker at %s (%s); reconnecting in %.1f s",
            self.stream,
            self.config.url,
            retry.error,
            retry.delay_s,
        )

    async def _publish_status(self, client: aiomqtt.Client, state: StreamState) -> None:
        await client.publish(
            self.topics[TopicKind.STATUS], self._status_payload(state), qos=1, retain=True
        )
        self.stats.published[TopicKind.STATUS] += 1

    async def _pump(self, client: aiomqtt.Client) -> None:
        """Publish queued messages in order until the stop mark; keep a failed one for retry."""
        while True:
            if self._in_flight is None:
                item = await self._queue.get()
                if item is None:
                    return
                self._in_flight = item
            await self._publish(client, self._in_flight)
            self._in_flight = None

    async def _publish(self, client: aiomqtt.Client, item: _Outgoing) -> None:
        message = item.message
        kind = wire.kind_of(message)
        compute_ms = math.nan
        if isinstance(message, BeatMessage):
            compute_ms = (self.clock() - item.arrival_s) * 1000.0
            message = replace(message, compute_ms=compute_ms, published_at=self.wall_clock())
        await client.publish(self.topics[kind], wire.encode(message), qos=kind.qos, retain=False)
        self.stats.published[kind] += 1
        if kind is TopicKind.BEATS:
            self.stats.compute.add(compute_ms)
