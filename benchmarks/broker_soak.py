"""Broker soak: mosquitto killed (SIGKILL) and restarted again and again during replays.

Starts a mosquitto of its own (persistence on, the no-loss settings of docs/operations.md) on a free
loopback port, a persistent subscriber in this process (``WireSubscriber.follow``, as
``ecg-stream subscribe`` runs it) and, one after the other, ``ecg-stream replay 100`` processes
(alternately ``--speed 10`` and ``--speed max``, each its own stream id). Meanwhile it kills the
broker with SIGKILL after a random 2-8 s of uptime and restarts it on the same port after a
random outage of 0.5-8 s, at most ``--per-replay`` times per replay and only once the replay's
stream is online (a replay that cannot make its first connection stops with exit code 2, by
design), until ``--outages`` outages have been made; the replay running then finishes. Each
stream's received beats are compared with ``analyze``'s beats of record 100: beats lost (goal
0), beats with another label, duplicates the subscriber dropped, the replays' own ``beats
lost`` lines, and per outage the recovery time (restart -> first beat delivered).

    nice -n 10 python benchmarks/broker_soak.py --outages 20 --seed 1

Not run by CI: it takes about 10 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ecg_stream.classify.classifier import OnnxBeatClassifier, default_model_path
from ecg_stream.config import ChainConfig, MqttConfig
from ecg_stream.live.analysis import detect_record
from ecg_stream.mqtt.mosquitto import Mosquitto
from ecg_stream.mqtt.subscriber import WireSubscriber
from ecg_stream.records import load_record
from ecg_stream.types import BeatClass
from ecg_stream.wire import BeatMessage, StatusMessage, StreamState, WireMessage

ROOT = Path(__file__).resolve().parents[1]
RECORD = "100"
PREFIX = "soak"
UPTIME_S = (2.0, 8.0)
OUTAGE_S = (0.5, 8.0)


@dataclass
class Outage:
    replay: str
    length_s: float
    ended_s: float  # monotonic time of the restart
    recovery_s: float = math.nan  # restart -> first beat received


@dataclass
class Soak:
    expected: list[tuple[int, BeatClass]]
    beats: dict[str, list[BeatMessage]] = field(default_factory=dict)
    outages: list[Outage] = field(default_factory=list)
    replay_lines: dict[str, str] = field(default_factory=dict)
    starting: str | None = None  # the replay process started, not yet online
    running: str | None = None  # its stream is online: its first connection is made

    def take(self, _topic: str, message: WireMessage) -> bool:
        if isinstance(message, StatusMessage):
            if message.stream == self.starting and message.state is StreamState.ONLINE:
                self.running, self.starting = self.starting, None
        elif isinstance(message, BeatMessage):
            now = time.monotonic()
            self.beats.setdefault(message.stream, []).append(message)
            for outage in self.outages:
                if math.isnan(outage.recovery_s) and now >= outage.ended_s:
                    outage.recovery_s = now - outage.ended_s
        return False


async def replay(soak: Soak, stream: str, speed: str, port: int, data_dir: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "ecg_stream.cli",
        "replay",
        RECORD,
        "--speed",
        speed,
        "--quiet",
        "--broker",
        f"mqtt://127.0.0.1:{port}",
        "--topic-prefix",
        PREFIX,
        "--stream-id",
        stream,
        "--data-dir",
        str(data_dir),
    ]
    process = await asyncio.create_subprocess_exec(
        *command, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    soak.starting = stream  # a crash before its first connection would end it (exit 2)
    output, _ = await process.communicate()
    soak.starting = soak.running = None
    text = output.decode(errors="replace")
    found = re.search(r"dropped: (\d+); beats lost: (\d+)", text)
    summary = f"dropped {found.group(1)}, beats lost {found.group(2)}" if found else text[-400:]
    problems = [
        problem for problem in ("Traceback", "never retrieved", "Task exception") if problem in text
    ]
    if problems:  # an unhandled error in the replay: show it
        summary += f"; stderr has {', '.join(problems)}"
        print(text, flush=True)
    soak.replay_lines[stream] = summary


async def inject(
    soak: Soak, broker: Mosquitto, count: int, per_replay: int, rng: random.Random
) -> None:
    while len(soak.outages) < count:
        await asyncio.sleep(rng.uniform(*UPTIME_S))
        if soak.running is None:
            continue
        if sum(1 for outage in soak.outages if outage.replay == soak.running) >= per_replay:
            continue  # the rest of this replay runs undisturbed; the next one gets outages
        length = rng.uniform(*OUTAGE_S)
        replaying = soak.running
        await asyncio.to_thread(broker.kill)
        await asyncio.sleep(length)
        await asyncio.to_thread(broker.start)
        soak.outages.append(Outage(replaying, length, time.monotonic()))
        print(f"outage {len(soak.outages)}: {length:.1f} s during stream {replaying}", flush=True)


async def main(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    record = load_record(RECORD, args.data_dir)
    with OnnxBeatClassifier(default_model_path(), ChainConfig(), threads=1) as classifier:
        windows = detect_record(record, ChainConfig(), chunk_s=1.0).windows
        expected = [(b.window.peak.index, b.label) for b in classifier.classify(windows)]
    soak = Soak(expected)
    with tempfile.TemporaryDirectory() as directory:
        broker = Mosquitto(Path(directory), persistent=True)
        broker.start()
        config = MqttConfig(host="127.0.0.1", port=broker.port, topic_prefix=PREFIX)
        subscriber = WireSubscriber(config, client_id="ecg-soak-subscriber")  # as `subscribe`
        subscribed = asyncio.Event()
        listen = asyncio.create_task(subscriber.follow(soak.take, on_connect=subscribed.set))
        await subscribed.wait()
        await asyncio.sleep(1.5)  # the subscription reaches the disk (autosave_interval 1)
        injector = asyncio.create_task(inject(soak, broker, args.outages, args.per_replay, rng))
        started = time.monotonic()
        speeds = ["10", "max"]
        streams: list[tuple[str, str]] = []
        while not injector.done():
            speed = speeds[len(streams) % 2]
            stream = f"soak-{len(streams) + 1}"
            streams.append((stream, speed))
            print(f"replay {stream} at --speed {speed}", flush=True)
            await replay(soak, stream, speed, broker.port, args.data_dir)
        await asyncio.sleep(10)  # the last beats of the last replay reach the subscriber
        listen.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listen
        broker.stop()
    print_table(soak, streams, subscriber, time.monotonic() - started)
    return 0


def print_table(
    soak: Soak, streams: list[tuple[str, str]], subscriber: WireSubscriber, elapsed_s: float
) -> None:
    print(f"\nbroker soak: {len(soak.outages)} outages in {elapsed_s / 60:.1f} min")
    print(
        "\n| replay | speed | outages | beats expected | received | lost | other label | "
        "replay's summary |"
    )
    print("|---|---|---|---|---|---|---|---|")
    total_lost = 0
    for stream, speed in streams:
        got = [(b.chain_sample, b.label) for b in soak.beats.get(stream, [])]
        got_samples = {sample for sample, _ in got}
        assert len(got_samples) == len(got), f"{stream}: a beat was received twice"
        lost = sum(1 for sample, _ in soak.expected if sample not in got_samples)
        labels = dict(got)
        relabeled = sum(1 for s, label in soak.expected if s in labels and labels[s] != label)
        total_lost += lost
        outages = sum(1 for outage in soak.outages if outage.replay == stream)
        print(
            f"| {stream} | {speed} | {outages} | {len(soak.expected)} | {len(got)} | {lost} | "
            f"{relabeled} | {soak.replay_lines.get(stream, '?')} |"
        )
    recoveries = [o.recovery_s for o in soak.outages if math.isfinite(o.recovery_s)]
    lengths = [o.length_s for o in soak.outages]
    print(
        f"\nbeats lost in all: {total_lost}; duplicates dropped by the subscriber: "
        f"{subscriber.duplicates}; subscriber reconnections: {subscriber.reconnects}"
    )
    if lengths:
        print(
            f"outage length: min {min(lengths):.1f} s, median {statistics.median(lengths):.1f} "
            f"s, max {max(lengths):.1f} s"
        )
    if recoveries:
        print(
            "recovery (restart -> first beat delivered): "
            f"p50 {statistics.median(recoveries):.2f} s, max {max(recoveries):.2f} s "
            f"({len(recoveries)} of {len(soak.outages)} outages; the others ended with no "
            "replay left to deliver beats)"
        )
    print("\n| outage | during | length s | recovery s |")
    print("|---|---|---|---|")
    for number, outage in enumerate(soak.outages, start=1):
        print(f"| {number} | {outage.replay} | {outage.length_s:.1f} | {outage.recovery_s:.2f} |")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outages", type=int, default=20, help="kill/restart cycles (20)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random timings")
    parser.add_argument(
        "--per-replay", type=int, default=7, help="most outages during one replay (7)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=ROOT.parent / "shared" / "data" / "mitdb",
        help="MIT-BIH directory",
    )
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
