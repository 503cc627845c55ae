"""``serve --partition`` on a real 3-node NATS cluster (MQTT 3.1.1 on every node), on loopback.

Devices, workers and subscribers connect to different nodes; the broker hashes each stream into
one of 3 partitions and each worker receives only its partition's raw messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from ecg_stream.classify.batcher import ClassifierLike
from ecg_stream.config import MqttConfig
from ecg_stream.live.device import DeviceSignal, load_device_signal, publish_device
from ecg_stream.live.serve import Partition
from ecg_stream.live.session import RunSummary
from ecg_stream.mqtt.nats import NatsCluster
from ecg_stream.wire import StreamState, TopicKind
from tests.helpers import Collector, collect_until, eventually, run
from tests.live.test_serve import analyzed, beats_of, make_worker, statuses_of

PARTITIONS = 3
IDLE_TIMEOUT_S = 10.0
"""``serve``'s default: raw chunks may stall for the 5 s of a lost node's leader election."""
REORDER_S = 10.0
"""``serve --reorder-s`` as docs/cluster.md advises (the nodes' ack wait is 2 s)."""
COLLECT_TIMEOUT_S = 90.0
"""Longest wait for every stream's beats (a killed node's JetStream leaders move in ~5-10 s)."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """Three nodes, MQTT and JetStream on each, raw topics hashed into 3 partitions."""
    with NatsCluster(tmp_path_factory.mktemp("nats"), nodes=3, partitions=PARTITIONS) as nodes:
        yield nodes


@pytest.fixture(scope="module")
def devices(data_dir: Path) -> list[tuple[str, DeviceSignal]]:
    """Nine devices, each a different 20 s of record 100."""
    base = load_device_signal("100", data_dir, duration_s=200.0)
    return [
        (f"bed{k}", replace(base, values=base.values[k * 20 * 360 : (k + 1) * 20 * 360]))
        for k in range(9)
    ]


def on_node(cluster: NatsCluster, node: int, prefix: str) -> MqttConfig:
    """Every node of the cluster, node ``node`` first, under ``prefix``."""
    return replace(cluster.node_config(node), topic_prefix=prefix)


def owners(collector: Collector, stream_id: str) -> set[str]:
    """The workers that published a status of the stream."""
    return {s.ingest.worker for s in statuses_of(collector, stream_id) if s.ingest}


async def serve_partitions(
    cluster: NatsCluster,
    prefix: str,
    classifier: ClassifierLike,
    devices: Sequence[tuple[str, DeviceSignal]],
    *,
    speed: float = math.inf,
    kill_node_after_s: float | None = None,
) -> tuple[Collector, list[RunSummary]]:
    """A worker per partition on node K, devices spread over the nodes, a subscriber on node 0;
    with ``kill_node_after_s``, node 2 (worker 2's) is killed that long after the devices start
    and no device connects there. Returns once every stream is offline (the workers' idle
    timeout) with at least the beats of ``analyze``."""
    expected = {stream_id: len(analyzed(device, classifier)) for stream_id, device in devices}
    collector = Collector()

    def done(c: Collector) -> bool:
        return all(
            c.offline_seen(i) and len(beats_of(c, i)) >= count for i, count in expected.items()
        )

    listen = asyncio.create_task(
        collect_until(
            on_node(cluster, 0, prefix), collector, done, kinds=(TopicKind.BEATS, TopicKind.STATUS)
        )
    )
    await collector.ready.wait()
    summaries = [RunSummary() for _ in range(PARTITIONS)]
    serving = []
    for k in range(PARTITIONS):
        worker = make_worker(
            classifier,
            on_node(cluster, k, prefix),
            summaries[k],
            worker_id=f"w{k}",
            partition=Partition(k, PARTITIONS),
            reorder_s=REORDER_S,
            idle_timeout_s=IDLE_TIMEOUT_S,
        )
        serving.append(asyncio.create_task(worker.run()))
        await worker.wait_subscribed()
    device_nodes = [0, 1] if kill_node_after_s is not None else [0, 1, 2]
    async with asyncio.TaskGroup() as group:
        for k, (stream_id, device) in enumerate(devices):
            node = device_nodes[k % len(device_nodes)]
            config = on_node(cluster, node, prefix)
            group.create_task(publish_device(config, stream_id, device, speed=speed, chunk_s=0.1))
        if kill_node_after_s is not None:
            await asyncio.sleep(kill_node_after_s)
            await asyncio.to_thread(cluster.kill, 2)
    with contextlib.suppress(TimeoutError):  # then the test's assertions say what is missing
        async with asyncio.timeout(COLLECT_TIMEOUT_S):
            await asyncio.shield(listen)
    listen.cancel()
    await asyncio.gather(listen, return_exceptions=True)
    assert not any(task.done() for task in serving)  # nothing above stopped a worker
    for task in serving:
        task.cancel()
    await asyncio.gather(*serving, return_exceptions=True)
    return collector, summaries


@pytest.mark.mqtt
def test_partition_workers_on_three_nodes_give_the_beats_of_analyze(
    cluster: NatsCluster,
    devices: list[tuple[str, DeviceSignal]],
    classifier: ClassifierLike,
) -> None:
    collector, summaries = run(
        serve_partitions(cluster, "test-partition", classifier, devices), timeout_s=180
    )
    for stream_id, device in devices:
        expected = [b.window.peak.index for b in analyzed(device, classifier)]
        assert [b.sample for b in beats_of(collector, stream_id)] == expected  # each once
        (owner,) = owners(collector, stream_id)  # one worker served the stream
        assert [stream_id in s.streams for s in summaries].count(True) == 1
        assert stream_id in summaries[int(owner[1:])].streams
    assert all(summary.foreign == 0 for summary in summaries)  # only its partition's
    chunks = sum(math.ceil(device.values.size / 36) for _, device in devices)
    assert sum(summary.received for summary in summaries) == chunks
    assert sum(1 for summary in summaries if summary.streams) > 1  # the hash spreads them
    assert collector.malformed == []


@pytest.mark.mqtt
def test_a_killed_node_loses_no_beat_its_clients_move_to_the_next(
    cluster: NatsCluster,
    devices: list[tuple[str, DeviceSignal]],
    classifier: ClassifierLike,
) -> None:
    """Node 2 dies while its worker serves: the worker and its streams' publishers move to
    node 0 and resume their persistent sessions there."""
    try:
        collector, summaries = run(
            serve_partitions(
                cluster,
                "test-partition-kill",
                classifier,
                devices,
                speed=10.0,  # 2 s per device
                kill_node_after_s=1.0,
            ),
            timeout_s=180,
        )
    finally:
        cluster.start_node(2)
    for stream_id, device in devices:
        expected = [b.window.peak.index for b in analyzed(device, classifier)]
        assert [b.sample for b in beats_of(collector, stream_id)] == expected
    moved = summaries[2]
    assert moved.streams  # worker 2 had streams when its node died
    assert sum(report.publisher.reconnects for report in moved.streams.values()) > 0
    lost = sum(report.publisher.beats_lost for s in summaries for report in s.streams.values())
    assert lost == 0


@pytest.mark.mqtt
def test_a_killed_worker_restarted_resumes_its_partition(
    cluster: NatsCluster,
    devices: list[tuple[str, DeviceSignal]],
    tmp_path: Path,
) -> None:
    """``serve --partition 1/3`` SIGKILLed: its streams go offline (the broker's last wills);
    the same ``--worker-id`` started on another node serves the partition again."""
    prefix = "test-partition-restart"
    collector = Collector()
    workers: list[subprocess.Popen[bytes]] = []

    def start_worker(node: int) -> None:
        command = [
            *(sys.executable, "-m", "ecg_stream.cli", "serve", "--quiet"),
            *("--partition", f"1/{PARTITIONS}", "--worker-id", "w1", "--topic-prefix", prefix),
            *("--broker", on_node(cluster, node, prefix).url, "--idle-timeout-s", "3"),
        ]
        with (tmp_path / f"serve-{node}.log").open("wb") as log:
            workers.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))

    async def kill_and_restart() -> set[str]:
        start_worker(1)
        await eventually(lambda: bool(collector.beats), 60)
        served = {beat.stream for beat in collector.beats}
        workers[0].kill()
        workers[0].wait()
        await eventually(lambda: all(collector.offline_seen(i) for i in served), 60)  # wills
        before = len(collector.beats)
        start_worker(2)
        await eventually(lambda: any(b.stream in served for b in collector.beats[before:]), 60)
        return served

    async def scenario() -> set[str]:
        listen = asyncio.create_task(
            collect_until(on_node(cluster, 0, prefix), collector, lambda _: False)
        )
        await collector.ready.wait()
        config = on_node(cluster, 0, prefix)
        async with asyncio.TaskGroup() as group:
            sending = [
                group.create_task(publish_device(config, i, device, speed=2.0, chunk_s=0.1))
                for i, device in devices
            ]
            served = await kill_and_restart()
            for task in sending:  # the devices' remaining signal is not needed
                task.cancel()
        listen.cancel()
        await asyncio.gather(listen, return_exceptions=True)
        return served

    try:
        served = run(scenario(), timeout_s=180)
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    assert served
    for stream_id in served:
        states = [s.state for s in statuses_of(collector, stream_id)]
        assert states.count(StreamState.ONLINE) >= 2  # served again after the will's offline
        assert StreamState.OFFLINE in states
