"""A mosquitto process of our own on a loopback port: for ``bench``, the benchmarks and the tests.

One launcher: it writes the configuration (a listener on 127.0.0.1, anonymous, no per-client
queue limit, optionally persistence with a 1 s autosave, as a no-loss deployment runs it), starts
the broker, waits until it listens, and stops it, kills it (a crash) or starts it again on the
same port.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from ecg_stream.config import MqttConfig
from ecg_stream.errors import BrokerError

LOOPBACK = "127.0.0.1"
MOSQUITTO_FALLBACK_PATH = Path("/usr/sbin/mosquitto")
"""Where Debian installs mosquitto, outside a user's PATH."""
START_TIMEOUT_S = 20.0


def mosquitto_executable() -> str | None:
    """Mosquitto on PATH, or in /usr/sbin; None when it is not installed."""
    found = shutil.which("mosquitto")
    if found is None and MOSQUITTO_FALLBACK_PATH.is_file():
        found = str(MOSQUITTO_FALLBACK_PATH)
    return found


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    """Whether something listens on the loopback port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((LOOPBACK, port)) == 0


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a broker process, then SIGKILL after 10 s; wait for its end."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Mosquitto:
    """mosquitto on ``127.0.0.1:port``, configured and logging in ``directory``.

    A context manager: entering starts it, leaving stops it.

    Args:
        directory: Where the configuration, the log and the persistence file go.
        port: TCP port (default: a free one).
        persistent: Keep sessions and queued messages on disk (``autosave_interval 1``:
            mosquitto 2.0.11 writes its file about every 2 s).

    Attributes:
        config_path: The configuration file.
        log_path: mosquitto's log.

    Raises:
        BrokerError: mosquitto is not installed.
    """

    def __init__(
        self, directory: Path, port: int | None = None, *, persistent: bool = False
    ) -> None:
        executable = mosquitto_executable()
        if executable is None:
            msg = "mosquitto is not installed: `apt-get install mosquitto`"
            raise BrokerError(msg)
        self.executable, self.port = executable, free_port() if port is None else port
        self.config_path = directory / f"mosquitto-{self.port}.conf"
        self.log_path = directory / f"mosquitto-{self.port}.log"
        persistence = (
            f"persistence true\npersistence_location {directory}/\nautosave_interval 1\n"
            "max_inflight_messages 0\n"
            if persistent
            else "persistence false\n"
        )
        self.config_path.write_text(
            # started as root, mosquitto becomes user `mosquitto`, who cannot write in a
            # private temporary directory: stay who we are (ignored when not root)
            f"user {getpass.getuser()}\n"
            f"listener {self.port} {LOOPBACK}\n"
            "allow_anonymous true\n"
            f"{persistence}"
            # a subscriber that lags behind a replay at --speed max must not lose QoS 1
            # messages to the default per-client queue limit (1000)
            "max_queued_messages 0\n"
            "set_tcp_nodelay true\n"
            f"log_dest file {self.log_path}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> MqttConfig:
        """The broker, with the default topic prefix."""
        return MqttConfig(host=LOOPBACK, port=self.port)

    def start(self) -> None:
        """Start it and wait until it listens.

        Raises:
            BrokerError: It exited, or did not listen within 20 s (its log's end is given).
        """
        command = [self.executable, "-c", str(self.config_path)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = self.log_path.read_text() if self.log_path.exists() else ""
                msg = f"mosquitto did not start on port {self.port}: {log[-2000:]}"
                raise BrokerError(msg)
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing saved since the last autosave, no goodbye to clients."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait()
        self.process = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.process is None:
            return
        stop_process(self.process)
        self.process = None

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
