"""Latency benchmark: per-stage and end-to-end latency, Keras vs ONNX, throughput, scale.

The same code as ``ecg-stream bench`` (``ecg_stream/bench/latency.py``); the same arguments:

    python benchmarks/latency.py 100 --quick --json out/bench.json --plot-dir out/bench
    python benchmarks/latency.py 100                       # the whole record, 300 rounds
    python benchmarks/latency.py 100 --streams 32 --duration-s 60   # one point of the scale curve

Figures on shared machines are noise in absolute terms: read the ratios of one run.
"""

from __future__ import annotations

import sys

from ecg_stream.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
