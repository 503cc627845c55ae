"""What a command publishes, in a form that does not depend on time: the stream golden files.

The commands run as subprocesses of the checkout given (aiomqtt listens here), so that the same
capture runs against any checkout of the project, old or new:
``python -m tests.golden.stream_capture`` wrote ``streams.json`` with the code before the session
refactor (and again when classifier v3 replaced the model: only the beats' labels and
probabilities changed; and when the status's ``ingest`` came to omit ``interleaved`` false),
and ``tests/test_stream_golden.py`` compares today's output with it.

Beats keep every field but the three that are clocks (``compute_ms``, ``published_at``,
``r_wall_time``); statuses keep every field but the worker's name; ``samples`` payloads are
kept whole, as a SHA-256 of their bytes in order. A worker re-publishes its ingest counters
every few seconds of wall time, so for ``serve`` only a stream's first and last status count.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiomqtt

from tests.helpers import record_stretch

GOLDEN = Path(__file__).parent / "streams.json"
RECORD_S = 60
"""Seconds of record 100 the golden runs stream."""
CLOCK_FIELDS = ("compute_ms", "published_at", "r_wall_time")


def cut_record(mitdb: Path, directory: Path) -> Path:
    """The first :data:`RECORD_S` of record 100 as a record of its own; its path stem."""
    return record_stretch(mitdb / "100", directory, "cut100", RECORD_S * 360)


def command(checkout: Path, *args: str) -> subprocess.Popen[bytes]:
    """``ecg-stream ARGS`` of the package in ``checkout``."""
    return subprocess.Popen(
        [sys.executable, "-m", "ecg_stream.cli", *args],
        cwd=checkout,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(checkout)},
    )


def normalised(topic: str, payload: dict[str, Any]) -> dict[str, Any]:
    if topic.endswith("/beats"):
        return {k: v for k, v in payload.items() if k not in CLOCK_FIELDS}
    if topic.endswith("/status") and "ingest" in payload:
        return {**payload, "ingest": {**payload["ingest"], "worker": "-"}}
    return payload


async def collect(port: int, prefix: str, start: Sequence[Sequence[str]], checkout: Path) -> Any:
    """Run the commands while subscribed to ``prefix/#``; what arrived, per topic, in order."""
    received: dict[str, list[Any]] = {}
    samples = hashlib.sha256()
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"golden-{os.getpid()}") as client:
        await client.subscribe(f"{prefix}/#", qos=1)
        processes = [command(checkout, *args) for args in start]
        try:
            async with asyncio.timeout(120):
                async for message in client.messages:
                    topic = str(message.topic)
                    assert isinstance(message.payload, bytes)
                    if message.retain or topic.endswith("/raw"):  # an earlier run; the input
                        continue
                    if topic.endswith("/samples"):
                        samples.update(message.payload)
                        continue
                    payload = normalised(topic, json.loads(message.payload))
                    received.setdefault(topic, []).append(payload)
                    if topic.endswith("/status") and payload["state"] == "offline":
                        break
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=30)
    return {"topics": received, "samples_sha256": samples.hexdigest()}


def capture_replay(checkout: Path, port: int, stem: Path) -> Any:
    """``replay`` of the cut record at ``--speed max``."""
    args = ["replay", str(stem), "--speed", "max", "--quiet"]
    args += ["--broker", f"mqtt://127.0.0.1:{port}", "--topic-prefix", "golden-replay"]
    return asyncio.run(collect(port, "golden-replay", [args], checkout))


def capture_serve(checkout: Path, port: int, stem: Path) -> Any:
    """``device`` of the cut record at ``--speed max`` through one ``serve`` worker."""
    broker = ["--broker", f"mqtt://127.0.0.1:{port}", "--topic-prefix", "golden-serve"]
    serve = ["serve", *broker, "--quiet", "--idle-timeout-s", "2"]
    device = ["device", str(stem), *broker, "--speed", "max"]

    async def run() -> Any:
        worker = command(checkout, *serve)
        try:
            await asyncio.sleep(5.0)  # subscribed by then (it loads the model first)
            captured = await collect(port, "golden-serve", [device], checkout)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        statuses = captured["topics"]["golden-serve/cut100/status"]
        captured["topics"]["golden-serve/cut100/status"] = [statuses[0], statuses[-1]]
        return captured

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="the project checkout to run")
    parser.add_argument("--port", type=int, required=True, help="a running mosquitto")
    parser.add_argument("--mitdb", type=Path, required=True, help="MIT-BIH directory")
    parser.add_argument("--work-dir", type=Path, required=True, help="for the cut record")
    args = parser.parse_args()
    stem = cut_record(args.mitdb, args.work_dir)
    golden = {
        "replay": capture_replay(args.checkout, args.port, stem),
        "serve": capture_serve(args.checkout, args.port, stem),
    }
    GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
