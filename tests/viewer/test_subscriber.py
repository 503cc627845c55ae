"""Subscriber: aiomqtt in a worker thread, against a real mosquitto."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiomqtt
import numpy as np
import pytest

from ecg_stream.config import MqttConfig
from ecg_stream.errors import ConfigError
from ecg_stream.viewer.subscriber import BrokerState, Received, Subscriber
from ecg_stream.wire import (
    StatusMessage,
    WireMessage,
    decode,
    encode,
)
from tests.stream.helpers import Mosquitto
from tests.viewer.helpers import beat, samples, status, wire

WAIT_S = 20.0


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll until ``condition`` holds; fail naming ``what`` after WAIT_S (never a timed assert)."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {WAIT_S} s waiting for {what}")
        time.sleep(0.02)


def publish(config: MqttConfig, payloads: list[tuple[str, bytes]]) -> None:
    async def send() -> None:
        async with aiomqtt.Client(config.host, config.port) as client:
            for topic, payload in payloads:
                await client.publish(topic, payload, qos=1)

    asyncio.run(send())


def drain_all(subscriber: Subscriber, count: int) -> list[Received]:
    received: list[Received] = []

    def enough() -> bool:
        received.extend(subscriber.drain(1000))
        return len(received) >= count

    wait_until(enough, f"{count} messages")
    return received


@pytest.mark.mqtt
def test_valid_messages_arrive_decoded_and_malformed_ones_are_counted(
    mosquitto: Mosquitto,
) -> None:
    config = mosquitto.config
    with Subscriber(config, stream="sub-1") as subscriber:
        wait_until(lambda: subscriber.status().state is BrokerState.CONNECTED, "connection")
        good: list[WireMessage] = [
            status("sub-1"),
            samples("sub-1", 0, np.zeros(36)),
            beat("sub-1", 370),
        ]
        bad = [
            ("ecg/sub-1/beats", b"{not json"),
            ("ecg/sub-1/beats", b'{"v": 2, "stream": "sub-1"}'),
            ("ecg/sub-1/samples", encode(samples("other", 0, np.zeros(4)))),  # wrong stream
            ("ecg/sub-1/alarms", b'{"v": 1}'),  # not a topic of the contract
        ]
        publish(config, [wire(good[0]), *bad[:2], wire(good[1]), *bad[2:], wire(good[2])])
        received = drain_all(subscriber, 3)
        wait_until(lambda: subscriber.status().malformed == 4, "4 malformed messages")
        state = subscriber.status()
    assert [item.message for item in received] == [decode(*wire(m)) for m in good]  # rounded
    assert all(item.receipt_wall_s > 1.7e9 for item in received)
    assert (state.received, state.malformed, state.dropped) == (3, 4, 0)
    assert "ecg/sub-1/alarms" in state.last_problem
    assert subscriber.status().state is BrokerState.STOPPED


@pytest.mark.mqtt
def test_lost_broker_is_reported_and_reconnected(own_mosquitto: Mosquitto) -> None:
    config = own_mosquitto.config
    with Subscriber(config, backoff_s=(0.1, 0.5)) as subscriber:
        wait_until(lambda: subscriber.status().state is BrokerState.CONNECTED, "connection")
        own_mosquitto.stop()
        wait_until(lambda: subscriber.status().state is BrokerState.RECONNECTING, "broker lost")
        assert subscriber.status().last_problem.startswith(f"broker {config.url}")
        own_mosquitto.start()
        wait_until(lambda: subscriber.status().state is BrokerState.CONNECTED, "reconnection")
        publish(config, [wire(status("sub-2"))])
        (item,) = drain_all(subscriber, 1)
    assert isinstance(item.message, StatusMessage)


@pytest.mark.mqtt
def test_unreachable_broker_is_retried_until_stopped(own_mosquitto: Mosquitto) -> None:
    config = own_mosquitto.config
    own_mosquitto.stop()
    with Subscriber(config, backoff_s=(0.05, 0.2)) as subscriber:
        wait_until(lambda: subscriber.status().state is BrokerState.UNREACHABLE, "a retry")
        assert subscriber.status().retry_at_s > time.time() - 1.0
    assert subscriber.status().state is BrokerState.STOPPED


def test_full_queue_drops_the_oldest_and_counts_it() -> None:
    subscriber = Subscriber(MqttConfig(), queue_size=3)  # not started: handle() is the decoder
    for index in range(5):
        subscriber.handle(*wire(samples("q", 36 * index, np.zeros(36))))
    got = subscriber.drain(10)
    assert [item.message.start_index for item in got] == [72, 108, 144]  # type: ignore[union-attr]
    assert (subscriber.status().received, subscriber.status().dropped) == (5, 2)


def test_lifecycle_is_checked() -> None:
    subscriber = Subscriber(MqttConfig(port=1))
    subscriber.stop()  # before start: harmless
    with pytest.raises(ConfigError, match="start\\(\\) runs it once"):
        subscriber.start()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"queue_size": 0}, "queue_size=0"), ({"backoff_s": (2.0, 1.0)}, "backoff_s")],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Subscriber(MqttConfig(), **kwargs)  # type: ignore[arg-type]
