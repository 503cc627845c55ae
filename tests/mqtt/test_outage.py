"""No labeled beat lost, and every loss counted: a real mosquitto killed (SIGKILL) and restarted
on the same port in the middle of a replay; samples dropped before beats; duplicates dropped."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiomqtt
import msgspec
import pytest

from ecg_stream import wire
from ecg_stream.classify.classifier import OnnxBeatClassifier, default_model_path
from ecg_stream.config import Backoff, ChainConfig, MqttConfig
from ecg_stream.live.replay import RecordReplay
from ecg_stream.live.replay_command import replay_sinks
from ecg_stream.live.session import RunSummary
from ecg_stream.live.sources import StreamSpec
from ecg_stream.mqtt.broker import EmbeddedBroker, broker_for
from ecg_stream.mqtt.mosquitto import free_port
from ecg_stream.mqtt.publisher import BeatPublisher
from ecg_stream.mqtt.subscriber import WireSubscriber
from ecg_stream.records import Record
from ecg_stream.types import BeatClass
from ecg_stream.wire import BeatMessage, StatusMessage, StreamState, TopicKind, WireMessage
from tests.helpers import (
    BrokerKind,
    Collector,
    MqttBroker,
    beat_message,
    collect_until,
    expected_beats,
    run,
    samples_message,
    stamped,
    status_of,
)

pytestmark = pytest.mark.mqtt

FS_HZ = 360
OUTAGE_S = 1.5
LATE = Backoff(initial_s=6.0, max_s=6.0)
"""The subscriber comes back 3-6 s after the crash, after the publisher (0.5 s backoff, once the
broker is back after OUTAGE_S): what is published meanwhile reaches it only through its session,
which the broker restored from disk."""


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[MqttBroker]:
    """mosquitto with persistence on (sessions and queued messages saved every second)."""
    broker = MqttBroker(tmp_path, free_port(), BrokerKind.MOSQUITTO, persistent=True)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def classifier() -> Iterator[OnnxBeatClassifier]:
    with OnnxBeatClassifier(default_model_path(), ChainConfig(), threads=1) as shipped:
        yield shipped


def analyzed(record: Record, classifier: OnnxBeatClassifier) -> list[tuple[int, BeatClass]]:
    """The record's beats: (R-peak index at 360 Hz, label)."""
    return [(b.window.peak.index, b.label) for b in expected_beats(record, classifier)]


@dataclass
class Received:
    """What a reconnecting subscriber got, and when it stops."""

    stream: str
    beats: list[BeatMessage] = field(default_factory=list)
    statuses: list[StatusMessage] = field(default_factory=list)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    kill_after: int | None = None  # beats after which the broker dies (0: once online)
    reached: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, _topic: str, message: WireMessage) -> bool:
        if isinstance(message, BeatMessage):
            self.beats.append(message)
            if self.kill_after is not None and len(self.beats) >= self.kill_after:
                self.reached.set()
        elif isinstance(message, StatusMessage):
            self.statuses.append(message)
            if self.kill_after == 0 and message.state is StreamState.ONLINE:
                self.reached.set()
            return message.state is StreamState.OFFLINE
        return False


async def next_autosave(broker: MqttBroker) -> None:
    """Wait until mosquitto next writes its persistence file (what it held is then on disk).

    With ``autosave_interval 1``, mosquitto 2.0 saves every 2 s (it compares whole seconds): a
    fixed sleep of 1.5 s missed the save about one time in four, and the crash then lost the
    subscriber's session (no beat reached it).
    """

    def written_ns() -> int | None:
        path = broker.database_path
        return path.stat().st_mtime_ns if path.exists() else None

    before = written_ns()
    while written_ns() == before:  # noqa: ASYNC110 (a file written by another process: no Event)
        await asyncio.sleep(0.05)


async def replay_through_outage(
    broker: MqttBroker,
    record: Record,
    classifier: OnnxBeatClassifier,
    *,
    speed: float,
    kill_after_beats: int,
) -> tuple[RunSummary, Received, WireSubscriber]:
    """Replay ``record`` while a persistent subscriber listens; kill and restart the broker."""
    config = replace(broker.config, topic_prefix=f"test-outage-{math.isinf(speed)}")
    stream = "100"
    received = Received(stream, kill_after=kill_after_beats)
    subscriber = WireSubscriber(
        config,
        stream=stream,
        client_id=f"test-outage-subscriber-{broker.port}",
        backoff=LATE,
    )
    listen = asyncio.create_task(
        subscriber.follow(received.take, on_connect=received.subscribed.set)
    )
    await received.subscribed.wait()
    await next_autosave(broker)  # the subscription is on disk before the crash

    summary = RunSummary()
    sinks = replay_sinks(config, summary, speed=speed, samples_s=None, say=None)
    live = RecordReplay(
        [StreamSpec(stream, record)], classifier, sinks, speed=speed, summary=summary
    )
    replay = asyncio.create_task(live.run())
    await received.reached.wait()
    await asyncio.to_thread(broker.kill)
    await asyncio.sleep(OUTAGE_S)
    await asyncio.to_thread(broker.start)
    summary = await replay
    await listen
    return summary, received, subscriber


@pytest.mark.mosquitto_only("amqtt keeps no session across a restart (no persistence)")
# At --speed max the whole slice (2.5 min, about 190 beats) is labeled within a second: the
# broker dies as soon as the stream is online, so the crash surely falls inside the replay; at
# --speed 20 (90 s, about 110 beats, in 4.5 s) after 25 beats, with beats in flight and some 85
# still to come.
@pytest.mark.parametrize(
    ("speed", "slice_s", "kill_after_beats"), [(math.inf, 150.0, 0), (20.0, 90.0, 25)]
)
def test_no_beat_lost_when_the_broker_is_killed_and_restarted(
    persistent_broker: MqttBroker,
    record_100: Record,
    classifier: OnnxBeatClassifier,
    speed: float,
    slice_s: float,
    kill_after_beats: int,
) -> None:
    record = replace(record_100, samples=record_100.samples[: round(slice_s * FS_HZ)])
    expected = analyzed(record, classifier)
    summary, received, subscriber = run(
        replay_through_outage(
            persistent_broker, record, classifier, speed=speed, kill_after_beats=kill_after_beats
        ),
        timeout_s=120,
    )
    got = [(b.chain_sample, b.label) for b in received.beats]
    assert len(expected) > 100
    assert got == expected  # every beat exactly once, in order, with analyze's label
    report = summary.streams["100"]
    assert report.publisher.reconnects >= 1  # the crash happened while the stream ran
    assert subscriber.reconnects >= 1
    assert summary.beats_lost == 0
    assert report.publisher.dropped[TopicKind.BEATS] == 0
    assert report.publisher.published[TopicKind.BEATS] >= len(expected)
    assert "beats lost: 0" in summary.format()
    assert received.statuses[-1].state is StreamState.OFFLINE


def test_samples_are_dropped_before_beats(mqtt_broker: MqttBroker) -> None:
    """A full display queue drops samples; beats have a buffer of their own and go first."""
    stream = "samples-first"
    collector = Collector()

    async def scenario() -> BeatPublisher:
        config = mqtt_broker.config
        listen = asyncio.create_task(
            collect_until(config, collector, lambda c: c.offline_seen(stream), stream=stream)
        )
        await collector.ready.wait()
        publisher = BeatPublisher(config, status_of(stream), queue_size=5, beat_buffer_size=40)
        async with publisher:
            for index in range(40):  # no await: the worker is idle, the queues fill up
                publisher.submit(samples_message(stream, index * 36))
                publisher.submit(beat_message(stream, index * 300), arrival_s=publisher.clock())
            assert publisher.queued == 5 + 40
        await listen
        return publisher

    publisher = run(scenario())
    assert publisher.stats.dropped[TopicKind.SAMPLES] == 35
    assert publisher.stats.dropped[TopicKind.BEATS] == 0
    assert [b.chain_sample for b in collector.beats] == [i * 300 for i in range(40)]
    assert [s.start_index for s in collector.samples] == [i * 36 for i in range(5)]


def test_a_full_beat_buffer_drops_and_counts_new_beats(mqtt_broker: MqttBroker) -> None:
    async def scenario() -> BeatPublisher:
        config = mqtt_broker.config
        stream = "beat-buffer"
        async with BeatPublisher(config, status_of(stream), beat_buffer_size=3) as publisher:
            accepted = [
                publisher.submit(beat_message(stream, i * 300), arrival_s=publisher.clock())
                for i in range(5)
            ]
            assert accepted == [True] * 3 + [False] * 2
        return publisher

    publisher = run(scenario())
    assert publisher.stats.dropped[TopicKind.BEATS] == 2
    assert publisher.stats.published[TopicKind.BEATS] == 3


def test_a_beat_delivered_twice_is_received_once(mqtt_broker: MqttBroker) -> None:
    stream = "twice"
    config = replace(mqtt_broker.config, topic_prefix="test-twice")
    subscriber = WireSubscriber(config, stream=stream, kinds=(TopicKind.BEATS,))
    beats: list[BeatMessage] = []

    def take(_topic: str, message: WireMessage) -> bool:
        assert isinstance(message, BeatMessage)
        beats.append(message)
        return len(beats) == 3

    async def scenario() -> None:
        subscribed = asyncio.Event()
        listen = asyncio.create_task(subscriber.follow(take, on_connect=subscribed.set))
        await subscribed.wait()
        first = stamped(beat_message(stream, 300))
        # re-sent after a drop; then the stream restarted
        again = msgspec.structs.replace(first, published_at=first.published_at + 5.0)
        rerun = msgspec.structs.replace(first, r_wall_time=first.r_wall_time + 3600.0)
        topic = wire.topic_for(config.topic_prefix, stream, TopicKind.BEATS)
        async with aiomqtt.Client(config.host, config.port) as client:
            for message in (first, again, first, rerun, stamped(beat_message(stream, 600))):
                await client.publish(topic, wire.encode(message), qos=1)
        await listen

    run(scenario())
    assert [b.chain_sample for b in beats] == [300, 300, 600]
    assert beats[1].r_wall_time == beats[0].r_wall_time + 3600.0
    assert subscriber.duplicates == 2
    assert subscriber.received == 3


def test_persistent_subscriber_gets_what_was_published_while_it_was_away(
    mqtt_broker: MqttBroker,
) -> None:
    """Same client id, later: the broker kept the session and the beats queued for it."""
    stream = "away"
    config = replace(mqtt_broker.config, topic_prefix="test-away")
    client_id = f"test-away-{mqtt_broker.port}"
    topic = wire.topic_for(config.topic_prefix, stream, TopicKind.BEATS)

    async def scenario() -> list[int]:
        async with WireSubscriber(config, stream=stream, client_id=client_id):
            pass  # subscribed, then gone
        async with aiomqtt.Client(config.host, config.port) as client:
            for index in range(1, 4):
                await client.publish(topic, wire.encode(stamped(beat_message(stream, index))), 1)
        got: list[int] = []
        async with WireSubscriber(config, stream=stream, client_id=client_id) as subscriber:
            async for _topic, message in subscriber.messages():
                assert isinstance(message, BeatMessage)
                got.append(message.chain_sample)
                if len(got) == 3:
                    break
        return got

    assert run(scenario()) == [1, 2, 3]


def test_a_replay_on_another_replays_embedded_broker_says_so_and_keeps_its_beats() -> None:
    """The second replay finds amqtt at the default address: one line; when that broker goes
    away its beats wait, reach a broker that comes back, and what never does is counted."""
    port = free_port()
    stream = "second"
    lines: list[str] = []
    got: list[BeatMessage] = []

    def take(_topic: str, message: WireMessage) -> bool:
        if isinstance(message, BeatMessage):
            got.append(message)
        return len(got) == 10

    async def scenario() -> tuple[MqttConfig, BeatPublisher, BeatPublisher]:
        url = f"mqtt://127.0.0.1:{port}"
        first = EmbeddedBroker(port=port)  # the first replay's
        await first.__aenter__()
        async with broker_for(None, "test-second", lines.append, default_url=url) as config:
            slow = Backoff(initial_s=2.0, max_s=2.0)  # back 1-2 s after the broker
            # leaving after the second broker is gone too: 1 s for its offline status, not 10
            publisher = BeatPublisher(config, status_of(stream), backoff=slow, drain_timeout_s=1.0)
            async with publisher:
                await first.__aexit__(None, None, None)  # the first replay ended
                for index in range(10):
                    publisher.submit(beat_message(stream, index * 300), publisher.clock())
                async with EmbeddedBroker(port=port):  # a broker there again
                    subscriber = WireSubscriber(config, stream=stream, kinds=(TopicKind.BEATS,))
                    subscribed = asyncio.Event()
                    listen = asyncio.create_task(subscriber.follow(take, on_connect=subscribed.set))
                    await subscribed.wait()
                    await listen
            # and one whose broker never comes back: its beats are counted, not lost silently
            second = EmbeddedBroker(port=port)
            await second.__aenter__()
            stranded = BeatPublisher(config, status_of(stream), drain_timeout_s=1.0)
            async with stranded:
                await second.__aexit__(None, None, None)
                for index in range(5):
                    stranded.submit(beat_message(stream, index * 300), stranded.clock())
        return config, publisher, stranded

    config, publisher, stranded = run(scenario())
    assert config.mqtt5 is False
    assert len(lines) == 1
    assert "an MQTT 3.1.1 broker: the embedded broker of another replay" in lines[0]
    assert [b.chain_sample for b in got] == [i * 300 for i in range(10)]
    assert publisher.stats.dropped[TopicKind.BEATS] == 0
    assert publisher.stats.reconnects == 1
    assert stranded.stats.dropped[TopicKind.BEATS] == 5
