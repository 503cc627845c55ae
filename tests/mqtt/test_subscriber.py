"""The reference subscriber: validated messages, malformed ones reported and skipped."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import aiomqtt
import pytest

from ecg_stream import wire
from ecg_stream.errors import PayloadError
from ecg_stream.mqtt.subscriber import WireSubscriber, format_message, run_subscribe
from ecg_stream.wire import BeatMessage, TopicKind
from tests.helpers import (
    Collector,
    MqttBroker,
    beat_message,
    collect_until,
    run,
    stamped,
    status_of,
)


@pytest.mark.mqtt
def test_malformed_messages_are_reported_and_skipped(mqtt_broker: MqttBroker) -> None:
    stream = "malformed"
    collector = Collector()

    async def scenario() -> None:
        listen = asyncio.create_task(
            collect_until(mqtt_broker.config, collector, lambda c: bool(c.beats), stream=stream)
        )
        await collector.ready.wait()
        async with aiomqtt.Client("127.0.0.1", mqtt_broker.port) as client:
            topic = wire.topic_for("ecg", stream, TopicKind.BEATS)
            await client.publish(topic, b"{not json", qos=1)
            await client.publish(topic, b'{"v": 99}', qos=1)
            await client.publish(topic, wire.encode(stamped(beat_message(stream, 300))), qos=1)
        await listen

    run(scenario())
    assert [b.chain_sample for b in collector.beats] == [300]
    assert [topic for topic, _ in collector.malformed] == ["ecg/malformed/beats"] * 2
    assert str(collector.malformed[0][1]).startswith("ecg/malformed/beats: ")
    assert "JSON" in str(collector.malformed[0][1])
    assert "schema version" in str(collector.malformed[1][1])


@pytest.mark.mqtt
def test_subscribe_command_prints_retained_status(mqtt_broker: MqttBroker) -> None:
    stream = "printed"
    lines: list[str] = []

    async def scenario() -> int:
        async with aiomqtt.Client("127.0.0.1", mqtt_broker.port) as client:
            topic = wire.topic_for("ecg", stream, TopicKind.STATUS)
            await client.publish(topic, wire.encode(status_of(stream)), qos=1, retain=True)
        return await run_subscribe(mqtt_broker.config, lines.append, stream=stream, limit=1)

    assert run(scenario()) == 1
    assert lines[0].startswith("subscribed to stream printed at mqtt://127.0.0.1:")
    assert lines[1].endswith("status online: record 100, 360 Hz, model test_model (NSVFQ)")


@pytest.mark.mqtt
def test_subscribe_json_prints_one_object_per_message_with_its_topic(
    mqtt_broker: MqttBroker,
) -> None:
    """``subscribe --json``: stdout holds the wire payload's fields and the topic, nothing else."""
    stream = "json"
    lines: list[str] = []
    notes: list[str] = []

    async def scenario() -> int:
        async with aiomqtt.Client("127.0.0.1", mqtt_broker.port) as client:
            topic = wire.topic_for("ecg", stream, TopicKind.STATUS)
            await client.publish(topic, wire.encode(status_of(stream)), qos=1, retain=True)
        return await run_subscribe(
            mqtt_broker.config,
            lines.append,
            stream=stream,
            limit=1,
            json_lines=True,
            note=notes.append,
        )

    assert run(scenario()) == 1
    assert notes[0].startswith("subscribed to stream json")
    (line,) = lines
    document = json.loads(line)
    assert document["topic"] == "ecg/json/status"
    payload = {key: value for key, value in document.items() if key != "topic"}
    assert wire.decode("ecg/json/status", json.dumps(payload)) == status_of(stream)


def test_beat_line_shows_time_label_confidence_rate_and_latencies() -> None:
    message = stamped(beat_message("x", 360), compute_ms=1.5, published_at=1.7e9)
    line = format_message(message, received_at=1.7e9 + 0.002)
    assert "    1.000 s  N 0.90  HR  75.0 bpm" in line
    assert "compute  1.50 ms  end-to-end   3.50 ms" in line


@pytest.mark.mqtt
@pytest.mark.mosquitto_only("amqtt has no shared subscriptions ($share/<group>/...)")
def test_shared_subscription_splits_beats_across_a_pool(mqtt_broker: MqttBroker) -> None:
    stream, total = "pool", 40
    config = replace(mqtt_broker.config, topic_prefix="test-share")
    counts = [0, 0]

    async def member(index: int, ready: asyncio.Event) -> None:
        subscriber = WireSubscriber(config, kinds=(TopicKind.BEATS,), shared_group="workers")
        async with subscriber:
            ready.set()
            async for _topic, _message in subscriber.messages():
                counts[index] += 1

    async def scenario() -> None:
        ready = [asyncio.Event(), asyncio.Event()]
        members = [asyncio.create_task(member(i, ready[i])) for i in range(2)]
        for event in ready:
            await event.wait()
        async with aiomqtt.Client("127.0.0.1", mqtt_broker.port) as client:
            topic = wire.topic_for("test-share", stream, TopicKind.BEATS)
            for index in range(total):
                await client.publish(
                    topic, wire.encode(stamped(beat_message(stream, index))), qos=1
                )
        async with asyncio.timeout(10):
            while sum(counts) < total:  # noqa: ASYNC110 - polls the members' counters
                await asyncio.sleep(0.02)
        for task in members:
            task.cancel()
        await asyncio.gather(*members, return_exceptions=True)

    run(scenario())
    assert sum(counts) == total  # each beat to exactly one member
    assert min(counts) > 0  # and both members got work


NESTED_ARRAYS = b"[" * 1024 + b"]" * 1024  # the 2 kB payload of issue 13


@pytest.mark.mqtt
def test_deeply_nested_beats_payload_is_counted_and_the_next_beat_delivered(
    mqtt_broker: MqttBroker,
) -> None:
    stream = "nested"
    errors: list[PayloadError] = []
    subscriber = WireSubscriber(
        mqtt_broker.config, stream=stream, on_malformed=lambda _topic, error: errors.append(error)
    )

    async def scenario() -> wire.WireMessage:
        async with subscriber:
            async with aiomqtt.Client("127.0.0.1", mqtt_broker.port) as client:
                topic = wire.topic_for("ecg", stream, TopicKind.BEATS)
                await client.publish(topic, NESTED_ARRAYS, qos=1)
                await client.publish(topic, wire.encode(stamped(beat_message(stream, 300))), qos=1)
            async for _topic, message in subscriber.messages():
                return message
        raise AssertionError  # pragma: no cover - messages() ends only with the broker

    message = run(scenario())
    assert isinstance(message, BeatMessage)
    assert message.chain_sample == 300
    assert (subscriber.malformed, subscriber.received) == (1, 1)
    assert "nests arrays or objects too deeply" in str(errors[0])


@pytest.mark.mqtt
def test_subscribe_command_survives_a_retained_malformed_status(mqtt_broker: MqttBroker) -> None:
    """A broken status retained by the broker reaches every later subscriber: each skips it."""
    stream = "retained-garbage"
    config = replace(mqtt_broker.config, topic_prefix="test-retained")
    status_topic = wire.topic_for(config.topic_prefix, stream, TopicKind.STATUS)
    lines: list[str] = []

    async def scenario() -> int:
        async with aiomqtt.Client("127.0.0.1", mqtt_broker.port) as client:
            await client.publish(status_topic, NESTED_ARRAYS, qos=1, retain=True)
        try:
            command = asyncio.create_task(run_subscribe(config, lines.append, limit=1))
            async with asyncio.timeout(10):
                while not any(line.startswith("subscribed") for line in lines):  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            async with aiomqtt.Client("127.0.0.1", mqtt_broker.port) as client:
                topic = wire.topic_for(config.topic_prefix, stream, TopicKind.BEATS)
                await client.publish(topic, wire.encode(stamped(beat_message(stream, 720))), qos=1)
            return await command
        finally:
            async with aiomqtt.Client("127.0.0.1", mqtt_broker.port) as client:
                await client.publish(status_topic, b"", qos=1, retain=True)  # clear it

    assert run(scenario()) == 1
    (skipped,) = [line for line in lines if line.startswith("skipped malformed message")]
    assert skipped.startswith(f"skipped malformed message: {status_topic}: ")
    assert "too deeply" in skipped
    assert lines[-1].startswith("retained-garbage      2.000 s  N 0.90")  # the beat
