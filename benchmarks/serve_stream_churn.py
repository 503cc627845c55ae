"""Stream churn: one `serve` worker sees thousands of short-lived stream ids; memory must not grow.

Starts a mosquitto of its own and ``ecg-stream serve --idle-timeout-s 1``, then publishes one
1-second raw chunk (record 100's signal) for each of N new stream ids, in rounds, and reads the
worker's resident memory after each round, once the round's streams went idle: it must level
off, not grow with the ids seen. Not a test: run it on a quiet machine (and against an older
checkout, side by side, by running it from there).

    python benchmarks/serve_stream_churn.py --data-dir ../shared/data/mitdb --streams 5000
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import numpy as np

from ecg_stream import wire
from ecg_stream.bench.latency import mosquitto
from ecg_stream.records import load_record
from ecg_stream.wire import RawMessage, TopicKind

sys.path.insert(0, str(Path(__file__).parent))
from memory_soak import rss_mb

ROUND_STREAMS = 500
"""New stream ids per round."""
IDLE_S = 1.0
"""The worker's ``--idle-timeout-s``."""


async def churn(port: int, counts: np.ndarray, streams: int, worker: int) -> list[str]:
    """Publish the rounds; the lines of the report."""
    lines = []
    async with aiomqtt.Client("127.0.0.1", port, identifier="churn") as client:
        for first in range(0, streams, ROUND_STREAMS):
            for k in range(first, min(first + ROUND_STREAMS, streams)):
                stream = f"s{k}"
                message = RawMessage.from_counts(stream, 0, 360.0, counts, gain=200.0)
                topic = wire.topic_for("ecg", stream, TopicKind.RAW)
                await client.publish(topic, wire.encode(message), qos=1)
            await asyncio.sleep(3 * IDLE_S + 1.0)  # served, idle, freed
            seen = min(first + ROUND_STREAMS, streams)
            lines.append(f"  after {seen:6d} stream ids: worker RSS {rss_mb(worker):7.1f} MB")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, action="append", help="WFDB directory")
    parser.add_argument("--streams", type=int, default=5000, help="stream ids in all")
    args = parser.parse_args()
    record = load_record("100", args.data_dir)
    counts = np.clip(np.rint(record.samples[:360] * 200), -32768, 32767).astype(np.int16)
    with mosquitto() as mqtt:
        command = [
            *(sys.executable, "-m", "ecg_stream.cli", "serve", "--broker", mqtt.url),
            *("--idle-timeout-s", str(IDLE_S), "--quiet"),
        ]
        worker = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(8.0)  # model loaded, subscribed
            start_mb = rss_mb(worker.pid)
            lines = asyncio.run(churn(mqtt.port, counts, args.streams, worker.pid))
        finally:
            worker.terminate()
            out, _ = worker.communicate(timeout=60)
    print(f"serve worker, {args.streams} one-chunk streams, idle timeout {IDLE_S:g} s")
    print(f"  at start (model loaded, subscribed): RSS {start_mb:7.1f} MB")
    print("\n".join(lines))
    print("worker summary:", *[line for line in out.splitlines() if "streams" in line][:2])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
