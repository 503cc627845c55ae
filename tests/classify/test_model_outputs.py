"""A model's outputs are checked at load and for every batch: logits or NaN never become labels
(issue 22, "Output our own decoders refuse")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecg_stream.classify.classifier import OnnxBeatClassifier, check_probabilities
from ecg_stream.cli import main
from ecg_stream.config import ChainConfig
from ecg_stream.errors import ModelContractError, ModelOutputError
from ecg_stream.records import Record
from tests.helpers import expected_beats
from tests.models import MakeModel


@pytest.mark.parametrize("output", ["logits", "nan"])
def test_a_model_whose_outputs_are_not_probabilities_is_refused_at_load(
    make_model: MakeModel, output: str
) -> None:
    with pytest.raises(ModelContractError, match=r"not class probabilities.*softmax"):
        OnnxBeatClassifier(make_model(output=output), ChainConfig())


def test_a_bad_batch_at_run_time_is_an_error_never_a_label(
    make_model: MakeModel, record_100: Record
) -> None:
    """Fine on the load-time probe, NaN on real beats (template correlation below 1)."""
    model = make_model(output="nan_on_real_beats")
    with (
        OnnxBeatClassifier(model, ChainConfig()) as classifier,
        pytest.raises(ModelOutputError, match="not class probabilities"),
    ):
        expected_beats(record_100, classifier)


@pytest.mark.parametrize(
    "rows",
    [
        [[0.5, 0.5, 0.0, 0.0, np.nan]],
        [[2.0, -1.0, 0.0, 0.0, 0.0]],
        [[0.2, 0.2, 0.2, 0.2, 0.1]],
        [[np.inf, 0.0, 0.0, 0.0, 0.0]],
    ],
)
def test_rows_that_are_not_probabilities_are_refused(rows: list[list[float]]) -> None:
    good = [[0.96, 0.01, 0.01, 0.01, 0.01]]
    check_probabilities(np.array(good), "m")
    with pytest.raises(ModelOutputError, match="1 of 2 beats"):
        check_probabilities(np.array(good + rows), "m")


@pytest.mark.parametrize("output", ["logits", "nan_on_real_beats"])
def test_analyze_with_a_broken_model_is_one_line_and_writes_no_labels(
    make_model: MakeModel,
    data_dir: Path,
    tmp_path: Path,
    output: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = make_model(output=output)
    argv = ["analyze", "100", "--model", str(model), "--out-dir", str(tmp_path)]
    assert main([*argv, "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert "not class probabilities" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "100.csv").exists()
