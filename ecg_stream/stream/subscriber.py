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
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable
from enum import Enum
from types import TracebackType
from typing import Any

import aiomqtt

from ecg_stream import wire
from ecg_stream.config import Backoff, MqttConfig
from ecg_stream.errors import BrokerError, PayloadError
from ecg_stream.stream.transport import (
    Reconnect,
    ReconnectingSession,
    make_client,
    payloads,
    subscribe,
    unique_identifier,
)
from ecg_stream.wire import BeatMessage, SamplesMessage, StatusMessage, TopicKind, WireMessage

logger = logging.getLogger(__name__)

CLIENT_PREFIX = "ecg-stream-sub"
"""Client ids of subscribers start with this (a random part follows)."""


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

    Attributes:
        state: Lifecycle state.
        received: Valid messages yielded.
        malformed: Malformed messages skipped.
    """

    def __init__(
        self,
        config: MqttConfig,
        *,
        stream: str | None = None,
        kinds: Iterable[TopicKind] = (TopicKind.BEATS, TopicKind.STATUS),
        shared_group: str | None = None,
        on_malformed: Callable[[str, PayloadError], None] | None = None,
    ) -> None:
        self.config, self.stream, self.kinds = config, stream, tuple(kinds)
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
        self._client: aiomqtt.Client | None = None
        self._connection = contextlib.AsyncExitStack()  # the client, once connected

    async def __aenter__(self) -> WireSubscriber:
        if self.state is not SubscriberState.NEW:
            msg = f"cannot enter a subscriber that is {self.state.value}: create a new one"
            raise RuntimeError(msg)
        client = make_client(self.config, identifier=unique_identifier(CLIENT_PREFIX))
        try:
            await self._connection.enter_async_context(client)
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
        on each connection of a :class:`~ecg_stream.stream.transport.ReconnectingSession`.
        """
        async for topic, payload in received:
            try:
                message = wire.decode(topic, payload)
            except PayloadError as error:
                self.malformed += 1
                self.on_malformed(topic, error)
                continue
            self.received += 1
            yield topic, message


def _unreachable(config: MqttConfig, error: aiomqtt.MqttError) -> str:
    return (
        f"cannot connect to the MQTT broker at {config.url} ({error}); "
        "check --broker, or start one (mosquitto, or `ecg-stream broker`)"
    )


def _lost(config: MqttConfig, error: aiomqtt.MqttError) -> str:
    return f"lost the MQTT broker at {config.url} ({error})"


def _log_malformed(topic: str, error: PayloadError) -> None:
    logger.warning("skipped a malformed message on %s: %s", topic, error)


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
        return (
            f"{message.stream:>8}  status {message.state.value}: record {message.record}, "
            f"{message.fs_hz:g} Hz, model {message.model} ({classes})"
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
    limit: int | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> int:
    """Print received messages until cancelled (Ctrl-C) or ``limit``; ``ecg-stream subscribe``.

    Reconnects with backoff when the broker goes away after the first connection.

    Args:
        config: Broker and topic prefix.
        say: Where lines go.
        stream: One stream id, or None for every stream.
        samples: Also print one line per samples message.
        shared_group: Join a shared subscription group.
        limit: Stop after this many valid messages.
        wall_clock: Unix time, in s.

    Returns:
        The number of valid messages received.

    Raises:
        BrokerError: The broker cannot be reached at start.
    """
    kinds = [TopicKind.BEATS, TopicKind.STATUS] + ([TopicKind.SAMPLES] if samples else [])
    where = "every stream" if stream is None else f"stream {stream}"
    # Not entered: its filters and decoding serve each connection of the session.
    subscriber = WireSubscriber(
        config,
        stream=stream,
        kinds=kinds,
        shared_group=shared_group,
        on_malformed=lambda topic, error: say(f"skipped malformed message on {topic}: {error}"),
    )
    received = 0

    async def announce(client: aiomqtt.Client) -> None:
        await subscribe(client, subscriber.filters)
        say(f"subscribed to {where} at {config.url} ({', '.join(subscriber.filters)})")

    async def listen(client: aiomqtt.Client) -> int:
        nonlocal received
        async for _topic, message in subscriber.decode_each(payloads(client)):
            say(format_message(message, wall_clock()))
            received += 1
            if limit is not None and received >= limit:
                break
        return received

    def report(retry: Reconnect) -> None:
        problem = (_unreachable if retry.while_connecting else _lost)(config, retry.error)
        say(f"{problem}; reconnecting in {retry.delay_s:.1f} s")

    session = ReconnectingSession(
        config,
        client_prefix=CLIENT_PREFIX,
        backoff=Backoff(),
        rng=random.Random(),  # jitter, not cryptography
        on_connect=announce,
        on_retry=report,
    )
    try:
        return await session.run(listen)
    except aiomqtt.MqttError as error:  # the first connection failed: not retried
        raise BrokerError(_unreachable(config, error)) from error


def subscribe_main(config: MqttConfig, say: Callable[[str], None], **options: Any) -> int:
    """Run :func:`run_subscribe` until Ctrl-C, SIGTERM or its ``limit``; ``ecg-stream subscribe``.

    Returns:
        0 once stopped.
    """
    from ecg_stream.stream.runner import run_until_stopped

    run_until_stopped(run_subscribe(config, say, **options))
    return 0
