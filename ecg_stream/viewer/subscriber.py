"""MQTT subscriber for the monitor: aiomqtt in one worker thread, decoded messages in a queue."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from types import TracebackType

import aiomqtt

from ecg_stream.config import Backoff, MqttConfig
from ecg_stream.errors import ConfigError, PayloadError
from ecg_stream.wire import WireMessage, decode, subscription_for

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
    """

    state: BrokerState
    broker: str
    received: int
    malformed: int
    dropped: int
    last_problem: str
    retry_at_s: float


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

    Attributes:
        topic_filter: The MQTT topic filter subscribed to.
    """

    def __init__(
        self,
        config: MqttConfig,
        *,
        stream: str | None = None,
        queue_size: int = 4096,
        backoff_s: tuple[float, float] = (0.5, 10.0),
        wall_clock: WallClock = time.time,
        rng: random.Random | None = None,
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
        self._received = self._malformed = self._dropped = 0
        self._last_problem = ""
        self._retry_at_s = float("nan")
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main_task: asyncio.Task[None] | None = None
        self._stop_requested = threading.Event()

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
        self._thread = threading.Thread(target=self._run, name="ecg-monitor-mqtt", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Disconnect and end the worker thread; safe to call more than once."""
        self._stop_requested.set()
        with self._lock:
            loop, task = self._loop, self._main_task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed by itself
                loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self._lock:
            self._state = BrokerState.STOPPED
            self._retry_at_s = float("nan")

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
            )

    def handle(self, topic: str, payload: bytes) -> None:
        """Decode one message and queue it, or count it as malformed.

        Called by the worker thread for every message; also the entry point for feeding
        messages without a broker (benchmarks).
        """
        receipt_wall_s = self.wall_clock()
        try:
            message = decode(topic, payload)
        except PayloadError as error:
            with self._lock:
                self._malformed += 1
                self._last_problem = f"malformed message on {topic}: {error}"
            return
        with self._lock:
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

    def _client(self) -> aiomqtt.Client:
        config = self.config
        return aiomqtt.Client(
            config.host,
            config.port,
            username=config.username,
            password=config.password,
            identifier=f"ecg-monitor-{secrets.token_hex(4)}",
            clean_session=True,
            keepalive=config.keepalive_s,
            timeout=config.connect_timeout_s,
            tls_context=ssl.create_default_context() if config.tls else None,
        )

    def _run(self) -> None:
        try:
            with contextlib.suppress(asyncio.CancelledError):
                asyncio.run(self._main())
        except Exception as error:
            # Not a user's fault (a malformed payload is a PayloadError, counted in handle()):
            # the status bar must not keep saying "connected"; the traceback still goes out.
            self._set_state(BrokerState.FAILED, f"subscriber thread failed: {error!r}")
            raise

    async def _main(self) -> None:
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._main_task = asyncio.current_task()
        if self._stop_requested.is_set():  # stop() came before the loop existed
            return
        attempt, connected_once = 0, False
        while not self._stop_requested.is_set():
            try:
                async with self._client() as client:
                    await client.subscribe(self.topic_filter, qos=1)
                    self._set_state(BrokerState.CONNECTED)
                    attempt, connected_once = 0, True
                    async for message in client.messages:
                        self.handle(message.topic.value, _as_bytes(message.payload))
            except aiomqtt.MqttError as error:
                delay_s = self._backoff.delay_s(attempt, self.rng)
                attempt += 1
                self._set_state(
                    BrokerState.RECONNECTING if connected_once else BrokerState.UNREACHABLE,
                    f"broker {self.broker}: {error}",
                    self.wall_clock() + delay_s,
                )
                await asyncio.sleep(delay_s)


def _as_bytes(payload: bytes | bytearray | str | float | None) -> bytes:
    """An aiomqtt payload as bytes (aiomqtt passes bytes; other types are for publishing)."""
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()
