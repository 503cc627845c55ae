"""Smoke training -> export -> parity -> classify, end to end (seconds, not minutes)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ecg_stream.classify.classifier import OnnxBeatClassifier
from ecg_stream.config import ChainConfig
from ecg_stream.errors import ConfigError, ModelContractError
from ecg_stream.evaluation import Span
from ecg_stream.evaluation.classification import evaluate_classifier
from ecg_stream.records import Record
from ecg_stream.training import export as export_onnx
from ecg_stream.training.dataset import build_dataset, stream_record_windows
from ecg_stream.training.run import Protocol, TrainSettings
from ecg_stream.training.train import (
    DatasetSplits,
    TrainResult,
    balanced_subsample,
    class_weights,
    train_model,
)

pytest.importorskip("tensorflow")  # the "train" extra; CI installs it

CONFIG = ChainConfig()
SMOKE = TrainSettings(
    Protocol.INTER_PATIENT, max_per_class=120, augment=False, epochs=1, batch_size=64
)


@pytest.fixture(scope="module")
def smoke_splits(data_dir: Path, dataset_cache: Path) -> DatasetSplits:
    dataset = build_dataset(["100", "119"], CONFIG, data_dir=data_dir, cache_dir=dataset_cache)
    every_tenth = np.arange(0, len(dataset), 10)
    return DatasetSplits(
        train=dataset.of_records(["119"]),
        validation=dataset.of_records(["100"]).subset(every_tenth[every_tenth < 2000]),
        test=None,
        train_records=("119",),
        validation_records=("100",),
    )


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory, smoke_splits: DatasetSplits) -> TrainResult:
    return train_model(tmp_path_factory.mktemp("run"), SMOKE, splits=smoke_splits, verbose=0)


def test_subsample_and_weights_balance_the_classes() -> None:
    labels = np.array([0] * 50 + [2] * 10 + [1] * 2)
    kept = balanced_subsample(labels, max_per_class=10, seed=0)
    assert np.bincount(labels[kept]).tolist() == [10, 2, 10]
    assert kept.tolist() == sorted(kept.tolist())
    weights = class_weights(labels[kept])
    assert weights[1] > weights[0] == weights[2]
    assert weights[4] == 1.0  # absent class


@pytest.mark.slow
def test_smoke_training_writes_checkpoints_log_and_summary(smoke_run: TrainResult) -> None:
    assert smoke_run.best_model_path.is_file()
    assert smoke_run.final_model_path.is_file()
    assert smoke_run.epochs_run == 1
    with smoke_run.log_path.open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert {"loss", "val_loss", "accuracy", "epoch_seconds"} <= set(row)
    summary = json.loads(smoke_run.result_path.read_text())
    assert summary["train_records"] == ["119"]
    assert summary["settings"]["protocol"] == "inter-patient"


@pytest.mark.slow
def test_training_resumes_and_refuses_other_settings(
    smoke_run: TrainResult, smoke_splits: DatasetSplits
) -> None:
    longer = TrainSettings(
        Protocol.INTER_PATIENT, max_per_class=120, augment=False, epochs=2, batch_size=64
    )
    resumed = train_model(smoke_run.out_dir, longer, splits=smoke_splits, verbose=0)
    assert resumed.epochs_run == 2
    other = TrainSettings(
        Protocol.INTER_PATIENT, max_per_class=50, augment=False, epochs=3, batch_size=64
    )
    with pytest.raises(ConfigError, match="holds a run with settings"):
        train_model(smoke_run.out_dir, other, splits=smoke_splits, verbose=0)


@pytest.mark.slow
def test_export_checks_parity_then_classifies_end_to_end(
    smoke_run: TrainResult,
    data_dir: Path,
    dataset_cache: Path,
    record_100: Record,
    tmp_path: Path,
) -> None:
    path = tmp_path / "smoke.onnx"
    exported = export_onnx.export_model(
        smoke_run.out_dir, path, parity_records=["100"], data_dir=data_dir, cache_dir=dataset_cache
    )
    assert exported.parity_windows >= export_onnx.PARITY_MIN_WINDOWS
    assert exported.max_abs_difference <= export_onnx.PARITY_TOLERANCE
    with OnnxBeatClassifier(path, CONFIG) as classifier:
        assert classifier.contract.training_records == "119"
        assert classifier.contract.rr_features
        windows = stream_record_windows(record_100.samples[: 360 * 30], CONFIG)
        beats = classifier.classify(windows)
    assert len(beats) == len(windows) > 20
    report = evaluate_classifier(
        ["100"], path, tmp_path / "eval", data_dir=data_dir, training_log=smoke_run.log_path
    )
    assert report.gross(Span.WHOLE_RECORD).score.confusion.sum() > 2000
    for name in ("classification.json", "confusion.png", "sample_beats.png", "training.png"):
        assert (tmp_path / "eval" / name).stat().st_size > 0
    assert (tmp_path / "eval" / "raw_vs_filtered.png").is_file()


@pytest.mark.slow
def test_failed_parity_writes_no_file(
    smoke_run: TrainResult,
    data_dir: Path,
    dataset_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(export_onnx, "PARITY_TOLERANCE", -1.0)
    path = tmp_path / "refused.onnx"
    with pytest.raises(ModelContractError, match="no file written"):
        export_onnx.export_model(
            smoke_run.out_dir,
            path,
            parity_records=["100"],
            data_dir=data_dir,
            cache_dir=dataset_cache,
        )
    assert not path.exists()
    assert not list(tmp_path.iterdir())


KERAS_AT_WORK = """
from ecg_stream.training.run import import_keras
keras = import_keras()
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
model.predict(keras.ops.zeros((1, 3)), verbose=0)
"""


def test_importing_keras_prints_no_native_log_lines() -> None:
    """TensorFlow's absl and oneDNN start-up notices stay off the user's stderr."""
    done = subprocess.run(
        [sys.executable, "-c", KERAS_AT_WORK],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stderr == ""
