"""MqttConfig: broker URLs, credentials from the environment only."""

from __future__ import annotations

import doctest
import ssl
from pathlib import Path

import pytest

import ecg_stream.config as config_module
from ecg_stream.config import (
    MQTT_CA_FILE_ENV,
    MQTT_PASSWORD_ENV,
    MQTT_PASSWORD_FILE_ENV,
    MQTT_USERNAME_ENV,
    MqttConfig,
)
from ecg_stream.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "host", "port", "tls"),
    [
        ("mqtt://localhost:1883", "localhost", 1883, False),
        ("mqtt://broker.example", "broker.example", 1883, False),
        ("mqtts://broker.example", "broker.example", 8883, True),
        ("MQTTS://10.0.0.5:8884", "10.0.0.5", 8884, True),
        ("127.0.0.1:1999", "127.0.0.1", 1999, False),
    ],
)
def test_urls_are_parsed(url: str, host: str, port: int, tls: bool) -> None:
    config = MqttConfig.from_url(url, environ={})
    assert (config.host, config.port, config.tls) == (host, port, tls)
    assert config.username is None


def test_a_clusters_nodes_are_kept_in_order_and_shown_as_given() -> None:
    config = MqttConfig.from_url("mqtt://n1:4001, n2 ,mqtt://n3:4003", environ={})
    assert config.nodes == (("n1", 4001), ("n2", 1883), ("n3", 4003))
    assert config.url == "mqtt://n1:4001,mqtt://n2:1883,mqtt://n3:4003"
    assert MqttConfig.from_url(config.url, environ={}) == config
    assert config.node(1).nodes == (("n2", 1883),)
    assert config.node(4).nodes == (("n2", 1883),)  # modulo the nodes


def test_credentials_come_from_the_environment_and_stay_out_of_repr() -> None:
    env = {MQTT_USERNAME_ENV: "ward3", MQTT_PASSWORD_ENV: "s3cret"}
    config = MqttConfig.from_url("mqtts://broker.example", environ=env)
    assert (config.username, config.password) == ("ward3", "s3cret")
    assert "s3cret" not in repr(config)
    assert config.url == "mqtts://broker.example:8883"


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("mqtt://user:pw@broker.example", "holds credentials"),
        ("http://broker.example", "scheme 'http'"),
        ("mqtt://broker.example:99999", "mqtt://broker.example:99999"),
        ("mqtt://broker.example/topic", "path or query"),
        ("mqtt://:1883", "host is empty"),
        ("mqtt://[::1", "Invalid IPv6 URL"),
        ("mqtt://a:1883,", "a broker URL is empty"),
        ("mqtt://a:1883,mqtts://b:8883", "mixes mqtt:// and mqtts://"),
        ("mqtt://a:1883,mqtt://u:pw@b:1883", "holds credentials"),
        ("mqtt://a:1883,mqtt://b:0", "out of range"),
    ],
)
def test_bad_urls_are_refused(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MqttConfig.from_url(url, environ={})


@pytest.mark.parametrize(
    "url",
    [
        "http://ward3:s3cret@broker.example",
        "tcp://ward3:s3cret@broker.example:1883",
        "mqtt:/ward3:s3cret@broker.example",
        "ward3:s3cret@broker.example",
        "mqtt://ward3:s3cret@[::1",
    ],
)
def test_no_error_shows_a_urls_credentials_whatever_the_scheme(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        MqttConfig.from_url(url, environ={})
    assert "s3cret" not in str(raised.value)
    assert "ward3" not in str(raised.value)


def test_password_without_username_is_refused() -> None:
    with pytest.raises(ConfigError, match=MQTT_USERNAME_ENV):
        MqttConfig.from_url("mqtt://localhost", environ={MQTT_PASSWORD_ENV: "x"})


def test_config_doctests_pass() -> None:
    result = doctest.testmod(config_module)
    assert result.attempted > 0
    assert result.failed == 0


def test_password_file_gives_its_first_line(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret with spaces\nignored\n")
    env = {MQTT_USERNAME_ENV: "ward3", MQTT_PASSWORD_FILE_ENV: str(secret)}
    config = MqttConfig.from_url("mqtt://broker.example", environ=env)
    assert config.password == "s3cret with spaces"
    assert "s3cret" not in repr(config)


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        ("both", "both \\$ECG_STREAM_MQTT_PASSWORD and \\$ECG_STREAM_MQTT_PASSWORD_FILE are set"),
        ("missing", "cannot read the password file .*missing \\(No such file or directory\\)"),
        ("empty", "the password file .*empty-file is empty"),
    ],
)
def test_bad_password_files_are_refused_without_showing_a_password(
    tmp_path: Path, setup: str, match: str
) -> None:
    (tmp_path / "empty-file").write_text("\n")
    path = {"both": tmp_path / "empty-file", "missing": tmp_path / "missing"}.get(
        setup, tmp_path / "empty-file"
    )
    env = {MQTT_USERNAME_ENV: "ward3", MQTT_PASSWORD_FILE_ENV: str(path)}
    if setup == "both":
        env[MQTT_PASSWORD_ENV] = "s3cret"
    with pytest.raises(ConfigError, match=match) as caught:
        MqttConfig.from_url("mqtt://broker.example", environ=env)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "ca", "match"),
    [
        ("mqtt://broker.example", "ca.pem", "names a CA file for mqtt://broker.example:1883, a"),
        ("mqtts://broker.example", "missing.pem", "cannot load CA certificates from .*missing"),
        ("mqtts://broker.example", "not-pem.txt", "cannot load CA certificates .*no certificate"),
    ],
)
def test_bad_ca_files_are_refused_before_connecting(
    tmp_path: Path, url: str, ca: str, match: str
) -> None:
    (tmp_path / "not-pem.txt").write_text("hello\n")
    (tmp_path / "ca.pem").write_text("hello\n")
    with pytest.raises(ConfigError, match=match):
        MqttConfig.from_url(url, environ={MQTT_CA_FILE_ENV: str(tmp_path / ca)})


def test_tls_context_verifies_certificates_and_host_names() -> None:
    context = MqttConfig.from_url("mqtts://broker.example", environ={}).tls_context()
    assert context is not None
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert MqttConfig.from_url("mqtt://broker.example", environ={}).tls_context() is None
