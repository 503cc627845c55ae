"""Fixtures of the classifier and training tests: a tiny hand-built ONNX model, a dataset cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ecg_stream.classify.classifier import RR_INPUT, WINDOW_INPUT, ModelContract
from ecg_stream.config import ChainConfig
from ecg_stream.detector.segment import FEATURE_NAMES
from ecg_stream.training.dataset import project_version

MakeModel = Callable[..., Path]


def contract_for(
    config: ChainConfig, *, features: tuple[str, ...] = FEATURE_NAMES
) -> ModelContract:
    return ModelContract.for_chain(
        config,
        model_name="tiny",
        features=features,
        training_protocol="inter-patient",
        training_records="101 106",
        validation_records="119",
        project_version=project_version(),
    )


def tiny_onnx(
    path: Path,
    metadata: dict[str, str],
    *,
    window_samples: int = 250,
    n_features: int = len(FEATURE_NAMES),
    output: str = "softmax",
) -> Path:
    """A linear softmax classifier on the flattened window (+ features), seeded weights.

    ``output`` makes a broken one: ``logits`` (no softmax), ``nan`` (NaN for every beat) or
    ``nan_on_real_beats`` (NaN for a beat whose template correlation is below 0.999: a real
    beat after the first, not the classifier's load-time probe; needs every feature).
    """
    rng = np.random.default_rng(7)
    inputs = [
        helper.make_tensor_value_info(WINDOW_INPUT, TensorProto.FLOAT, ["batch", window_samples, 1])
    ]
    nodes = [helper.make_node("Flatten", [WINDOW_INPUT], ["flat"], axis=1)]
    weights = [
        numpy_helper.from_array(rng.normal(size=(window_samples, 5)).astype(np.float32), "w")
    ]
    nodes.append(helper.make_node("MatMul", ["flat", "w"], ["logits_window"]))
    logits = "logits_window"
    if n_features:
        inputs.append(
            helper.make_tensor_value_info(RR_INPUT, TensorProto.FLOAT, ["batch", n_features])
        )
        feature_weights = rng.normal(size=(n_features, 5)).astype(np.float32)
        weights.append(numpy_helper.from_array(feature_weights, "v"))
        nodes.append(helper.make_node("MatMul", [RR_INPUT, "v"], ["logits_rr"]))
        nodes.append(helper.make_node("Add", ["logits_window", "logits_rr"], ["logits"]))
        logits = "logits"
    last = {"softmax": "probabilities", "logits": logits}.get(output, "softmax")
    if last != logits:
        nodes.append(helper.make_node("Softmax", [logits], [last], axis=1))
    if output in ("nan", "nan_on_real_beats"):  # 0 * sqrt(room): 0, or NaN where room < 0
        column = FEATURE_NAMES.index("template_correlation")
        constants = {"zero": [0.0], "minus_one": [-1.0], "almost_one": [0.999]}
        constants |= {"start": [column], "stop": [column + 1], "axis": [1]}
        for name, value in constants.items():
            dtype = np.int64 if name in ("start", "stop", "axis") else np.float32
            weights.append(numpy_helper.from_array(np.array(value, dtype=dtype), name))
        if output == "nan":
            nodes.append(helper.make_node("Identity", ["minus_one"], ["room"]))
        else:  # room = template correlation - 0.999
            nodes.append(helper.make_node("Slice", [RR_INPUT, "start", "stop", "axis"], ["corr"]))
            nodes.append(helper.make_node("Sub", ["corr", "almost_one"], ["room"]))
        nodes.append(helper.make_node("Sqrt", ["room"], ["root"]))
        nodes.append(helper.make_node("Mul", ["root", "zero"], ["nothing"]))
        nodes.append(helper.make_node("Add", ["softmax", "nothing"], ["probabilities"]))
        last = "probabilities"
    if last != "probabilities":
        nodes.append(helper.make_node("Identity", [last], ["probabilities"]))
    output_info = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 5])
    graph = helper.make_graph(nodes, "tiny", inputs, [output_info], initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture
def make_model(tmp_path: Path) -> MakeModel:
    """Write a tiny model whose contract is the default chain's, with fields overridden."""

    def make(
        *,
        features: tuple[str, ...] = FEATURE_NAMES,
        window_samples: int = 250,
        output: str = "softmax",
        **overrides: str,
    ) -> Path:
        metadata = contract_for(ChainConfig(), features=features).to_metadata() | overrides
        name = f"tiny-{len(list(tmp_path.glob('*.onnx')))}.onnx"
        return tiny_onnx(
            tmp_path / name,
            metadata,
            window_samples=window_samples,
            n_features=len(features),
            output=output,
        )

    return make


@pytest.fixture(scope="session")
def dataset_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset cache shared by the session's tests, never the user's."""
    return tmp_path_factory.mktemp("datasets")
