"""History store soak: N real-time streams into `ecg-stream store`, through a broker restart.

Starts a mosquitto of its own (persistence on, the no-loss settings of docs/operations.md),
``ecg-stream store --db F`` and one ``ecg-stream replay`` of N streams (record 100, each its own
stream id, at --speed 1 for --duration-s, `--summary-json`). Halfway it kills the broker
(SIGKILL) and restarts it after --outage-s. Then it counts each stream's beats in the database
against the beats the replay's streams produced (each once; its summary's ``detected``), and
times the store's raw write rate: rows per second into a fresh SQLite file, batched as the
store batches them. Not a test: it takes --duration-s plus about 30 s.

    python benchmarks/store_soak.py --data-dir ../shared/data/mitdb --streams 100 --duration-s 60
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import wfdb

from ecg_stream.live.history import FLUSH_ROWS, HistoryStore
from ecg_stream.mqtt.mosquitto import Mosquitto
from ecg_stream.records import find_record
from ecg_stream.types import BeatClass
from ecg_stream.wire import BeatMessage, ClassProbabilities


def cut_record(data_dirs: list[Path] | None, directory: Path, seconds: float) -> Path:
    """The first ``seconds`` of record 100 as a WFDB record of its own; its path stem."""
    stem = find_record("100", data_dirs)
    raw = wfdb.rdrecord(str(stem), sampto=round(seconds * 360))
    wfdb.wrsamp(
        "cut", fs=raw.fs, units=raw.units, sig_name=raw.sig_name, p_signal=raw.p_signal,
        fmt=raw.fmt, adc_gain=raw.adc_gain, baseline=raw.baseline, write_dir=str(directory),
    )  # fmt: skip
    return directory / "cut"


def beat(stream: str, chain_sample: int) -> BeatMessage:
    """A plausible beat of ``stream`` at ``chain_sample``."""
    return BeatMessage(
        stream=stream, record=stream, sample=chain_sample, chain_sample=chain_sample,
        time_s=chain_sample / 360.0, r_wall_time=1.8e9 + chain_sample / 360.0,
        label=BeatClass.N, confidence=0.9,
        probabilities=ClassProbabilities(0.9, 0.04, 0.03, 0.02, 0.01), rr_ms=800.0,
        hr_bpm=75.0, compute_ms=1.0, published_at=1.8e9,
    )  # fmt: skip


def write_rate(directory: Path, rows: int = 200_000) -> float:
    """Beats per second a fresh SQLite history takes, in batches of ``FLUSH_ROWS``."""
    store = HistoryStore(str(directory / "rate.sqlite"))
    beats = [beat(f"s{k % 100}", 360 * k) for k in range(rows)]
    started = time.perf_counter()
    for message in beats:
        store.add(message, received_at=1.8e9)
    store.close()
    return rows / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, action="append", help="WFDB directory")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--outage-s", type=float, default=3.0, help="0: no broker restart")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        record = cut_record(args.data_dir, directory, args.duration_s)
        db = directory / "history.sqlite"
        summary = directory / "summary.json"
        broker = Mosquitto(directory, persistent=True)
        broker.start()
        url = f"mqtt://127.0.0.1:{broker.port}"
        cli = [sys.executable, "-m", "ecg_stream.cli"]
        store = subprocess.Popen([*cli, "store", "--broker", url, "--db", str(db)], text=True)
        time.sleep(5.0)  # subscribed, and the session on disk (autosave_interval 1)
        ids = [arg for k in range(args.streams) for arg in ("--stream-id", f"s{k}")]
        options = ["--speed", "1", "--quiet", "--broker", url, "--samples-ms", "500"]
        options += ["--summary-json", str(summary)]
        records = [str(record)] * args.streams
        replay = subprocess.Popen(
            [*cli, "replay", *records, *ids, *options], stdout=subprocess.DEVNULL
        )
        time.sleep(args.duration_s / 2)
        if args.outage_s > 0:
            broker.kill()
            time.sleep(args.outage_s)
            broker.start()
        replay.wait()
        time.sleep(10.0)  # the last beats reach the store and are flushed
        store.send_signal(signal.SIGINT)
        store.wait(timeout=60)
        broker.stop()
        # each beat once (``published`` counts the ones re-sent after the outage again)
        published = {
            stream["stream"]: stream["detected"]
            for stream in json.loads(summary.read_text())["streams"]
        }
        with sqlite3.connect(db) as connection:
            stored = dict(connection.execute("SELECT stream, count(*) FROM beats GROUP BY stream"))
        lost = {s: n - stored.get(s, 0) for s, n in published.items() if n != stored.get(s, 0)}
        rate = write_rate(directory)
    print(
        f"{args.streams} real-time streams x {args.duration_s:g} s, broker killed at "
        f"{args.duration_s / 2:g} s for {args.outage_s:g} s: {sum(published.values())} beats "
        f"produced, {sum(stored.values())} stored, streams with a difference: {len(lost)} "
        f"{lost if lost else ''}"
    )
    print(f"store write rate: {rate:,.0f} beats per second into SQLite (batches of {FLUSH_ROWS})")
    return 0 if not lost else 1


if __name__ == "__main__":
    raise SystemExit(main())
