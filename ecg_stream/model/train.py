"""Offline training of the stacked-LSTM beat classifier (Keras; the ``train`` extra).

TensorFlow is imported inside functions only, so importing this module costs nothing and the
core never pulls it in. Windows and RR features come from :mod:`ecg_stream.model.dataset`,
which cuts them with the streaming chain itself.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ecg_stream.config import ChainConfig
from ecg_stream.detector.segment import FEATURE_NAMES, unknown_features
from ecg_stream.errors import ConfigError, MissingExtraError
from ecg_stream.model.dataset import TRAIN_EXTRA, BeatDataset, build_dataset
from ecg_stream.records import DS1, DS2, PACED
from ecg_stream.types import BEAT_CLASSES, IntArray

logger = logging.getLogger(__name__)

VALIDATION_RECORDS: tuple[str, ...] = ("101", "119", "124", "220")
"""Whole DS1 records held out for early stopping and learning-rate reduction (inter-patient).

Chosen to hold some S (124, 220) and V (119, 124) beats while leaving most ectopic beats
to training; DS2 is never touched by training.
"""
INTRA_TEST_FRACTION = 0.2
INTRA_VALIDATION_FRACTION = 0.1
MAX_CLASS_WEIGHT = 10.0
"""Cap on a class weight, so a class with a handful of beats (Q) cannot dominate the loss."""
DROPOUT_RATE = 0.2
BEST_MODEL = "best.keras"
LAST_MODEL = "last.keras"
FINAL_MODEL = "final.keras"
TRAINING_LOG = "training_log.csv"
SETTINGS_FILE = "settings.json"
RESULT_FILE = "training.json"


class Protocol(Enum):
    """How beats are split between training and evaluation (PROTOCOL.md)."""

    INTER_PATIENT = "inter-patient"
    """Train and validate on DS1 (validation: whole records); DS2 is the test set."""
    INTRA_PATIENT = "intra-patient"
    """Random beat split over DS1 + DS2: only to compare with published intra-patient claims."""


@dataclass(frozen=True, slots=True)
class TrainSettings:
    """Everything that decides a training run; a resumed run must use the same.

    Args:
        protocol: The data split.
        features: Per-beat features (``FEATURE_NAMES``) the model takes as its second
            input, in order; empty for a window-only model (the ablation).
        max_per_class: Training beats kept per class at most (random subsample).
        epochs: Maximum number of epochs.
        batch_size: Mini-batch size.
        learning_rate: Initial Adam learning rate.
        patience: Epochs without validation-loss improvement before stopping.
        seed: Seed of the subsample, the split and TensorFlow.
    """

    protocol: Protocol
    features: tuple[str, ...] = FEATURE_NAMES
    max_per_class: int = 12_000
    epochs: int = 100
    batch_size: int = 128
    learning_rate: float = 1e-3
    patience: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_per_class < 1 or self.epochs < 1 or self.batch_size < 1:
            msg = (
                f"max_per_class={self.max_per_class}, epochs={self.epochs} and "
                f"batch_size={self.batch_size} must all be >= 1"
            )
            raise ConfigError(msg)
        unknown = unknown_features(self.features)
        if unknown or len(set(self.features)) != len(self.features):
            msg = (
                f"features {list(self.features)} must be distinct names from "
                f"{', '.join(FEATURE_NAMES)}"
            )
            raise ConfigError(msg)
        if not 0.0 < self.learning_rate < 1.0:
            msg = f"learning_rate={self.learning_rate} must lie in (0, 1), e.g. 1e-3"
            raise ConfigError(msg)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON form (the protocol by its value)."""
        settings = asdict(self)
        settings["protocol"] = self.protocol.value
        settings["features"] = list(self.features)
        return settings


@dataclass(frozen=True, slots=True)
class DatasetSplits:
    """Training, validation and (intra-patient only) test beats.

    Args:
        train: Beats the model learns from (before class subsampling).
        validation: Beats for early stopping and learning-rate reduction.
        test: Held-out beats of the intra-patient split; None for inter-patient (DS2 is
            evaluated through the streaming path instead).
        train_records: Records the training beats come from.
        validation_records: Records the validation beats come from.
    """

    train: BeatDataset
    validation: BeatDataset
    test: BeatDataset | None
    train_records: tuple[str, ...]
    validation_records: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TrainResult:
    """Where a training run left its files and what it measured.

    Args:
        out_dir: The run directory.
        best_model_path: Checkpoint with the lowest validation loss.
        final_model_path: Weights after the last epoch.
        log_path: CSV log, one row per epoch.
        result_path: JSON summary (settings, records, counts, figures).
        epochs_run: Epochs in the log (over all resumed sessions).
        train_seconds: Wall time spent in epochs, summed over resumed sessions, in s.
        best_validation_loss: Lowest validation loss seen.
        test_accuracy: Accuracy on the intra-patient test beats; None for inter-patient.
    """

    out_dir: Path
    best_model_path: Path
    final_model_path: Path
    log_path: Path
    result_path: Path
    epochs_run: int
    train_seconds: float
    best_validation_loss: float
    test_accuracy: float | None


def split_dataset(
    protocol: Protocol,
    config: ChainConfig,
    *,
    seed: int = 0,
    data_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> DatasetSplits:
    """Build the beats of a protocol and split them.

    Args:
        protocol: Inter-patient (DS1 only, whole validation records) or intra-patient.
        config: The chain's configuration.
        seed: Seed of the intra-patient random split.
        data_dir: Directory holding the WFDB records.
        cache_dir: Dataset cache directory.
    """
    if protocol is Protocol.INTER_PATIENT:
        dataset = build_dataset(DS1, config, data_dir=data_dir, cache_dir=cache_dir)
        train_records = tuple(name for name in DS1 if name not in VALIDATION_RECORDS)
        return DatasetSplits(
            train=dataset.of_records(train_records),
            validation=dataset.of_records(VALIDATION_RECORDS),
            test=None,
            train_records=train_records,
            validation_records=VALIDATION_RECORDS,
        )
    records = tuple(sorted(name for name in DS1 + DS2 if name not in PACED))
    dataset = build_dataset(records, config, data_dir=data_dir, cache_dir=cache_dir)
    order = np.random.default_rng(seed).permutation(len(dataset))
    n_test = round(INTRA_TEST_FRACTION * len(dataset))
    n_validation = round(INTRA_VALIDATION_FRACTION * len(dataset))
    return DatasetSplits(
        train=dataset.subset(order[n_test + n_validation :]),
        validation=dataset.subset(order[n_test : n_test + n_validation]),
        test=dataset.subset(order[:n_test]),
        train_records=records,
        validation_records=records,
    )


def balanced_subsample(labels: IntArray, max_per_class: int, seed: int) -> IntArray:
    """Indices keeping at most ``max_per_class`` random beats of each class, in input order.

    Example:
        >>> balanced_subsample(np.array([0, 0, 0, 1, 2, 0]), max_per_class=2, seed=0).size
        4
    """
    rng = np.random.default_rng(seed)
    kept: list[IntArray] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if members.size > max_per_class:
            members = rng.choice(members, size=max_per_class, replace=False)
        kept.append(members.astype(np.int64))
    return np.sort(np.concatenate(kept)) if kept else np.empty(0, dtype=np.int64)


def class_weights(labels: IntArray) -> dict[int, float]:
    """Square-root balanced class weights, capped at ``MAX_CLASS_WEIGHT``.

    A class of ``n_c`` beats among ``n`` in ``k`` present classes weighs
    ``min(MAX_CLASS_WEIGHT, sqrt(n / (k * n_c)))``: the minority classes count more without
    the full inverse-frequency weights that trade away most S and V positive predictivity.
    """
    counts = np.bincount(labels, minlength=len(BEAT_CLASSES))
    present = int(np.count_nonzero(counts))
    return {
        index: min(MAX_CLASS_WEIGHT, math.sqrt(labels.size / (present * int(count))))
        if count
        else 1.0
        for index, count in enumerate(counts)
    }


def build_model(window_samples: int, n_features: int, learning_rate: float) -> Any:
    """The reference stacked LSTM, with per-beat features as an optional second input.

    Inputs ``window`` (batch, window_samples, 1) and, unless ``n_features`` is 0, ``rr``
    (batch, n_features) joined before the dense layers; output ``probabilities``
    (batch, 5) in ``BEAT_CLASSES`` order.

    Raises:
        MissingExtraError: TensorFlow is not installed.
    """
    keras = _keras()
    window = keras.Input(shape=(window_samples, 1), name="window")
    x = keras.layers.LSTM(128, return_sequences=True)(window)
    x = keras.layers.BatchNormalization()(keras.layers.Dropout(DROPOUT_RATE)(x))
    x = keras.layers.LSTM(64, return_sequences=True)(x)
    x = keras.layers.BatchNormalization()(keras.layers.Dropout(DROPOUT_RATE)(x))
    x = keras.layers.LSTM(32)(x)
    x = keras.layers.BatchNormalization()(keras.layers.Dropout(DROPOUT_RATE)(x))
    inputs = [window]
    if n_features:
        rr = keras.Input(shape=(n_features,), name="rr")
        inputs.append(rr)
        x = keras.layers.Concatenate()([x, rr])
    x = keras.layers.Dense(64, activation="relu")(x)
    x = keras.layers.Dense(32, activation="relu")(x)
    probabilities = keras.layers.Dense(
        len(BEAT_CLASSES), activation="softmax", name="probabilities"
    )(x)
    model = keras.Model(inputs=inputs, outputs=probabilities, name="beat_lstm")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def model_inputs(
    dataset: BeatDataset, features: tuple[str, ...]
) -> dict[str, npt.NDArray[np.float32]]:
    """The Keras inputs of a dataset: ``window`` (n, samples, 1) and ``rr`` (n, features)."""
    inputs = {"window": dataset.windows[:, :, np.newaxis]}
    if features:
        inputs["rr"] = dataset.feature_columns(features)
    return inputs


def train_model(
    out_dir: Path,
    settings: TrainSettings,
    *,
    config: ChainConfig | None = None,
    data_dir: Path | None = None,
    cache_dir: Path | None = None,
    splits: DatasetSplits | None = None,
    threads: int | None = None,
    verbose: int = 2,
) -> TrainResult:
    """Train (or resume training) the beat classifier into ``out_dir``.

    Writes ``best.keras`` (lowest validation loss), ``last.keras`` (after every epoch, for
    resuming), ``final.keras``, ``training_log.csv`` and ``training.json``. If ``out_dir``
    holds a ``last.keras`` from a run with the same settings, training resumes after the
    last logged epoch (early-stopping patience restarts).

    Args:
        out_dir: Run directory, created if need be.
        settings: Protocol, model variant and optimisation settings.
        config: The chain's configuration (default ``ChainConfig()``).
        data_dir: Directory holding the WFDB records.
        cache_dir: Dataset cache directory.
        splits: Ready-made splits (tests); by default built from ``settings.protocol``.
        threads: TensorFlow intra- and inter-op threads (None: TensorFlow's choice).
        verbose: Keras progress: 0 silent, 1 progress bar, 2 one line per epoch.

    Raises:
        MissingExtraError: TensorFlow is not installed.
        ConfigError: ``out_dir`` holds a run with other settings.
    """
    config = config or ChainConfig()
    tf = _tensorflow()
    if threads is not None:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    keras = tf.keras
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(out_dir, settings, config)
    if splits is None:
        splits = split_dataset(
            settings.protocol, config, seed=settings.seed, data_dir=data_dir, cache_dir=cache_dir
        )
    train = splits.train.subset(
        balanced_subsample(splits.train.labels, settings.max_per_class, settings.seed)
    )
    weights = class_weights(train.labels)
    logger.info(
        "train: %d beats %s, validation %d beats %s, class weights %s",
        len(train),
        _counts_text(train),
        len(splits.validation),
        _counts_text(splits.validation),
        {BEAT_CLASSES[i].value: round(w, 2) for i, w in weights.items()},
    )
    keras.utils.set_random_seed(settings.seed)
    log_path, last_path = out_dir / TRAINING_LOG, out_dir / LAST_MODEL
    initial_epoch = _logged_epochs(log_path) if last_path.is_file() else 0
    if initial_epoch:
        logger.info("train: resuming from %s after epoch %d", last_path, initial_epoch)
        model = keras.models.load_model(last_path)
    else:
        log_path.unlink(missing_ok=True)
        model = build_model(
            config.window_samples,
            len(settings.features),
            settings.learning_rate,
        )
    callbacks = [
        _epoch_timer(keras),
        keras.callbacks.ModelCheckpoint(out_dir / BEST_MODEL, save_best_only=True),
        keras.callbacks.ModelCheckpoint(last_path),
        keras.callbacks.EarlyStopping(patience=settings.patience, restore_best_weights=False),
        keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=max(1, settings.patience // 3)),
        keras.callbacks.CSVLogger(log_path, append=True),
    ]
    if initial_epoch < settings.epochs:
        model.fit(
            model_inputs(train, settings.features),
            _one_hot(train.labels),
            validation_data=(
                model_inputs(splits.validation, settings.features),
                _one_hot(splits.validation.labels),
            ),
            batch_size=settings.batch_size,
            epochs=settings.epochs,
            initial_epoch=initial_epoch,
            class_weight=weights,
            callbacks=callbacks,
            shuffle=True,
            verbose=verbose,
        )
    model.save(out_dir / FINAL_MODEL)
    return _summarise(out_dir, settings, config, splits, train, weights)


def predict_keras(
    model_path: Path, dataset: BeatDataset, features: tuple[str, ...], batch_size: int = 1024
) -> Any:
    """Class probabilities of a saved Keras model taking ``features`` on a dataset, (n, 5).

    Raises:
        MissingExtraError: TensorFlow is not installed.
    """
    keras = _keras()
    model = keras.models.load_model(model_path)
    return np.asarray(
        model.predict(model_inputs(dataset, features), batch_size=batch_size, verbose=0)
    )


def _summarise(
    out_dir: Path,
    settings: TrainSettings,
    config: ChainConfig,
    splits: DatasetSplits,
    train: BeatDataset,
    weights: dict[int, float],
) -> TrainResult:
    rows = _read_log(out_dir / TRAINING_LOG)
    validation_losses = [float(row["val_loss"]) for row in rows]
    test_accuracy: float | None = None
    test_summary: dict[str, Any] | None = None
    if splits.test is not None:
        probabilities = predict_keras(out_dir / BEST_MODEL, splits.test, settings.features)
        predicted = np.argmax(probabilities, axis=1)
        confusion = np.zeros((len(BEAT_CLASSES), len(BEAT_CLASSES)), dtype=np.int64)
        np.add.at(confusion, (splits.test.labels, predicted), 1)
        test_accuracy = float(np.trace(confusion) / confusion.sum())
        test_summary = {
            "note": "intra-patient random beat split: beats of one patient on both sides",
            "beats": len(splits.test),
            "accuracy": test_accuracy,
            "confusion": confusion.tolist(),
        }
    train_seconds = sum(float(row["epoch_seconds"]) for row in rows)
    best_loss = min(validation_losses) if validation_losses else math.nan
    result = {
        "settings": settings.to_json(),
        "chain_config": asdict(config),
        "train_records": list(splits.train_records),
        "validation_records": list(splits.validation_records),
        "train_counts": _counts(train),
        "validation_counts": _counts(splits.validation),
        "class_weights": {BEAT_CLASSES[i].value: w for i, w in weights.items()},
        "unmatched_detections": int(sum(splits.train.unmatched_detections)),
        "dataset_cache_key": splits.train.cache_key,
        "epochs_run": len(rows),
        "train_seconds": train_seconds,
        "best_validation_loss": best_loss,
        "best_epoch": int(np.argmin(validation_losses)) + 1 if validation_losses else 0,
        "test": test_summary,
    }
    result_path = out_dir / RESULT_FILE
    result_path.write_text(json.dumps(result, indent=2) + "\n")
    return TrainResult(
        out_dir=out_dir,
        best_model_path=out_dir / BEST_MODEL,
        final_model_path=out_dir / FINAL_MODEL,
        log_path=out_dir / TRAINING_LOG,
        result_path=result_path,
        epochs_run=len(rows),
        train_seconds=train_seconds,
        best_validation_loss=best_loss,
        test_accuracy=test_accuracy,
    )


def _check_settings(out_dir: Path, settings: TrainSettings, config: ChainConfig) -> None:
    """Refuse to resume a run made with other settings (``epochs`` may grow); record them."""
    wanted = {"settings": settings.to_json(), "chain_config": asdict(config)}
    wanted = json.loads(json.dumps(wanted))  # tuples become lists, as when read back
    path = out_dir / SETTINGS_FILE
    if (out_dir / LAST_MODEL).is_file() and path.is_file():
        stored = json.loads(path.read_text())
        if _without_epochs(stored) != _without_epochs(wanted):
            msg = (
                f"{out_dir} holds a run with settings {stored}, not {wanted}; "
                "give another output directory or delete that one to start afresh"
            )
            raise ConfigError(msg)
    path.write_text(json.dumps(wanted, indent=2) + "\n")


def _without_epochs(description: dict[str, Any]) -> dict[str, Any]:
    return {**description, "settings": {**description["settings"], "epochs": None}}


def _read_log(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _logged_epochs(path: Path) -> int:
    return len(_read_log(path))


def _one_hot(labels: IntArray) -> npt.NDArray[np.float32]:
    return np.eye(len(BEAT_CLASSES), dtype=np.float32)[labels]


def _counts(dataset: BeatDataset) -> dict[str, int]:
    return {beat_class.value: n for beat_class, n in dataset.class_counts().items()}


def _counts_text(dataset: BeatDataset) -> str:
    return " ".join(f"{name}={n}" for name, n in _counts(dataset).items())


def _epoch_timer(keras: Any) -> Any:
    """A callback adding ``epoch_seconds`` to the epoch logs (before the CSV logger)."""

    class EpochTimer(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if logs is not None:
                logs["epoch_seconds"] = time.perf_counter() - self.started

    return EpochTimer()


def _tensorflow() -> Any:
    try:
        import tensorflow as tf
    except ImportError as error:
        raise MissingExtraError(TRAIN_EXTRA, "tensorflow") from error
    return tf


def _keras() -> Any:
    return _tensorflow().keras
