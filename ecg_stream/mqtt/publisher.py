"""Publish one stream's messages to an MQTT broker, through bounded queues, surviving reconnects.

One :class:`BeatPublisher` owns one MQTT connection for one stream, so the broker can announce
that stream's death: the connection's last will is the stream's ``offline`` status (retained),
and every (re)connection first publishes ``online`` (retained). The stream's task hands messages
over with :meth:`BeatPublisher.submit` (never waits; a full queue drops the message and counts
it) or :meth:`BeatPublisher.put` (waits for room: lossless back-pressure for replays faster than
real time). A named background task publishes them; a beat comes as a :class:`PendingBeat`,
whose :class:`~ecg_stream.wire.BeatMessage` is built just before it is encoded, once its compute
latency and publication time are known.

Beats are the data, samples only display: beats (and status updates) wait in a buffer of their
own, large enough for :data:`BEAT_BUFFER_SIZE` beats (over 10 minutes of a fast heart), and go
first; samples have a smaller queue and are what is dropped when something must go. A beat is
published at QoS 1 on a persistent session and leaves the buffer only once the broker has
acknowledged it: one whose connection drops first is published again on the next connection
(the broker may then hold it twice; subscribers drop the duplicate). A broker acknowledges a
message before it writes it to disk (mosquitto: every ``autosave_interval``), so a broker that
crashes may lose beats it acknowledged just before: after a lost connection the publisher also
publishes again the beats acknowledged in the last :data:`RESEND_WINDOW_S`. Whatever never
reaches the broker is counted in :class:`PublisherStats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum
from types import TracebackType
from typing import TypeAlias

import aiomqtt
import msgspec

from ecg_stream import wire
from ecg_stream.config import Backoff, MqttConfig
from ecg_stream.errors import BrokerError, ConfigError
from ecg_stream.mqtt.stats import PublisherStats
from ecg_stream.mqtt.transport import (
    RECONNECT_BACKOFF,
    PublishRefusedError,
    Reconnect,
    ReconnectingSession,
    link_lost,
    publish_acknowledged,
    unique_identifier,
)
from ecg_stream.types import LabeledBeat
from ecg_stream.wire import (
    BeatMessage,
    EventMessage,
    SamplesMessage,
    StatusMessage,
    StreamState,
    TopicKind,
)

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

BEAT_BUFFER_SIZE = 2000
"""Beats (and status updates) a publisher holds while the broker is away: 10 minutes at 200
bpm. Beyond it, new beats are dropped and counted."""

RESEND_WINDOW_S = 5.0
"""After a lost connection, beats the broker acknowledged this recently (monotonic clock, s)
before the loss are published again: a crashed broker may not have saved them yet."""

SAMPLES_QUEUE_SIZE = 100
"""Display messages (``samples``) a publisher holds: 10 s of 100 ms chunks. Beyond it, new ones
are dropped and counted."""


class PublisherState(Enum):
    """Lifecycle of a :class:`BeatPublisher`."""

    NEW = "new"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class PendingBeat:
    """A labeled beat handed to a publisher, which builds its message when it publishes it.

    A beat's ``compute_ms`` and ``published_at`` are known only at publication: the publisher
    builds the :class:`~ecg_stream.wire.BeatMessage` whole then (:meth:`stamped`).

    Args:
        beat: The beat.
        stream: Stream id.
        record: Record name.
        sample: R-peak index in the record's own clock.
        chain_sample: R-peak index at the chain's rate (360 Hz).
        time_s: R-peak time in the record, in s.
        r_wall_time: Unix time of the R peak, in s.
    """

    beat: LabeledBeat
    stream: str
    record: str
    sample: int
    chain_sample: int
    time_s: float
    r_wall_time: float

    def stamped(self, compute_ms: float, published_at: float) -> BeatMessage:
        """The beat's message, with its compute latency (ms) and Unix publication time (s)."""
        return BeatMessage.from_beat(
            self.beat,
            stream=self.stream,
            record=self.record,
            sample=self.sample,
            chain_sample=self.chain_sample,
            time_s=self.time_s,
            r_wall_time=self.r_wall_time,
            compute_ms=compute_ms,
            published_at=published_at,
        )


Outgoing: TypeAlias = PendingBeat | SamplesMessage | StatusMessage | EventMessage
"""What a publisher takes: beats (it builds their messages), samples, status updates, events."""


def _kind_of(message: Outgoing) -> TopicKind:
    return TopicKind.BEATS if isinstance(message, PendingBeat) else wire.kind_of(message)


@dataclass(frozen=True, slots=True)
class _Outgoing:
    message: Outgoing
    arrival_s: float
    again: bool = False  # acknowledged once already, published again after a lost connection


class BeatPublisher:
    """Publish a stream's beats, samples and status; an async context manager.

    Entering connects (or raises :class:`~ecg_stream.errors.BrokerError`) and publishes the
    retained ``online`` status; leaving, also on Ctrl-C (cancellation), publishes what is queued,
    then the retained ``offline`` status, then disconnects, within ``drain_timeout_s``.

    The connection is a persistent session (MQTT 5: clean start off, a session expiry) under
    one client id for the publisher's life, ``ecg-stream-<stream>-<random>``.

    Args:
        config: Broker and topic prefix.
        status: The stream's status (its ``state`` is replaced by online/offline).
        queue_size: ``samples`` messages held before :meth:`submit` drops new ones.
        beat_buffer_size: Beats and status updates held before :meth:`submit` drops new ones.
        backoff: Reconnect delays.
        drain_timeout_s: How long leaving may take to publish what is queued, in s.
        clock: Monotonic clock (the one chunk arrival times were read from), in s.
        wall_clock: Unix time, in s.
        rng: Randomness for the backoff jitter.
        stats: Where to count (default: counters of its own); a stream's sessions may share one.

    Attributes:
        state: Lifecycle state.
        stats: Counters and the compute latency histogram.
    """

    def __init__(
        self,
        config: MqttConfig,
        status: StatusMessage,
        *,
        queue_size: int = SAMPLES_QUEUE_SIZE,
        beat_buffer_size: int = BEAT_BUFFER_SIZE,
        backoff: Backoff | None = None,
        drain_timeout_s: float = 10.0,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        rng: random.Random | None = None,
        stats: PublisherStats | None = None,
    ) -> None:
        if queue_size < 1 or beat_buffer_size < 1:
            msg = f"queue_size={queue_size} and beat_buffer_size={beat_buffer_size} must be >= 1"
            raise ConfigError(msg)
        self.config, self.status = config, status
        self.queue_size, self.drain_timeout_s = queue_size, drain_timeout_s
        self.beat_buffer_size = beat_buffer_size
        self.backoff = backoff or RECONNECT_BACKOFF
        self.clock, self.wall_clock = clock, wall_clock
        self.rng = rng or random.Random()  # jitter, not cryptography
        self.stream = status.stream
        self.topics = {
            kind: wire.topic_for(config.topic_prefix, self.stream, kind) for kind in TopicKind
        }
        self.state = PublisherState.NEW
        self.stats = stats if stats is not None else PublisherStats()
        self._session = ReconnectingSession(
            config,
            client_prefix=f"ecg-stream-{self.stream}",
            client_id=unique_identifier(f"ecg-stream-{self.stream}"),
            persistent=True,
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
        # Beats and status updates (reliable, first), samples (display, dropped first).
        self._reliable: deque[_Outgoing] = deque()
        self._display: deque[_Outgoing] = deque()
        self._ready = asyncio.Event()  # set when there is something to publish, or to stop
        self._room = asyncio.Event()  # set when a message left a queue
        self._stopping = False  # once set and the queues are empty, the worker finishes
        self._in_flight: _Outgoing | None = None  # taken from a queue, not yet acknowledged
        # Beats the broker acknowledged in the last RESEND_WINDOW_S, with the clock time of the
        # acknowledgement: re-sent after a lost connection (the broker may have crashed before
        # saving them).
        self._acknowledged: deque[tuple[float, _Outgoing]] = deque(maxlen=beat_buffer_size)
        self._tasks = contextlib.AsyncExitStack()  # the task group running the worker
        self._worker: asyncio.Task[None] | None = None
        self._first_connection: asyncio.Future[None] | None = None
        self._warned_drop: set[TopicKind] = set()

    @property
    def connected(self) -> bool:
        """Whether the connection is up now."""
        return self._session.connected

    def _status_payload(self, state: StreamState) -> bytes:
        return wire.encode(msgspec.structs.replace(self.status, state=state))

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
        self._stopping = True
        self._ready.set()
        try:
            async with asyncio.timeout(self.drain_timeout_s):
                await asyncio.shield(self._worker)
        except TimeoutError:
            logger.warning(
                "stream %s: gave up publishing after %.1f s; %d beats and %d samples messages "
                "not delivered (counted as dropped)",
                self.stream,
                self.drain_timeout_s,
                len(self._reliable) + (self._in_flight is not None),
                len(self._display),
            )
            self._worker.cancel()
        finally:
            # The worker is done or cancelled: the task group only waits for it.
            await self._tasks.aclose()
            self._count_undelivered()
            self.state = PublisherState.CLOSED

    def _count_undelivered(self) -> None:
        leftovers = [*self._reliable, *self._display]
        if self._in_flight is not None:
            leftovers.append(self._in_flight)
        for item in leftovers:
            if not item.again:  # the broker acknowledged those once: not counted as lost
                self.stats.dropped[_kind_of(item.message)] += 1
        self._reliable.clear()
        self._display.clear()
        self._in_flight = None

    @property
    def queued(self) -> int:
        """Messages waiting to be published (both queues and the one in flight)."""
        return len(self._reliable) + len(self._display) + (self._in_flight is not None)

    def _queue_of(self, kind: TopicKind) -> tuple[deque[_Outgoing], int]:
        if kind is TopicKind.SAMPLES:
            return self._display, self.queue_size
        return self._reliable, self.beat_buffer_size

    def _check_message(self, message: Outgoing, arrival_s: float) -> None:
        if self.state is not PublisherState.OPEN:
            msg = f"cannot publish on a publisher that is {self.state.value}"
            raise RuntimeError(msg)
        if isinstance(message, BeatMessage):
            msg = "hand a beat over as a PendingBeat: the publisher builds its BeatMessage"
            raise TypeError(msg)
        if message.stream != self.stream:
            msg = f"message of stream {message.stream!r} given to the publisher of {self.stream!r}"
            raise ValueError(msg)
        if isinstance(message, PendingBeat) and not math.isfinite(arrival_s):
            msg = "a beat needs the arrival time of the chunk that completed it (arrival_s)"
            raise ValueError(msg)

    def submit(self, message: Outgoing, arrival_s: float = math.nan) -> bool:
        """Queue a message without waiting; if the queue is full, drop it and count it.

        Args:
            message: The message, or a beat whose message is built when it is published.
            arrival_s: For a beat, clock time the chunk that completed its window arrived, in s.

        Returns:
            Whether the message was queued.
        """
        self._check_message(message, arrival_s)
        kind = _kind_of(message)
        queue, size = self._queue_of(kind)
        if len(queue) >= size:
            self.stats.dropped[kind] += 1
            if kind not in self._warned_drop:
                self._warned_drop.add(kind)
                logger.warning(
                    "stream %s: %s queue full (%d messages, broker slow or away); dropping new "
                    "ones, counted in the summary",
                    self.stream,
                    "samples" if kind is TopicKind.SAMPLES else "beat",
                    size,
                )
            return False
        queue.append(_Outgoing(message, arrival_s))
        self._ready.set()
        return True

    async def put(self, message: Outgoing, arrival_s: float = math.nan) -> None:
        """Queue a message, waiting for room (back-pressure instead of drops)."""
        self._check_message(message, arrival_s)
        queue, size = self._queue_of(_kind_of(message))
        while len(queue) >= size:
            self._room.clear()
            await self._room.wait()
            self._check_message(message, arrival_s)
        queue.append(_Outgoing(message, arrival_s))
        self._ready.set()

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
        try:
            await publish_acknowledged(
                client,
                self.topics[TopicKind.STATUS],
                self._status_payload(state),
                qos=1,
                retain=True,
            )
        except PublishRefusedError as refused:
            self._count_refusal(TopicKind.STATUS, refused)
            return
        self.stats.published[TopicKind.STATUS] += 1

    def _count_refusal(self, kind: TopicKind, refused: PublishRefusedError) -> None:
        """A message the broker refused is lost: counted, with the broker's reason."""
        self.stats.refused[kind] += 1
        self.stats.refusal = refused.reason

    async def _next(self, client: aiomqtt.Client) -> _Outgoing | None:
        """The next message to publish, beats first; None once stopping and both are empty.

        Raises:
            aiomqtt.MqttError: The link dropped while there was nothing to publish.
        """
        lost = link_lost(client)
        while True:
            for queue in (self._reliable, self._display):
                if queue:
                    item = queue.popleft()
                    self._room.set()
                    return item
            if self._stopping:
                return None
            if lost.done():
                if not lost.cancelled():
                    lost.exception()  # retrieved: the reconnection reports it
                msg = "the connection was lost"
                raise aiomqtt.MqttError(msg)
            self._ready.clear()
            await self._ready.wait()  # a lost link sets it too (_wake_on_loss)

    def _wake_on_loss(self, _lost: asyncio.Future[None]) -> None:
        """An idle publisher notices a lost link at once, not at its next message."""
        self._ready.set()

    async def _pump(self, client: aiomqtt.Client) -> None:
        """Publish until stopping with empty queues; a beat not acknowledged is kept for retry."""
        lost = link_lost(client)
        lost.add_done_callback(self._wake_on_loss)
        try:
            await self._publish_queued(client)
        finally:
            lost.remove_done_callback(self._wake_on_loss)

    async def _publish_queued(self, client: aiomqtt.Client) -> None:
        while True:
            if self._in_flight is None:
                try:
                    self._in_flight = await self._next(client)
                except aiomqtt.MqttError:
                    self._requeue_recent()
                    raise
                if self._in_flight is None:
                    return
            item = self._in_flight
            kind = _kind_of(item.message)
            try:
                await self._publish(client, item)
            except PublishRefusedError as refused:  # lost: the same terms would be refused again
                self._in_flight = None
                self._count_refusal(kind, refused)
                continue
            except aiomqtt.MqttError:
                self._in_flight = None
                if kind is TopicKind.SAMPLES:  # QoS 0, display: not worth a retry
                    self.stats.dropped[kind] += 1
                else:  # the broker may have it or not: publish it again on the next link
                    self._reliable.appendleft(item)
                    self.stats.republished += 1
                self._requeue_recent()
                raise
            self._in_flight = None
            if kind is TopicKind.BEATS:
                self._remember_acknowledged(item)

    def _remember_acknowledged(self, item: _Outgoing) -> None:
        """Keep an acknowledged beat for :data:`RESEND_WINDOW_S`, and no older ones.

        A beat holds its window and features (kilobytes): kept up to the buffer's size, a
        stream's acknowledged beats grew to 20 MB in half an hour.
        """
        now_s = self.clock()
        self._acknowledged.append((now_s, item))
        while self._acknowledged[0][0] < now_s - RESEND_WINDOW_S:
            self._acknowledged.popleft()

    def _requeue_recent(self) -> None:
        """The link dropped: queue again, first, the beats acknowledged in the resend window."""
        since_s = self.clock() - RESEND_WINDOW_S
        recent = [
            replace(item, again=True)
            for acknowledged_s, item in self._acknowledged
            if acknowledged_s >= since_s
        ]
        self._acknowledged.clear()
        self._reliable.extendleft(reversed(recent))  # may exceed the buffer's size for a while
        self.stats.republished += len(recent)

    async def _publish(self, client: aiomqtt.Client, item: _Outgoing) -> None:
        message = item.message
        kind = _kind_of(message)
        compute_ms = math.nan
        if isinstance(message, PendingBeat):
            compute_ms = (self.clock() - item.arrival_s) * 1000.0
            payload = wire.encode(message.stamped(compute_ms, self.wall_clock()))
        else:
            if isinstance(message, StatusMessage):  # an update (e.g. ingest counters): the
                self.status = message  # reconnect announcement and the offline status carry it
            payload = wire.encode(message)
        await publish_acknowledged(
            client, self.topics[kind], payload, qos=kind.qos, retain=kind.retain
        )
        self.stats.published[kind] += 1
        if kind is TopicKind.BEATS:
            self.stats.compute.add(compute_ms)
