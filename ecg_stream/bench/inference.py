"""Inference side by side: Keras and onnxruntime on the same weights and the same real windows.

Part of the latency benchmark (:mod:`ecg_stream.bench.latency`). Every variant runs in the same
loop, one after the other on the same input, so the machine's load falls on all of them alike;
compare the ratios, not the absolute times. TensorFlow and tf2onnx are imported inside the
functions that need them (the ``train`` extra).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime

from ecg_stream.classify.classifier import RR_INPUT, WINDOW_INPUT, ModelContract
from ecg_stream.detector.segment import feature_vector, window_channels
from ecg_stream.types import BeatWindow

Feeds = dict[str, npt.NDArray[np.float32]]


BASELINE = "onnx of the keras network, batch 1"
"""The variant every ratio is taken against."""

WARMUP_ROUNDS = 3
"""Rounds run before timing: the first calls build graphs and allocate."""


@dataclass(slots=True)
class InferenceComparison:
    """Per-beat latency of each inference variant, measured side by side.

    Args:
        beats: Real windows the variants classified.
        batch: Beats per batched call.
        per_beat_ms: Per variant, one value per timed call: the call's time over its beats.
        keras_model: The Keras model compared (None: not measured).
        skipped: Why the Keras variants were not measured (None: they were).
        parity_max_abs: Largest |Keras - ONNX| probability of the fold model on one batch.
        int8_label_agreement: Fraction of the windows the int8 model labels as the shipped one.
        int8_max_abs: Largest |int8 - shipped| probability over the windows.
        int8_skipped: Why the int8 variants were not measured (None: they were).
    """

    beats: int
    batch: int
    per_beat_ms: dict[str, list[float]] = field(default_factory=dict)
    keras_model: str | None = None
    skipped: str | None = None
    parity_max_abs: float = math.nan
    int8_label_agreement: float = math.nan
    int8_max_abs: float = math.nan
    int8_skipped: str | None = None


def model_feeds(windows: Sequence[BeatWindow], contract: ModelContract) -> Feeds:
    """The model inputs of ``windows``, with the channel and feature names of ``contract``."""
    feeds = {
        WINDOW_INPUT: np.stack([window_channels(w, contract.window_channels) for w in windows])
    }
    if contract.rr_features:
        feeds[RR_INPUT] = np.stack([feature_vector(w, contract.rr_features) for w in windows])
    return {name: array.astype(np.float32) for name, array in feeds.items()}


def keras_to_onnx(model: Any) -> bytes:
    """A Keras model (loaded) as ONNX bytes (tf2onnx, as ``ecg-stream export`` converts)."""
    import tensorflow as tf
    import tf2onnx

    signature = [tf.TensorSpec(t.shape, tf.float32, name=t.name) for t in model.inputs]
    converted, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=17)
    return bytes(converted.SerializeToString())


def load_keras(path: Path) -> Any:
    """Load a saved Keras model (TensorFlow's native log kept off stderr)."""
    from ecg_stream.training.run import import_keras

    return import_keras().models.load_model(path)


def onnx_session(model: bytes | Path) -> Any:
    """An onnxruntime CPU session with one thread, as the stream's classifier runs it."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    source = str(model) if isinstance(model, Path) else model
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def quantized_int8(model: Path) -> bytes:
    """``model`` with its weights quantized to int8 (onnxruntime's dynamic quantization)."""
    import logging
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # it advises pre-processing on the root logger
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "int8.onnx"
        quantize_dynamic(model, path, weight_type=QuantType.QInt8)
        return path.read_bytes()


def _slice(feeds: Feeds, start: int, stop: int) -> Feeds:
    return {name: array[start:stop] for name, array in feeds.items()}


def compare_inference(
    windows: Sequence[BeatWindow],
    contract: ModelContract,
    shipped_model: Path,
    keras_path: Path | None,
    *,
    rounds: int,
    batch: int,
) -> InferenceComparison:
    """Time each variant ``rounds`` times, interleaved, on the same real windows.

    A round classifies beat ``r`` alone with each batch-1 variant and beats ``r .. r + batch``
    with each batched variant. Variants: the shipped ONNX model; with a Keras network also
    its ``predict`` (batch 1 and batched), its call ``model(x, training=False)`` and its ONNX
    conversion (onnxruntime, 1 thread, batch 1 and batched); and the shipped model quantized
    to int8, with how often it keeps the shipped model's label on these windows.

    Args:
        windows: Real beat windows (at least ``batch``).
        contract: The shipped model's contract: channel and feature names of the inputs.
        shipped_model: The shipped ``.onnx`` file.
        keras_path: The Keras network (None or missing: those variants are skipped).
        rounds: Timed rounds.
        batch: Beats per batched call.
    """
    beats = len(windows)
    if beats < batch:
        msg = f"{beats} windows for batches of {batch}: give a longer signal or a smaller --batch"
        raise ValueError(msg)
    feeds = model_feeds(windows, contract)
    result = InferenceComparison(beats=beats, batch=batch)
    shipped = onnx_session(shipped_model)
    calls: dict[str, tuple[Callable[[Feeds], object], int]] = {
        "onnx shipped model, batch 1": (lambda x: shipped.run(None, x), 1),
        f"onnx shipped model, batch {batch}": (lambda x: shipped.run(None, x), batch),
    }
    try:
        int8 = onnx_session(quantized_int8(shipped_model))
    except ImportError as error:  # quantization needs the onnx package (the train extra)
        result.int8_skipped = f"int8 needs the onnx package ({error}): pip install -e '.[train]'"
    else:
        (reference,), (quantized,) = shipped.run(None, feeds), int8.run(None, feeds)
        result.int8_label_agreement = float(np.mean(reference.argmax(1) == quantized.argmax(1)))
        result.int8_max_abs = float(np.max(np.abs(reference - quantized)))
        calls |= {
            "onnx shipped model int8, batch 1": (lambda x: int8.run(None, x), 1),
            f"onnx shipped model int8, batch {batch}": (lambda x: int8.run(None, x), batch),
        }
    if keras_path is None or not keras_path.is_file():
        result.skipped = (
            f"Keras model {keras_path} not found (a clean checkout has no runs/): train one "
            "with `ecg-stream train --cv 5` or pass --keras PATH"
        )
    else:
        keras_model = load_keras(keras_path)
        fold = onnx_session(keras_to_onnx(keras_model))
        result.keras_model = str(keras_path)
        calls = {
            "keras predict, batch 1": (lambda x: keras_model.predict(x, verbose=0), 1),
            f"keras predict, batch {batch}": (lambda x: keras_model.predict(x, verbose=0), batch),
            "keras call, batch 1": (lambda x: keras_model(x, training=False), 1),
            BASELINE: (lambda x: fold.run(None, x), 1),
            f"onnx of the keras network, batch {batch}": (lambda x: fold.run(None, x), batch),
            **calls,
        }
        first = _slice(feeds, 0, batch)
        keras_out = np.asarray(keras_model.predict(first, verbose=0))
        (onnx_out,) = fold.run(None, first)
        result.parity_max_abs = float(np.max(np.abs(keras_out - np.asarray(onnx_out))))
    result.per_beat_ms = {name: [] for name in calls}
    for round_index in range(rounds + WARMUP_ROUNDS):
        start = round_index % (beats - batch + 1)
        for name, (call, size) in calls.items():
            part = _slice(feeds, start, start + size)
            started = time.perf_counter()
            call(part)
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            if round_index >= WARMUP_ROUNDS:
                result.per_beat_ms[name].append(elapsed_ms / size)
    return result
