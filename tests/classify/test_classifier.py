from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecg_stream.classify.classifier import (
    ClassifierState,
    ModelContract,
    OnnxBeatClassifier,
    default_model_path,
)
from ecg_stream.config import ChainConfig
from ecg_stream.errors import ConfigError, ModelContractError
from ecg_stream.records import Record
from ecg_stream.training.dataset import stream_record_windows
from ecg_stream.types import BEAT_CLASSES, BeatWindow
from tests.models import MakeModel, contract_for

CONFIG = ChainConfig()


@pytest.fixture(scope="module")
def windows_100(record_100: Record) -> list[BeatWindow]:
    return stream_record_windows(record_100.samples[: 360 * 60], CONFIG)


def test_contract_survives_metadata_round_trip() -> None:
    contract = contract_for(ChainConfig(notch_hz=50.0))
    assert ModelContract.from_metadata(contract.to_metadata(), "m.onnx") == contract
    window_only = contract_for(CONFIG, features=())
    assert ModelContract.from_metadata(window_only.to_metadata(), "m.onnx").rr_features == ()


def test_probabilities_are_batched_rows_in_class_order(
    make_model: MakeModel, windows_100: list[BeatWindow]
) -> None:
    with OnnxBeatClassifier(make_model(), CONFIG) as classifier:
        whole = classifier.predict_proba(windows_100)
        one_by_one = np.vstack([classifier.predict_proba([w]) for w in windows_100[:20]])
        beats = classifier.classify(windows_100)
    assert whole.shape == (len(windows_100), len(BEAT_CLASSES))
    np.testing.assert_allclose(whole.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(one_by_one, whole[:20], atol=1e-6)
    assert [beat.window for beat in beats] == windows_100
    assert [beat.label.index for beat in beats] == whole.argmax(axis=1).tolist()
    assert classifier.name == "tiny"
    assert classifier.state is ClassifierState.CLOSED


def test_no_windows_give_no_rows(make_model: MakeModel) -> None:
    with OnnxBeatClassifier(make_model(), CONFIG) as classifier:
        assert classifier.predict_proba([]).shape == (0, 5)
        assert classifier.classify([]) == []


def test_window_only_model_needs_no_rr(
    make_model: MakeModel, windows_100: list[BeatWindow]
) -> None:
    with OnnxBeatClassifier(make_model(features=()), CONFIG) as classifier:
        assert classifier.contract.rr_features == ()
        assert classifier.predict_proba(windows_100[:5]).shape == (5, 5)


def test_a_model_takes_the_features_its_contract_names(
    make_model: MakeModel, windows_100: list[BeatWindow]
) -> None:
    first_release = ("rr_s", "local_mean_rr_s", "rr_ratio")  # models exported before shapes
    reordered = ("amplitude_ratio", "rr_s")
    for features in (first_release, reordered):
        with OnnxBeatClassifier(make_model(features=features), CONFIG) as classifier:
            assert classifier.contract.rr_features == features
            assert classifier.predict_proba(windows_100[:5]).shape == (5, 5)


def test_a_feature_this_version_does_not_compute_is_refused(make_model: MakeModel) -> None:
    path = make_model(features=("rr_s", "rr_ratio"), rr_features="rr_s,qt_interval_s")
    with pytest.raises(ModelContractError, match=r"\['qt_interval_s'\].*upgrade ecg-stream"):
        OnnxBeatClassifier(path, CONFIG)


def test_a_window_channel_this_chain_cannot_feed_is_refused(make_model: MakeModel) -> None:
    path = make_model(window_channels="beat,derivative")
    with pytest.raises(ModelContractError, match=r"'window_channels'.*derivative.*upgrade"):
        OnnxBeatClassifier(path, CONFIG)


def test_a_contract_naming_the_template_needs_a_two_channel_window_input(
    make_model: MakeModel,
) -> None:
    path = make_model(window_channels="beat,template")  # the tiny model's window has 1 channel
    with pytest.raises(ModelContractError, match=r"input 'window' has shape .*250, 2"):
        OnnxBeatClassifier(path, CONFIG)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("window_after_samples", "150"),
        ("window_before_samples", "100"),
        ("fs_hz", "250.0"),
        ("band_hz", "1.0,40.0"),
        ("normalisation", "minmax"),
        ("class_names", "N,V,S,F,Q"),
    ],
)
def test_contract_mismatch_is_refused_naming_the_field(
    make_model: MakeModel, field: str, value: str
) -> None:
    path = make_model(**{field: value})
    with pytest.raises(ModelContractError, match=rf"'{field}' is .*{value.split(',')[0]}.*chain"):
        OnnxBeatClassifier(path, CONFIG)


def test_window_after_mismatch_names_the_fix_and_no_option_that_does_not_exist(
    make_model: MakeModel,
) -> None:
    with pytest.raises(ModelContractError, match="re-export the model") as caught:
        OnnxBeatClassifier(make_model(window_after_samples="150"), CONFIG)
    assert "'window_after_samples' is 150" in str(caught.value)
    assert "--" not in str(caught.value)  # no command line sets the window


def test_model_without_contract_is_refused(make_model: MakeModel) -> None:
    with pytest.raises(ModelContractError, match="contract_version"):
        OnnxBeatClassifier(make_model(contract_version="0"), CONFIG)


def test_inputs_that_contradict_the_contract_are_refused(make_model: MakeModel) -> None:
    with pytest.raises(ModelContractError, match=r"input 'window' has shape"):
        OnnxBeatClassifier(make_model(window_samples=200), CONFIG)
    no_rr_input = make_model(features=(), rr_features="rr_s,local_mean_rr_s,rr_ratio")
    with pytest.raises(ModelContractError, match="model inputs are"):
        OnnxBeatClassifier(no_rr_input, CONFIG)


def test_missing_file_and_bad_threads_are_refused(make_model: MakeModel, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        OnnxBeatClassifier(tmp_path / "absent.onnx", CONFIG)
    with pytest.raises(ConfigError, match="threads=0"):
        OnnxBeatClassifier(make_model(), CONFIG, threads=0)


def test_closed_classifier_refuses_work(make_model: MakeModel) -> None:
    classifier = OnnxBeatClassifier(make_model(), CONFIG)
    classifier.close()
    with pytest.raises(RuntimeError, match="closed"):
        classifier.predict_proba([])
    with pytest.raises(RuntimeError, match="closed"), classifier:
        pass


def test_default_model_lives_in_the_package_assets() -> None:
    assert default_model_path().parts[-3:] == ("classify", "assets", "beat_lstm.onnx")
