"""An embedded MQTT broker (amqtt) on loopback, and finding the broker a replay should use.

The embedded broker makes ``ecg-stream replay`` work on a machine with no MQTT broker installed.
It runs in the replay's own event loop and is bound to loopback only. ``ecg-stream broker`` may
listen on other addresses only with a password file: anonymous clients are then refused. For
many streams or subscribers on other machines use a real broker (mosquitto, or a cluster: EMQX,
HiveMQ, VerneMQ) with ``--broker mqtts://host:port``.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any

import aiomqtt

from ecg_stream.config import MqttConfig
from ecg_stream.errors import BrokerError, ConfigError
from ecg_stream.mqtt.publisher import BEAT_BUFFER_SIZE
from ecg_stream.mqtt.transport import connect_session, unique_identifier

logger = logging.getLogger(__name__)

DEFAULT_BROKER_URL = "mqtt://localhost:1883"
"""Where ``replay`` looks for a broker when no ``--broker`` is given."""

LOOPBACK = "127.0.0.1"
_ANONYMOUS_PLUGIN = "amqtt.plugins.authentication.AnonymousAuthPlugin"
_FILE_AUTH_PLUGIN = "amqtt.plugins.authentication.FileAuthPlugin"
_HASH_PREFIXES = ("$argon2", "$2b$", "$2a$", "$2y$")
"""Password hashes amqtt verifies: Argon2 and bcrypt (pwdlib)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, or a name resolving there)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False  # unresolvable: the bind fails anyway
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def check_password_file(path: Path) -> int:
    """Check an amqtt password file (``user:hash`` lines, Argon2 or bcrypt); return its users.

    Raises:
        ConfigError: The file cannot be read, or a line is no ``user:hash`` (the message gives
            the line number, never the line).
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        msg = f"--password-file {path}: cannot read it ({reason})"
        raise ConfigError(msg) from None
    users = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, _, password_hash = line.strip().partition(":")
        if not user or not password_hash.startswith(_HASH_PREFIXES):
            msg = (
                f"--password-file {path}, line {number}: expected USER:HASH with an Argon2 or "
                "bcrypt hash (docs/operations.md, Security, shows how to make one)"
            )
            raise ConfigError(msg)
        users += 1
    if not users:
        msg = f"--password-file {path} holds no user; add USER:HASH lines"
        raise ConfigError(msg)
    return users


class BrokerState(Enum):
    """Lifecycle of an :class:`EmbeddedBroker`."""

    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


class EmbeddedBroker:
    """An amqtt MQTT 3.1.1 broker in this event loop; an async context manager.

    Without a password file anonymous clients are allowed, so it listens on loopback only: only
    local processes can reach it. With one, only its users may connect, on any address.

    Args:
        host: Address to listen on.
        port: TCP port to listen on (0: a free one, see :attr:`port` once started).
        password_file: ``user:hash`` lines (Argon2 or bcrypt), or None for anonymous access.

    Raises:
        ConfigError: ``host`` is not loopback and no password file is given, or the password
            file is unusable.

    Attributes:
        state: Lifecycle state.
    """

    def __init__(
        self, host: str = LOOPBACK, port: int = 1883, password_file: Path | None = None
    ) -> None:
        if password_file is None and not is_loopback(host):
            msg = (
                f"refusing to listen on {host}: without a password file the embedded broker "
                "lets anyone connect, so it listens on loopback only (127.0.0.1, ::1, "
                "localhost); to serve other machines pass --password-file FILE, or run "
                "mosquitto with TLS and passwords (docs/operations.md, Security)"
            )
            raise ConfigError(msg)
        if password_file is not None:
            check_password_file(password_file)
        self.host, self.requested_port = host, port
        self.password_file = password_file
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
        # One authentication plugin, no $SYS publisher, no packet logging.
        plugins = (
            {_ANONYMOUS_PLUGIN: {"allow_anonymous": True}}
            if self.password_file is None
            else {_FILE_AUTH_PLUGIN: {"password_file": str(self.password_file)}}
        )
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{port}"}},
            "plugins": plugins,
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
        loop = asyncio.get_running_loop()
        self._previous_handler = loop.get_exception_handler()
        loop.set_exception_handler(_quiet_about_vanished_clients)
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
        asyncio.get_running_loop().set_exception_handler(self._previous_handler)


def _quiet_about_vanished_clients(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's exception handler while amqtt runs: quiet about clients that left early.

    A client gone before amqtt closed its connection (our MQTT 5 probe, which amqtt does not
    answer) is no error worth a traceback.
    """
    error = context.get("exception")
    if isinstance(error, OSError) and error.errno in (errno.ENOTCONN, errno.EPIPE):
        logger.debug("a client left before amqtt closed its connection: %s", error)
        return
    loop.default_exception_handler(context)


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
    return await probe_protocol(config, timeout_s) is not None


async def probe_protocol(config: MqttConfig, timeout_s: float = 1.5) -> bool | None:
    """Whether the broker at ``config`` speaks MQTT 5 (True), only 3.1.1 (False), or is absent.

    The probe's session expires at once: it leaves nothing behind on the broker.
    """
    probe = replace(config, connect_timeout_s=timeout_s)
    try:
        async with asyncio.timeout(3 * timeout_s), AsyncExitStack() as stack:
            _client, mqtt5, _node = await connect_session(
                stack,
                probe,
                identifier=unique_identifier("ecg-stream-probe"),
                persistent=True,
                session_expiry_s=0,
            )
            return mqtt5
    except (aiomqtt.MqttError, TimeoutError, OSError):
        return None


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
    mqtt5 = await probe_protocol(config)
    if mqtt5 is not None:
        if mqtt5:
            say(f"using the MQTT broker at {config.url}")
        else:  # amqtt: another replay's embedded broker (or `ecg-stream broker`)
            say(
                f"using the MQTT broker at {config.url}, an MQTT 3.1.1 broker: the embedded "
                "broker of another replay (or `ecg-stream broker`), which stops when that "
                f"replay ends; beats are then held (up to {BEAT_BUFFER_SIZE} per stream) while "
                "this replay reconnects, and those never delivered are counted as lost"
            )
        yield replace(config, mqtt5=mqtt5)
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
        yield replace(config, host=LOOPBACK, mqtt5=False)  # amqtt speaks MQTT 3.1.1


async def run_broker(
    host: str, port: int, say: Callable[[str], None], password_file: Path | None = None
) -> None:
    """Serve an embedded broker until cancelled (Ctrl-C); ``ecg-stream broker``.

    Raises:
        BrokerError: The broker cannot listen on ``host:port``.
        ConfigError: A non-loopback ``host`` without a password file, or a bad password file.
    """
    async with EmbeddedBroker(host, port, password_file) as broker:
        access = "anonymous" if password_file is None else f"users of {password_file} only"
        say(f"embedded MQTT broker (amqtt) listening on {broker.url} ({access}); Ctrl-C stops it")
        if not is_loopback(host):
            say(
                "no TLS: user names, passwords and ECGs cross the network in clear text; keep "
                "it to a trusted network, or run mosquitto with TLS (docs/operations.md, Security)"
            )
        await asyncio.Event().wait()
