"""The one MQTT transport below the stream and viewer edges: clients, reconnects, subscriptions.

Every MQTT connection ecg-stream makes is built here: :func:`make_client` (TLS with the system's
CAs or $ECG_STREAM_MQTT_CA_FILE's for ``mqtts://``, credentials as
:class:`~ecg_stream.config.MqttConfig` read them from the environment, no Nagle),
:func:`connect` (a refused login or an untrusted certificate becomes a
:class:`ConnectRefusedError` that says what to fix), :class:`ReconnectingSession` (keeps one
connection up for a piece of work, reconnecting with capped, jittered exponential backoff) and
:func:`subscribe` / :func:`payloads` (the subscribe loop). The publisher, the reference
subscriber and the monitor's subscriber use it. It imports only L0, aiomqtt and tenacity: the
viewer may import this module, and nothing else of ``stream/``.
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
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, TypeAlias, TypeVar

import aiomqtt
import tenacity
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ecg_stream.config import (
    MQTT_CA_FILE_ENV,
    MQTT_PASSWORD_ENV,
    MQTT_PASSWORD_FILE_ENV,
    MQTT_USERNAME_ENV,
    Backoff,
    MqttConfig,
)

T = TypeVar("T")

Client: TypeAlias = aiomqtt.Client
"""An MQTT client, as the rest of the package names it (only mqtt/ imports aiomqtt)."""
MqttError: TypeAlias = aiomqtt.MqttError
"""What a lost or refused connection raises."""

ClientHook = Callable[[Client], Awaitable[None]]

MQTT_LOGGER = logging.getLogger("ecg_stream.mqtt")
"""paho's logger. Its errors ("failed to receive on socket") repeat what the caller reports in
one line, so without a logging configuration they are not printed (a NullHandler)."""
MQTT_LOGGER.addHandler(logging.NullHandler())

SESSION_EXPIRY_S = 3600
"""How long the broker keeps a persistent session after its client went away, in s (MQTT 5):
its subscriptions and the QoS 1 messages queued for it, up to the broker's limits."""

RECONNECT_BACKOFF = Backoff(initial_s=0.5, max_s=4.0)
"""Reconnect delays of live publishers and subscribers: a broker back after an outage is found
within 2-4 s (a longer ceiling lets one miss a broker that is up again, and its beats wait)."""

MQTT5_CONNECT_TIMEOUT_S = 2.0
"""Longest wait for the answer to an MQTT 5 CONNECT before trying MQTT 3.1.1: a 3.1.1-only
broker (amqtt) does not answer one at all."""

_REFUSED_LOGIN_CODES = {4, 5, 134, 135}
"""CONNACK codes of a refused login: MQTT 3.1.1 (bad user name or password, not authorised)
and MQTT 5 (0x86, 0x87)."""


class PublishRefusedError(Exception):
    """The broker acknowledged a QoS 1 message with a failure code (MQTT 5 PUBACK >= 0x80).

    The message is lost: publishing it again on the same terms would be refused again (for
    example an ACL that does not let these credentials write the topic).

    Args:
        topic: The topic of the refused message.
        reason: The broker's reason, e.g. ``Not authorized``.
    """

    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"the broker refused a message on {topic}: {reason}")
        self.topic, self.reason = topic, reason


class _RefusalAwareClient(aiomqtt.Client):
    """An aiomqtt client that keeps the reason of each refused publish, in order.

    aiomqtt drops the PUBACK's reason code; this keeps it for :func:`publish_acknowledged`,
    which publishes one message at a time per client.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refusals: list[str] = []

    def _on_publish(
        self,
        client: Any,
        userdata: Any,
        mid: int,
        reason_code: Any,
        properties: Any,
    ) -> None:
        if getattr(reason_code, "is_failure", False):
            self.refusals.append(str(reason_code))
        super()._on_publish(client, userdata, mid, reason_code, properties)


class ConnectRefusedError(aiomqtt.MqttError):
    """The broker was reached but the connection was refused: its login or its TLS certificate.

    Trying again does not help; the message says what to change.
    """


def explain_connect_error(config: MqttConfig, error: aiomqtt.MqttError) -> aiomqtt.MqttError:
    """Explain a failed connection: a refused login or TLS failure says what to fix.

    Returns a :class:`ConnectRefusedError` when the cause is the login or TLS, and ``error``
    itself otherwise (unreachable, timeout). The message never holds the password.
    """
    code = getattr(error, "rc", None)
    if isinstance(error, aiomqtt.MqttCodeError) and getattr(code, "value", code) in (
        _REFUSED_LOGIN_CODES
    ):
        if config.username is None:
            fix = (
                f"it needs a user name and password: set ${MQTT_USERNAME_ENV} and "
                f"${MQTT_PASSWORD_ENV} (or ${MQTT_PASSWORD_FILE_ENV})"
            )
        else:
            fix = (
                f"check ${MQTT_USERNAME_ENV} and the password (${MQTT_PASSWORD_ENV} or "
                f"${MQTT_PASSWORD_FILE_ENV}), and the broker's ACL"
            )
        return ConnectRefusedError(f"the broker refused the login ({error}): {fix}")
    cause = error.__cause__ or error.__context__  # aiomqtt raises its error `from None`
    if isinstance(cause, ssl.SSLCertVerificationError):
        reason = cause.verify_message or str(cause)
        if "mismatch" in reason.lower():
            fix = f"connect by a name the certificate holds, not {config.host!r}"
        else:
            fix = f"set ${MQTT_CA_FILE_ENV} to the PEM file of the CA that signed it"
        return ConnectRefusedError(f"the broker's TLS certificate is not trusted ({reason}): {fix}")
    if isinstance(cause, ssl.SSLError):
        reason = " ".join(str(cause).split())
        return ConnectRefusedError(
            f"the TLS handshake failed ({reason}): is {config.port} a TLS listener? (mqtts:// "
            "connects with TLS, mqtt:// without)"
        )
    return error


async def connect(
    stack: contextlib.AsyncExitStack, client: aiomqtt.Client, config: MqttConfig
) -> None:
    """Connect ``client`` inside ``stack``.

    Raises:
        ConnectRefusedError: The broker refused the login or its certificate is not trusted.
        aiomqtt.MqttError: The broker cannot be reached.
    """
    try:
        await stack.enter_async_context(client)
    except aiomqtt.MqttError as error:
        # aiomqtt leaves the socket of an unanswered CONNECT open (amqtt never answers an
        # MQTT 5 one): close it, or it leaks until the client is collected
        client._client._sock_close()  # private: aiomqtt 2.x has no public way
        explained = explain_connect_error(config, error)
        if explained is error:
            raise
        raise explained from None  # the cause holds nothing more; a traceback stays short


class Connected(NamedTuple):
    """A client :func:`connect_session` connected.

    Args:
        client: The connected client.
        mqtt5: Whether it speaks MQTT 5 (False for a 3.1.1 broker).
        node: The index of the node it reached in ``config.nodes``.
    """

    client: aiomqtt.Client
    mqtt5: bool
    node: int


async def connect_session(
    stack: contextlib.AsyncExitStack,
    config: MqttConfig,
    *,
    identifier: str,
    will: aiomqtt.Will | None = None,
    persistent: bool = False,
    probe_mqtt5: bool = True,
    session_expiry_s: int = SESSION_EXPIRY_S,
    first_node: int = 0,
) -> Connected:
    """Connect a client inside ``stack``, trying the nodes in turn from ``first_node``.

    A persistent client falls back to MQTT 3.1.1 if need be: with ``persistent``,
    ``config.mqtt5`` and ``probe_mqtt5`` (no link was up yet), an MQTT 5 CONNECT that gets no
    answer within :data:`MQTT5_CONNECT_TIMEOUT_S`, or a refusal of the protocol version, is
    followed by an MQTT 3.1.1 one.

    Raises:
        ConnectRefusedError: The broker refused the login or its certificate is not trusted
            (the other nodes are not tried: they would refuse it too).
        aiomqtt.MqttError: No node can be reached (the last node's error).
    """
    options: dict[str, Any] = {
        "identifier": identifier,
        "will": will,
        "persistent": persistent,
        "probe_mqtt5": probe_mqtt5,
        "session_expiry_s": session_expiry_s,
    }
    count = len(config.nodes)
    *others, last = [(first_node + offset) % count for offset in range(count)]
    for node in others:
        try:
            return Connected(*await _connect_node(stack, config.node(node), **options), node)
        except ConnectRefusedError:
            raise
        except aiomqtt.MqttError:
            continue  # the next node
    return Connected(*await _connect_node(stack, config.node(last), **options), last)


async def _connect_node(
    stack: contextlib.AsyncExitStack,
    config: MqttConfig,
    *,
    identifier: str,
    will: aiomqtt.Will | None,
    persistent: bool,
    probe_mqtt5: bool,
    session_expiry_s: int,
) -> tuple[aiomqtt.Client, bool]:
    """Connect a client to the one node of ``config`` (see :func:`connect_session`)."""
    mqtt5 = persistent and config.mqtt5
    probing = mqtt5 and probe_mqtt5
    if probing and not config.tls and await answers_mqtt5(config) is False:
        mqtt5 = probing = False  # a 3.1.1-only broker (amqtt): no 2 s wait for its silence
        config = replace(config, mqtt5=False)
    first = config
    if probing:  # a 3.1.1-only broker never answers an MQTT 5 CONNECT: do not wait long
        timeout_s = min(config.connect_timeout_s, MQTT5_CONNECT_TIMEOUT_S)
        first = replace(config, connect_timeout_s=timeout_s)
    options: dict[str, Any] = {
        "will": will,
        "persistent": persistent,
        "session_expiry_s": session_expiry_s,
    }
    client = make_client(first, identifier=identifier, **options)
    try:
        await connect(stack, client, config)
    except ConnectRefusedError:
        raise
    except aiomqtt.MqttError as error:
        if not (probing and _unanswered_mqtt5(error)):
            raise
        mqtt5 = False
        older = replace(config, mqtt5=False)
        client = make_client(older, identifier=identifier, **options)
        await connect(stack, client, config)
    return client, mqtt5 if persistent else config.mqtt5


_MQTT5_PROBE_CONNECT = bytes(
    [0x10, 14, 0x00, 0x04, *b"MQTT", 5, 0x02, 0x00, 0x0A, 0x00, 0x00, 0x01, *b"p"]
)
"""An MQTT 5 CONNECT: clean start, keep-alive 10 s, no properties, client id ``p``."""
_DISCONNECT = bytes([0xE0, 0x00])


async def answers_mqtt5(config: MqttConfig, timeout_s: float = 1.0) -> bool | None:
    """Whether a plain-TCP broker answers an MQTT 5 CONNECT in MQTT 5 (its CONNACK says).

    False for a 3.1.1-only broker, which answers in 3.1.1 or closes the connection (amqtt);
    None when unknown (unreachable, or no answer within ``timeout_s``). The probe leaves no
    session behind (clean start, no expiry) and says goodbye.
    """
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(config.host, config.port)
            try:
                writer.write(_MQTT5_PROBE_CONNECT)
                await writer.drain()
                header = await reader.read(2)
                if len(header) == 2 and header[0] == 0x20 and header[1] >= 3:
                    writer.write(_DISCONNECT)
                    await writer.drain()
                    return True
                return False  # 3.1.1's CONNACK is 2 bytes long; amqtt just closes
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError):
        return None


def make_client(
    config: MqttConfig,
    *,
    identifier: str,
    will: aiomqtt.Will | None = None,
    persistent: bool = False,
    session_expiry_s: int = SESSION_EXPIRY_S,
) -> aiomqtt.Client:
    """An aiomqtt client for ``config`` (TLS with the system's CAs for ``mqtts://``).

    Args:
        config: Broker, credentials, TLS and protocol.
        identifier: MQTT client id; a persistent session belongs to it.
        will: Last will.
        persistent: Resume the broker's session of ``identifier`` (subscriptions, queued QoS 1
            messages) instead of starting clean: MQTT 5 with clean start off and a session
            expiry interval, or MQTT 3.1.1 without ``clean_session`` when not ``config.mqtt5``.
        session_expiry_s: How long the broker keeps the session after a disconnection, in s.
    """
    session: dict[str, Any] = {"clean_session": True}
    if persistent and config.mqtt5:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = session_expiry_s
        session = {
            "protocol": aiomqtt.ProtocolVersion.V5,
            "clean_start": False,
            "properties": properties,
        }
    elif persistent:
        session = {"clean_session": False}
    return _RefusalAwareClient(
        config.host,
        config.port,
        username=config.username,
        password=config.password,
        identifier=identifier,
        will=will,
        keepalive=config.keepalive_s,
        timeout=config.connect_timeout_s,
        **session,
        tls_context=config.tls_context(),
        logger=MQTT_LOGGER,
        # No Nagle: a QoS 1 beat right after a QoS 0 samples message would otherwise wait for
        # the TCP ack of the latter (delayed ack: up to 40 ms) before leaving.
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )


def link_lost(client: aiomqtt.Client) -> asyncio.Future[None]:
    """The future aiomqtt resolves when ``client``'s link ends (with the error if it was lost).

    aiomqtt 2.x keeps it private and never retrieves its error when nobody iterates messages
    (a publisher): :func:`publish_acknowledged` and :class:`ReconnectingSession` do.
    """
    lost: asyncio.Future[None] = client._disconnected  # private: no public handle
    return lost


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a done future's error as seen (no "Future exception was never retrieved")."""
    if future.done() and not future.cancelled():
        future.exception()


async def publish_acknowledged(
    client: aiomqtt.Client, topic: str, payload: bytes, *, qos: int, retain: bool = False
) -> None:
    """Publish and wait for the broker's acknowledgement (QoS 1), or for the link to drop.

    A QoS 0 message is handed to the socket and not waited for.

    aiomqtt waits for a PUBACK until its timeout even when the link is already gone; this
    returns as soon as either happens, so a lost link is noticed (and the message retried on
    the next one) at once.

    Raises:
        PublishRefusedError: The broker acknowledged the message with a failure code: lost.
        aiomqtt.MqttError: The link ended before the message was acknowledged: the broker
            may or may not have it.
    """
    lost = link_lost(client)
    if lost.done():
        _retrieve(lost)
        msg = "the connection was lost before publishing"
        raise aiomqtt.MqttError(msg)
    if qos == 0:  # nothing to wait for: no task, no race with the link (the display path)
        await client.publish(topic, payload, qos=0, retain=retain)
        return
    publish = asyncio.ensure_future(client.publish(topic, payload, qos=qos, retain=retain))
    try:
        await asyncio.wait((publish, lost), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not publish.done():
            publish.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await publish
    _retrieve(lost)
    if not publish.cancelled():
        error = publish.exception()
        if error is not None:
            raise error
        refusals = getattr(client, "refusals", [])
        if refusals:
            reason = refusals.pop(0)
            refusals.clear()  # one message at a time: nothing else was in flight
            raise PublishRefusedError(topic, reason)
        return
    msg = "the connection was lost before the broker acknowledged the message"
    raise aiomqtt.MqttError(msg)


def _unanswered_mqtt5(error: aiomqtt.MqttError) -> bool:
    """Whether a failed MQTT 5 CONNECT looks like a broker that speaks only 3.1.1.

    amqtt does not answer it (a timeout); a 3.1.1 broker that answers refuses the protocol
    version (code 1; 0x84 in MQTT 5 terms).
    """
    code = getattr(error, "rc", None)
    return "timed out" in str(error) or getattr(code, "value", code) in (1, 132)


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
    the count restarts once a link is up) and does it all again, until the work returns; with
    several nodes (a cluster), each new attempt starts at the node after the last one. A
    failure before the first link was up is raised instead, unless ``retry_unreachable``. Once
    the work has returned, a failed disconnect is ignored: nothing is left to lose.

    Args:
        config: Broker, credentials and TLS.
        client_prefix: Start of the client id when ``client_id`` is not given (a random part
            follows).
        backoff: Reconnect delays.
        rng: Randomness for the backoff jitter.
        will: Last will of every connection.
        retry_unreachable: Also retry when no link was ever up (default: raise the error).
        on_connect: Awaited with each connected client before the link counts as up.
        on_retry: Called before each wait.
        client_id: The client id of every connection (default: ``client_prefix`` and a random
            part, chosen once: each reconnection resumes the same session).
        persistent: Resume the broker's session on each reconnection (see :func:`make_client`);
            with ``config.mqtt5``, a broker that does not answer MQTT 5 gets MQTT 3.1.1.

    Attributes:
        connected: Whether a client is connected now.
        connections: Links that came up so far.
        node: Index in ``config.nodes`` of the node of the current (or next) connection.
        mqtt5: Whether persistent connections speak MQTT 5 (False once the broker did not).
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
        client_id: str | None = None,
        persistent: bool = False,
    ) -> None:
        self.config, self.client_prefix, self.will = config, client_prefix, will
        self.client_id = client_id if client_id is not None else unique_identifier(client_prefix)
        self.persistent, self.mqtt5 = persistent, config.mqtt5
        self.backoff, self.rng = backoff, rng
        self.retry_unreachable = retry_unreachable
        self.on_connect, self.on_retry = on_connect, on_retry
        self.connected = False
        self.connections = 0
        self.node = 0
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

    async def _connect(self, stack: contextlib.AsyncExitStack) -> aiomqtt.Client:
        client, self.mqtt5, self.node = await connect_session(
            stack,
            replace(self.config, mqtt5=self.mqtt5),
            identifier=self.client_id,
            will=self.will,
            persistent=self.persistent,
            probe_mqtt5=self.connections == 0,
            first_node=self.node,
        )
        return client

    async def _connect_and_run(self, work: Callable[[aiomqtt.Client], Awaitable[T]]) -> T:
        self._connecting = True
        client: aiomqtt.Client | None = None
        try:
            async with contextlib.AsyncExitStack() as stack:
                client = await self._connect(stack)
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
        finally:
            if client is not None:  # a lost link's error, raised or not, has been seen
                _retrieve(link_lost(client))
        with contextlib.suppress(
            aiomqtt.MqttError
        ):  # the work is done: a lost goodbye loses nothing
            await disconnect.aclose()
        _retrieve(link_lost(client))  # the goodbye's own error, if any
        return result

    def _should_retry(self, error: BaseException) -> bool:
        if not isinstance(error, aiomqtt.MqttError):
            return False  # cancellation, or a bug: never retried
        return self.connections > 0 or self.retry_unreachable

    def _next_delay_s(self, _state: tenacity.RetryCallState) -> float:
        delay_s = self.backoff.delay_s(self._failures, self.rng)
        self._failures += 1
        self.node = (self.node + 1) % len(self.config.nodes)  # a cluster: the next node
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
