"""MqttConfig: broker URLs, credentials from the environment only."""

from __future__ import annotations

import doctest

import pytest

import ecg_stream.config as config_module
from ecg_stream.config import MQTT_PASSWORD_ENV, MQTT_USERNAME_ENV, MqttConfig
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
    ],
)
def test_bad_urls_are_refused(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MqttConfig.from_url(url, environ={})


def test_password_without_username_is_refused() -> None:
    with pytest.raises(ConfigError, match=MQTT_USERNAME_ENV):
        MqttConfig.from_url("mqtt://localhost", environ={MQTT_PASSWORD_ENV: "x"})


def test_config_doctests_pass() -> None:
    result = doctest.testmod(config_module)
    assert result.attempted > 0
    assert result.failed == 0
