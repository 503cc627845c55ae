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
) -> Path:
    """A linear softmax classifier on the flattened window (+ features), seeded weights."""
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
    nodes.append(helper.make_node("Softmax", [logits], ["probabilities"], axis=1))
    output = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 5])
    graph = helper.make_graph(nodes, "tiny", inputs, [output], initializer=weights)
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
        **overrides: str,
    ) -> Path:
        metadata = contract_for(ChainConfig(), features=features).to_metadata() | overrides
        name = f"tiny-{len(list(tmp_path.glob('*.onnx')))}.onnx"
        return tiny_onnx(
            tmp_path / name, metadata, window_samples=window_samples, n_features=len(features)
        )

    return make


@pytest.fixture(scope="session")
def dataset_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset cache shared by the session's tests, never the user's."""
    return tmp_path_factory.mktemp("datasets")
