"""BeatPublisher against a real MQTT broker: order, status, last will, drops, reconnects."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from ecg_stream import wire
from ecg_stream.config import Backoff, MqttConfig
from ecg_stream.errors import BrokerError, ConfigError
from ecg_stream.mqtt.mosquitto import free_port
from ecg_stream.mqtt.publisher import BeatPublisher, PublisherState
from ecg_stream.wire import StreamState, TopicKind
from tests.helpers import (
    Collector,
    MqttBroker,
    beat_message,
    collect_until,
    run,
    samples_message,
    status_of,
)


def test_backoff_is_capped_jittered_and_growing() -> None:
    backoff, rng = Backoff(initial_s=0.5, max_s=4.0), random.Random(1)
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    delays = [backoff.delay_s(attempt, rng) for attempt in range(len(ceilings))]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays[3:]}) > 1  # jitter: capped delays differ
    assert backoff.delay_s(10_000, rng) <= 4.0


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ConfigError, match="initial_s"):
        Backoff(initial_s=5.0, max_s=1.0)


@pytest.mark.mqtt
def test_publishes_in_order_between_online_and_offline(mqtt_broker: MqttBroker) -> None:
    stream = "order"
    collector = Collector()
    states: list[PublisherState] = []

    async def scenario() -> BeatPublisher:
        listen = asyncio.create_task(
            collect_until(
                mqtt_broker.config, collector, lambda c: c.offline_seen(stream), stream=stream
            )
        )
        await collector.ready.wait()
        async with BeatPublisher(mqtt_broker.config, status_of(stream)) as publisher:
            states.append(publisher.state)
            for index in range(50):
                assert publisher.submit(samples_message(stream, index * 36))
                assert publisher.submit(
                    beat_message(stream, index * 300), arrival_s=publisher.clock()
                )
        states.append(publisher.state)
        await listen
        return publisher

    publisher = run(scenario())
    assert states == [PublisherState.OPEN, PublisherState.CLOSED]
    assert [b.chain_sample for b in collector.beats] == [i * 300 for i in range(50)]
    assert [s.start_index for s in collector.samples] == [i * 36 for i in range(50)]
    assert [s.state for s in collector.statuses] == [StreamState.ONLINE, StreamState.OFFLINE]
    assert all(b.compute_ms >= 0 and b.published_at > 1.6e9 for b in collector.beats)
    stats = publisher.stats
    assert stats.published[TopicKind.BEATS] == 50
    assert stats.published[TopicKind.SAMPLES] == 50
    assert stats.dropped_total == 0
    assert stats.compute.count == 50
    assert collector.malformed == []


@pytest.mark.mqtt
def test_full_queue_drops_and_counts(mqtt_broker: MqttBroker) -> None:
    async def scenario() -> BeatPublisher:
        async with BeatPublisher(mqtt_broker.config, status_of("drops"), queue_size=3) as publisher:
            accepted = [publisher.submit(samples_message("drops", i * 36)) for i in range(10)]
            assert accepted == [True] * 3 + [False] * 7  # no await in between: worker idle
        return publisher

    publisher = run(scenario())
    assert publisher.stats.dropped[TopicKind.SAMPLES] == 7
    assert publisher.stats.published[TopicKind.SAMPLES] == 3


@pytest.mark.mqtt
def test_put_waits_for_room_instead_of_dropping(mqtt_broker: MqttBroker) -> None:
    async def scenario() -> BeatPublisher:
        async with BeatPublisher(mqtt_broker.config, status_of("put"), queue_size=2) as publisher:
            for index in range(40):
                await publisher.put(samples_message("put", index * 36))
        return publisher

    publisher = run(scenario())
    assert publisher.stats.published[TopicKind.SAMPLES] == 40
    assert publisher.stats.dropped_total == 0


@pytest.mark.mqtt
def test_unreachable_broker_is_a_broker_error() -> None:
    config = MqttConfig(host="127.0.0.1", port=free_port(), connect_timeout_s=2.0)

    async def scenario() -> None:
        async with BeatPublisher(config, status_of("nowhere")):
            pass

    with pytest.raises(BrokerError, match=rf"mqtt://127\.0\.0\.1:{config.port}"):
        run(scenario())


@pytest.mark.mqtt
def test_beat_without_arrival_time_is_refused(mqtt_broker: MqttBroker) -> None:
    async def scenario() -> None:
        async with BeatPublisher(mqtt_broker.config, status_of("noarrival")) as publisher:
            with pytest.raises(ValueError, match="arrival_s"):
                publisher.submit(beat_message("noarrival", 0))
            with pytest.raises(ValueError, match="stream 'other'"):
                publisher.submit(samples_message("other", 0))

    run(scenario())


@pytest.mark.mqtt
def test_cancellation_drains_then_publishes_offline(mqtt_broker: MqttBroker) -> None:
    """Ctrl-C cancels the stream's task: queued messages still go out, then offline."""
    stream = "cancel"
    collector = Collector()

    async def stream_task(started: asyncio.Event) -> None:
        async with BeatPublisher(mqtt_broker.config, status_of(stream)) as publisher:
            for index in range(20):
                publisher.submit(beat_message(stream, index * 300), arrival_s=publisher.clock())
            started.set()
            await asyncio.sleep(3600)

    async def scenario() -> None:
        listen = asyncio.create_task(
            collect_until(
                mqtt_broker.config, collector, lambda c: c.offline_seen(stream), stream=stream
            )
        )
        await collector.ready.wait()
        started = asyncio.Event()
        task = asyncio.create_task(stream_task(started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await listen

    run(scenario())
    assert len(collector.beats) == 20
    assert collector.statuses[-1].state is StreamState.OFFLINE


PUBLISHER_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from ecg_stream.config import MqttConfig
    from ecg_stream.mqtt.publisher import BeatPublisher
    from tests.helpers import status_of

    async def main():
        config = MqttConfig(host="127.0.0.1", port=int(sys.argv[1]))
        async with BeatPublisher(config, status_of("will")):
            print("online", flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@pytest.mark.mqtt
def test_killed_publisher_goes_offline_by_last_will(mqtt_broker: MqttBroker) -> None:
    async def first_status(condition: Callable[[Collector], bool]) -> list[wire.StatusMessage]:
        collector = Collector()
        config, kinds = mqtt_broker.config, (TopicKind.STATUS,)
        await collect_until(config, collector, condition, stream="will", kinds=kinds)
        return collector.statuses

    with subprocess.Popen(
        [sys.executable, "-c", PUBLISHER_SCRIPT, str(mqtt_broker.port)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == b"online"
            statuses = run(first_status(lambda c: bool(c.statuses)))
            assert statuses[0].state is StreamState.ONLINE  # retained
            process.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker sends the will
            process.wait(timeout=10)
            run(first_status(lambda c: c.offline_seen("will")), timeout_s=15)
        finally:
            if process.poll() is None:
                process.kill()


@pytest.mark.mqtt
def test_reconnects_after_broker_restart(own_mqtt_broker: MqttBroker) -> None:
    stream = "restart"
    fast = Backoff(initial_s=0.05, max_s=0.2)

    async def until(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not condition():  # noqa: ASYNC110 - polls the publisher's public state
                await asyncio.sleep(0.02)

    async def scenario() -> BeatPublisher:
        config = own_mqtt_broker.config
        async with BeatPublisher(config, status_of(stream), backoff=fast) as publisher:
            publisher.submit(samples_message(stream, 0))
            await until(lambda: publisher.stats.published[TopicKind.SAMPLES] == 1)
            await asyncio.to_thread(own_mqtt_broker.stop)
            index = 1
            while publisher.connected:  # the next publish finds the link gone
                publisher.submit(samples_message(stream, index * 36))
                index += 1
                await asyncio.sleep(0.05)
            await asyncio.to_thread(own_mqtt_broker.start)
            collector = Collector()
            listen = asyncio.create_task(
                collect_until(config, collector, lambda c: bool(c.beats), stream=stream)
            )
            await collector.ready.wait()
            await until(lambda: publisher.connected)
            publisher.submit(beat_message(stream, 300), arrival_s=publisher.clock())
            await listen
            assert collector.statuses[0].state is StreamState.ONLINE  # re-announced, retained
        return publisher

    publisher = run(scenario())
    assert publisher.stats.reconnects == 1
    assert publisher.stats.published[TopicKind.BEATS] == 1
