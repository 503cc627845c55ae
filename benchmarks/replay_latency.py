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
import time
from dataclasses import replace
from pathlib import Path

from ecg_stream.bench.latency import mosquitto, start_subscriber
from ecg_stream.classify.classifier import OnnxBeatClassifier, default_model_path
from ecg_stream.config import ChainConfig, MqttConfig
from ecg_stream.live.replay import RecordReplay
from ecg_stream.live.replay_command import replay_sinks
from ecg_stream.live.session import RunSummary
from ecg_stream.live.sources import StreamSpec, parse_speed
from ecg_stream.mqtt.broker import EmbeddedBroker
from ecg_stream.records import load_record

ROOT = Path(__file__).resolve().parents[1]


def line(title: str, figures: dict[str, float], extra: str) -> str:
    parts = "  ".join(f"{key} {figures[key]:.2f}" for key in ("p50", "p95", "p99", "max"))
    return f"{title} (ms): {parts}  ({extra})"


def print_summary(summary: RunSummary, wall_s: float, e2e: dict[str, float] | None) -> None:
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
    speed = parse_speed(args.speed)
    with OnnxBeatClassifier(model, config) as classifier:
        summary = RunSummary()
        sinks = replay_sinks(mqtt, summary, speed=speed, samples_s=None, say=None)
        live = RecordReplay(specs, classifier, sinks, speed=speed, summary=summary)
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
