"""Cross-validation, augmentation and the ensemble export: smoke runs of seconds, not minutes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from ecg_stream.classify.classifier import OnnxBeatClassifier
from ecg_stream.cli import main
from ecg_stream.config import ChainConfig
from ecg_stream.errors import ConfigError
from ecg_stream.evaluation.classification import evaluate_classifier
from ecg_stream.records import POOL, Record
from ecg_stream.training import export as export_onnx
from ecg_stream.training.augment import BeatAugmenter, NoiseBank
from ecg_stream.training.card import CardInputs, CvRun, write_model_card
from ecg_stream.training.dataset import (
    build_dataset,
    load_dataset,
    patient_balanced_sample,
    save_dataset,
    stream_record_windows,
)
from ecg_stream.training.folds import record_folds
from ecg_stream.training.run import RunDir
from ecg_stream.types import BeatClass

CONFIG = ChainConfig()


@pytest.fixture(scope="module")
def noise_dir(data_dir: Path) -> Path:
    """The Noise Stress Test Database's bw/em/ma records, beside the MIT-BIH directory."""
    directory = data_dir.parent / "nstdb-noise"
    if not (directory / "em.hea").is_file():
        pytest.skip(f"noise records bw/em/ma not in {directory}")
    return directory


@pytest.fixture(scope="module")
def small_dataset_file(
    data_dir: Path, dataset_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    # the records of test_train_export's smoke run: one build of the session's dataset cache;
    # 100 brings S beats, 119 V beats
    dataset = build_dataset(["100", "119"], CONFIG, data_dir=data_dir, cache_dir=dataset_cache)
    _, groups = np.unique(dataset.records, return_inverse=True)
    kept = patient_balanced_sample(dataset.labels, groups, 60, 10_000, np.random.default_rng(0))
    path = tmp_path_factory.mktemp("small") / "small.npz"
    save_dataset(dataset.subset(kept), path)
    return path


def test_folds_never_share_a_record_and_spread_the_ectopic_beats() -> None:
    rng = np.random.default_rng(3)
    counts = {
        name: {
            BeatClass.N: int(rng.integers(1000, 3000)),
            BeatClass.S: int(rng.integers(0, 400)) if rng.random() < 0.5 else 0,
            BeatClass.V: int(rng.integers(0, 900)) if rng.random() < 0.5 else 0,
        }
        for name in POOL
    }
    folds = record_folds(counts, 5)
    flat = [name for fold in folds for name in fold]
    assert sorted(flat) == sorted(POOL)  # every record in exactly one fold
    for fold in folds:
        assert sum(counts[name][BeatClass.S] for name in fold) > 0
        assert sum(counts[name][BeatClass.V] for name in fold) > 0


def test_augmentation_keeps_shapes_and_leaves_the_input_alone(
    noise_dir: Path, record_100: Record
) -> None:
    windows = stream_record_windows(record_100.samples[: 360 * 20], CONFIG)
    beats = np.stack([w.morphology.template for w in windows if w.morphology.template is not None])
    before = beats.copy()
    augmenter = BeatAugmenter(CONFIG, NoiseBank.from_records(noise_dir, CONFIG))
    out = augmenter.augment(beats, np.random.default_rng(0))
    assert out.shape == beats.shape
    np.testing.assert_array_equal(beats, before)
    np.testing.assert_allclose(out.mean(axis=1), 0.0, atol=1e-9)  # re-normalised
    assert 0.3 < float(np.mean(np.sum(out * beats, axis=1) / beats.shape[1])) < 1.0


def test_dataset_file_round_trips(small_dataset_file: Path) -> None:
    dataset = load_dataset(small_dataset_file)
    assert set(np.unique(dataset.records)) == {"100", "119"}
    assert dataset.templates.shape == dataset.windows.shape
    assert dataset.window_channels(("beat", "template")).shape[1:] == (250, 2)


@pytest.mark.slow
def test_cv_smoke_run_reports_out_of_fold_figures_and_exports_an_ensemble(
    small_dataset_file: Path,
    noise_dir: Path,
    data_dir: Path,
    dataset_cache: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = tmp_path / "cv"
    argv = ["train", str(run), "--cv", "2", "--dataset", str(small_dataset_file)]
    argv += ["--epochs", "1", "--max-per-record-class", "30", "--data-dir", str(noise_dir)]
    assert main(argv) == 0
    assert "out-of-fold" in capsys.readouterr().out
    summary = json.loads((run / "cv.json").read_text())
    held_out = [set(fold["held_out"]) for fold in summary["folds"]]
    assert held_out[0].isdisjoint(held_out[1])
    assert summary["out_of_fold"]["matched_beats"] == len(load_dataset(small_dataset_file))
    assert {"N", "S", "V"} <= set(summary["out_of_fold"]["classes"])

    path = tmp_path / "ensemble.onnx"
    exported = export_onnx.export_model(
        run, path, parity_records=["100"], data_dir=data_dir, cache_dir=dataset_cache
    )
    assert exported.max_abs_difference <= export_onnx.PARITY_TOLERANCE
    assert exported.contract.window_channels == ("beat", "template")
    assert json.loads((run / "calibration.json").read_text())["chosen"]
    with OnnxBeatClassifier(path, CONFIG) as classifier:
        assert classifier.contract.validation_records.startswith("2-fold")

    # Record 100 stands in for DS2; the run compares with itself as an "ablation".
    evaluate_classifier(["100"], path, RunDir(run).ds2_evaluation, data_dir=data_dir)
    inputs = CardInputs(path, run, (CvRun("itself", run),), 1, "2 CPU cores (test)")
    markdown, card_json = write_model_card(inputs, tmp_path / "card")
    text = markdown.read_text()
    assert "| V Se | 95 % |" in text
    assert "DS2 was evaluated 1 time(s)" in text
    assert "ecg-stream train cv --cv 2" in text  # outside the working directory: its name
    assert "| itself |" in text
    assert json.loads(card_json.read_text())["model"]["contract"]["window_channels"] == (
        "beat,template"
    )


def test_whole_pool_run_exports_one_compact_network(
    small_dataset_file: Path,
    noise_dir: Path,
    data_dir: Path,
    dataset_cache: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--whole-pool`` trains the recipe once more on every record: export ships that one."""
    run = tmp_path / "cv"
    argv = ["train", str(run), "--cv", "2", "--dataset", str(small_dataset_file), "--whole-pool"]
    argv += ["--arch", "compact", "--epochs", "1", "--max-per-record-class", "30"]
    assert main([*argv, "--data-dir", str(noise_dir)]) == 0
    assert "after the rhythm stage's AF gate" in capsys.readouterr().out
    summary = json.loads((run / "cv.json").read_text())
    gated = summary["out_of_fold_af_gated"]["matched_beats"]
    assert gated == summary["out_of_fold"]["matched_beats"]
    assert RunDir(run).whole_pool.final_model.is_file()

    path = tmp_path / "single.onnx"
    export_onnx.export_model(
        run, path, parity_records=["100"], data_dir=data_dir, cache_dir=dataset_cache
    )
    nodes = onnx.load(path).graph.node
    assert sum(node.op_type == "LSTM" for node in nodes) == 1  # one network, not two members


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dataset", "missing.npz"], "does not exist; write one with `ecg-stream dataset"),
        (["--records", "999"], "records ['999'] are not in"),
        (["--max-per-record-class", "0"], "must all be >= 1"),
        (["--data-dir", "."], "augmentation needs the noise records bw, em, ma"),
    ],
)
def test_cv_mistakes_are_one_line_and_exit_2(
    small_dataset_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    base = ["train", str(tmp_path / "run"), "--cv", "2", "--dataset", str(small_dataset_file)]
    if argv[0] == "--dataset":
        base = base[:-2]
        argv = ["--dataset", str(tmp_path / argv[1])]
    assert main(base + argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "run").exists()  # a failed train leaves no half-made run


def test_a_file_that_is_not_a_dataset_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.npz"
    path.write_text("not numpy")
    with pytest.raises(ConfigError, match="is not an ecg-stream dataset"):
        load_dataset(path)
