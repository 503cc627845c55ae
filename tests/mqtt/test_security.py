"""No open doors (issue 13): TLS and passwords against a real mosquitto, the embedded broker's
bind rule, and credentials that never show.

The mosquitto here is configured as docs/operations.md (Security) says: a TLS listener with a
certificate signed by a CA made in the test (openssl), a password file (mosquitto_passwd) and an
ACL confining the user to its topic prefix.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from pwdlib import PasswordHash

from ecg_stream import wire
from ecg_stream.cli import main
from ecg_stream.config import (
    MQTT_CA_FILE_ENV,
    MQTT_PASSWORD_ENV,
    MQTT_PASSWORD_FILE_ENV,
    MQTT_USERNAME_ENV,
    MqttConfig,
)
from ecg_stream.errors import ConfigError
from ecg_stream.mqtt.broker import EmbeddedBroker, is_loopback
from ecg_stream.mqtt.mosquitto import free_port, mosquitto_executable, port_open
from ecg_stream.mqtt.transport import (
    ConnectRefusedError,
    PublishRefusedError,
    connect,
    make_client,
    publish_acknowledged,
)
from ecg_stream.wire import RawMessage, TopicKind
from tests.helpers import run

ROOT = Path(__file__).parents[2]
PASSWORD = "Tr0ub4dor-3-horse-staple"  # must never appear in any output
USER = "site1-replay"
PREFIX = "site1/ecg"
DEVICE = "bed1"  # a device's user name is its stream id
ACL = f"""\
user {USER}
topic readwrite {PREFIX}/#

user site1-worker
topic read {PREFIX}/+/raw
topic write {PREFIX}/+/beats
topic write {PREFIX}/+/samples
topic write {PREFIX}/+/status
topic write {PREFIX}/+/events

user site1-monitor
topic read {PREFIX}/#

pattern write {PREFIX}/%u/raw
"""
"""The ACL example of docs/operations.md: a replay computes its beats and writes its prefix;
serve workers read devices' raw chunks and write the outputs; monitors read; each device
writes its own stream's ``raw`` and nothing else."""


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> Path:
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.crt"


def make_server_certificate(directory: Path, ca: str) -> None:
    """server.crt for 127.0.0.1 and localhost, signed by ``ca``."""
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", "server.key", "-out", "server.csr", cwd=directory,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", "server.crt",
        cwd=directory,
    )  # fmt: skip


@dataclass(frozen=True)
class SecureBroker:
    """A mosquitto with TLS, a password file and an ACL; the files a client needs."""

    port: int
    ca_file: Path
    rogue_ca_file: Path
    password_file: Path

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    def env(self, **changes: str | None) -> dict[str, str]:
        """The environment of a client with the right credentials, then ``changes``."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("ECG_STREAM_MQTT_")
        }
        wanted: dict[str, str | None] = {
            MQTT_USERNAME_ENV: USER,
            MQTT_PASSWORD_FILE_ENV: str(self.password_file),
            MQTT_CA_FILE_ENV: str(self.ca_file),
            "PYTHONUNBUFFERED": "1",
        }
        wanted.update(changes)
        return env | {key: value for key, value in wanted.items() if value is not None}


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    executable, passwd = mosquitto_executable(), shutil.which("mosquitto_passwd")
    if executable is None or passwd is None or shutil.which("openssl") is None:
        pytest.skip("needs mosquitto, mosquitto_passwd and openssl (apt-get install mosquitto)")
    directory = tmp_path_factory.mktemp("tls")
    ca_file, rogue_ca_file = make_ca(directory, "ca"), make_ca(directory, "rogue")
    make_server_certificate(directory, "ca")
    subprocess.run([passwd, "-b", "-c", str(directory / "passwd"), USER, PASSWORD], check=True)
    subprocess.run([passwd, "-b", str(directory / "passwd"), DEVICE, PASSWORD], check=True)
    (directory / "acl").write_text(ACL)
    client_password = directory / "client-password"
    client_password.write_text(PASSWORD + "\n")
    port = free_port()
    config = directory / "mosquitto.conf"
    config.write_text(
        ("user root\n" if os.geteuid() == 0 else "")  # else it drops to 'mosquitto', who
        + f"listener {port} 127.0.0.1\n"  # cannot read the test's files
        f"cafile {ca_file}\ncertfile {directory / 'server.crt'}\n"
        f"keyfile {directory / 'server.key'}\n"
        f"allow_anonymous false\npassword_file {directory / 'passwd'}\n"
        f"acl_file {directory / 'acl'}\npersistence false\n"
        f"log_dest file {directory / 'mosquitto.log'}\n"
    )
    process = subprocess.Popen([executable, "-c", str(config)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not port_open(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"mosquitto did not start: {(directory / 'mosquitto.log').read_text()}")
        time.sleep(0.05)
    yield SecureBroker(port, ca_file, rogue_ca_file, client_password)
    process.terminate()
    process.wait(timeout=10)


def ecg_stream(*args: str, env: dict[str, str], timeout_s: float = 60) -> tuple[int, str]:
    """Run a command to its end; its exit status and its output (stdout and stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "ecg_stream.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout_s,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


@contextlib.contextmanager
def subscriber(broker: SecureBroker, env: dict[str, str]) -> Iterator[list[str]]:
    """``ecg-stream subscribe`` under the site's prefix; yields once subscribed, its lines
    fill the list when it stops."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ecg_stream.cli", "subscribe", "--broker", broker.url,
         "--topic-prefix", PREFIX],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 30
        while not any(line.startswith("subscribed") for line in lines):
            assert time.monotonic() < deadline, lines
            if selector.select(timeout=1.0):
                line = process.stdout.readline()
                assert line, f"subscribe ended: {lines}"
                lines.append(line)
    try:
        yield lines
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=20)
        lines.extend(out.splitlines(keepends=True))


@pytest.mark.mqtt
def test_replay_and_subscribe_over_tls_with_a_password_file(
    secure_broker: SecureBroker, short_record: Path
) -> None:
    env = secure_broker.env()
    with subscriber(secure_broker, env) as received:
        code, replayed = ecg_stream(
            "replay", str(short_record), "--broker", secure_broker.url, "--topic-prefix",
            PREFIX, "--speed", "max", "--quiet", env=env,
        )  # fmt: skip
        assert code == 0, replayed
    beats = [line for line in received if " N " in line and "compute" in line]
    assert len(beats) >= 8  # 10 s of record 100: 12 beats, the last few held by the chain
    assert any("status offline" in line for line in received)
    assert PASSWORD not in replayed + "".join(received)


@pytest.mark.mqtt
def test_beats_the_acl_refuses_are_lost_said_and_exit_non_zero(
    secure_broker: SecureBroker, short_record: Path
) -> None:
    """Under another prefix the broker answers every publish "not authorized" (MQTT 5)."""
    code, replayed = ecg_stream(
        "replay", str(short_record), "--broker", secure_broker.url, "--topic-prefix",
        "site2/ecg", "--speed", "max", "--quiet", env=secure_broker.env(),
    )  # fmt: skip
    assert code == 1, replayed
    assert "refused by the broker" in replayed
    assert "Not authorized" in replayed
    lost = re.search(r"beats lost: (\d+)", replayed)
    assert lost is not None
    assert int(lost.group(1)) >= 8
    assert "nan" not in replayed


@pytest.mark.mqtt
def test_password_from_the_environment_works_too(secure_broker: SecureBroker) -> None:
    env = secure_broker.env(**{MQTT_PASSWORD_FILE_ENV: None, MQTT_PASSWORD_ENV: PASSWORD})
    with subscriber(secure_broker, env) as lines:
        pass
    assert lines[0].startswith(f"subscribed to every stream at {secure_broker.url}")


@pytest.mark.mqtt
@pytest.mark.parametrize("command", ["subscribe", "replay"])
def test_a_wrong_password_is_one_line_and_exit_2(
    secure_broker: SecureBroker, short_record: Path, tmp_path: Path, command: str
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text(PASSWORD[::-1])
    env = secure_broker.env(**{MQTT_PASSWORD_FILE_ENV: str(wrong)})
    argv = [command, "--broker", secure_broker.url, "--topic-prefix", PREFIX]
    if command == "replay":
        argv += [str(short_record), "--speed", "max", "--quiet"]
    code, out = ecg_stream(*argv, env=env)
    assert code == 2, out
    error = out.splitlines()[-1]
    assert error.startswith(f"ecg-stream {command}: error: cannot connect to the MQTT broker at")
    assert "the broker refused the login ([code:135] Not authorized): check" in error
    assert "Traceback" not in out
    assert PASSWORD not in out
    assert PASSWORD[::-1] not in out


@pytest.mark.mqtt
def test_no_credentials_say_which_variables_to_set(secure_broker: SecureBroker) -> None:
    env = secure_broker.env(**{MQTT_USERNAME_ENV: None, MQTT_PASSWORD_FILE_ENV: None})
    code, out = ecg_stream("subscribe", "--broker", secure_broker.url, env=env)
    assert code == 2
    assert out.count("\n") == 1
    assert f"needs a user name and password: set ${MQTT_USERNAME_ENV} and" in out


@pytest.mark.mqtt
@pytest.mark.parametrize("ca", ["system", "rogue"])
def test_an_untrusted_certificate_is_one_line_and_exit_2(
    secure_broker: SecureBroker, ca: str
) -> None:
    """The system's CAs do not know the test's CA; nor does another CA."""
    ca_file = None if ca == "system" else str(secure_broker.rogue_ca_file)
    code, out = ecg_stream(
        "subscribe", "--broker", secure_broker.url,
        env=secure_broker.env(**{MQTT_CA_FILE_ENV: ca_file}),
    )  # fmt: skip
    assert code == 2
    assert out.count("\n") == 1, out
    assert "the broker's TLS certificate is not trusted (" in out
    assert f"set ${MQTT_CA_FILE_ENV} to the PEM file of the CA that signed it" in out


@pytest.mark.mqtt
def test_plain_mqtt_to_the_tls_port_is_one_line(secure_broker: SecureBroker) -> None:
    env = secure_broker.env(**{MQTT_CA_FILE_ENV: None})
    code, out = ecg_stream(
        "subscribe", "--broker", f"mqtt://127.0.0.1:{secure_broker.port}", env=env
    )
    assert code == 2
    assert out.count("\n") == 1, out  # paho's own "failed to receive on socket" is not printed


@pytest.mark.mqtt
def test_the_password_stays_out_of_debug_logs(
    secure_broker: SecureBroker, caplog: pytest.LogCaptureFixture
) -> None:
    config = MqttConfig(
        host="127.0.0.1",
        port=secure_broker.port,
        tls=True,
        username=USER,
        password=PASSWORD,
        ca_file=secure_broker.ca_file,
    )

    caplog.set_level(logging.DEBUG)
    run(_connect(config))
    with pytest.raises(ConnectRefusedError) as caught:
        run(_connect(replace(config, password="x" + PASSWORD)))
    assert "Sending CONNECT" in caplog.text  # paho logged its packets, at DEBUG
    assert PASSWORD not in caplog.text
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(config)


@pytest.mark.mqtt
def test_a_device_writes_its_own_raw_topic_and_nothing_else(secure_broker: SecureBroker) -> None:
    """A device's password cannot fake a beat or status, nor feed another stream."""
    config = MqttConfig(
        host="127.0.0.1",
        port=secure_broker.port,
        tls=True,
        topic_prefix=PREFIX,
        username=DEVICE,
        password=PASSWORD,
        ca_file=secure_broker.ca_file,
    )
    raw = wire.encode(RawMessage.from_counts(DEVICE, 0, 360.0, np.zeros(36), gain=200.0))

    async def publish(stream: str, kind: TopicKind, payload: bytes) -> str:
        async with contextlib.AsyncExitStack() as stack:
            client = make_client(config, identifier=f"ecg-test-{stream}", persistent=True)
            await connect(stack, client, config)
            try:
                await publish_acknowledged(
                    client, wire.topic_for(PREFIX, stream, kind), payload, qos=1
                )
            except PublishRefusedError as refused:
                return refused.reason
        return "accepted"

    assert run(publish(DEVICE, TopicKind.RAW, raw)) == "accepted"
    assert run(publish(DEVICE, TopicKind.BEATS, b"{}")) == "Not authorized"
    assert run(publish(DEVICE, TopicKind.STATUS, b"{}")) == "Not authorized"
    assert run(publish("bed2", TopicKind.RAW, raw)) == "Not authorized"


async def _connect(config: MqttConfig) -> None:
    async with contextlib.AsyncExitStack() as stack:
        await connect(stack, make_client(config, identifier="ecg-test-wrong"), config)


# The embedded broker: loopback only unless a password file says who may connect.


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "no-such-host.invalid"])
def test_the_embedded_broker_refuses_other_addresses_without_passwords(
    host: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["broker", "--host", host, "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"ecg-stream broker: error: refusing to listen on {host}: without a")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.5", "::1", "localhost"])
def test_loopback_names_are_loopback(host: str) -> None:
    assert is_loopback(host)


def write_amqtt_passwords(path: Path, users: dict[str, str]) -> Path:
    hasher = PasswordHash.recommended()  # Argon2, as amqtt verifies
    path.write_text("".join(f"{user}:{hasher.hash(pw)}\n" for user, pw in users.items()))
    return path


@pytest.mark.mqtt
def test_the_embedded_broker_with_a_password_file_admits_its_users_only(tmp_path: Path) -> None:
    passwords = write_amqtt_passwords(tmp_path / "passwd", {USER: PASSWORD})
    EmbeddedBroker("0.0.0.0", 1883, passwords)  # allowed on every address (not started here)

    async def scenario() -> list[str]:
        outcomes = []
        async with EmbeddedBroker("127.0.0.1", 0, passwords) as broker:
            for user, password in [(None, None), (USER, "guess"), (USER, PASSWORD)]:
                config = MqttConfig("127.0.0.1", broker.port, username=user, password=password)
                try:
                    await _connect(config)
                    outcomes.append("admitted")
                except ConnectRefusedError as error:
                    outcomes.append(str(error).split(":")[0])
        return outcomes

    assert run(scenario()) == [
        "the broker refused the login ([code",
        "the broker refused the login ([code",
        "admitted",
    ]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", "holds no user"),
        ("alice:plaintext-password\n", "line 1: expected USER:HASH with an Argon2 or bcrypt"),
        ("# users\nalice\n", "line 2: expected USER:HASH"),
    ],
)
def test_a_bad_password_file_is_refused_without_showing_it(
    tmp_path: Path, content: str, match: str
) -> None:
    path = tmp_path / "passwd"
    path.write_text(content)
    with pytest.raises(ConfigError, match=match) as caught:
        EmbeddedBroker("127.0.0.1", 1883, path)
    assert "plaintext-password" not in str(caught.value)


def test_no_password_is_taken_from_the_command_line() -> None:
    """No option of any command takes a password: a command line is visible to other users."""
    from ecg_stream.cli import _build_parser

    parser = _build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert isinstance(commands, dict)
    options = {o for sub in commands.values() for a in sub._actions for o in a.option_strings}
    assert not {o for o in options if "passw" in o and o != "--password-file"}
    assert not {o for o in options if "user" in o}
