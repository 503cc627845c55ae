"""Memory soak: N streams of 30 minutes each through `ecg-stream replay`.

Starts a mosquitto of its own, runs ``ecg-stream replay`` on N whole records (default 8 DS1
records, about 30 minutes of signal each; ``--streams N``: N copies of the first, each its own
stream id) at ``--speed max`` (or ``--speed 1``: real time) as a subprocess, and reads the
resident memory of the replay (and its worker processes, with ``--workers``) every
``--every-s`` seconds from /proc. Prints the RSS at 10, 25, 50 and 75 % of the run, the peak,
the slope over the middle half (after start-up, before the workers end), and the replay's own
summary line (dropped, beats lost). Not a test: run it on a quiet machine.

    python benchmarks/memory_soak.py --data-dir ../shared/data/mitdb
    python benchmarks/memory_soak.py --streams 256 --speed 1   # 30 minutes at real time
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ecg_stream.bench.latency import mosquitto

RECORDS = ("100", "101", "103", "105", "106", "108", "109", "111")


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children, in MB (0 once it has ended)."""
    total = 0.0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(child) for child in children]
    except OSError:
        return 0.0
    for each in pids:
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024.0
        except OSError:
            continue
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, action="append", help="WFDB directory")
    parser.add_argument("--records", nargs="+", default=list(RECORDS), help="one stream each")
    parser.add_argument("--every-s", type=float, default=2.0, help="RSS sampling period")
    parser.add_argument("--workers", type=int, help="replay --workers (default: replay's)")
    parser.add_argument("--streams", type=int, help="copies of the first record, one stream each")
    parser.add_argument("--speed", default="max", help="replay --speed (default: max)")
    args = parser.parse_args()
    data = [arg for directory in args.data_dir or [] for arg in ("--data-dir", str(directory))]
    records = args.records
    if args.streams is not None:
        records = [args.records[0]] * args.streams
        data += [arg for k in range(args.streams) for arg in ("--stream-id", f"soak{k}")]
    if args.workers is not None:
        data += ["--workers", str(args.workers)]
    with mosquitto() as mqtt:
        command = [
            *(sys.executable, "-m", "ecg_stream.cli", "replay", *records, "--speed", args.speed),
            *("--quiet", "--broker", mqtt.url, *data),
        ]
        started = time.monotonic()
        replay = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        trace: list[tuple[float, float]] = []
        while replay.poll() is None:
            trace.append((time.monotonic() - started, rss_mb(replay.pid)))
            time.sleep(args.every_s)
        out = replay.stdout.read() if replay.stdout else ""
    samples = np.array([mb for _, mb in trace if mb > 0])
    times = np.array([t for t, mb in trace if mb > 0])
    if samples.size < 8:
        print(f"too short a run to judge ({samples.size} readings)\n{out}")
        return 1
    # the middle half: after start-up (queues filling, buffers growing to their bounds) and
    # before the workers end one by one
    middle = slice(samples.size // 4, 3 * samples.size // 4)
    slope = np.polyfit(times[middle], samples[middle], 1)[0] * 60.0
    quarter = [samples[round(q * (samples.size - 1))] for q in (0.1, 0.25, 0.5, 0.75)]
    print(
        f"{len(records)} streams x 30 min at --speed {args.speed}, workers "
        f"{args.workers or 'as replay chooses'}: {times[-1]:.0f} s wall, {samples.size} RSS "
        f"readings every {args.every_s:g} s"
    )
    growth = 100.0 * (quarter[3] - quarter[1]) / quarter[1]
    print(
        "RSS MB at 10 % / 25 % / 50 % / 75 % of the run: "
        + " / ".join(f"{mb:.1f}" for mb in quarter)
        + f"; peak {samples.max():.1f}; over the middle half {growth:+.2f} % "
        f"(slope {slope:+.2f} MB/min); {samples.max() / len(records):.2f} MB per stream at peak"
    )
    for line in out.splitlines():
        if line.strip().startswith("dropped"):
            print(f"replay summary: {line.strip()}")
    return replay.returncode


if __name__ == "__main__":
    raise SystemExit(main())
