"""A reference subscriber: receive, validate and print what streams publish.

:class:`WireSubscriber` is the smallest correct consumer of the wire contract: it subscribes to
one stream's or every stream's topics, decodes each payload with :mod:`ecg_stream.wire`, and
reports and skips a malformed one instead of failing. ``ecg-stream subscribe`` prints what it
receives; a user's own service can start from the same few lines::

    async with WireSubscriber(MqttConfig.from_url("mqtt://localhost:1883")) as subscriber:
        async for topic, message in subscriber.messages():
            if isinstance(message, BeatMessage):
                store(message)

For a pool of consumers sharing the work, pass ``shared_group``: the subscription becomes
``$share/<group>/ecg/+/beats`` and the broker (MQTT 5 brokers and mosquitto >= 2) hands each
message to one member of the group.

Beats are delivered at least once: the subscriber keeps a persistent session (MQTT 5, clean
start off, a session expiry; with ``client_id`` also across restarts of the process), so the
broker queues what is published while it is away, and it drops a beat delivered twice
(:class:`BeatDeduplicator`), counting it in ``duplicates``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from enum import Enum
from types import TracebackType

import aiomqtt
import msgspec

from ecg_stream import wire
from ecg_stream.config import Backoff, MqttConfig
from ecg_stream.errors import BrokerError, ConfigError, PayloadError
from ecg_stream.mqtt.transport import (
    RECONNECT_BACKOFF,
    ConnectRefusedError,
    Reconnect,
    ReconnectingSession,
    connect_session,
    payloads,
    subscribe,
    unique_identifier,
)
from ecg_stream.wire import (
    BeatMessage,
    EventMessage,
    SamplesMessage,
    StatusMessage,
    TopicKind,
    WireMessage,
    encode,
)

logger = logging.getLogger(__name__)

CLIENT_PREFIX = "ecg-stream-sub"
"""Client ids of subscribers start with this (a random part follows) unless one is given."""

MessageHandler = Callable[[str, WireMessage], bool | None]
"""Takes each valid, new message; returns True to stop receiving."""

DEDUPLICATION_CAPACITY = 65_536
"""Beat identities a :class:`BeatDeduplicator` remembers: hours of beats of dozens of streams."""


class BeatDeduplicator:
    """Recognise a beat delivered again (beats are delivered at least once), in bounded memory.

    A beat is identified by its stream and ``chain_sample``, within one run of the stream: a
    redelivery (the broker's, after a reconnection, or the publisher's own re-send of a beat
    whose acknowledgement was lost) repeats ``r_wall_time`` too, while a stream started again
    (its ``chain_sample`` counting from 0 once more) has other wall times.

    Args:
        capacity: Most recent beat identities remembered.

    Attributes:
        duplicates: Beats recognised as delivered before.
    """

    def __init__(self, capacity: int = DEDUPLICATION_CAPACITY) -> None:
        if capacity < 1:
            msg = f"capacity={capacity} must be >= 1 (beat identities remembered)"
            raise ConfigError(msg)
        self.capacity = capacity
        self.reset()

    def reset(self) -> None:
        """Forget every beat seen."""
        self.duplicates = 0
        self._seen: OrderedDict[tuple[str, int, float], None] = OrderedDict()

    def is_new(self, message: BeatMessage) -> bool:
        """Whether ``message`` is a beat not seen before; remembers it (counts it if not)."""
        key = (message.stream, message.chain_sample, message.r_wall_time)
        if key in self._seen:
            self.duplicates += 1
            return False
        self._seen[key] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True


class SubscriberState(Enum):
    """Lifecycle of a :class:`WireSubscriber`."""

    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class WireSubscriber:
    """Subscribe to ecg-stream topics and yield validated messages; an async context manager.

    Args:
        config: Broker and topic prefix.
        stream: One stream id, or None for every stream.
        kinds: Which topics to receive.
        shared_group: Join the shared subscription ``$share/<group>/...`` (a consumer pool).
        on_malformed: Called with the topic and the error of each malformed message (default:
            a logged warning); the message is skipped either way.
        client_id: MQTT client id, the name of the broker's session for this subscriber: give
            the same one to a restarted subscriber and it receives what was published while it
            was away (up to the broker's limits and :data:`~ecg_stream.mqtt.transport.\
SESSION_EXPIRY_S`). Default: ``ecg-stream-sub-<random>``, kept across reconnections.
        backoff: Reconnect delays of :meth:`follow`.

    Attributes:
        state: Lifecycle state.
        received: Valid messages yielded (duplicates not counted).
        malformed: Malformed messages skipped.
        duplicates: Beats delivered again (after a reconnection) and skipped.
        reconnects: Connections after the first (:meth:`follow`).
    """

    def __init__(
        self,
        config: MqttConfig,
        *,
        stream: str | None = None,
        kinds: Iterable[TopicKind] = (TopicKind.BEATS, TopicKind.STATUS),
        shared_group: str | None = None,
        on_malformed: Callable[[str, PayloadError], None] | None = None,
        client_id: str | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.config, self.stream, self.kinds = config, stream, tuple(kinds)
        self.client_id = client_id if client_id is not None else unique_identifier(CLIENT_PREFIX)
        self.backoff = backoff or RECONNECT_BACKOFF
        self.shared_group = shared_group
        self.on_malformed = on_malformed or _log_malformed
        self.filters = [
            wire.subscription_for(config.topic_prefix, stream, kind) for kind in self.kinds
        ]
        if shared_group is not None:
            wire.check_stream_id(shared_group)  # one topic level, like a stream id
            self.filters = [f"$share/{shared_group}/{topic}" for topic in self.filters]
        self.state = SubscriberState.NEW
        self.received = 0
        self.malformed = 0
        self.reconnects = 0
        self._beats = BeatDeduplicator()
        self._client: aiomqtt.Client | None = None
        self._connection = contextlib.AsyncExitStack()  # the client, once connected

    async def __aenter__(self) -> WireSubscriber:
        if self.state is not SubscriberState.NEW:
            msg = f"cannot enter a subscriber that is {self.state.value}: create a new one"
            raise RuntimeError(msg)
        try:
            client, _mqtt5, _node = await connect_session(
                self._connection, self.config, identifier=self.client_id, persistent=True
            )
        except aiomqtt.MqttError as error:
            self.state = SubscriberState.CLOSED
            raise BrokerError(_unreachable(self.config, error)) from error
        self._client = client
        self.state = SubscriberState.OPEN
        try:
            await subscribe(client, self.filters)
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.state is not SubscriberState.OPEN:
            return
        await self._close()

    @property
    def duplicates(self) -> int:
        """Beats delivered again and skipped."""
        return self._beats.duplicates

    async def follow(
        self,
        handle: MessageHandler,
        *,
        on_connect: Callable[[], Awaitable[None] | None] | None = None,
        on_retry: Callable[[Reconnect], None] | None = None,
    ) -> None:
        """Give each valid, new message to ``handle`` until it returns True; survive the broker.

        Not entered: each connection resumes this subscriber's session, subscribes again and
        receives what the broker queued meanwhile; when the broker goes away it reconnects
        with capped, jittered backoff (``on_retry`` hears of each wait).

        Args:
            handle: Takes ``(topic, message)``; True stops.
            on_connect: Called after each (re)subscription.
            on_retry: Called before each reconnection wait.

        Raises:
            BrokerError: The broker cannot be reached at the first connection.
            RuntimeError: The subscriber is entered (its connection holds the same client id).
        """
        if self.state is not SubscriberState.NEW:
            msg = f"cannot follow with a subscriber that is {self.state.value}: create a new one"
            raise RuntimeError(msg)

        async def subscribed(client: aiomqtt.Client) -> None:
            await subscribe(client, self.filters)
            if session.connections:
                self.reconnects += 1
            if on_connect is not None and (pending := on_connect()) is not None:
                await pending

        async def listen(client: aiomqtt.Client) -> None:
            async for topic, message in self.decode_each(payloads(client)):
                if handle(topic, message):
                    return

        session = ReconnectingSession(
            self.config,
            client_prefix=CLIENT_PREFIX,
            client_id=self.client_id,
            persistent=True,
            backoff=self.backoff,
            rng=random.Random(),  # jitter, not cryptography
            on_connect=subscribed,
            on_retry=on_retry,
        )
        try:
            await session.run(listen)
        except aiomqtt.MqttError as error:  # the first connection failed: not retried
            raise BrokerError(_unreachable(self.config, error)) from error

    async def _close(self) -> None:
        self.state = SubscriberState.CLOSED
        with contextlib.suppress(aiomqtt.MqttError):  # lost already: nothing left to close
            await self._connection.aclose()

    async def messages(self) -> AsyncIterator[tuple[str, WireMessage]]:
        """Yield ``(topic, message)`` for each valid message; skip and report malformed ones.

        Raises:
            BrokerError: The connection to the broker was lost.
        """
        if self.state is not SubscriberState.OPEN or self._client is None:
            msg = f"cannot read messages from a subscriber that is {self.state.value}"
            raise RuntimeError(msg)
        try:
            async for topic, message in self.decode_each(payloads(self._client)):
                yield topic, message
        except aiomqtt.MqttError as error:
            raise BrokerError(_lost(self.config, error)) from error

    async def decode_each(
        self, received: AsyncIterator[tuple[str, bytes]]
    ) -> AsyncIterator[tuple[str, WireMessage]]:
        """Yield ``(topic, message)`` for each valid ``(topic, payload)``; report malformed ones.

        :meth:`messages` runs it on this subscriber's own connection; :func:`run_subscribe`
        on each connection of a :class:`~ecg_stream.mqtt.transport.ReconnectingSession`.
        A beat delivered again is skipped and counted in :attr:`duplicates`.
        """
        async for topic, payload in received:
            try:
                message = wire.decode(topic, payload)
            except PayloadError as error:
                self.malformed += 1
                self.on_malformed(topic, error)
                continue
            if isinstance(message, BeatMessage) and not self._beats.is_new(message):
                continue  # delivered again after a reconnection: counted in duplicates
            self.received += 1
            yield topic, message


def _unreachable(config: MqttConfig, error: aiomqtt.MqttError) -> str:
    if isinstance(error, ConnectRefusedError):  # it answered: starting one is no fix
        return f"cannot connect to the MQTT broker at {config.url}: {error}"
    return (
        f"cannot connect to the MQTT broker at {config.url} ({error}); "
        "check --broker, or start one (mosquitto, or `ecg-stream broker`)"
    )


def _lost(config: MqttConfig, error: aiomqtt.MqttError) -> str:
    return f"lost the MQTT broker at {config.url} ({error})"


def _log_malformed(topic: str, error: PayloadError) -> None:
    logger.warning("skipped a malformed message: %s", error)  # the error starts with the topic


def json_line(topic: str, message: WireMessage) -> str:
    """A message as one JSON object: ``topic``, then the fields of its wire payload."""
    payload: dict[str, object] = msgspec.json.decode(encode(message))
    return msgspec.json.encode({"topic": topic, **payload}).decode()


def format_message(message: WireMessage, received_at: float) -> str:
    """One terminal line for a received message.

    Args:
        message: The message.
        received_at: Unix time it was received, in s (for the end-to-end latency).
    """
    if isinstance(message, BeatMessage):
        hr = "  --  " if message.hr_bpm is None else f"{message.hr_bpm:5.1f}"
        # End to end: compute latency + broker hop (clocks of two machines if remote).
        e2e_ms = message.compute_ms + (received_at - message.published_at) * 1000.0
        return (
            f"{message.stream:>8}  {message.time_s:9.3f} s  {message.label.value} "
            f"{message.confidence:4.2f}  HR {hr} bpm  compute {message.compute_ms:5.2f} ms  "
            f"end-to-end {e2e_ms:6.2f} ms"
        )
    if isinstance(message, StatusMessage):
        classes = "".join(cls.value for cls in message.classes)
        rhythm = "" if message.rhythm is None else f", rhythm {message.rhythm.value}"
        error = "" if message.error is None else f"; STOPPED: {message.error}"
        return (
            f"{message.stream:>8}  status {message.state.value}: record {message.record}, "
            f"{message.fs_hz:g} Hz, model {message.model} ({classes}){rhythm}{error}"
        )
    if isinstance(message, EventMessage):
        rate = "" if message.rate_bpm is None else f" at {message.rate_bpm:.0f} bpm"
        detail = "" if message.detail is None else f" ({message.detail})"
        return (
            f"{message.stream:>8}  {message.time_s:9.3f} s  {message.rhythm.value} "
            f"{message.state.value}: {message.beats} beats{rate}{detail}, decided "
            f"{message.delay_s:.1f} s later"
        )
    assert isinstance(message, SamplesMessage)  # the union's last member
    return (
        f"{message.stream:>8}  samples {message.start_index}..{message.end_index} "
        f"at {message.fs_hz:g} Hz"
    )


async def run_subscribe(
    config: MqttConfig,
    say: Callable[[str], None],
    *,
    stream: str | None = None,
    samples: bool = False,
    shared_group: str | None = None,
    client_id: str | None = None,
    limit: int | None = None,
    json_lines: bool = False,
    note: Callable[[str], None] | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> int:
    """Print received messages until cancelled (Ctrl-C) or ``limit``; ``ecg-stream subscribe``.

    Reconnects with backoff when the broker goes away after the first connection, resuming its
    persistent session; a beat delivered twice is printed once.

    Args:
        config: Broker and topic prefix.
        say: Where lines go.
        stream: One stream id, or None for every stream.
        samples: Also print one line per samples message.
        shared_group: Join a shared subscription group.
        client_id: MQTT client id (its session outlives this process); default a random one.
        limit: Stop after this many valid messages.
        json_lines: Print each message as one JSON object: its wire payload and its ``topic``.
        note: Where the other lines go (subscribed, reconnecting, skipped); default ``say``
            (``subscribe --json`` sends them to stderr, so stdout holds JSON only).
        wall_clock: Unix time, in s.

    Returns:
        The number of valid messages received.

    Raises:
        BrokerError: The broker cannot be reached at start.
    """
    kinds = [TopicKind.BEATS, TopicKind.STATUS, TopicKind.EVENTS]
    kinds += [TopicKind.SAMPLES] if samples else []
    where = "every stream" if stream is None else f"stream {stream}"
    subscriber = WireSubscriber(
        config,
        stream=stream,
        kinds=kinds,
        shared_group=shared_group,
        client_id=client_id,
        on_malformed=lambda topic, error: tell(
            f"skipped malformed message: {error}"  # the error starts with the topic
        ),
    )
    received = 0
    tell = note or say

    def announce() -> None:
        tell(f"subscribed to {where} at {config.url} ({', '.join(subscriber.filters)})")

    def show(topic: str, message: WireMessage) -> bool:
        nonlocal received
        say(json_line(topic, message) if json_lines else format_message(message, wall_clock()))
        received += 1
        return limit is not None and received >= limit

    def report(retry: Reconnect) -> None:
        problem = (_unreachable if retry.while_connecting else _lost)(config, retry.error)
        tell(f"{problem}; reconnecting in {retry.delay_s:.1f} s")

    try:
        await subscriber.follow(show, on_connect=announce, on_retry=report)
    finally:
        if subscriber.duplicates:
            tell(f"{subscriber.duplicates} beats delivered twice (after reconnections), shown once")
    return received
