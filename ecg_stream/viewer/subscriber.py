"""MQTT subscriber for the monitor: aiomqtt in one worker thread, decoded messages in a queue.

The subscriber keeps one persistent MQTT session (one client id for its life, clean start off,
a session expiry), so beats published while the broker or the worker was away are delivered
when it is back; a beat delivered twice is dropped and counted. If the worker thread dies (a
bug), :meth:`Subscriber.revive` starts another on the same session.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from types import TracebackType

from ecg_stream.config import Backoff, MqttConfig
from ecg_stream.errors import ConfigError, PayloadError
from ecg_stream.mqtt.subscriber import BeatDeduplicator
from ecg_stream.mqtt.transport import (
    Client,
    Reconnect,
    ReconnectingSession,
    payloads,
    subscribe,
    unique_identifier,
)
from ecg_stream.viewer.background import BackgroundJob
from ecg_stream.wire import (
    BeatMessage,
    TopicKind,
    WireMessage,
    decode,
    subscription_for,
)

WallClock = Callable[[], float]


class BrokerState(Enum):
    """Connection state of the subscriber, as the status bar shows it."""

    IDLE = "not started"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    UNREACHABLE = "broker unreachable, retrying"
    RECONNECTING = "broker lost, reconnecting"
    FAILED = "subscriber failed (a bug: see the traceback in the terminal)"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class Received:
    """A decoded message and when it was received.

    Args:
        message: The decoded, validated message.
        receipt_wall_s: Wall-clock time of receipt, in s since the Unix epoch.
    """

    message: WireMessage
    receipt_wall_s: float


@dataclass(frozen=True, slots=True)
class SubscriberStatus:
    """A consistent snapshot of the subscriber's state and counters.

    Args:
        state: Connection state.
        broker: The broker's URL.
        received: Messages decoded and queued since start.
        malformed: Messages that failed validation (reported and skipped).
        dropped: Decoded messages dropped because the queue was full (oldest first).
        last_problem: The most recent malformed message or connection error, "" if none.
        retry_at_s: Wall-clock time of the next connection attempt (NaN unless waiting for one).
        duplicates: Beats delivered twice (after a reconnection) and dropped.
        restarts: Times the worker thread died and was started again.
    """

    state: BrokerState
    broker: str
    received: int
    malformed: int
    dropped: int
    last_problem: str
    retry_at_s: float
    duplicates: int = 0
    restarts: int = 0


class Subscriber:
    """Receive the wire topics of one or all streams in a worker thread, off the GUI thread.

    The thread runs an asyncio loop with one aiomqtt client; every message is decoded with
    :func:`ecg_stream.wire.decode` there, so the GUI only ever sees valid, typed messages.
    Decoded messages go to a bounded queue that :meth:`drain` empties; when it is full the
    oldest message is dropped and counted. A malformed message is counted, remembered in
    ``last_problem`` and skipped. When the broker cannot be reached or is lost, the thread
    retries with capped, jittered exponential backoff until :meth:`stop`.

    Args:
        config: Broker, credentials and topic prefix.
        stream: Stream id to follow, or None for every stream.
        queue_size: Most decoded messages held between two drains.
        backoff_s: First and largest reconnect delay, in s.
        wall_clock: Clock stamping receipt times, in s since the Unix epoch.
        rng: Source of the backoff jitter.
        client_id: MQTT client id, the name of the broker's session (default:
            ``ecg-monitor-<random>``, kept for the subscriber's life).

    Attributes:
        topic_filter: The MQTT topic filter subscribed to.
    """

    def __init__(
        self,
        config: MqttConfig,
        *,
        stream: str | None = None,
        queue_size: int = 4096,
        backoff_s: tuple[float, float] = (0.5, 4.0),
        wall_clock: WallClock = time.time,
        rng: random.Random | None = None,
        client_id: str | None = None,
    ) -> None:
        if queue_size < 1:
            msg = f"queue_size={queue_size} must be >= 1"
            raise ConfigError(msg)
        first_s, cap_s = backoff_s
        if not 0 < first_s <= cap_s:
            msg = f"backoff_s={backoff_s} must satisfy 0 < first <= largest"
            raise ConfigError(msg)
        self.config, self.stream = config, stream
        self.queue_size, self.backoff_s = queue_size, backoff_s
        self._backoff = Backoff(initial_s=first_s, max_s=cap_s)
        self.wall_clock = wall_clock
        self.rng = rng if rng is not None else random.Random()
        self.topic_filter = subscription_for(config.topic_prefix, stream, None)
        self._lock = threading.Lock()  # guards the queue, the counters and the state
        self._queue: deque[Received] = deque()
        self._state = BrokerState.IDLE
        self._received = self._malformed = self._dropped = self._restarts = 0
        self._beats = BeatDeduplicator()
        self._last_problem = ""
        self._retry_at_s = float("nan")
        self._session = ReconnectingSession(
            config,
            client_prefix="ecg-monitor",
            client_id=client_id if client_id is not None else unique_identifier("ecg-monitor"),
            persistent=True,
            backoff=self._backoff,
            rng=self.rng,
            retry_unreachable=True,
            on_connect=self._subscribe,
            on_retry=self._report_retry,
        )
        self._job = self._new_job()

    def _new_job(self) -> BackgroundJob:
        # A crash is a bug: it ends the thread with its traceback, not kept for a caller.
        return BackgroundJob(self._main, name="ecg-monitor-mqtt", keep_error=False)

    @property
    def client_id(self) -> str:
        """The MQTT client id: the broker's session of this subscriber."""
        return self._session.client_id

    def revive(self) -> bool:
        """Start the worker thread again if it died while running; whether it did.

        The new thread resumes the same broker session, so what was published meanwhile still
        arrives (within the broker's limits).
        """
        with self._lock:
            if self._state in (BrokerState.IDLE, BrokerState.STOPPED) or not self._job.done:
                return False
            self._restarts += 1
            self._state = BrokerState.CONNECTING
            self._last_problem = (
                f"the MQTT worker thread died ({self._last_problem or 'no error given'}); "
                f"started again ({self._restarts} restarts)"
            )
            self._retry_at_s = float("nan")
            self._job = self._new_job()
        self._job.start()
        return True

    @property
    def broker(self) -> str:
        """The broker's URL (without credentials)."""
        return self.config.url

    def start(self) -> None:
        """Start the worker thread (once).

        Raises:
            ConfigError: If the subscriber was already started.
        """
        with self._lock:
            if self._state is not BrokerState.IDLE:
                msg = f"subscriber to {self.broker} is {self._state.value}; start() runs it once"
                raise ConfigError(msg)
            self._state = BrokerState.CONNECTING
        self._job.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Disconnect and end the worker thread; safe to call more than once."""
        with self._lock:  # first: a worker ending now is not revived
            self._state = BrokerState.STOPPED
            self._retry_at_s = float("nan")
            job = self._job
        job.stop(timeout_s)

    def __enter__(self) -> Subscriber:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def drain(self, max_items: int) -> list[Received]:
        """Take up to ``max_items`` of the oldest queued messages, oldest first."""
        with self._lock:
            count = min(max_items, len(self._queue))
            return [self._queue.popleft() for _ in range(count)]

    def status(self) -> SubscriberStatus:
        """A consistent snapshot of state and counters."""
        with self._lock:
            return SubscriberStatus(
                state=self._state,
                broker=self.broker,
                received=self._received,
                malformed=self._malformed,
                dropped=self._dropped,
                last_problem=self._last_problem,
                retry_at_s=self._retry_at_s,
                duplicates=self._beats.duplicates,
                restarts=self._restarts,
            )

    def handle(self, topic: str, payload: bytes) -> None:
        """Decode one message and queue it, or count it as malformed.

        Called by the worker thread for every message; also the entry point for feeding
        messages without a broker (benchmarks).
        """
        receipt_wall_s = self.wall_clock()
        if topic.endswith(f"/{TopicKind.RAW.value}"):  # devices' input (serve), not for display
            return
        try:
            message = decode(topic, payload)
        except PayloadError as error:
            with self._lock:
                self._malformed += 1
                self._last_problem = f"malformed message: {error}"  # error starts with topic
            return
        with self._lock:
            if isinstance(message, BeatMessage) and not self._beats.is_new(message):
                return  # delivered again after a reconnection: counted in duplicates
            if len(self._queue) >= self.queue_size:
                self._queue.popleft()
                self._dropped += 1
            self._queue.append(Received(message, receipt_wall_s))
            self._received += 1

    def _set_state(self, state: BrokerState, problem: str = "", retry_at_s: float = 0.0) -> None:
        with self._lock:
            if self._state is BrokerState.STOPPED:
                return
            self._state = state
            if problem:
                self._last_problem = problem
            waiting = state in (BrokerState.UNREACHABLE, BrokerState.RECONNECTING)
            self._retry_at_s = retry_at_s if waiting else float("nan")

    async def _main(self) -> None:
        try:
            await self._session.run(self._listen)
        except Exception as error:
            # Not a user's fault (a malformed payload is a PayloadError, counted in handle()):
            # the status bar must not keep saying "connected"; the traceback still goes out.
            self._set_state(BrokerState.FAILED, f"subscriber thread failed: {error!r}")
            raise

    async def _subscribe(self, client: Client) -> None:
        await subscribe(client, [self.topic_filter])

    async def _listen(self, client: Client) -> None:
        self._set_state(BrokerState.CONNECTED)
        async for topic, payload in payloads(client):
            self.handle(topic, payload)

    def _report_retry(self, retry: Reconnect) -> None:
        self._set_state(
            BrokerState.RECONNECTING if retry.connected_before else BrokerState.UNREACHABLE,
            f"broker {self.broker}: {retry.error}",
            self.wall_clock() + retry.delay_s,
        )
