"""Subscriber: aiomqtt in a worker thread, against a real MQTT broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace

import aiomqtt
import numpy as np
import pytest

from ecg_stream.config import MqttConfig
from ecg_stream.errors import ConfigError
from ecg_stream.types import EventState, RhythmKind
from ecg_stream.viewer.subscriber import BrokerState, Received, Subscriber
from ecg_stream.wire import (
    BeatMessage,
    EventMessage,
    StatusMessage,
    WireMessage,
    decode,
    encode,
)
from tests.helpers import MqttBroker
from tests.viewer.helpers import beat, event, samples, status, wire

WAIT_S = 20.0


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll until ``condition`` holds; fail naming ``what`` after WAIT_S (never a timed assert)."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {WAIT_S} s waiting for {what}")
        time.sleep(0.02)


def publish(config: MqttConfig, payloads: list[tuple[str, bytes]], *, retain: bool = False) -> None:
    async def send() -> None:
        async with aiomqtt.Client(config.host, config.port) as client:
            for topic, payload in payloads:
                await client.publish(topic, payload, qos=1, retain=retain)

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
    mqtt_broker: MqttBroker,
) -> None:
    config = mqtt_broker.config
    with Subscriber(config, stream="sub-1") as subscriber:
        wait_until(lambda: subscriber.status().state is BrokerState.CONNECTED, "connection")
        good: list[WireMessage] = [
            status("sub-1"),
            samples("sub-1", 0, np.zeros(36)),
            beat("sub-1", 370),
            event("sub-1", RhythmKind.VT, EventState.START, 370),
        ]
        bad = [
            ("ecg/sub-1/beats", b"{not json"),
            ("ecg/sub-1/beats", b'{"v": 2, "stream": "sub-1"}'),
            ("ecg/sub-1/samples", encode(samples("other", 0, np.zeros(4)))),  # wrong stream
            ("ecg/sub-1/alarms", b'{"v": 1}'),  # not a topic of the contract
        ]
        publish(
            config,
            [wire(good[0]), *bad[:2], wire(good[1]), *bad[2:], wire(good[2]), wire(good[3])],
        )
        received = drain_all(subscriber, 4)
        wait_until(lambda: subscriber.status().malformed == 4, "4 malformed messages")
        state = subscriber.status()
    assert [item.message for item in received] == [decode(*wire(m)) for m in good]  # rounded
    assert all(item.receipt_wall_s > 1.7e9 for item in received)
    assert (state.received, state.malformed, state.dropped) == (4, 4, 0)
    assert "ecg/sub-1/alarms" in state.last_problem
    assert subscriber.status().state is BrokerState.STOPPED


@pytest.mark.mqtt
def test_lost_broker_is_reported_and_reconnected(own_mqtt_broker: MqttBroker) -> None:
    config = own_mqtt_broker.config
    with Subscriber(config, backoff_s=(0.1, 0.5)) as subscriber:
        wait_until(lambda: subscriber.status().state is BrokerState.CONNECTED, "connection")
        own_mqtt_broker.stop()
        wait_until(lambda: subscriber.status().state is BrokerState.RECONNECTING, "broker lost")
        assert subscriber.status().last_problem.startswith(f"broker {config.url}")
        own_mqtt_broker.start()
        wait_until(lambda: subscriber.status().state is BrokerState.CONNECTED, "reconnection")
        publish(config, [wire(status("sub-2"))])
        (item,) = drain_all(subscriber, 1)
    assert isinstance(item.message, StatusMessage)


@pytest.mark.mqtt
def test_unreachable_broker_is_retried_until_stopped(own_mqtt_broker: MqttBroker) -> None:
    config = own_mqtt_broker.config
    own_mqtt_broker.stop()
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


def test_rhythm_events_and_the_status_rhythm_are_decoded_and_queued() -> None:
    subscriber = Subscriber(MqttConfig())  # not started: handle() is the decoder
    sent = event("bed1", RhythmKind.AF, EventState.END, 7200, detail="stream ended")
    subscriber.handle(*wire(sent))
    subscriber.handle(*wire(status("bed1", rhythm=RhythmKind.VT)))
    subscriber.handle("ecg/bed1/events", b'{"v": 1, "stream": "bed1", "kind": "flutter"}')
    got, current = (item.message for item in subscriber.drain(10))
    assert isinstance(got, EventMessage)
    assert got == sent
    assert isinstance(current, StatusMessage)
    assert current.rhythm is RhythmKind.VT
    state = subscriber.status()
    assert (state.received, state.malformed) == (2, 1)
    assert "ecg/bed1/events" in state.last_problem


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


NESTED_ARRAYS = b"[" * 1024 + b"]" * 1024  # the 2 kB payload of issue 13


@pytest.mark.mqtt
@pytest.mark.parametrize("retained_status", [False, True], ids=["beats", "retained-status"])
def test_deeply_nested_payload_is_counted_and_the_thread_keeps_running(
    mqtt_broker: MqttBroker, retained_status: bool
) -> None:
    """A malformed beat, or a malformed status retained before we subscribe, is counted once;
    the worker thread lives on and delivers the next valid beat."""
    config = replace(mqtt_broker.config, topic_prefix=f"test-nested-{retained_status}")
    stream = "nested"
    status_topic = f"{config.topic_prefix}/{stream}/status"
    beats_topic = f"{config.topic_prefix}/{stream}/beats"
    if retained_status:
        publish(config, [(status_topic, NESTED_ARRAYS)], retain=True)
    try:
        with Subscriber(config, stream=stream) as subscriber:
            wait_until(lambda: subscriber.status().state is BrokerState.CONNECTED, "connection")
            bad = [] if retained_status else [(beats_topic, NESTED_ARRAYS)]
            publish(config, [*bad, (beats_topic, encode(beat(stream, 370)))])
            (item,) = drain_all(subscriber, 1)
            state = subscriber.status()
    finally:
        publish(config, [(status_topic, b"")], retain=True)  # clear what we retained
    assert isinstance(item.message, BeatMessage)
    assert item.message.chain_sample == 370
    assert (state.state, state.received, state.malformed) == (BrokerState.CONNECTED, 1, 1)
    assert "nests arrays or objects too deeply" in state.last_problem
    wrong_topic = beats_topic if not retained_status else status_topic
    assert f"malformed message: {wrong_topic}:" in state.last_problem


@pytest.mark.mqtt
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_crashed_worker_thread_is_shown_not_hidden_behind_connected(
    mqtt_broker: MqttBroker,
) -> None:
    def broken_clock() -> float:
        msg = "clock unplugged"
        raise RuntimeError(msg)

    with Subscriber(mqtt_broker.config, stream="crash", wall_clock=broken_clock) as subscriber:
        wait_until(lambda: subscriber.status().state is BrokerState.CONNECTED, "connection")
        publish(mqtt_broker.config, [wire(status("crash"))])
        wait_until(lambda: subscriber.status().state is BrokerState.FAILED, "the failed state")
        assert "clock unplugged" in subscriber.status().last_problem
