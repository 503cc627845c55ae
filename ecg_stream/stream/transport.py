"""The one MQTT transport below the stream and viewer edges: clients, reconnects, subscriptions.

Every MQTT connection ecg-stream makes is built here: :func:`make_client` (TLS with the system's
CAs for ``mqtts://``, credentials as :class:`~ecg_stream.config.MqttConfig` read them from the
environment, no Nagle), :class:`ReconnectingSession` (keeps one connection up for a piece of
work, reconnecting with capped, jittered exponential backoff) and :func:`subscribe` /
:func:`payloads` (the subscribe loop). The publisher, the reference subscriber and the
monitor's subscriber use it. It imports only L0, aiomqtt and tenacity: the viewer may import
this module, and nothing else of ``stream/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import aiomqtt
import tenacity

from ecg_stream.config import Backoff, MqttConfig

T = TypeVar("T")

ClientHook = Callable[[aiomqtt.Client], Awaitable[None]]


def make_client(
    config: MqttConfig, *, identifier: str, will: aiomqtt.Will | None = None
) -> aiomqtt.Client:
    """An aiomqtt client for ``config`` (TLS with the system's CAs for ``mqtts://``)."""
    return aiomqtt.Client(
        config.host,
        config.port,
        username=config.username,
        password=config.password,
        identifier=identifier,
        will=will,
        clean_session=True,
        keepalive=config.keepalive_s,
        timeout=config.connect_timeout_s,
        tls_context=ssl.create_default_context() if config.tls else None,
        logger=logging.getLogger("ecg_stream.mqtt"),
        # No Nagle: a QoS 1 beat right after a QoS 0 samples message would otherwise wait for
        # the TCP ack of the latter (delayed ack: up to 40 ms) before leaving.
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )


def unique_identifier(prefix: str) -> str:
    """A unique MQTT client id: ``prefix``, then a random part (two processes may share one)."""
    return f"{prefix}-{secrets.token_hex(4)}"


def client_identifier(stream: str) -> str:
    """A unique MQTT client id naming the stream (random part: two processes may share one)."""
    return unique_identifier(f"ecg-stream-{stream}")


@dataclass(frozen=True, slots=True)
class Reconnect:
    """A reconnection a :class:`ReconnectingSession` is about to wait for.

    Args:
        error: Why the last attempt failed.
        delay_s: Wait before the next attempt, in s.
        while_connecting: Whether the attempt failed before the link was up (connecting, or the
            session's ``on_connect``) rather than by losing an established link.
        connected_before: Whether an earlier attempt got the link up.
    """

    error: aiomqtt.MqttError
    delay_s: float
    while_connecting: bool
    connected_before: bool


class ReconnectingSession:
    """Keep one MQTT connection up for a piece of work, reconnecting when it is lost.

    :meth:`run` connects a fresh client, awaits ``on_connect`` with it (subscribe, announce),
    then the work. When the broker cannot be reached or the link drops
    (:class:`aiomqtt.MqttError`), it waits a capped, jittered exponential delay (``backoff``;
    the count restarts once a link is up) and does it all again, until the work returns. A
    failure before the first link was up is raised instead, unless ``retry_unreachable``. Once
    the work has returned, a failed disconnect is ignored: nothing is left to lose.

    Args:
        config: Broker, credentials and TLS.
        client_prefix: Start of each connection's client id (a random part follows).
        backoff: Reconnect delays.
        rng: Randomness for the backoff jitter.
        will: Last will of every connection.
        retry_unreachable: Also retry when no link was ever up (default: raise the error).
        on_connect: Awaited with each connected client before the link counts as up.
        on_retry: Called before each wait.

    Attributes:
        connected: Whether a client is connected now.
        connections: Links that came up so far.
    """

    def __init__(
        self,
        config: MqttConfig,
        *,
        client_prefix: str,
        backoff: Backoff,
        rng: random.Random,
        will: aiomqtt.Will | None = None,
        retry_unreachable: bool = False,
        on_connect: ClientHook | None = None,
        on_retry: Callable[[Reconnect], None] | None = None,
    ) -> None:
        self.config, self.client_prefix, self.will = config, client_prefix, will
        self.backoff, self.rng = backoff, rng
        self.retry_unreachable = retry_unreachable
        self.on_connect, self.on_retry = on_connect, on_retry
        self.connected = False
        self.connections = 0
        self._failures = 0  # failed attempts since the last link was up
        self._connecting = False  # the current attempt has no link up yet

    async def run(self, work: Callable[[aiomqtt.Client], Awaitable[T]]) -> T:
        """Run ``work`` with a connected client, again on a new one after each lost link.

        Returns:
            What ``work`` returned.

        Raises:
            aiomqtt.MqttError: No link came up on the first attempt (unless
                ``retry_unreachable``).
        """
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(self._should_retry),
            wait=self._next_delay_s,
            before_sleep=self._report,
            sleep=asyncio.sleep,
            reraise=True,
        )
        result: T = await retrying(self._connect_and_run, work)
        return result

    async def _connect_and_run(self, work: Callable[[aiomqtt.Client], Awaitable[T]]) -> T:
        client = make_client(
            self.config, identifier=unique_identifier(self.client_prefix), will=self.will
        )
        self._connecting = True
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(client)
            self.connected = True
            try:
                if self.on_connect is not None:
                    await self.on_connect(client)
                self._connecting, self._failures = False, 0
                self.connections += 1
                result = await work(client)
            finally:
                self.connected = False
            disconnect = stack.pop_all()
        with contextlib.suppress(
            aiomqtt.MqttError
        ):  # the work is done: a lost goodbye loses nothing
            await disconnect.aclose()
        return result

    def _should_retry(self, error: BaseException) -> bool:
        if not isinstance(error, aiomqtt.MqttError):
            return False  # cancellation, or a bug: never retried
        return self.connections > 0 or self.retry_unreachable

    def _next_delay_s(self, _state: tenacity.RetryCallState) -> float:
        delay_s = self.backoff.delay_s(self._failures, self.rng)
        self._failures += 1
        return delay_s

    def _report(self, state: tenacity.RetryCallState) -> None:
        if self.on_retry is None:
            return
        assert state.outcome is not None  # a failed attempt precedes every wait
        error = state.outcome.exception()
        assert isinstance(error, aiomqtt.MqttError)  # the only retried error
        delay_s = state.upcoming_sleep
        self.on_retry(Reconnect(error, delay_s, self._connecting, self.connections > 0))


async def subscribe(client: aiomqtt.Client, topic_filters: Iterable[str]) -> None:
    """Subscribe ``client`` to each topic filter with QoS 1 (beats and status are QoS 1)."""
    for topic_filter in topic_filters:
        await client.subscribe(topic_filter, qos=1)


async def payloads(client: aiomqtt.Client) -> AsyncIterator[tuple[str, bytes]]:
    """Yield ``(topic, payload)`` of each message the client receives.

    Raises:
        aiomqtt.MqttError: The link was lost.
    """
    async for message in client.messages:
        yield message.topic.value, _as_bytes(message.payload)


def _as_bytes(payload: bytes | bytearray | str | float | None) -> bytes:
    """An aiomqtt payload as bytes (aiomqtt passes bytes; other types are for publishing)."""
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()
