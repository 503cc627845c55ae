"""Classifier cost, side by side in one run: training per window (lean vs reference network)
and inference per beat in onnxruntime (1 thread, batch 8) for each ONNX model given.

    python benchmarks/classifier_cost.py --dataset runs/pool.npz \
        --models ecg_stream/classify/assets/beat_lstm.onnx \
        --keras runs/lean_noaugment/fold-0/final.keras runs/reference/fold-0/final.keras

Training cost is the mean time of ``train_on_batch`` over real windows (both networks, same
batches, interleaved); inference cost is the median of repeated batch-8 session runs divided
by 8. Absolute times on shared machines are noise: read the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import onnxruntime

from ecg_stream.bench.inference import keras_to_onnx, load_keras
from ecg_stream.classify.classifier import RR_INPUT, WINDOW_INPUT
from ecg_stream.config import ChainConfig
from ecg_stream.detector.segment import FEATURE_NAMES, WINDOW_CHANNELS
from ecg_stream.training.dataset import load_dataset
from ecg_stream.training.run import Architecture
from ecg_stream.training.train import build_model, model_inputs
from ecg_stream.types import BEAT_CLASSES


def training_cost(dataset_path: Path, batches: int, batch_size: int) -> dict[str, float]:
    """Seconds per window of one training step, per architecture (same real batches)."""
    dataset = load_dataset(dataset_path)
    channels, features = WINDOW_CHANNELS, FEATURE_NAMES
    rng = np.random.default_rng(0)
    rows = rng.choice(len(dataset), size=batches * batch_size, replace=False)
    inputs = model_inputs(dataset.subset(np.sort(rows)), channels, features)
    labels = np.eye(len(BEAT_CLASSES), dtype=np.float32)[dataset.labels[np.sort(rows)]]
    config = ChainConfig()
    models = {
        arch.value: build_model(arch, config.window_samples, len(channels), len(features), 1e-3)
        for arch in Architecture
    }
    times: dict[str, list[float]] = {name: [] for name in models}
    for index in range(batches):
        part = slice(index * batch_size, (index + 1) * batch_size)
        batch = {name: array[part] for name, array in inputs.items()}
        for name, model in models.items():  # interleaved: both see the same machine load
            started = time.perf_counter()
            model.train_on_batch(batch, labels[part])
            if index:  # the first step compiles
                times[name].append(time.perf_counter() - started)
    return {name: statistics.mean(values) / batch_size for name, values in times.items()}


def inference_cost(models: dict[str, bytes], dataset_path: Path, repeats: int) -> dict[str, float]:
    """Seconds per beat of onnxruntime (1 thread) at batch 8, per model."""
    part = load_dataset(dataset_path).subset(np.arange(8))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    sessions = {}
    feeds = {}
    for name, model in models.items():
        session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        shapes = {node.name: node.shape for node in session.get_inputs()}
        feed = {WINDOW_INPUT: part.window_channels(WINDOW_CHANNELS[: shapes[WINDOW_INPUT][2]])}
        if RR_INPUT in shapes:
            feed[RR_INPUT] = part.feature_columns(FEATURE_NAMES[: shapes[RR_INPUT][1]])
        sessions[name], feeds[name] = session, feed
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(repeats):
        for name, session in sessions.items():
            started = time.perf_counter()
            session.run(None, feeds[name])
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values[5:]) / 8 for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True, help="`ecg-stream dataset` file")
    parser.add_argument("--models", type=Path, nargs="*", default=[], help="ONNX models")
    parser.add_argument("--keras", type=Path, nargs="*", default=[], help="Keras models")
    parser.add_argument(
        "--batches", type=int, default=12, help="training batches timed (0: no training)"
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=300, help="inference runs per model")
    args = parser.parse_args()
    if args.batches:
        train = training_cost(args.dataset, args.batches, args.batch_size)
        print("training, ms per window per epoch (train_on_batch, same real batches):")
        for name, seconds in train.items():
            print(f"  {name:>10}: {1000 * seconds:.3f}")
        print(f"  reference / lean: {train['reference'] / train['lean']:.1f}x")
    models = {str(path): path.read_bytes() for path in args.models}
    models |= {str(path): keras_to_onnx(load_keras(path)) for path in args.keras}
    if models:
        print("inference, ms per beat (onnxruntime, 1 thread, batch 8):")
        for name, seconds in inference_cost(models, args.dataset, args.repeats).items():
            print(f"  {name}: {1000 * seconds:.4f}")


if __name__ == "__main__":
    main()
