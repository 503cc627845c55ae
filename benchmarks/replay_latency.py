"""Live replay over MQTT: pacing error, compute and end-to-end latency, speed; printed.

Replays records through the shipped model (or --model) to a broker: a mosquitto this script
starts on a free loopback port (default), the embedded amqtt broker (--embedded), or --broker URL.
A subscriber in a separate process receives the beats and reports end-to-end latency
(chunk arrival -> receipt; both processes share this machine's clock).

    python benchmarks/replay_latency.py 100 --speed 1            # 30 min: pacing and latency
    python benchmarks/replay_latency.py 100 --speed max          # throughput, x real time
    python benchmarks/replay_latency.py 100 --speed max --streams 8 --duration-s 300

Figures on shared machines are noise in absolute terms: compare runs made side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from ecg_stream.config import ChainConfig, MqttConfig
from ecg_stream.detector.chain import BeatExtractor
from ecg_stream.model.classifier import OnnxBeatClassifier, default_model_path
from ecg_stream.pipeline import BeatPipeline
from ecg_stream.records import load_record
from ecg_stream.stream.broker import EmbeddedBroker
from ecg_stream.stream.live import LiveReplay, ReplaySummary, StreamSpec
from ecg_stream.stream.replay import parse_speed

ROOT = Path(__file__).resolve().parents[1]

SUBSCRIBER = """
import asyncio, json, sys, time
from ecg_stream.config import MqttConfig
from ecg_stream.stream.subscriber import WireSubscriber
from ecg_stream.stream.stats import DurationHistogram
from ecg_stream.wire import BeatMessage, StatusMessage, StreamState

async def main():
    config = MqttConfig(host=sys.argv[1], port=int(sys.argv[2]), topic_prefix=sys.argv[3])
    streams = set(sys.argv[4].split(","))
    e2e, beats, offline = DurationHistogram(), 0, set()
    async with WireSubscriber(config) as subscriber:
        print("ready", flush=True)
        async for _, message in subscriber.messages():
            now = time.time()
            if isinstance(message, BeatMessage):
                beats += 1
                e2e.add(message.compute_ms + (now - message.published_at) * 1000.0)
            elif isinstance(message, StatusMessage) and message.state is StreamState.OFFLINE:
                offline.add(message.stream)
                if offline >= streams:
                    break
    s = e2e.summary()
    print(json.dumps({"beats": beats, "malformed": subscriber.malformed, "p50": s.p50_ms,
                      "p95": s.p95_ms, "p99": s.p99_ms, "max": s.max_ms}), flush=True)

asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def mosquitto() -> Iterator[MqttConfig]:
    executable = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        conf = Path(directory) / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
            "set_tcp_nodelay true\n"
        )
        with subprocess.Popen([executable, "-c", str(conf)]) as process:
            try:
                for _ in range(200):
                    with socket.socket() as probe:
                        if probe.connect_ex(("127.0.0.1", port)) == 0:
                            break
                    time.sleep(0.02)
                yield MqttConfig(host="127.0.0.1", port=port)
            finally:
                process.terminate()


def line(title: str, figures: dict[str, float], extra: str) -> str:
    parts = "  ".join(f"{key} {figures[key]:.2f}" for key in ("p50", "p95", "p99", "max"))
    return f"{title} (ms): {parts}  ({extra})"


def print_summary(summary: ReplaySummary, wall_s: float, e2e: dict[str, float] | None) -> None:
    print(summary.format())
    signal_s = sum(report.signal_s for report in summary.streams)
    rate = signal_s / wall_s
    print(f"signal replayed: {signal_s:.1f} s in {wall_s:.1f} s wall = {rate:.0f}x real time")
    for title, hist in (("pacing error", summary.pacing()), ("compute latency", summary.compute())):
        s = hist.summary()
        figures = {"p50": s.p50_ms, "p95": s.p95_ms, "p99": s.p99_ms, "max": s.max_ms}
        print(line(title, figures, f"n={s.count}"))
    if e2e is not None:
        extra = f"{e2e['beats']:.0f} beats, {e2e['malformed']:.0f} malformed"
        print(line("end-to-end latency at a subscriber process", e2e, extra))


def start_subscriber(mqtt: MqttConfig, streams: list[str]) -> subprocess.Popen[str]:
    command = [sys.executable, "-c", SUBSCRIBER, mqtt.host, str(mqtt.port), mqtt.topic_prefix]
    process = subprocess.Popen([*command, ",".join(streams)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def specs_of(args: argparse.Namespace) -> list[StreamSpec]:
    record = load_record(args.record)
    if args.duration_s:
        record = replace(record, samples=record.samples[: round(args.duration_s * 360)])
    return [StreamSpec(f"bench{k}", record) for k in range(args.streams)]


async def replay(args: argparse.Namespace, mqtt: MqttConfig) -> None:
    config = ChainConfig()
    specs = specs_of(args)
    mqtt = replace(mqtt, topic_prefix=f"bench{os.getpid()}")
    subscriber = None
    if not args.no_subscriber:
        subscriber = await asyncio.to_thread(start_subscriber, mqtt, [s.stream_id for s in specs])
    model = args.model or default_model_path()
    with OnnxBeatClassifier(model, config) as classifier:
        summary = ReplaySummary()
        live = LiveReplay(
            specs,
            lambda: BeatPipeline(BeatExtractor(config), classifier),
            classifier.name,
            mqtt,
            speed=parse_speed(args.speed),
            summary=summary,
        )
        started = time.perf_counter()
        await live.run()
        wall_s = time.perf_counter() - started
    e2e = None
    if subscriber is not None:
        out, _ = await asyncio.to_thread(subscriber.communicate, timeout=120)
        e2e = json.loads(out.strip().splitlines()[-1])
    print(
        f"record {args.record}, {args.streams} stream(s), speed {args.speed}, "
        f"model {shown_path(model)}"
    )
    print(f"broker {mqtt.url}, load average at the end (1, 5, 15 min): {os.getloadavg()}")
    print_summary(summary, wall_s, e2e)


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when inside it, else its name: results that are
    committed (docs/results/) carry no machine's directories."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return path.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("record")
    parser.add_argument("--speed", default="1")
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--duration-s", type=float, help="replay only the first seconds")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--broker", help="mqtt://host:port of a running broker")
    parser.add_argument("--embedded", action="store_true", help="embedded amqtt broker")
    parser.add_argument("--no-subscriber", action="store_true")
    args = parser.parse_args()
    if args.broker:
        asyncio.run(replay(args, MqttConfig.from_url(args.broker)))
    elif args.embedded:

        async def with_embedded() -> None:
            async with EmbeddedBroker(port=0) as broker:
                await replay(args, MqttConfig(host=broker.host, port=broker.port))

        asyncio.run(with_embedded())
    else:
        with mosquitto() as mqtt:
            asyncio.run(replay(args, mqtt))


if __name__ == "__main__":
    main()
