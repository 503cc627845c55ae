"""Keras -> ONNX export with a parity check and the model contract in ``metadata_props``.

TensorFlow, tf2onnx and onnx are imported inside functions only (the ``train`` extra). The
file is written only once onnxruntime reproduces the Keras probabilities on real windows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from ecg_stream.classify.classifier import RR_INPUT, WINDOW_INPUT, ModelContract, keras_path_of
from ecg_stream.config import ChainConfig
from ecg_stream.documents import (
    check_output_file,
    write_atomically,
    write_json,
    written_aside,
)
from ecg_stream.errors import TRAIN_EXTRA, ConfigError, MissingExtraError, ModelContractError
from ecg_stream.records import DataDirs
from ecg_stream.training.calibration import PROBABILITY_FLOOR, choose_calibration
from ecg_stream.training.dataset import BeatDataset, build_dataset, project_version
from ecg_stream.training.run import CalibrationSummary, CvSummary, RunDir, import_keras

logger = logging.getLogger(__name__)

OPSET = 17
PARITY_MIN_WINDOWS = 1000
PARITY_MAX_WINDOWS = 2000
PARITY_TOLERANCE = 1e-4
"""Largest allowed |Keras - onnxruntime| difference of any class probability."""
BATCH_DIM = "batch"


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an export wrote and how closely onnxruntime matched Keras.

    Args:
        path: The written ``.onnx`` file.
        contract: The contract stored in its ``metadata_props``.
        parity_windows: Number of real windows compared.
        max_abs_difference: Largest |Keras - onnxruntime| probability difference.
        size_bytes: Size of the file, in bytes.
    """

    path: Path
    contract: ModelContract
    parity_windows: int
    max_abs_difference: float
    size_bytes: int


def export_model(
    run_dir: Path,
    out_path: Path,
    *,
    model_name: str = "beat_lstm",
    checkpoint: str | None = None,
    config: ChainConfig | None = None,
    parity_records: Sequence[str] | None = None,
    data_dir: DataDirs = None,
    cache_dir: Path | None = None,
) -> ExportResult:
    """Convert a training run to ONNX, check parity, then write it.

    A single run exports its checkpoint. A cross-validation run (``cv.json``) exports its
    model trained on the whole pool (``whole-pool/``) if it has one, else the ensemble of its
    fold models (their probabilities averaged inside one graph), calibrated by the variant
    chosen on the out-of-fold predictions (``calibration.json``). The whole-pool network is
    also written, without its optimizer and before calibration, as ``OUT.keras`` beside the
    ONNX file (``bench`` compares Keras with onnxruntime on it).

    Args:
        run_dir: Directory of a ``training/train.py`` run (single or cross-validation).
        out_path: Where to write the ``.onnx`` file.
        model_name: Name written into the contract.
        checkpoint: Checkpoint file inside a single run's ``run_dir`` (default: the one with
            the lowest validation loss, ``best.keras``).
        config: The chain's configuration (default ``ChainConfig()``).
        parity_records: Records whose windows are compared (default: the run's validation
            records, or a cross-validation run's first two records); they must yield at
            least ``PARITY_MIN_WINDOWS`` beats.
        data_dir: Directory or directories holding the WFDB records.
        cache_dir: Dataset cache directory.

    Raises:
        ConfigError: The run directory lacks its files or the parity set is too small.
        ModelContractError: onnxruntime does not reproduce the Keras probabilities.
        MissingExtraError: TensorFlow, tf2onnx or onnx is not installed.
    """
    config = config or ChainConfig()
    check_output_file(out_path)  # before minutes of conversion
    tf, tf2onnx, onnx = _train_extra()
    run = RunDir(run_dir)
    if run.is_cv:
        cv = run.read_cv()
        settings = cv.settings
        keras_model = _calibrated(tf.keras, run, cv, config.window_samples)
        training_records = " ".join(settings.records)
        validation_records = f"{cv.k}-fold cross-validation over the training records"
        default_parity = settings.records[:2]
    else:
        summary = run.read_summary()
        settings = summary.settings
        keras_path = run.best_model if checkpoint is None else run_dir / checkpoint
        if not keras_path.is_file():
            msg = f"{keras_path} does not exist; train first (ecg-stream train {run_dir})"
            raise ConfigError(msg)
        keras_model = tf.keras.models.load_model(keras_path)
        training_records = " ".join(summary.train_records)
        validation_records = " ".join(summary.validation_records)
        default_parity = tuple(summary.validation_records)
    features, channels = settings.features, settings.channels
    contract = ModelContract.for_chain(
        config,
        model_name=model_name,
        features=features,
        channels=channels,
        training_protocol=settings.protocol.value,
        training_records=training_records,
        validation_records=validation_records,
        project_version=project_version(),
    )
    signature = [
        tf.TensorSpec([None, config.window_samples, len(channels)], tf.float32, name=WINDOW_INPUT)
    ]
    if features:
        signature.append(tf.TensorSpec([None, len(features)], tf.float32, name=RR_INPUT))
    onnx_model, _ = tf2onnx.convert.from_keras(keras_model, input_signature=signature, opset=OPSET)
    for graph_input in onnx_model.graph.input:
        graph_input.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    for graph_output in onnx_model.graph.output:
        graph_output.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    onnx.helper.set_model_props(onnx_model, contract.to_metadata())
    onnx_model.doc_string = f"ecg-stream beat classifier {model_name}; contract in metadata_props"
    serialised = onnx_model.SerializeToString()

    names = parity_records or default_parity
    parity_set = _parity_windows(
        build_dataset(names, config, data_dir=data_dir, cache_dir=cache_dir)
    )
    inputs = {WINDOW_INPUT: parity_set.window_channels(channels)}
    if features:
        inputs[RR_INPUT] = parity_set.feature_columns(features)
    expected = np.asarray(keras_model.predict(inputs, batch_size=1024, verbose=0))
    session = onnxruntime.InferenceSession(serialised, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, inputs)
    difference = float(np.max(np.abs(expected - got)))
    disagreements = int(np.count_nonzero(expected.argmax(axis=1) != got.argmax(axis=1)))
    if difference > PARITY_TOLERANCE or disagreements:
        msg = (
            f"onnxruntime differs from Keras on {len(parity_set)} windows of {list(names)}: "
            f"max |diff| {difference:.2e} (allowed {PARITY_TOLERANCE:.0e}), "
            f"{disagreements} argmax disagreements (allowed 0); no file written. "
            f"Check the tf2onnx version ({tf2onnx.__version__}) or try another opset"
        )
        raise ModelContractError(msg)
    write_atomically(out_path, serialised)
    if run.is_cv and run.whole_pool.final_model.is_file():  # one network: its Keras file too
        network = tf.keras.models.load_model(run.whole_pool.final_model, compile=False)
        keras_path = keras_path_of(out_path)
        with written_aside(keras_path) as scratch:  # Keras names the file by its suffix
            network.save(scratch / keras_path.name)
    logger.info(
        "export: %s (%d bytes), parity on %d windows: max |diff| %.1e",
        out_path,
        len(serialised),
        len(parity_set),
        difference,
    )
    return ExportResult(
        path=out_path,
        contract=contract,
        parity_windows=len(parity_set),
        max_abs_difference=difference,
        size_bytes=len(serialised),
    )


def _calibrated(keras: Any, run: RunDir, cv: CvSummary, window_samples: int) -> Any:
    """The whole-pool model's (or the fold models' averaged) probabilities, calibrated.

    The calibration (``softmax((log p + bias) / temperature)``) is chosen on the pooled
    out-of-fold predictions and recorded in ``calibration.json``.
    """
    with np.load(run.oof_file) as oof:
        calibration, figures = choose_calibration(oof["probabilities"], oof["labels"], oof["folds"])
    write_json(CalibrationSummary(calibration.name, figures), run.calibration_file)
    settings = cv.settings
    window = keras.Input(shape=(window_samples, len(settings.channels)), name=WINDOW_INPUT)
    inputs = [window]
    if settings.features:
        inputs.append(keras.Input(shape=(len(settings.features),), name=RR_INPUT))
    outputs = []
    whole_pool = run.whole_pool.final_model
    members = (
        [whole_pool] if whole_pool.is_file() else [run.fold(i).final_model for i in range(cv.k)]
    )
    for index, path in enumerate(members):
        if not path.is_file():
            msg = f"{path} does not exist; finish the run (ecg-stream train {run} --cv {cv.k})"
            raise ConfigError(msg)
        member = keras.models.load_model(path)
        member.name = f"fold_{index}"
        outputs.append(member(inputs if len(inputs) > 1 else window))
    averaged = keras.layers.Average()(outputs) if len(outputs) > 1 else outputs[0]
    log_probabilities = keras.ops.log(averaged + PROBABILITY_FLOOR)
    size = len(calibration.bias)
    calibrate = keras.layers.Dense(size, activation="softmax", name="probabilities")
    calibrated = calibrate(log_probabilities)
    calibrate.set_weights(
        [
            np.eye(size, dtype=np.float32) / calibration.temperature,
            np.array(calibration.bias, dtype=np.float32) / calibration.temperature,
        ]
    )
    name = "beat_lstm" if len(members) == 1 else "beat_lstm_ensemble"
    return keras.Model(inputs=inputs, outputs=calibrated, name=name)


def _parity_windows(dataset: BeatDataset) -> BeatDataset:
    """Up to ``PARITY_MAX_WINDOWS`` windows spread evenly over the dataset."""
    if len(dataset) < PARITY_MIN_WINDOWS:
        msg = (
            f"parity records yield {len(dataset)} windows, fewer than {PARITY_MIN_WINDOWS}; "
            "give more records (e.g. a whole record such as 100 yields > 2000)"
        )
        raise ConfigError(msg)
    count = min(len(dataset), PARITY_MAX_WINDOWS)
    return dataset.subset(np.linspace(0, len(dataset) - 1, count).round().astype(np.int64))


def _train_extra() -> tuple[Any, Any, Any]:
    import_keras()  # TensorFlow's native start-up, off stderr
    try:
        import onnx
        import tensorflow as tf
        import tf2onnx
    except ImportError as error:
        missing = error.name or "tensorflow"
        raise MissingExtraError(TRAIN_EXTRA, missing) from error
    return tf, tf2onnx, onnx
