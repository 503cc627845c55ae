"""The embedded amqtt broker, and how replay picks a broker."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from ecg_stream.config import MqttConfig
from ecg_stream.errors import BrokerError
from ecg_stream.mqtt.broker import BrokerState, EmbeddedBroker, broker_for, probe_broker
from ecg_stream.mqtt.mosquitto import free_port
from ecg_stream.mqtt.publisher import BeatPublisher
from ecg_stream.mqtt.subscriber import WireSubscriber
from ecg_stream.mqtt.transport import answers_mqtt5
from ecg_stream.wire import StreamState
from tests.helpers import (
    BrokerKind,
    Collector,
    MqttBroker,
    beat_message,
    collect_until,
    run,
    status_of,
)


@pytest.mark.mqtt
def test_embedded_broker_carries_beats_and_status() -> None:
    stream = "embedded"
    collector = Collector()

    async def scenario() -> list[BrokerState]:
        states = []
        async with EmbeddedBroker(port=0) as broker:
            states.append(broker.state)
            config = MqttConfig(host=broker.host, port=broker.port)
            assert await probe_broker(config)
            listen = asyncio.create_task(
                collect_until(config, collector, lambda c: c.offline_seen(stream), stream=stream)
            )
            await collector.ready.wait()
            async with BeatPublisher(config, status_of(stream)) as publisher:
                for index in range(30):
                    publisher.submit(beat_message(stream, index * 300), publisher.clock())
            await listen
        states.append(broker.state)
        return states

    assert run(scenario()) == [BrokerState.RUNNING, BrokerState.STOPPED]
    assert [b.chain_sample for b in collector.beats] == [i * 300 for i in range(30)]
    assert [s.state for s in collector.statuses] == [StreamState.ONLINE, StreamState.OFFLINE]


@pytest.mark.mqtt
def test_the_mqtt5_probe_of_the_embedded_broker_leaves_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """amqtt does not answer an MQTT 5 CONNECT; the client falls back to 3.1.1, quietly."""

    async def scenario() -> None:
        async with EmbeddedBroker(port=0) as broker:
            config = MqttConfig(host=broker.host, port=broker.port)
            async with WireSubscriber(config):  # persistent: probes MQTT 5 first
                pass
            await asyncio.sleep(0.2)  # amqtt closes the probe's connection meanwhile

    run(scenario())
    assert "Unhandled exception" not in caplog.text
    assert "Traceback" not in caplog.text


@pytest.mark.mqtt
def test_the_protocol_probe_tells_mqtt5_from_amqtt_at_once(mqtt_broker: MqttBroker) -> None:
    """The embedded broker (amqtt) never answers MQTT 5: the probe says so without waiting."""

    async def scenario() -> tuple[bool | None, bool | None, bool | None, float]:
        nobody = await answers_mqtt5(MqttConfig(host="127.0.0.1", port=free_port()))
        async with EmbeddedBroker(port=0) as broker:
            started = time.monotonic()
            amqtt = await answers_mqtt5(MqttConfig(host=broker.host, port=broker.port))
            elapsed = time.monotonic() - started
        mqtt5 = await answers_mqtt5(mqtt_broker.config)
        return nobody, amqtt, mqtt5, elapsed

    nobody, amqtt, mqtt5, elapsed = run(scenario())
    assert (nobody, amqtt) == (None, False)
    assert mqtt5 is (mqtt_broker.kind is BrokerKind.MOSQUITTO)
    assert elapsed < 1.0


@pytest.mark.mqtt
def test_embedded_broker_on_a_busy_port_is_a_broker_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        async def scenario() -> None:
            async with EmbeddedBroker(port=port):
                pass

        with pytest.raises(BrokerError, match=f"127.0.0.1:{port}"):
            run(scenario())


@pytest.mark.mqtt
def test_replay_uses_a_broker_that_answers(mqtt_broker: MqttBroker) -> None:
    lines: list[str] = []

    async def scenario() -> MqttConfig:
        url = f"mqtt://127.0.0.1:{mqtt_broker.port}"
        async with broker_for(None, "ecg", lines.append, default_url=url) as config:
            return config

    assert run(scenario()).port == mqtt_broker.port
    assert lines == [f"using the MQTT broker at mqtt://127.0.0.1:{mqtt_broker.port}"]


@pytest.mark.mqtt
def test_replay_starts_an_embedded_broker_when_none_answers() -> None:
    lines: list[str] = []
    port = free_port()

    async def scenario() -> bool:
        url = f"mqtt://localhost:{port}"
        async with broker_for(None, "site/ecg", lines.append, default_url=url) as config:
            assert (config.host, config.port, config.topic_prefix) == (
                "127.0.0.1",
                port,
                "site/ecg",
            )
            return await probe_broker(config)

    assert run(scenario())
    assert len(lines) == 1
    assert "started an embedded one (amqtt)" in lines[0]


def test_an_explicit_broker_url_is_used_as_given() -> None:
    async def scenario() -> MqttConfig:
        async with broker_for("mqtts://broker.example", "ecg", print) as config:
            return config

    config = run(scenario())
    assert (config.host, config.port, config.tls) == ("broker.example", 8883, True)


@pytest.mark.mqtt
def test_replay_explains_a_busy_default_port_that_is_no_broker() -> None:
    with socket.socket() as busy:  # something that is not an MQTT broker holds the port
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        async def scenario() -> None:
            url = f"mqtt://127.0.0.1:{port}"
            async with broker_for(None, "ecg", print, default_url=url):
                pass

        with pytest.raises(BrokerError, match=f"pass --broker mqtt://127.0.0.1:{port} with"):
            run(scenario())
