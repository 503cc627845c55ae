"""``serve`` and ``device`` end to end through a real mosquitto: raw in, beats out."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ecg_stream.classify.batcher import ClassifierLike
from ecg_stream.classify.classifier import OnnxBeatClassifier
from ecg_stream.cli import main
from ecg_stream.config import ChainConfig, MqttConfig
from ecg_stream.live.device import DeviceSignal, load_device_signal, publish_device
from ecg_stream.live.mqtt_sink import MqttSink
from ecg_stream.live.serve import RATE_BURST_S, SERVE_SAMPLES_QUEUE, ServeWorker, Shard
from ecg_stream.live.session import RunSummary
from ecg_stream.mqtt.transport import make_client
from ecg_stream.records import Record, resample_to_chain
from ecg_stream.types import LabeledBeat, SignalState
from ecg_stream.wire import (
    BeatMessage,
    RawMessage,
    StatusMessage,
    StreamState,
    TopicKind,
    encode,
    topic_for,
)
from tests.helpers import Collector, MqttBroker, collect_until, expected_beats, run
from tests.models import MakeModel

CONFIG = ChainConfig()
IDLE_S = 2.0
"""Idle timeout of the workers in these tests. Devices and workers share one event loop here:
on a loaded machine a device can pause for half a second, which a shorter timeout would take
for the end of its session (seen once in CI: the last chunk came as a new session)."""


async def serve_devices(
    mqtt: MqttConfig,
    classifier: ClassifierLike,
    devices: Sequence[tuple[str, DeviceSignal]],
    *,
    workers: Sequence[dict[str, Any]] = ({},),
    done: Callable[[Collector], bool] | None = None,
    publish: Callable[[MqttConfig], Coroutine[Any, Any, None]] | None = None,
) -> tuple[Collector, list[RunSummary]]:
    """Start workers and a subscriber, publish the devices (at --speed max), collect until every
    stream is offline (the workers' idle timeout) or ``done``; then stop the workers."""
    ids = [stream_id for stream_id, _ in devices]
    collector = Collector()
    finished = done or (lambda c: all(c.offline_seen(i) for i in ids))
    listen = asyncio.create_task(
        collect_until(mqtt, collector, finished, kinds=(TopicKind.BEATS, TopicKind.STATUS))
    )
    await collector.ready.wait()
    summaries = [RunSummary() for _ in workers]
    serving = []
    for k, options in enumerate(workers):
        worker = make_worker(classifier, mqtt, summaries[k], worker_id=f"w{k}", **options)
        serving.append(asyncio.create_task(worker.run()))
        await worker.wait_subscribed()
    async with asyncio.TaskGroup() as group:
        for stream_id, device in devices:
            group.create_task(publish_device(mqtt, stream_id, device, speed=math.inf, chunk_s=0.1))
        if publish is not None:
            group.create_task(publish(mqtt))
    await listen
    assert not any(task.done() for task in serving)  # nothing above stopped a worker
    for task in serving:
        task.cancel()
    await asyncio.gather(*serving, return_exceptions=True)
    return collector, summaries


def make_worker(
    classifier: ClassifierLike, mqtt: MqttConfig, summary: RunSummary, **options: Any
) -> ServeWorker:
    """A worker with ``serve``'s MQTT sink (lossless, one publisher per stream)."""
    sink = MqttSink(mqtt, summary, lossless=True, queue_size=SERVE_SAMPLES_QUEUE)
    options = {"idle_timeout_s": IDLE_S, **options}
    return ServeWorker(classifier, mqtt, [sink], summary=summary, **options)


def analyzed(device: DeviceSignal, classifier: ClassifierLike) -> list[LabeledBeat]:
    """The beats of the signal the device publishes (indices at the chain's rate)."""
    record = Record("d", "MLII", device.fs_hz, resample_to_chain(device.millivolts(), device.fs_hz))
    return expected_beats(record, classifier)


def beats_of(collector: Collector, stream_id: str) -> list[BeatMessage]:
    return [beat for beat in collector.beats if beat.stream == stream_id]


def statuses_of(collector: Collector, stream_id: str) -> list[StatusMessage]:
    return [status for status in collector.statuses if status.stream == stream_id]


def prefix_config(broker: MqttBroker, prefix: str) -> MqttConfig:
    return replace(broker.config, topic_prefix=prefix)


@pytest.mark.mqtt
def test_device_and_serve_give_the_beats_of_analyze(
    mqtt_broker: MqttBroker, data_dir: Path, classifier: ClassifierLike
) -> None:
    """Same chain, same model: a 360 Hz device through a worker equals ``analyze``."""
    device = load_device_signal("100", data_dir, duration_s=180.0)
    assert device.gain == 200.0
    assert device.values.dtype == np.int16
    record = Record("100", "MLII", 360.0, device.millivolts())
    expected = expected_beats(record, classifier)
    mqtt = prefix_config(mqtt_broker, "test-serve-analyze")
    collector, (summary,) = run(serve_devices(mqtt, classifier, [("100", device)]), timeout_s=120)
    got = beats_of(collector, "100")
    assert len(expected) > 200
    assert [b.sample for b in got] == [e.window.peak.index for e in expected]
    assert [b.chain_sample for b in got] == [e.window.peak.index for e in expected]
    assert [b.label for b in got] == [e.label for e in expected]
    for message, beat in zip(got, expected, strict=True):
        assert message.probabilities == pytest.approx(beat.probabilities, abs=1e-5)
        assert message.time_s == pytest.approx(message.sample / 360.0, abs=1e-6)
    states = [s.state for s in statuses_of(collector, "100")]
    assert states[0] is StreamState.ONLINE
    assert states[-1] is StreamState.OFFLINE
    final = statuses_of(collector, "100")[-1].ingest
    assert final is not None
    assert (final.gaps, final.duplicates, final.malformed, final.dropped) == (0, 0, 0, 0)
    assert final.samples == device.values.size
    assert summary.streams["100"].publisher.dropped_total == 0
    assert collector.malformed == []


@pytest.mark.mqtt
def test_250_and_500_hz_devices_give_the_beats_of_the_same_signal(
    mqtt_broker: MqttBroker, data_dir: Path, classifier: ClassifierLike
) -> None:
    devices = [
        (f"fs{fs:g}", load_device_signal("100", data_dir, fs_hz=fs, duration_s=120.0))
        for fs in (250.0, 500.0)
    ]
    mqtt = prefix_config(mqtt_broker, "test-serve-rates")
    collector, _ = run(serve_devices(mqtt, classifier, devices))
    for stream_id, device in devices:
        record = Record("d", "MLII", device.fs_hz, np.zeros(0))
        expected = [
            record.to_record_index(b.window.peak.index) for b in analyzed(device, classifier)
        ]
        got = [b.sample for b in beats_of(collector, stream_id)]
        assert len(got) == len(expected) > 100
        assert np.abs(np.subtract(got, expected)).max() <= 1  # one sample at the device rate
        assert all(
            b.time_s == pytest.approx(b.sample / device.fs_hz)
            for b in beats_of(collector, stream_id)
        )
        assert statuses_of(collector, stream_id)[-1].ingest.device_fs_hz == device.fs_hz  # type: ignore[union-attr]


@pytest.mark.mqtt
def test_gaps_duplicates_out_of_order_and_malformed_are_counted_never_fatal(
    mqtt_broker: MqttBroker, data_dir: Path, classifier: ClassifierLike
) -> None:
    device = load_device_signal("100", data_dir, duration_s=30.0)
    mqtt = prefix_config(mqtt_broker, "test-serve-bad")
    topic = topic_for(mqtt.topic_prefix, "bad", TopicKind.RAW)
    n = 36
    starts = list(range(0, device.values.size, n))

    def raw(start: int) -> bytes:
        return encode(device.message("bad", start, start + n, None))

    async def publish(config: MqttConfig) -> None:
        order = starts[:100]
        order += [starts[99], starts[50]]  # QoS 1 redelivery, an older chunk
        order += [starts[101], starts[100]]  # out of order: a gap, then an older chunk
        order += starts[130:]  # a gap of 28 chunks
        malformed = [
            b"not json",
            b'{"v":1}',
            json.dumps({**json.loads(raw(0)), "fs_hz": 50.0}).encode(),
            json.dumps({**json.loads(raw(0)), "stream": "other"}).encode(),
            encode(RawMessage.from_mv("bad", 0, 360.0, [0.0]))[:-5],
            b"[" * 100_000,
        ]
        async with make_client(config, identifier="test-bad-device") as client:
            for k, start in enumerate(order):
                await client.publish(topic, raw(start), qos=1)
                if k == 10:
                    for payload in malformed:
                        await client.publish(topic, payload, qos=1)
            await client.publish(f"{config.topic_prefix}/x/y/raw/extra", b"junk", qos=1)

    collector, (summary,) = run(
        serve_devices(mqtt, classifier, [], publish=publish, done=lambda c: c.offline_seen("bad"))
    )
    final = statuses_of(collector, "bad")[-1]
    assert final.state is StreamState.OFFLINE
    assert final.ingest is not None
    assert (final.ingest.gaps, final.ingest.gap_samples) == (2, n + 28 * n)
    assert final.ingest.duplicates == 3
    assert final.ingest.malformed == 6
    assert final.ingest.chunks == 100 + 1 + len(starts[130:])  # 101 after its gap
    assert len(beats_of(collector, "bad")) > 20
    assert summary.malformed == 6


@pytest.mark.mqtt
def test_reorder_puts_chunks_sent_again_behind_newer_ones_back_in_order(
    mqtt_broker: MqttBroker, data_dir: Path, classifier: ClassifierLike
) -> None:
    """``--reorder-s``: chunks 40-44 come after 45-59 (a broker's redelivery after its ack
    wait): no gap, the beats of the signal in order; a chunk that never comes is a gap after
    the wait."""
    device = load_device_signal("100", data_dir, duration_s=30.0)  # 300 chunks
    mqtt = prefix_config(mqtt_broker, "test-serve-reorder")
    topic = topic_for(mqtt.topic_prefix, "late", TopicKind.RAW)
    n = 36
    starts = list(range(0, device.values.size, n))

    async def publish(config: MqttConfig) -> None:
        order = [*starts[:40], *starts[45:60], *starts[40:45], *starts[60:200], *starts[201:]]
        async with make_client(config, identifier="test-reorder-device") as client:
            for start in order:
                message = device.message("late", start, min(start + n, device.values.size), None)
                await client.publish(topic, encode(message), qos=1)

    collector, _ = run(
        serve_devices(
            mqtt,
            classifier,
            [],
            workers=({"reorder_s": 1.0},),
            publish=publish,
            done=lambda c: c.offline_seen("late"),
        )
    )
    final = statuses_of(collector, "late")[-1].ingest
    assert final is not None
    assert (final.gaps, final.gap_samples, final.duplicates) == (1, n, 0)  # chunk 200 only
    cut = device.values[: 200 * n]
    expected = [b.window.peak.index for b in analyzed(replace(device, values=cut), classifier)]
    got = [b.sample for b in beats_of(collector, "late")]
    assert got[: len(expected) - 1] == expected[:-1]  # the last may be cut short by the gap


@pytest.mark.mqtt
def test_an_idle_device_goes_offline_and_comes_back_as_a_new_session(
    mqtt_broker: MqttBroker, data_dir: Path, classifier: ClassifierLike
) -> None:
    device = load_device_signal("100", data_dir, duration_s=20.0)
    later = replace(device, values=device.values)
    mqtt = prefix_config(mqtt_broker, "test-serve-idle")

    async def publish(config: MqttConfig) -> None:
        await publish_device(config, "idle", device, speed=math.inf, chunk_s=0.1)
        await asyncio.sleep(IDLE_S * 4)  # silent past the timeout: offline, state freed
        await publish_device(config, "idle", later, speed=math.inf, chunk_s=0.1)

    def back_offline(c: Collector) -> bool:
        return [s.state for s in statuses_of(c, "idle")].count(StreamState.OFFLINE) >= 2

    collector, (summary,) = run(
        serve_devices(mqtt, classifier, [], publish=publish, done=back_offline)
    )
    states = [s.state for s in statuses_of(collector, "idle") if s.ingest is not None]
    assert states[0] is StreamState.ONLINE
    assert states.count(StreamState.OFFLINE) == 2
    assert summary.streams["idle"].sessions == 2
    # the second session starts afresh at index 0 again: its chunks are not duplicates
    final = statuses_of(collector, "idle")[-1].ingest
    assert final is not None
    assert final.duplicates == 0
    assert final.chunks == 200
    half = len(beats_of(collector, "idle")) // 2
    assert half > 10
    assert [b.sample for b in beats_of(collector, "idle")][:half] == [
        b.sample for b in beats_of(collector, "idle")
    ][half:]


@pytest.mark.mqtt
@pytest.mark.parametrize("workers", [2, 4])
def test_shard_workers_split_the_streams_and_publish_every_beat_once(
    mqtt_broker: MqttBroker, data_dir: Path, classifier: ClassifierLike, workers: int
) -> None:
    base = load_device_signal("100", data_dir, duration_s=90.0)
    devices = []
    for k in range(8):  # eight devices, each a different 15 s of record 100
        part = base.values[k * 10 * 360 : (k * 10 + 15) * 360]
        devices.append((f"bed{k}", replace(base, values=part)))
    mqtt = prefix_config(mqtt_broker, f"test-serve-shard{workers}")
    shards = [{"shard": Shard(i, workers)} for i in range(workers)]
    collector, summaries = run(serve_devices(mqtt, classifier, devices, workers=shards))
    for stream_id, device in devices:
        owner = next(i for i in range(workers) if Shard(i, workers).owns(stream_id))
        expected = [b.window.peak.index for b in analyzed(device, classifier)]
        assert [b.sample for b in beats_of(collector, stream_id)] == expected  # each once
        holders = {s.ingest.worker for s in statuses_of(collector, stream_id) if s.ingest}
        assert holders == {f"w{owner}"}
        for k, summary in enumerate(summaries):
            assert (stream_id in summary.streams) == (k == owner)
    assert sum(summary.foreign for summary in summaries) == (workers - 1) * sum(
        summary.received - summary.foreign for summary in summaries
    )
    assert len({owner for owner in range(workers) if summaries[owner].streams}) > 1


@pytest.mark.mqtt
@pytest.mark.mosquitto_only("queued QoS 1 messages for an absent persistent session")
def test_a_named_worker_gets_the_chunks_sent_while_it_was_down(
    mqtt_broker: MqttBroker, data_dir: Path, classifier: ClassifierLike
) -> None:
    """``--worker-id`` names a persistent broker session: a restart loses no raw chunk."""
    device = load_device_signal("100", data_dir, duration_s=12.0)
    mqtt = prefix_config(mqtt_broker, "test-serve-resume")
    chunk = 36
    starts = list(range(0, device.values.size, chunk))
    before, during = starts[: len(starts) // 2], starts[len(starts) // 2 :]

    async def publish(chunk_starts: list[int]) -> None:
        topic = topic_for(mqtt.topic_prefix, "bed", TopicKind.RAW)
        async with make_client(mqtt, identifier="test-serve-resume-device") as client:
            for start in chunk_starts:
                message = device.message("bed", start, min(start + chunk, device.values.size), None)
                await client.publish(topic, encode(message), qos=1)

    async def start(summary: RunSummary) -> asyncio.Task[RunSummary]:
        worker = make_worker(classifier, mqtt, summary, worker_id="w0")
        task = asyncio.create_task(worker.run())
        await worker.wait_subscribed()
        return task

    async def stop_once_received(task: asyncio.Task[RunSummary], chunks: int) -> None:
        async with asyncio.timeout(30.0):
            while first.received + second.received < chunks:
                assert not task.done()  # nothing but the test stops a worker
                await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    first, second = RunSummary(), RunSummary()

    async def scenario() -> None:
        serving = await start(first)
        await publish(before)
        await stop_once_received(serving, len(before))
        await publish(during)  # no worker runs: the broker keeps them for w0's session
        serving = await start(second)
        await stop_once_received(serving, len(starts))

    run(scenario())
    assert (first.received, second.received) == (len(before), len(during))
    resumed = second.streams["bed"].ingest
    assert resumed is not None
    assert (resumed.chunks, resumed.gaps, resumed.duplicates) == (len(during), 0, 0)


@pytest.mark.mqtt
@pytest.mark.mosquitto_only("shared subscriptions ($share/GROUP/...)")
def test_shared_subscription_round_robin_is_detected_not_classified(
    mqtt_broker: MqttBroker, data_dir: Path, classifier: ClassifierLike
) -> None:
    """mosquitto hands a topic's messages to the group's members in turn: a stream is split."""
    device = load_device_signal("100", data_dir, duration_s=20.0)
    mqtt = prefix_config(mqtt_broker, "test-serve-share")
    group = [{"share_group": "pool"}, {"share_group": "pool"}]

    def both_offline(c: Collector) -> bool:
        offline = [s for s in statuses_of(c, "rr") if s.state is StreamState.OFFLINE]
        return len({s.ingest.worker for s in offline if s.ingest}) == 2

    collector, summaries = run(
        serve_devices(mqtt, classifier, [("rr", device)], workers=group, done=both_offline)
    )
    assert beats_of(collector, "rr") == []  # no beats from fragments
    flagged = {
        s.ingest.worker for s in statuses_of(collector, "rr") if s.ingest and s.ingest.interleaved
    }
    assert flagged == {"w0", "w1"}
    assert all(summary.streams["rr"].ingest.interleaved for summary in summaries)  # type: ignore[union-attr]


@pytest.mark.mqtt
def test_streams_past_the_limit_are_dropped_and_counted(
    mqtt_broker: MqttBroker, data_dir: Path, classifier: ClassifierLike
) -> None:
    """``max_streams`` 1: whichever device comes second is refused while the first is served."""
    device = load_device_signal("100", data_dir, duration_s=20.0)
    mqtt = prefix_config(mqtt_broker, "test-serve-max-streams")
    collector, (summary,) = run(
        serve_devices(
            mqtt,
            classifier,
            [("bed1", device), ("bed2", device)],
            workers=({"max_streams": 1},),
            done=lambda c: c.offline_seen("bed1") or c.offline_seen("bed2"),
        ),
        timeout_s=60,
    )
    assert summary.refused_streams > 0
    assert not (beats_of(collector, "bed1") and beats_of(collector, "bed2"))
    assert "past --max-streams" in summary.format()


@pytest.mark.mqtt
def test_a_flood_loses_its_excess_counted_on_its_status(
    mqtt_broker: MqttBroker, data_dir: Path, classifier: ClassifierLike
) -> None:
    """12 minutes of signal sent at once: past the 10-minute backlog, chunks are dropped."""
    device = load_device_signal("100", data_dir, duration_s=720.0)
    mqtt = prefix_config(mqtt_broker, "test-serve-flood")
    collector, _ = run(serve_devices(mqtt, classifier, [("flood", device)]), timeout_s=120)
    final = statuses_of(collector, "flood")[-1].ingest
    assert final is not None
    assert final.dropped > 0
    assert final.samples <= 1.05 * RATE_BURST_S * 360  # the backlog, and the refill meanwhile


@pytest.mark.mqtt
def test_serve_publishes_the_signal_state_as_replay_does(
    mqtt_broker: MqttBroker, data_dir: Path, classifier: ClassifierLike
) -> None:
    """A flat stretch (electrode off) from a device: its status says lead-off, then ok."""
    device = load_device_signal("100", data_dir, duration_s=40.0)
    values = device.values.copy()
    values[15 * 360 : 25 * 360] = values[15 * 360]  # a flat line of 10 s
    flat = replace(device, values=values)
    mqtt = prefix_config(mqtt_broker, "test-serve-signal")
    collector, _ = run(serve_devices(mqtt, classifier, [("bed1", flat)]), timeout_s=60)
    signals = [status.signal for status in statuses_of(collector, "bed1")]
    assert SignalState.LEAD_OFF in signals
    assert signals.index(SignalState.LEAD_OFF) < len(signals) - 1
    assert SignalState.OK in signals[signals.index(SignalState.LEAD_OFF) :]


@pytest.mark.mqtt
def test_a_model_that_fails_at_run_time_stops_each_stream_with_its_reason(
    mqtt_broker: MqttBroker, data_dir: Path, make_model: MakeModel
) -> None:
    """NaN for real beats: no label is published, each stream goes offline saying why, the
    worker keeps serving (it used to crash and leave every status online)."""
    device = load_device_signal("100", data_dir, duration_s=30.0)
    mqtt = prefix_config(mqtt_broker, "test-serve-model-error")
    with OnnxBeatClassifier(make_model(output="nan_on_real_beats"), ChainConfig()) as broken:
        collector, (summary,) = run(
            serve_devices(
                mqtt,
                broken,
                [("bed1", device), ("bed2", device)],
                done=lambda c: all(
                    any(status.error for status in statuses_of(c, stream_id))
                    for stream_id in ("bed1", "bed2")
                ),
            ),
            timeout_s=60,
        )
    assert collector.beats == []
    for stream_id in ("bed1", "bed2"):
        stopped = [s.error for s in statuses_of(collector, stream_id) if s.error is not None]
        assert "not class probabilities" in stopped[0]
        assert "not class probabilities" in (summary.streams[stream_id].error or "")
    assert summary.exit_status() == 1


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["serve", "--shard", "2/2"], "--shard 2/2 is not valid"),
        (["serve", "--shard", "one/two"], "use I/N"),
        (["serve", "--broker", "http://localhost:1883"], "scheme 'http'"),
        (["serve", "--shard", "0/2", "--share", "g"], "not allowed with"),
        (["serve", "--partition", "0/2", "--shard", "0/2"], "not allowed with"),
        (["serve", "--partition=-1/2"], "--partition -1/2 is not valid"),
        (["serve", "--partition", "1"], "use I/N"),
        (["serve", "--reorder-s", "-1"], "--reorder-s -1.0 must lie in"),
        (["serve", "--broker", "mqtt://a:1,mqtts://b:2"], "mixes mqtt:// and mqtts://"),
        (["nats-cluster", "--nodes", "0"], "use 1 to 9 nodes"),
        (["nats-cluster", "--port", "70000"], "taken or out of range"),
        (["device", "100", "--fs", "50"], "--fs 50 Hz is not a device rate"),
        (["device", "100", "--fs", "2000"], "100 to 1000 Hz"),
        (["device", "100", "--speed", "fast"], "--speed"),
        (["device", "/nonexistent/rec999", "--broker", "mqtt://127.0.0.1:9"], "rec999"),
        (["device", "100", "--broker", "mqtt://a:b@localhost"], "credentials"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse refuses its own way, with status 2
        code = int(exit_.code or 0)
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err
    assert "Traceback" not in err


@pytest.mark.mqtt
def test_serve_command_stops_on_sigterm_with_every_stream_offline(
    mqtt_broker: MqttBroker, data_dir: Path
) -> None:
    device = load_device_signal("100", data_dir, duration_s=30.0)
    mqtt = prefix_config(mqtt_broker, "test-serve-cli")
    command = [
        sys.executable,
        "-m",
        "ecg_stream.cli",
        "serve",
        "--broker",
        f"mqtt://127.0.0.1:{mqtt_broker.port}",
        "--topic-prefix",
        mqtt.topic_prefix,
        "--quiet",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ
    )
    assert process.stdout is not None
    try:
        assert "serving every stream" in process.stdout.readline()
        collector = Collector()

        async def scenario() -> None:
            listen = asyncio.create_task(
                collect_until(
                    mqtt,
                    collector,
                    lambda c: c.offline_seen("a") and c.offline_seen("b"),
                    kinds=(TopicKind.BEATS, TopicKind.STATUS),
                )
            )
            await collector.ready.wait()
            for stream_id in ("a", "b"):
                await publish_device(mqtt, stream_id, device, speed=math.inf, chunk_s=0.1)
            await asyncio.sleep(2.0)  # received by now; processed or not, SIGTERM drains it
            process.send_signal(signal.SIGTERM)
            await listen

        run(scenario())
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "served 2 streams" in output
    # the chunks received were processed and flushed: every beat of both devices went out
    for stream_id in ("a", "b"):
        assert [s.state for s in statuses_of(collector, stream_id)][-1] is StreamState.OFFLINE
        assert len(beats_of(collector, stream_id)) > 30
