"""What a worker's death costs: two ``serve --shard`` workers, one killed and restarted.

A mosquitto of its own on loopback, two ``ecg-stream serve`` workers (``--shard 0/2`` and
``--shard 1/2``, the shipped model), a subscriber here, and ``--devices`` real-time devices
publishing record ``--record`` (360 Hz, 100 ms chunks, ``ecg-stream device``). After
``--kill-at-s`` worker 0 is killed with SIGKILL and, ``--restart-after-s`` later, started again
with the same shard, as a supervisor (systemd ``Restart=always``) would. The workers are
started with ``--worker-id`` (persistent broker sessions: the chunks sent while worker 0 is
down wait for it), or without (``--fresh-sessions``: those chunks are lost). Per stream: its
worker, the beats the chain finds offline in the signal sent, the beats received (matched
within 150 ms, as the evaluation matches), the beats lost, when the broker announced the
stream offline (the worker's last will) and when its first beat after the restart arrived.

    python benchmarks/serve_failover.py --data-dir ../shared/data/mitdb

Not a test: the figures depend on the machine's load and on how long the model takes to load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from serve_scale import device_command, expected_windows, start_serve  # beside this script

from ecg_stream.bench.latency import mosquitto
from ecg_stream.config import MqttConfig
from ecg_stream.evaluation.matching import match_beats
from ecg_stream.live.serve import Shard
from ecg_stream.mqtt.subscriber import WireSubscriber
from ecg_stream.wire import BeatMessage, StatusMessage, StreamState, TopicKind

PREFIX = "failover"
MATCH_TOLERANCE = round(0.150 * 360)
IDLE_TIMEOUT_S = 3.0


@dataclass
class Seen:
    """What the subscriber received for one stream, with monotonic arrival times."""

    beats: list[tuple[int, float]] = field(default_factory=list)  # (sample, arrival)
    offline_at: list[float] = field(default_factory=list)


async def collect(mqtt: MqttConfig, seen: dict[str, Seen], ready: asyncio.Event) -> None:
    subscriber = WireSubscriber(mqtt, kinds=(TopicKind.BEATS, TopicKind.STATUS))
    async with subscriber:
        ready.set()
        async for _topic, message in subscriber.messages():
            stream = seen.setdefault(message.stream, Seen())
            if isinstance(message, BeatMessage):
                stream.beats.append((message.sample, time.monotonic()))
            elif isinstance(message, StatusMessage) and message.state is StreamState.OFFLINE:
                stream.offline_at.append(time.monotonic())


def start_worker(url: str, shard: Shard, named: bool) -> subprocess.Popen[str]:
    options = ["--shard", str(shard), "--idle-timeout-s", str(IDLE_TIMEOUT_S)]
    options += ["--worker-id", f"w{shard.index}"] if named else []
    worker = start_serve(url, PREFIX, *options)
    if worker is None:
        msg = f"serve --shard {shard} did not start"
        raise SystemExit(msg)
    return worker


async def run(args: argparse.Namespace, expected: np.ndarray) -> None:
    ids = [f"bed{k}" for k in range(args.devices)]
    seen: dict[str, Seen] = {stream: Seen() for stream in ids}
    with mosquitto(topic_prefix=PREFIX) as mqtt:
        url = f"mqtt://{mqtt.host}:{mqtt.port}"
        shards = [Shard(0, 2), Shard(1, 2)]
        named = not args.fresh_sessions
        workers = [await asyncio.to_thread(start_worker, url, s, named) for s in shards]
        ready = asyncio.Event()
        listen = asyncio.create_task(collect(mqtt, seen, ready))
        await ready.wait()
        devices = await asyncio.to_thread(
            subprocess.Popen,
            device_command(args, url, PREFIX, ids),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        started = time.monotonic()
        await asyncio.sleep(args.kill_at_s)
        workers[0].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        await asyncio.to_thread(workers[0].wait)
        await asyncio.sleep(args.restart_after_s)
        restarted = time.monotonic()
        workers[0] = await asyncio.to_thread(start_worker, url, shards[0], named)
        serving = time.monotonic()
        await asyncio.to_thread(devices.wait)
        await asyncio.sleep(IDLE_TIMEOUT_S + 3.0)
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
            await asyncio.to_thread(worker.communicate, None, 60)
        listen.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listen
    sessions = "fresh sessions" if args.fresh_sessions else "persistent sessions (--worker-id)"
    print(
        f"{sessions}: worker 0 killed {killed - started:.1f} s after the devices started, "
        f"restarted {restarted - killed:.1f} s later, serving again "
        f"{serving - restarted:.1f} s after that"
    )
    print("stream  worker  expected  received  lost  offline after kill  first beat after restart")
    lost_killed, lost_other = [], []
    for stream in ids:
        owner = next(shard.index for shard in shards if shard.owns(stream))
        got = seen[stream]
        samples = np.array(sorted({sample for sample, _ in got.beats}), dtype=np.int64)
        matching = match_beats(expected, samples, MATCH_TOLERANCE)
        lost = len(matching.unmatched_reference)
        (lost_killed if owner == 0 else lost_other).append(lost)
        offline = next((t - killed for t in got.offline_at if t >= killed), None)
        first = next((t - restarted for _, t in got.beats if t >= serving), None)
        print(
            f"{stream:>6}  {owner:>6}  {expected.size:>8}  {samples.size:>8}  {lost:>4}  "
            f"{'-' if owner else f'{offline:.2f} s' if offline is not None else 'never':>18}  "
            f"{'-' if owner else f'{first:.1f} s' if first is not None else 'never':>24}"
        )
    mean_rr_s = args.duration_s / max(expected.size, 1)
    print(
        f"beats lost per stream of the killed worker: mean {np.mean(lost_killed):.1f} (about "
        f"{np.mean(lost_killed) * mean_rr_s:.1f} s of beats); of the other worker: "
        f"{sum(lost_other)} in all"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=8, help="real-time devices")
    parser.add_argument("--duration-s", type=float, default=60.0, help="signal per device, s")
    parser.add_argument("--kill-at-s", type=float, default=20.0, help="kill worker 0 then")
    parser.add_argument("--restart-after-s", type=float, default=1.0, help="supervisor delay")
    parser.add_argument("--record", default="100", help="record every device publishes")
    parser.add_argument("--fresh-sessions", action="store_true", help="workers without --worker-id")
    parser.add_argument("--data-dir", type=Path, action="append", help="WFDB directory")
    args = parser.parse_args()
    expected = np.array([w.peak.index for w in expected_windows(args)], dtype=np.int64)
    asyncio.run(run(args, expected))


if __name__ == "__main__":
    main()
