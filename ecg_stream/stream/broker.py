"""An embedded MQTT broker (amqtt) on loopback, and finding the broker a replay should use.

The embedded broker makes ``ecg-stream replay`` work on a machine with no MQTT broker installed.
It runs in the replay's own event loop and is bound to loopback only. For many streams or
subscribers on other machines use a real broker (mosquitto, or a cluster: EMQX, HiveMQ,
VerneMQ) with ``--broker mqtt://host:port``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from enum import Enum
from types import TracebackType
from typing import Any

import aiomqtt

from ecg_stream.config import MqttConfig
from ecg_stream.errors import BrokerError
from ecg_stream.stream.transport import make_client, unique_identifier

logger = logging.getLogger(__name__)

DEFAULT_BROKER_URL = "mqtt://localhost:1883"
"""Where ``replay`` looks for a broker when no ``--broker`` is given."""

LOOPBACK = "127.0.0.1"
_ANONYMOUS_PLUGIN = "amqtt.plugins.authentication.AnonymousAuthPlugin"


class BrokerState(Enum):
    """Lifecycle of an :class:`EmbeddedBroker`."""

    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


class EmbeddedBroker:
    """An amqtt MQTT 3.1.1 broker in this event loop; an async context manager.

    Anonymous clients are allowed, so it binds to loopback by default: only local processes
    can reach it.

    Args:
        host: Address to listen on.
        port: TCP port to listen on (0: a free one, see :attr:`port` once started).

    Attributes:
        state: Lifecycle state.
    """

    def __init__(self, host: str = LOOPBACK, port: int = 1883) -> None:
        self.host, self.requested_port = host, port
        self.state = BrokerState.NEW
        self._broker: Any = None  # amqtt.broker.Broker, imported on start (untyped package)
        self._port = port

    @property
    def port(self) -> int:
        """The port it listens on."""
        return self._port

    @property
    def url(self) -> str:
        """``mqtt://host:port`` of the broker."""
        return f"mqtt://{self.host}:{self.port}"

    async def __aenter__(self) -> EmbeddedBroker:
        if self.state is not BrokerState.NEW:
            msg = f"cannot start an embedded broker that is {self.state.value}: create a new one"
            raise RuntimeError(msg)
        from amqtt.broker import Broker
        from amqtt.errors import BrokerError as AmqttBrokerError

        port = self.requested_port or _free_port(self.host)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{port}"}},
            # Only anonymous access: no $SYS publisher, no packet logging.
            "plugins": {_ANONYMOUS_PLUGIN: {"allow_anonymous": True}},
        }
        broker = Broker(config)
        amqtt_logger = logging.getLogger("amqtt.broker")
        amqtt_logger.addFilter(_drop_startup_traceback)  # the BrokerError below says it all
        try:
            await broker.start()
        except (AmqttBrokerError, OSError) as error:
            self.state = BrokerState.STOPPED
            cause = error.__cause__ or error
            if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
                msg = (
                    f"cannot start the embedded MQTT broker: {self.host}:{port} is already in "
                    "use (another broker or program listens there); stop it, pick another "
                    "--port, or use the broker that is there with --broker"
                )
            else:
                msg = (
                    f"cannot start the embedded MQTT broker on {self.host}:{port} ({cause}); "
                    "free the port, pick another with --port, or use a running broker with "
                    "--broker"
                )
            raise BrokerError(msg) from error
        finally:
            amqtt_logger.removeFilter(_drop_startup_traceback)
        self._broker, self._port = broker, port
        self.state = BrokerState.RUNNING
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.state is not BrokerState.RUNNING:
            return
        self.state = BrokerState.STOPPED
        await self._broker.shutdown()


def _drop_startup_traceback(record: logging.LogRecord) -> bool:
    """Keep amqtt from logging a traceback for a failed start, which is raised as one line."""
    return record.getMessage() != "Broker startup failed"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


async def probe_broker(config: MqttConfig, timeout_s: float = 1.5) -> bool:
    """Whether an MQTT broker accepts a connection at ``config`` within ``timeout_s``."""
    client = make_client(
        replace(config, connect_timeout_s=timeout_s),
        identifier=unique_identifier("ecg-stream-probe"),
    )
    try:
        async with asyncio.timeout(timeout_s):
            async with client:
                return True
    except (aiomqtt.MqttError, TimeoutError, OSError):
        return False


@asynccontextmanager
async def broker_for(
    url: str | None,
    topic_prefix: str,
    say: Callable[[str], None],
    default_url: str = DEFAULT_BROKER_URL,
) -> AsyncIterator[MqttConfig]:
    """The broker a replay publishes to, started here if need be.

    With ``url``, that broker (checked when the publishers connect). Without, the broker at
    ``default_url`` (localhost:1883) if one answers, else an embedded broker on loopback at the
    same port that lives as long as the context; ``say`` gets one line saying which.

    Raises:
        BrokerError: No broker answers at localhost:1883 and the embedded one cannot start.
        ConfigError: ``url`` is not a valid broker URL.
    """
    if url is not None:
        yield MqttConfig.from_url(url, topic_prefix)
        return
    config = MqttConfig.from_url(default_url, topic_prefix)
    if await probe_broker(config):
        say(f"using the MQTT broker at {config.url}")
        yield config
        return
    async with AsyncExitStack() as stack:
        try:
            broker = await stack.enter_async_context(EmbeddedBroker(LOOPBACK, config.port))
        except BrokerError as error:
            msg = (
                f"no MQTT broker accepted a connection at {config.url}, and an embedded one "
                f"cannot listen there ({error.__cause__ or error}); if a broker runs there but "
                f"refused us, pass --broker {config.url} with $ECG_STREAM_MQTT_USERNAME and "
                "$ECG_STREAM_MQTT_PASSWORD set"
            )
            raise BrokerError(msg) from error
        say(
            f"no MQTT broker at {config.url}: started an embedded one (amqtt) at {broker.url} "
            "for this run; subscribe there while it runs"
        )
        yield replace(config, host=LOOPBACK)


async def run_broker(host: str, port: int, say: Callable[[str], None]) -> None:
    """Serve an embedded broker until cancelled (Ctrl-C); ``ecg-stream broker``.

    Raises:
        BrokerError: The broker cannot listen on ``host:port``.
    """
    async with EmbeddedBroker(host, port) as broker:
        say(f"embedded MQTT broker (amqtt) listening on {broker.url}; Ctrl-C stops it")
        await asyncio.Event().wait()


def broker_main(host: str, port: int, say: Callable[[str], None]) -> int:
    """Serve :func:`run_broker` until Ctrl-C or SIGTERM; ``ecg-stream broker``.

    Returns:
        0 once stopped (a signal is how it stops).
    """
    from ecg_stream.stream.runner import run_until_stopped

    run_until_stopped(run_broker(host, port, say))
    say("embedded MQTT broker stopped")
    return 0
