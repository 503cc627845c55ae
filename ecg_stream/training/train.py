"""Offline training of the stacked-LSTM beat classifier (Keras 3; the ``train`` extra).

Keras is imported inside functions only, so importing this module costs nothing and the core
never pulls it in; any Keras 3 backend trains (TensorFlow here, JAX on an accelerator), and
the saved ``.keras`` files load in any of them. Windows, templates and per-beat features come
from :mod:`ecg_stream.training.dataset`, which cuts them with the streaming chain itself.

Inter-patient model selection is by patient-grouped K-fold cross-validation over the training
pool (:func:`cross_validate`): each fold trains for a fixed number of epochs on a fixed
learning-rate schedule, so the held-out records steer nothing, and their pooled out-of-fold
predictions are the figures every choice is made on.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from ecg_stream.config import ChainConfig
from ecg_stream.documents import atomic_output, read_json, write_json
from ecg_stream.errors import ConfigError
from ecg_stream.evaluation import ClassScore
from ecg_stream.evaluation.figures import ScoreFigures
from ecg_stream.progress import progress
from ecg_stream.records import DS1, DS2, PACED, DataDirs
from ecg_stream.training.af_gate import af_gated
from ecg_stream.training.augment import BeatAugmenter, NoiseBank
from ecg_stream.training.baseline import fit_predict_baseline
from ecg_stream.training.calibration import score_of
from ecg_stream.training.dataset import (
    BeatDataset,
    build_dataset,
    patient_balanced_sample,
)
from ecg_stream.training.folds import record_folds
from ecg_stream.training.run import (
    Architecture,
    CvSummary,
    FoldsFile,
    FoldSummary,
    IntraTest,
    Protocol,
    RunDir,
    RunSettings,
    TrainingSummary,
    TrainSettings,
    import_keras,
)
from ecg_stream.types import BEAT_CLASSES, IntArray

logger = logging.getLogger(__name__)

VALIDATION_RECORDS: tuple[str, ...] = ("101", "119", "124", "220")
"""Whole DS1 records held out for early stopping of a single inter-patient run (not CV).

Chosen to hold some S (124, 220) and V (119, 124) beats while leaving most ectopic beats
to training; DS2 is never touched by training.
"""
INTRA_TEST_FRACTION = 0.2
INTRA_VALIDATION_FRACTION = 0.1
MAX_CLASS_WEIGHT = 10.0
"""Cap on a class weight, so a class with a handful of beats (Q) cannot dominate the loss."""
DROPOUT_RATE = 0.2
FINAL_LEARNING_RATE_FRACTION = 0.05
"""A cross-validation fold's cosine schedule ends at this fraction of the initial rate."""


@dataclass(frozen=True, slots=True)
class DatasetSplits:
    """Training, validation and (intra-patient only) test beats.

    Args:
        train: Beats the model learns from (before sampling).
        validation: Beats for early stopping (single runs) or monitoring (CV folds).
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


@dataclass(frozen=True, slots=True)
class CrossValidationResult:
    """Pooled out-of-fold figures of a cross-validation run.

    Args:
        out_dir: The run directory (``fold-<i>/`` per fold, ``cv.json``, ``oof.npz``).
        folds: The records of each fold.
        score: Pooled out-of-fold confusion of the matched beats of the pool.
        score_af_gated: The same after the rhythm stage's AF gate (``training/af_gate.py``).
        train_seconds: Wall time of all folds' epochs, in s.
        result_path: The ``cv.json`` file.
    """

    out_dir: Path
    folds: tuple[tuple[str, ...], ...]
    score: ClassScore
    score_af_gated: ClassScore
    train_seconds: float
    result_path: Path


def split_dataset(
    settings: TrainSettings,
    config: ChainConfig,
    *,
    data_dir: DataDirs = None,
    cache_dir: Path | None = None,
) -> DatasetSplits:
    """Build the beats of a protocol and split them.

    Args:
        settings: Protocol, pool and seed of the intra-patient random split.
        config: The chain's configuration.
        data_dir: Directory or directories holding the WFDB records.
        cache_dir: Dataset cache directory.
    """
    if settings.protocol is Protocol.INTER_PATIENT:
        dataset = build_dataset(settings.records, config, data_dir=data_dir, cache_dir=cache_dir)
        validation = tuple(name for name in VALIDATION_RECORDS if name in settings.records)
        train_records = tuple(name for name in settings.records if name not in validation)
        return DatasetSplits(
            train=dataset.of_records(train_records),
            validation=dataset.of_records(validation),
            test=None,
            train_records=train_records,
            validation_records=validation,
        )
    records = tuple(sorted(name for name in DS1 + DS2 if name not in PACED))
    dataset = build_dataset(records, config, data_dir=data_dir, cache_dir=cache_dir)
    order = np.random.default_rng(settings.seed).permutation(len(dataset))
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
    groups = np.zeros_like(labels)
    return patient_balanced_sample(
        labels, groups, max_per_class, max_per_class, np.random.default_rng(seed)
    )


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


def build_model(
    arch: Architecture,
    window_samples: int,
    n_channels: int,
    n_features: int,
    learning_rate: Any,
) -> Any:
    """The stacked LSTM, with per-beat features as an optional second input.

    Inputs ``window`` (batch, window_samples, n_channels) and, unless ``n_features`` is 0,
    ``rr`` (batch, n_features) joined before the dense layers; output ``probabilities``
    (batch, 5) in ``BEAT_CLASSES`` order.

    Args:
        arch: ``reference`` (LSTM 128 -> 64 -> 32 over every sample), ``lean`` (strided
            convolutions down to 63 steps, then LSTM 64 -> 32) or ``compact`` (down to 32
            steps, then LSTM 32, dense 32).
        window_samples: Samples per window.
        n_channels: Channels of the window input.
        n_features: Per-beat features of the second input (0: none).
        learning_rate: Adam's learning rate, a float or a Keras schedule.

    Raises:
        MissingExtraError: Keras is not installed.
    """
    keras = import_keras()
    layers = keras.layers
    window = keras.Input(shape=(window_samples, n_channels), name="window")
    if arch is Architecture.REFERENCE:
        x = layers.LSTM(128, return_sequences=True)(window)
        x = layers.BatchNormalization()(layers.Dropout(DROPOUT_RATE)(x))
        x = layers.LSTM(64, return_sequences=True)(x)
    else:
        x = layers.Conv1D(32, 7, strides=2, padding="same", activation="relu")(window)
        x = layers.Conv1D(32, 5, strides=2, padding="same", activation="relu")(x)
        if arch is Architecture.COMPACT:
            x = layers.Conv1D(32, 5, strides=2, padding="same", activation="relu")(x)
        x = layers.BatchNormalization()(x)
        if arch is Architecture.LEAN:
            x = layers.LSTM(64, return_sequences=True)(x)
            x = layers.BatchNormalization()(layers.Dropout(DROPOUT_RATE)(x))
    x = layers.LSTM(32)(x)
    x = layers.BatchNormalization()(layers.Dropout(DROPOUT_RATE)(x))
    inputs = [window]
    if n_features:
        rr = keras.Input(shape=(n_features,), name="rr")
        inputs.append(rr)
        x = layers.Concatenate()([x, layers.BatchNormalization()(rr)])
    if arch is not Architecture.COMPACT:
        x = layers.Dense(64, activation="relu")(x)
    x = layers.Dense(32, activation="relu")(x)
    probabilities = layers.Dense(len(BEAT_CLASSES), activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs=inputs, outputs=probabilities, name=f"beat_lstm_{arch.value}")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def model_inputs(
    dataset: BeatDataset, channels: tuple[str, ...], features: tuple[str, ...]
) -> dict[str, npt.NDArray[np.float32]]:
    """The Keras inputs of a dataset: ``window`` (n, samples, channels), ``rr`` (n, features)."""
    inputs = {"window": dataset.window_channels(channels)}
    if features:
        inputs["rr"] = dataset.feature_columns(features)
    return inputs


def train_model(
    out_dir: Path,
    settings: TrainSettings,
    *,
    config: ChainConfig | None = None,
    data_dir: DataDirs = None,
    cache_dir: Path | None = None,
    splits: DatasetSplits | None = None,
    threads: int | None = None,
    verbose: int = 2,
) -> TrainResult:
    """Train (or resume training) one beat classifier into ``out_dir``, with early stopping.

    Writes ``best.keras`` (lowest validation loss), ``last.keras`` (after every epoch, for
    resuming), ``final.keras``, ``training_log.csv`` and ``training.json``. If ``out_dir``
    holds a ``last.keras`` from a run with the same settings, training resumes after the
    last logged epoch (early-stopping patience restarts).

    Args:
        out_dir: Run directory, created if need be.
        settings: Protocol, model variant and optimisation settings.
        config: The chain's configuration (default ``ChainConfig()``).
        data_dir: Directory or directories holding the WFDB records (and, to augment, the
            noise records ``bw``, ``em``, ``ma``).
        cache_dir: Dataset cache directory.
        splits: Ready-made splits (tests); by default built from ``settings``.
        threads: TensorFlow intra- and inter-op threads (None: TensorFlow's choice).
        verbose: Keras progress: 0 silent, 1 progress bar, 2 one line per epoch.

    Raises:
        MissingExtraError: Keras is not installed.
        ConfigError: ``out_dir`` holds a run with other settings.
    """
    config = config or ChainConfig()
    _set_threads(threads)
    run = RunDir(out_dir)
    run.check_claimable()
    augmenter = _augmenter(settings, config, data_dir)  # its noise records, before any file
    run.claim()
    _check_settings(run, RunSettings(settings, config))
    if splits is None:
        splits = split_dataset(settings, config, data_dir=data_dir, cache_dir=cache_dir)
    weights = _fit(run, settings, config, splits, augmenter, stop_early=True, verbose=verbose)
    return _summarise(run, settings, config, splits, weights)


def cross_validate(
    out_dir: Path,
    settings: TrainSettings,
    k: int,
    *,
    config: ChainConfig | None = None,
    data_dir: DataDirs = None,
    cache_dir: Path | None = None,
    dataset: BeatDataset | None = None,
    baseline: bool = False,
    train_missing: bool = True,
    whole_pool: bool = False,
    threads: int | None = None,
    verbose: int = 2,
) -> CrossValidationResult:
    """Patient-grouped K-fold cross-validation over the training pool.

    Each fold trains on the other folds' records for ``settings.epochs`` epochs on a cosine
    learning-rate schedule (no early stopping: the held-out records only get predicted), in
    ``fold-<i>/``. A fold whose ``final.keras`` exists is not trained again (resume). The
    pooled out-of-fold predictions go to ``oof.npz`` and their figures to ``cv.json``.

    Args:
        out_dir: Run directory, created if need be.
        settings: Must be inter-patient; ``records`` is the pool.
        k: Number of folds (>= 2; docs/protocol.md asks for >= 5).
        config: The chain's configuration (default ``ChainConfig()``).
        data_dir: Directory or directories holding the records and the noise records.
        cache_dir: Dataset cache directory.
        dataset: Ready-made beats of the pool; by default built from ``records``.
        train_missing: Train the folds that have no model yet; if False, score only the folds
            already trained (a run cut short elsewhere), and say so in ``cv.json``.
        whole_pool: Also train the recipe once on every record of the pool, in
            ``whole-pool/`` (unless there): the one network ``export`` then ships.
        baseline: Fit the gradient-boosted tree baseline on the same folds instead of the
            LSTM (``training/baseline.py``; no augmentation, no sampling).
        threads: TensorFlow threads (None: TensorFlow's choice).
        verbose: Keras progress: 0 silent, 1 progress bar, 2 one line per epoch.

    Raises:
        ConfigError: ``k`` is out of range, the protocol is not inter-patient, or ``out_dir``
            holds a run with other settings.
        MissingExtraError: Keras is not installed.
    """
    if settings.protocol is not Protocol.INTER_PATIENT:
        msg = "--cv needs --protocol inter-patient: folds are made of whole records"
        raise ConfigError(msg)
    config = config or ChainConfig()
    _set_threads(threads)
    run = RunDir(out_dir)
    run.check_claimable()  # cheap checks first: no minutes of dataset before a refusal
    augmenter = None if baseline else _augmenter(settings, config, data_dir)
    if dataset is None:
        dataset = build_dataset(settings.records, config, data_dir=data_dir, cache_dir=cache_dir)
    run.claim()  # only now is anything written
    _check_settings(run, RunSettings(settings, config, cv_folds=k, baseline=baseline))
    names = tuple(str(name) for name in np.unique(dataset.records))
    folds = _folds(run, dataset, names, k)
    probabilities = np.zeros((len(dataset), len(BEAT_CLASSES)), dtype=np.float32)
    fold_of_beat = np.full(len(dataset), -1, dtype=np.int64)
    fold_summaries: list[FoldSummary] = []
    for index, held_out in enumerate(progress(folds, len(folds), "train --cv")):
        fold_run = run.fold(index)
        train_records = tuple(name for name in names if name not in held_out)
        splits = DatasetSplits(
            train=dataset.of_records(train_records),
            validation=dataset.of_records(held_out),
            test=None,
            train_records=train_records,
            validation_records=held_out,
        )
        mask = np.isin(dataset.records, held_out)
        logger.info("cv: fold %d/%d, held out %s", index + 1, k, " ".join(held_out))
        if baseline:
            started = time.perf_counter()
            probabilities[mask] = fit_predict_baseline(
                splits.train,
                splits.validation,
                settings.features,
                class_weights(splits.train.labels),
                settings.seed,
            )
            train_seconds, losses = time.perf_counter() - started, []
        else:
            if not fold_run.final_model.is_file():
                if not train_missing:
                    logger.info(
                        "cv: fold %d has no %s; not scored", index + 1, fold_run.final_model
                    )
                    continue
                fold_run.path.mkdir(parents=True, exist_ok=True)
                _fit(
                    fold_run, settings, config, splits, augmenter, stop_early=False, verbose=verbose
                )
            probabilities[mask] = predict_keras(
                fold_run.final_model, splits.validation, settings.channels, settings.features
            )
            rows = _read_log(fold_run.log_file)
            train_seconds = sum(float(row["epoch_seconds"]) for row in rows)
            losses = [float(row["val_loss"]) for row in rows]
        fold_of_beat[mask] = index
        fold_summaries.append(
            FoldSummary(
                held_out=list(held_out),
                held_out_counts=_counts(splits.validation),
                epochs_run=len(losses),
                train_seconds=train_seconds,
                validation_loss_per_epoch=losses,
            )
        )
    if whole_pool and not baseline and not run.whole_pool.final_model.is_file():
        logger.info("cv: the recipe on the whole pool, %d records", len(names))
        run.whole_pool.path.mkdir(parents=True, exist_ok=True)
        everything = DatasetSplits(
            train=dataset,
            validation=dataset.subset(np.zeros(len(dataset), dtype=bool)),
            test=None,
            train_records=names,
            validation_records=(),
        )
        _fit(
            run.whole_pool,
            settings,
            config,
            everything,
            augmenter,
            stop_early=False,
            verbose=verbose,
        )
    return _summarise_cv(
        run,
        settings,
        config,
        dataset,
        folds,
        probabilities,
        fold_of_beat,
        fold_summaries,
        baseline=baseline,
    )


def _folds(
    run: RunDir, dataset: BeatDataset, names: tuple[str, ...], k: int
) -> tuple[tuple[str, ...], ...]:
    """The run's folds: from ``folds.json`` if it exists, else balanced anew and written there.

    A resumed run, or one trained elsewhere on a subsample, keeps the folds it started with.
    """
    path = run.folds_file
    if path.is_file():
        stored = read_json(path, FoldsFile, made_by=f"ecg-stream train {run} --cv {k}")
        folds = tuple(tuple(fold) for fold in stored.folds)
        if len(folds) != k or sorted(name for fold in folds for name in fold) != sorted(names):
            msg = (
                f"{path} holds {len(folds)} folds of other records than this --cv {k} run's "
                f"{len(names)}; give another output directory or delete that file"
            )
            raise ConfigError(msg)
        return folds
    folds = record_folds({name: dataset.of_records([name]).class_counts() for name in names}, k)
    write_json(FoldsFile(k, [list(fold) for fold in folds]), path)
    return folds


def predict_keras(
    model_path: Path,
    dataset: BeatDataset,
    channels: tuple[str, ...],
    features: tuple[str, ...],
    batch_size: int = 1024,
) -> Any:
    """Class probabilities of a saved Keras model on a dataset, (n, 5).

    Raises:
        MissingExtraError: Keras is not installed.
    """
    keras = import_keras()
    model = keras.models.load_model(model_path)
    return np.asarray(
        model.predict(model_inputs(dataset, channels, features), batch_size=batch_size, verbose=0)
    )


def _fit(
    run: RunDir,
    settings: TrainSettings,
    config: ChainConfig,
    splits: DatasetSplits,
    augmenter: BeatAugmenter | None,
    *,
    stop_early: bool,
    verbose: int,
) -> dict[int, float]:
    """Fit one model in ``run``; returns the class weights it used."""
    keras = import_keras()
    log_path, last_path = run.log_file, run.last_model
    initial_epoch = _logged_epochs(log_path) if last_path.is_file() else 0
    batches = _batches(keras, splits.train, settings, augmenter, initial_epoch)
    logger.info(
        "train: %d of %d beats per epoch %s, validation %d beats %s, class weights %s",
        batches.beats_per_epoch,
        len(splits.train),
        batches.counts_text,
        len(splits.validation),
        _counts_text(splits.validation),
        {BEAT_CLASSES[i].value: round(w, 2) for i, w in batches.weights.items()},
    )
    keras.utils.set_random_seed(settings.seed)
    callbacks = [_epoch_timer(keras)]
    if stop_early:
        callbacks += [
            keras.callbacks.ModelCheckpoint(run.best_model, save_best_only=True),
            keras.callbacks.EarlyStopping(patience=settings.patience),
            keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=max(1, settings.patience // 3)),
        ]
        learning_rate: Any = settings.learning_rate
    else:
        learning_rate = keras.optimizers.schedules.CosineDecay(
            settings.learning_rate,
            decay_steps=settings.epochs * len(batches),
            alpha=FINAL_LEARNING_RATE_FRACTION,
        )
    callbacks += [
        keras.callbacks.ModelCheckpoint(last_path),
        keras.callbacks.CSVLogger(log_path, append=True),
    ]
    if initial_epoch:
        logger.info("train: resuming from %s after epoch %d", last_path, initial_epoch)
        model = keras.models.load_model(last_path)
    else:
        log_path.unlink(missing_ok=True)
        model = build_model(
            settings.arch,
            config.window_samples,
            len(settings.channels),
            len(settings.features),
            learning_rate,
        )
    if initial_epoch < settings.epochs:
        validation = splits.validation
        model.fit(
            batches,
            validation_data=(
                model_inputs(validation, settings.channels, settings.features),
                _one_hot(validation.labels),
            )
            if len(validation)
            else None,
            epochs=settings.epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            verbose=verbose,
        )
    model.save(run.final_model)
    return dict(batches.weights)


def _summarise(
    run: RunDir,
    settings: TrainSettings,
    config: ChainConfig,
    splits: DatasetSplits,
    weights: dict[int, float],
) -> TrainResult:
    rows = _read_log(run.log_file)
    validation_losses = [float(row["val_loss"]) for row in rows]
    test: IntraTest | None = None
    if splits.test is not None:
        probabilities = predict_keras(
            run.best_model, splits.test, settings.channels, settings.features
        )
        score = score_of(splits.test.labels, probabilities)
        test = IntraTest(
            note="intra-patient random beat split: beats of one patient on both sides",
            beats=len(splits.test),
            accuracy=score.accuracy,
            confusion=score.confusion.tolist(),
        )
    train_seconds = sum(float(row["epoch_seconds"]) for row in rows)
    best_loss = min(validation_losses) if validation_losses else math.nan
    summary = TrainingSummary(
        settings=settings,
        chain_config=config,
        train_records=list(splits.train_records),
        validation_records=list(splits.validation_records),
        train_counts=_counts(splits.train),
        validation_counts=_counts(splits.validation),
        class_weights={BEAT_CLASSES[i].value: w for i, w in weights.items()},
        unmatched_detections=int(sum(splits.train.unmatched_detections)),
        dataset_cache_key=splits.train.cache_key,
        epochs_run=len(rows),
        train_seconds=train_seconds,
        best_validation_loss=best_loss if validation_losses else None,
        best_epoch=int(np.argmin(validation_losses)) + 1 if validation_losses else 0,
        test=test,
    )
    write_json(summary, run.summary_file)
    return TrainResult(
        out_dir=run.path,
        best_model_path=run.best_model,
        final_model_path=run.final_model,
        log_path=run.log_file,
        result_path=run.summary_file,
        epochs_run=len(rows),
        train_seconds=train_seconds,
        best_validation_loss=best_loss,
        test_accuracy=None if test is None else test.accuracy,
    )


def _summarise_cv(
    run: RunDir,
    settings: TrainSettings,
    config: ChainConfig,
    dataset: BeatDataset,
    folds: tuple[tuple[str, ...], ...],
    probabilities: npt.NDArray[np.float32],
    fold_of_beat: IntArray,
    fold_summaries: list[FoldSummary],
    *,
    baseline: bool,
) -> CrossValidationResult:
    with atomic_output(run.oof_file) as handle:
        np.savez_compressed(
            handle,
            probabilities=probabilities,
            labels=dataset.labels,
            records=dataset.records,
            folds=fold_of_beat,
        )
    scored = fold_of_beat >= 0
    score = score_of(dataset.labels[scored], probabilities[scored])
    score_af_gated = score_of(dataset.labels[scored], af_gated(dataset, probabilities)[scored])
    per_record = {
        str(name): ScoreFigures.of(score_of(dataset.labels[mask], probabilities[mask]))
        for name in np.unique(dataset.records[scored])
        for mask in [dataset.records == name]
    }
    train_seconds = sum(fold.train_seconds for fold in fold_summaries)
    summary = CvSummary(
        note="pooled out-of-fold figures on matched beats (whole records per fold)",
        model="gradient-boosted trees (baseline)" if baseline else "stacked LSTM",
        settings=settings,
        chain_config=config,
        k=len(folds),
        folds_scored=[index for index in range(len(folds)) if (fold_of_beat == index).any()],
        folds=fold_summaries,
        dataset_cache_key=dataset.cache_key,
        pool_counts=_counts(dataset),
        train_seconds=train_seconds,
        out_of_fold=ScoreFigures.of(score),
        out_of_fold_af_gated=ScoreFigures.of(score_af_gated),
        out_of_fold_loss_per_epoch=_pooled_loss_per_epoch(fold_summaries),
        records=per_record,
    )
    write_json(summary, run.cv_file)
    return CrossValidationResult(
        out_dir=run.path,
        folds=folds,
        score=score,
        score_af_gated=score_af_gated,
        train_seconds=train_seconds,
        result_path=run.cv_file,
    )


def _pooled_loss_per_epoch(fold_summaries: list[FoldSummary]) -> list[float]:
    """Beat-weighted mean of the held-out folds' loss after each epoch (monitoring only)."""
    curves = [fold.validation_loss_per_epoch for fold in fold_summaries]
    sizes = [sum(fold.held_out_counts.values()) for fold in fold_summaries]
    epochs = min((len(curve) for curve in curves), default=0)
    return [
        sum(curve[epoch] * size for curve, size in zip(curves, sizes, strict=True)) / sum(sizes)
        for epoch in range(epochs)
    ]


def _augmenter(
    settings: TrainSettings, config: ChainConfig, data_dir: DataDirs
) -> BeatAugmenter | None:
    if not settings.augment:
        return None
    return BeatAugmenter(config, NoiseBank.from_records(data_dir, config))


def _batches(
    keras: Any,
    train: BeatDataset,
    settings: TrainSettings,
    augmenter: BeatAugmenter | None,
    first_epoch: int,
) -> Any:
    """A Keras ``PyDataset`` drawing a new patient-balanced sample every epoch, augmented.

    Epoch ``e`` always gets the same sample, so a resumed run continues where it stopped.
    """
    _, groups = np.unique(train.records, return_inverse=True)
    channels = train.window_channels(settings.channels)
    features = train.feature_columns(settings.features)

    def draw(epoch: int) -> IntArray:
        rng = np.random.default_rng((settings.seed, epoch))
        chosen = patient_balanced_sample(
            train.labels, groups, settings.max_per_record_class, settings.max_per_class, rng
        )
        return rng.permutation(chosen)

    first = draw(first_epoch)
    weights = class_weights(train.labels[first])
    sample_weight = np.array([weights[i] for i in range(len(BEAT_CLASSES))], dtype=np.float32)

    class PatientBalancedBatches(keras.utils.PyDataset):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.epoch, self.order = first_epoch, first
            self.beats_per_epoch, self.weights = first.size, weights
            self.counts_text = _labels_text(train.labels[first])

        def __len__(self) -> int:
            return math.ceil(self.order.size / settings.batch_size)

        def __getitem__(self, index: int) -> tuple[dict[str, Any], Any, Any]:
            rows = self.order[index * settings.batch_size : (index + 1) * settings.batch_size]
            window = channels[rows].copy()
            if augmenter is not None:
                rng = np.random.default_rng((settings.seed, self.epoch, index))
                window[:, :, 0] = augmenter.augment(window[:, :, 0], rng)
            inputs = {"window": window}
            if settings.features:
                inputs["rr"] = features[rows]
            labels = train.labels[rows]
            return inputs, _one_hot(labels), sample_weight[labels]

        def on_epoch_end(self) -> None:
            self.epoch += 1
            self.order = draw(self.epoch)

    return PatientBalancedBatches()


def _check_settings(run: RunDir, wanted: RunSettings) -> None:
    """Refuse to resume a run made with other settings (``epochs`` may grow); record them."""
    path = run.settings_file
    if path.is_file() and any(run.path.glob("**/" + run.last_model.name)):
        stored = read_json(path, RunSettings, made_by=f"ecg-stream train {run}")
        if _without_epochs(stored) != _without_epochs(wanted):
            msg = (
                f"{run} holds a run with settings {msgspec.to_builtins(stored)}, not "
                f"{msgspec.to_builtins(wanted)}; give another output directory or delete that "
                "one to start afresh"
            )
            raise ConfigError(msg)
    write_json(wanted, path)


def _without_epochs(description: RunSettings) -> RunSettings:
    return msgspec.structs.replace(
        description, settings=msgspec.structs.replace(description.settings, epochs=1)
    )


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
    return _labels_text(dataset.labels)


def _labels_text(labels: IntArray) -> str:
    counts = np.bincount(labels, minlength=len(BEAT_CLASSES))
    return " ".join(f"{c.value}={n}" for c, n in zip(BEAT_CLASSES, counts, strict=True))


def _epoch_timer(keras: Any) -> Any:
    """A callback adding ``epoch_seconds`` to the epoch logs (before the CSV logger)."""

    class EpochTimer(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if logs is not None:
                logs["epoch_seconds"] = time.perf_counter() - self.started

    return EpochTimer()


def _set_threads(threads: int | None) -> None:
    """Limit TensorFlow's threads when it is the Keras backend (other backends: no effect)."""
    if threads is None or import_keras().backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
