"""``bench``: the latency benchmark."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ecg_stream.cli.common import (
    add_data_arguments,
    add_scale_arguments,
    check_model_argument,
    say,
)
from ecg_stream.errors import ConfigError

if TYPE_CHECKING:
    from ecg_stream.cli.common import Commands


def add_bench(commands: Commands) -> None:
    """Add ``bench``: per-stage and end-to-end latency, or the scale curve."""
    bench = commands.add_parser(
        "bench",
        help="latency benchmark: per-stage and end-to-end latency, Keras vs ONNX, throughput",
    )
    bench.add_argument("record", nargs="?", default="100", help="record name (default: 100)")
    add_data_arguments(bench)
    bench.add_argument(
        "--quick", action="store_true", help="the first 3 minutes of signal, 40 inference rounds"
    )
    bench.add_argument("--model", type=Path, help="ONNX model (default: the shipped one)")
    bench.add_argument(
        "--keras",
        type=Path,
        help="Keras network compared with its ONNX conversion (skipped if missing; default: "
        "the one `export` wrote beside the model, ecg_stream/classify/assets/beat_lstm.keras "
        "for the shipped one)",
    )
    bench.add_argument("--batch", type=int, default=32, help="beats per batched inference call")
    bench.add_argument(
        "--rounds", type=int, help="inference rounds per variant (default: 40 quick, else 300)"
    )
    bench.add_argument("--broker", metavar="URL", help="a running broker (default: a mosquitto)")
    bench.add_argument(
        "--embedded", action="store_true", help="start the embedded broker (amqtt), not mosquitto"
    )
    bench.add_argument(
        "--streams",
        type=_stream_counts,
        help="instead: the scale curve, N concurrent real-time streams per point "
        "(e.g. 1,8,32,64,128,256,512), up to the first point that does not hold",
    )
    bench.add_argument(
        "--duration-s", type=float, default=60.0, help="--streams: seconds of signal per stream"
    )
    add_scale_arguments(bench)
    bench.add_argument(
        "--ramp-s",
        type=float,
        help="--streams: the streams start spread over this many seconds (0: all at once, as "
        "after a server restart; default: 5)",
    )
    bench.add_argument("--json", type=Path, help="write the results to this JSON file")
    bench.add_argument("--plot-dir", type=Path, help="write latency CDF plots (PNG) here")
    bench.set_defaults(handler=_bench)


def _stream_counts(text: str) -> tuple[int, ...]:
    """``--streams 1,8,32``: positive counts, in the order given."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        msg = f"{text!r} is not a list of stream counts >= 1 such as 1,8,32"
        raise argparse.ArgumentTypeError(msg)
    return counts


def _bench(args: argparse.Namespace) -> int:
    from ecg_stream.bench.latency import BenchOptions, bench_main

    check_model_argument(args.model)
    if args.broker is not None and args.embedded:
        msg = "--broker and --embedded both name a broker; give one"
        raise ConfigError(msg)
    options = BenchOptions(
        record=args.record,
        data_dir=args.data_dir,
        lead=args.lead,
        quick=args.quick,
        model_path=args.model,
        keras_path=args.keras,
        batch=args.batch,
        rounds=args.rounds,
        broker_url=args.broker,
        embedded=args.embedded,
        streams=args.streams,
        duration_s=args.duration_s,
        workers=args.workers,
        samples_s=None if args.samples_ms is None else args.samples_ms / 1e3,
        **({} if args.ramp_s is None else {"ramp_s": args.ramp_s}),
        json_path=args.json,
        plot_dir=args.plot_dir,
    )
    return bench_main(options, say)
