"""A training run's folder and the documents in it, each with one schema.

``ecg-stream train`` writes them, ``ecg-stream export`` and ``ecg-stream card`` read them;
:class:`RunDir` is the one place that names the files. Nothing here imports Keras.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import msgspec

from ecg_stream.config import ChainConfig
from ecg_stream.detector.segment import (
    FEATURE_NAMES,
    WINDOW_CHANNELS,
    unknown_channels,
    unknown_features,
)
from ecg_stream.documents import read_json
from ecg_stream.errors import TRAIN_EXTRA, ConfigError, MissingExtraError
from ecg_stream.evaluation.figures import ScoreFigures
from ecg_stream.records import POOL


class Protocol(Enum):
    """How beats are split between training and evaluation (docs/protocol.md)."""

    INTER_PATIENT = "inter-patient"
    """Train on the pool (DS1 + SVDB training records); DS2 is the test set."""
    INTRA_PATIENT = "intra-patient"
    """Random beat split over DS1 + DS2: only to compare with published intra-patient claims."""


class Architecture(Enum):
    """The network behind the classifier."""

    REFERENCE = "reference"
    """LSTM 128 -> 64 -> 32 over all 250 samples: the network this project started from."""
    LEAN = "lean"
    """Two strided convolutions shorten the window to 63 steps, then LSTM 64 -> 32."""
    COMPACT = "compact"
    """Three strided convolutions shorten the window to 32 steps, then one LSTM 32: one
    network within 0.1 ms per beat on a CPU core."""


class TrainSettings(msgspec.Struct, frozen=True):
    """Everything that decides a training run; a resumed run must use the same.

    Written into each of the run's documents as ``settings`` (enums by their values).

    Args:
        protocol: The data split.
        records: The inter-patient training pool (records never split between folds).
        arch: The network.
        channels: Window channels (``WINDOW_CHANNELS``) of the first input, in order.
        features: Per-beat features (``FEATURE_NAMES``) the model takes as its second
            input, in order; empty for a window-only model (the ablation).
        max_per_class: Training beats drawn per class and epoch at most.
        max_per_record_class: Beats drawn per record, class and epoch at most, so that no
            single patient dominates a class (patient-balanced sampling).
        augment: Add real noise, R-peak jitter and time stretch to the beat channel.
        epochs: Number of epochs (a maximum where early stopping applies).
        batch_size: Mini-batch size.
        learning_rate: Initial Adam learning rate.
        patience: Epochs without validation-loss improvement before a single run stops.
        seed: Seed of sampling, splits, augmentation and Keras.
    """

    protocol: Protocol
    records: tuple[str, ...] = POOL
    arch: Architecture = Architecture.LEAN
    channels: tuple[str, ...] = WINDOW_CHANNELS
    features: tuple[str, ...] = FEATURE_NAMES
    max_per_class: int = 12_000
    max_per_record_class: int = 600
    augment: bool = True
    epochs: int = 16
    batch_size: int = 256
    learning_rate: float = 2e-3
    patience: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        sizes = (self.max_per_class, self.max_per_record_class, self.epochs, self.batch_size)
        if min(sizes) < 1:
            msg = (
                f"max_per_class={self.max_per_class}, max_per_record_class="
                f"{self.max_per_record_class}, epochs={self.epochs} and "
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
        if (
            unknown_channels(self.channels)
            or not self.channels
            or self.channels[0] != "beat"
            or len(set(self.channels)) != len(self.channels)
        ):
            msg = (
                f"channels {list(self.channels)} must start with 'beat' and be distinct names "
                f"from {', '.join(WINDOW_CHANNELS)}"
            )
            raise ConfigError(msg)
        if not self.records:
            msg = "the training pool is empty; give records (e.g. pool, DS1)"
            raise ConfigError(msg)
        if not 0.0 < self.learning_rate < 1.0:
            msg = f"learning_rate={self.learning_rate} must lie in (0, 1), e.g. 1e-3"
            raise ConfigError(msg)


class RunSettings(msgspec.Struct, omit_defaults=True):
    """``settings.json``: what a run was started with, so that a resumed run is the same one.

    Args:
        settings: The training settings (``epochs`` may grow on resuming).
        chain_config: The chain the beats were cut with.
        cv_folds: Folds of a cross-validation run (absent for a single run).
        baseline: Whether a cross-validation run fits the tree baseline (absent likewise).
    """

    settings: TrainSettings
    chain_config: ChainConfig
    cv_folds: int | None = None
    baseline: bool | None = None


class IntraTest(msgspec.Struct):
    """Figures of a single intra-patient run on its held-out random beats."""

    note: str
    beats: int
    accuracy: float
    confusion: list[list[int]]


class TrainingSummary(msgspec.Struct):
    """``training.json``: a single run's records, beat counts, cost and figures.

    Args:
        settings: The training settings.
        chain_config: The chain the beats were cut with.
        train_records: Records of the training beats.
        validation_records: Records of the early-stopping beats.
        train_counts: Training beats per class.
        validation_counts: Validation beats per class.
        class_weights: Loss weight per class.
        unmatched_detections: Detections of the training records that matched no reference.
        dataset_cache_key: Hash of everything the beats depend on.
        epochs_run: Epochs in the log, over every resumed session.
        train_seconds: Wall time of the epochs, in s.
        best_validation_loss: Lowest validation loss (None: no epoch yet).
        best_epoch: Epoch of that loss, from 1 (0: none).
        test: Intra-patient test figures; None for inter-patient (DS2 is evaluated apart).
    """

    settings: TrainSettings
    chain_config: ChainConfig
    train_records: list[str]
    validation_records: list[str]
    train_counts: dict[str, int]
    validation_counts: dict[str, int]
    class_weights: dict[str, float]
    unmatched_detections: int
    dataset_cache_key: str
    epochs_run: int
    train_seconds: float
    best_validation_loss: float | None
    best_epoch: int
    test: IntraTest | None


class FoldSummary(msgspec.Struct):
    """One fold of a cross-validation run.

    Args:
        held_out: The fold's records, predicted by the model trained on the others.
        held_out_counts: Their beats per class.
        epochs_run: Epochs the fold model trained.
        train_seconds: Wall time of those epochs, in s.
        validation_loss_per_epoch: Loss on the held-out beats after each epoch (monitoring).
    """

    held_out: list[str]
    held_out_counts: dict[str, int]
    epochs_run: int
    train_seconds: float
    validation_loss_per_epoch: list[float]


class CvSummary(msgspec.Struct, kw_only=True):
    """``cv.json``: the pooled out-of-fold figures of a cross-validation run.

    Args:
        note: What the figures are.
        model: ``stacked LSTM`` or the tree baseline.
        settings: The training settings; ``records`` is the pool.
        chain_config: The chain the beats were cut with.
        k: Number of folds.
        folds_scored: Folds with a model (all but those of a run cut short); None in files
            written before it was recorded: every fold.
        folds: Each fold's records and cost.
        dataset_cache_key: Hash of everything the beats depend on.
        pool_counts: Beats of the pool per class.
        train_seconds: Wall time of every fold's epochs, in s.
        out_of_fold: Figures of the pooled out-of-fold predictions.
        out_of_fold_af_gated: The same after the rhythm stage's AF gate (None in files written
            before it was measured).
        out_of_fold_loss_per_epoch: Beat-weighted held-out loss after each epoch.
        records: Per record, its out-of-fold figures.
    """

    note: str
    model: str = "stacked LSTM"
    settings: TrainSettings
    chain_config: ChainConfig
    k: int
    folds_scored: list[int] | None = None
    folds: list[FoldSummary]
    dataset_cache_key: str
    pool_counts: dict[str, int]
    train_seconds: float
    out_of_fold: ScoreFigures
    out_of_fold_af_gated: ScoreFigures | None = None
    out_of_fold_loss_per_epoch: list[float]
    records: dict[str, ScoreFigures]

    @property
    def scored_folds(self) -> list[int]:
        """The folds scored: ``folds_scored``, or every fold in older files."""
        return list(range(self.k)) if self.folds_scored is None else self.folds_scored

    @property
    def is_baseline(self) -> bool:
        """Whether the run fits the gradient-boosted tree baseline, not the LSTM."""
        return self.model.startswith("gradient")


class FoldsFile(msgspec.Struct):
    """``folds.json``: the records of each fold, fixed when a cross-validation run starts."""

    k: int
    folds: list[list[str]]


class CalibrationSummary(msgspec.Struct):
    """``calibration.json``: each calibration variant's out-of-fold figures, and the one kept.

    Args:
        chosen: Name of the variant the exported ensemble applies.
        variants: Per variant, its parameters and figures (``training/calibration.py``).
    """

    chosen: str
    variants: Mapping[str, Mapping[str, int | float | None]]


class RunDir:
    """The files of one training run (``ecg-stream train OUT_DIR``): their one list of names.

    A cross-validation run holds ``settings.json``, ``folds.json``, ``fold-<i>/`` (each a
    single run's model files), ``oof.npz``, ``cv.json``, optionally ``whole-pool/`` (the same
    recipe trained on every record) and, once exported, ``calibration.json``; a single run
    holds ``settings.json``, ``training.json``, the checkpoints and ``training_log.csv``.

    Args:
        path: The run directory.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def settings_file(self) -> Path:
        """``settings.json``: :class:`RunSettings`."""
        return self.path / "settings.json"

    @property
    def summary_file(self) -> Path:
        """``training.json``: :class:`TrainingSummary` of a single run."""
        return self.path / "training.json"

    def check_claimable(self) -> None:
        """Refuse a path ``claim`` would refuse, without making anything.

        Raises:
            ConfigError: The path is not a directory, or is a non-empty directory without a
                run (``settings.json``).
        """
        path = self.path
        if path.exists() and not path.is_dir():
            msg = f"{path} is not a directory; give a new or empty directory for the run"
            raise ConfigError(msg)
        if path.is_dir() and not self.settings_file.is_file() and any(path.iterdir()):
            msg = (
                f"{path} holds files but no ecg-stream run ({self.settings_file.name}); give a "
                "new or empty directory, or the directory of a run to resume"
            )
            raise ConfigError(msg)

    def claim(self) -> None:
        """Make the run directory, or take one that holds a run of ours (to resume it).

        Raises:
            ConfigError: As :meth:`check_claimable`, or the directory cannot be made.
        """
        self.check_claimable()
        path = self.path
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            msg = f"cannot make the run directory {path} ({error.strerror}); give a writable place"
            raise ConfigError(msg) from None

    @property
    def whole_pool(self) -> RunDir:
        """``whole-pool/``: a cross-validation run's recipe trained once on the whole pool."""
        return RunDir(self.path / "whole-pool")

    @property
    def cv_file(self) -> Path:
        """``cv.json``: :class:`CvSummary` of a cross-validation run."""
        return self.path / "cv.json"

    @property
    def oof_file(self) -> Path:
        """``oof.npz``: out-of-fold ``probabilities``, ``labels``, ``records``, ``folds``."""
        return self.path / "oof.npz"

    @property
    def folds_file(self) -> Path:
        """``folds.json``: :class:`FoldsFile`."""
        return self.path / "folds.json"

    @property
    def calibration_file(self) -> Path:
        """``calibration.json``: :class:`CalibrationSummary`, written by the export."""
        return self.path / "calibration.json"

    @property
    def log_file(self) -> Path:
        """``training_log.csv``: one row per epoch."""
        return self.path / "training_log.csv"

    @property
    def best_model(self) -> Path:
        """``best.keras``: the checkpoint with the lowest validation loss (single runs)."""
        return self.path / "best.keras"

    @property
    def last_model(self) -> Path:
        """``last.keras``: saved after every epoch, to resume from."""
        return self.path / "last.keras"

    @property
    def final_model(self) -> Path:
        """``final.keras``: the weights after the last epoch."""
        return self.path / "final.keras"

    @property
    def ds2_evaluation(self) -> Path:
        """``eval_ds2/``: the one DS2 evaluation of the shipped run (``classification.json``)."""
        return self.path / "eval_ds2"

    @property
    def is_cv(self) -> bool:
        """Whether this is a cross-validation run with its figures written."""
        return self.cv_file.is_file()

    def fold(self, index: int) -> RunDir:
        """The directory of fold ``index`` (from 0) of a cross-validation run."""
        return RunDir(self.path / f"fold-{index}")

    def read_summary(self) -> TrainingSummary:
        """``training.json``.

        Raises:
            ConfigError: It does not exist (not a finished single run) or is unreadable.
        """
        return read_json(self.summary_file, TrainingSummary, made_by=f"ecg-stream train {self}")

    def read_cv(self) -> CvSummary:
        """``cv.json``.

        Raises:
            ConfigError: It does not exist (no cross-validation run) or is unreadable.
        """
        return read_json(self.cv_file, CvSummary, made_by=f"ecg-stream train {self} --cv K")

    def read_calibration(self) -> CalibrationSummary:
        """``calibration.json``.

        Raises:
            ConfigError: It does not exist (the run was never exported) or is unreadable.
        """
        return read_json(
            self.calibration_file, CalibrationSummary, made_by=f"ecg-stream export {self} ..."
        )

    def __str__(self) -> str:
        return str(self.path)


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null meanwhile; Python errors still raise.

    Native libraries' start-up lines (TensorFlow's absl and oneDNN notices) stay off the
    terminal.
    """
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_keras() -> Any:
    """Keras (on TensorFlow), imported without TensorFlow's native log noise on stderr.

    Raises:
        MissingExtraError: Keras or TensorFlow is not installed.
    """
    with native_stderr_silenced():
        try:
            import keras
            import tensorflow
        except ImportError as error:
            raise MissingExtraError(TRAIN_EXTRA, error.name or "keras") from error
        tensorflow.config.list_physical_devices()  # the device probe (cuInit) speaks here too
    return keras
