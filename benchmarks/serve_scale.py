"""How many real-time devices one ``ecg-stream serve`` process keeps up with.

For each N in ``--streams``: a mosquitto of its own on loopback, one ``serve`` process (the
shipped model, ``--quiet``; or ``--shards K`` processes, ``--shard 0/K`` ...; or, with
``--split partition``, a 3-node NATS cluster of its own and K processes ``--partition 0/K``
..., worker k on node k), N simulated
devices at 360 Hz publishing 100 ms chunks in real time (``ecg-stream device``, spread over
``--device-procs`` other processes), and a subscriber here that receives every beat and status.
Printed per N: beats received against the beats the chain finds offline (nothing lost), the
worker's ingest counters (gaps, duplicates, chunks dropped: nothing dropped), compute latency
(chunk arrival -> beat published, as the worker stamps it) and end-to-end latency (-> received
here) at p50/p95/p99/max, the workers' CPU and the device processes' (in % of one core), the
raw messages each worker received (with ``--shard``, every worker receives every message), and
the backlog: how long after the last device stopped the worker announced the last stream
offline (about the idle timeout when it keeps up; a worker that falls behind catches up later).
A worker still behind after ``--catch-up-s`` is stopped (SIGTERM: it labels and publishes what
it holds) and the beats it published by then are shown beside those received.

    python benchmarks/serve_scale.py --data-dir ../shared/data/mitdb --streams 4 --duration-s 20
    python benchmarks/serve_scale.py --streams 8 16 32 64 128 --duration-s 60   # the curve
    python benchmarks/serve_scale.py --streams 128 --shards 2 --samples-ms 500
    python benchmarks/serve_scale.py --streams 64 --shards 3 --split partition   # vs --split shard

Not a test: figures depend on the machine and its load (run it on a quiet one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ecg_stream.bench.latency import mosquitto
from ecg_stream.config import CHAIN_FS_HZ, ChainConfig, MqttConfig
from ecg_stream.live.analysis import detect_record
from ecg_stream.mqtt.nats import NatsCluster
from ecg_stream.mqtt.subscriber import WireSubscriber
from ecg_stream.records import Record, load_record
from ecg_stream.types import BeatWindow
from ecg_stream.wire import BeatMessage, StatusMessage, StreamState, TopicKind

IDLE_TIMEOUT_S = 2.0
CLI = [sys.executable, "-m", "ecg_stream.cli"]


@dataclass
class Received:
    beats: dict[str, int] = field(default_factory=dict)
    compute_ms: list[float] = field(default_factory=list)
    e2e_ms: list[float] = field(default_factory=list)
    final: dict[str, StatusMessage] = field(default_factory=dict)
    last_offline_s: float = math.nan


def percentiles(values: list[float]) -> str:
    if not values:
        return "-"
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return f"{p50:7.2f} {p95:7.2f} {p99:7.2f} {max(values):8.2f}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, in s (NaN without /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def collect(
    mqtt: MqttConfig, ids: list[str], received: Received, ready: asyncio.Event
) -> None:
    subscriber = WireSubscriber(mqtt, kinds=(TopicKind.BEATS, TopicKind.STATUS))
    async with subscriber:
        ready.set()
        async for _topic, message in subscriber.messages():
            if isinstance(message, BeatMessage):
                received.beats[message.stream] = received.beats.get(message.stream, 0) + 1
                received.compute_ms.append(message.compute_ms)
                hop_ms = (time.time() - message.published_at) * 1000.0
                received.e2e_ms.append(message.compute_ms + hop_ms)
            elif isinstance(message, StatusMessage) and message.state is StreamState.OFFLINE:
                received.final[message.stream] = message
                received.last_offline_s = time.monotonic()
                if all(stream in received.final for stream in ids):
                    return


def start(command: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def start_serve(prefix: str, *options: str) -> subprocess.Popen[str] | None:
    """An ``ecg-stream serve --quiet`` process, once it says it serves (None if it did not)."""
    worker = start([*CLI, "serve", "--topic-prefix", prefix, "--quiet", *options])
    assert worker.stdout is not None
    if "serving" in worker.stdout.readline():
        return worker
    worker.kill()
    return None


def device_command(args: argparse.Namespace, url: str, prefix: str, ids: list[str]) -> list[str]:
    """``ecg-stream device``: ``--record`` as each of ``ids``, for ``--duration-s``."""
    command = [*CLI, "device", *[args.record] * len(ids), "--broker", url]
    command += ["--topic-prefix", prefix, "--duration-s", str(args.duration_s)]
    command += [arg for stream in ids for arg in ("--stream-id", stream)]
    return command + [arg for d in args.data_dir or [] for arg in ("--data-dir", str(d))]


def expected_windows(args: argparse.Namespace) -> tuple[BeatWindow, ...]:
    """What the chain finds offline in the signal every device publishes."""
    record = load_record(args.record, args.data_dir, annotations=False)
    samples = record.samples[: round(args.duration_s * CHAIN_FS_HZ)]
    part = Record(record.name, record.lead, record.fs_hz, samples)
    return tuple(detect_record(part, ChainConfig(), 1.0).windows)


@contextlib.contextmanager
def broker(args: argparse.Namespace) -> Iterator[tuple[MqttConfig, list[list[str]]]]:
    """The broker, and each worker's ``--broker`` and split options."""
    shards = args.shards
    if args.split == "partition":
        with (
            tempfile.TemporaryDirectory() as directory,
            NatsCluster(Path(directory), partitions=shards) as cluster,
        ):
            nodes = [cluster.node_config(k).url for k in range(shards)]
            yield (
                replace(cluster.config, topic_prefix="scale"),
                [
                    ["--broker", url, "--partition", f"{k}/{shards}", "--reorder-s", "10"]
                    for k, url in enumerate(nodes)
                ],
            )
        return
    with mosquitto(topic_prefix="scale") as mqtt:
        split = [["--shard", f"{k}/{shards}"] if shards > 1 else [] for k in range(shards)]
        yield mqtt, [["--broker", mqtt.url, *options] for options in split]


async def scale_point(args: argparse.Namespace, streams: int, expected: int) -> str:
    with broker(args) as (mqtt, workers_options):
        url = mqtt.url
        options = ["--idle-timeout-s", str(IDLE_TIMEOUT_S)]
        options += ["--samples-ms", str(args.samples_ms)] if args.samples_ms else []
        options += ["--batch-tick-ms", str(args.tick_ms)] if args.tick_ms is not None else []
        started = [start_serve("scale", *options, *split) for split in workers_options]
        workers = [worker for worker in started if worker is not None]
        if len(workers) < len(started):
            for worker in workers:
                worker.kill()
            return f"{streams:>5}  serve did not start"
        ids = [f"dev{k}" for k in range(streams)]
        received, ready = Received(), asyncio.Event()
        listen = asyncio.create_task(collect(mqtt, ids, received, ready))
        await ready.wait()
        cpu_before = sum(cpu_seconds(worker.pid) for worker in workers)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        devices_cpu_before = children.ru_utime + children.ru_stime
        wall_before = time.monotonic()
        procs = [
            start(device_command(args, url, "scale", [str(i) for i in part]))
            for part in np.array_split(np.array(ids), min(args.device_procs, streams))
        ]
        for proc in procs:
            await asyncio.to_thread(proc.wait)
        devices_done_s = time.monotonic()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the devices, now reaped
        devices_cpu_s = children.ru_utime + children.ru_stime - devices_cpu_before
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(listen, timeout=IDLE_TIMEOUT_S + args.catch_up_s)
        cpu_s = sum(cpu_seconds(worker.pid) for worker in workers) - cpu_before
        wall_s = time.monotonic() - wall_before
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [await asyncio.to_thread(w.communicate, None, 600) for w in workers]
        summary = "\n".join(output for output, _ in outputs)
    backlog = (
        f"{received.last_offline_s - devices_done_s:6.1f} s"
        if len(received.final) == streams
        else "behind"
    )
    published = sum(
        int(line.split()[3]) for line in summary.splitlines() if line.startswith("served ")
    )
    beats = sum(received.beats.values())
    ingest = [s.ingest for s in received.final.values() if s.ingest is not None]
    gaps = sum(i.gaps for i in ingest)
    duplicates = sum(i.duplicates for i in ingest)
    dropped = sum(i.dropped for i in ingest)
    publish_dropped = sum(
        int(line.rsplit("publish dropped", 1)[1])
        for line in summary.splitlines()
        if "publish dropped" in line
    )
    raw = "/".join(
        line.split()[2] for line in summary.splitlines() if line.startswith("  raw messages:")
    )
    return (
        f"{streams:>5} {beats:>7}/{expected * streams:<7} {published:>7} {gaps:>4} "
        f"{duplicates:>4} {dropped + publish_dropped:>4}  {percentiles(received.compute_ms)}   "
        f"{percentiles(received.e2e_ms)}   {100 * cpu_s / wall_s:5.1f}%  "
        f"{100 * devices_cpu_s / (devices_done_s - wall_before):6.1f}%  {backlog}  {raw}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[4], help="device counts")
    parser.add_argument("--duration-s", type=float, default=20.0, help="signal per device, s")
    parser.add_argument("--record", default="100", help="record every device publishes")
    parser.add_argument("--data-dir", type=Path, action="append", help="WFDB directory")
    parser.add_argument("--device-procs", type=int, default=4, help="device processes")
    parser.add_argument("--samples-ms", type=float, help="serve --samples-ms (default: serve's)")
    parser.add_argument("--tick-ms", type=float, help="serve --batch-tick-ms (default: serve's)")
    parser.add_argument(
        "--shards", type=int, default=1, help="serve processes, --shard I/N (default: 1)"
    )
    parser.add_argument(
        "--split",
        choices=("shard", "partition"),
        default="shard",
        help="how --shards workers split the streams: --shard on mosquitto, or --partition on "
        "a 3-node NATS cluster (default: shard)",
    )
    parser.add_argument(
        "--catch-up-s", type=float, default=60.0, help="wait this long for a lagging worker"
    )
    args = parser.parse_args()
    expected = len(expected_windows(args))
    print(
        f"serve scale: record {args.record}, {args.duration_s:g} s per device at 360 Hz, 100 ms "
        f"chunks, real time, {'NATS cluster' if args.split == 'partition' else 'mosquitto'} "
        f"on loopback, {args.shards} workers by --{args.split}, {os.cpu_count()} CPUs, load "
        f"average {os.getloadavg()[0]:.1f}"
    )
    print(
        "devices  received/expected published gaps dups drop  compute ms p50 p95 p99 max"
        "          end-to-end ms p50 p95 p99 max        serve CPU  devices CPU  backlog  "
        "raw received per worker"
    )
    for streams in args.streams:
        print(asyncio.run(scale_point(args, streams, expected)), flush=True)


if __name__ == "__main__":
    main()
