"""The core never imports the edges (STYLE.md: dependencies point inward)."""

from __future__ import annotations

import subprocess
import sys

import pytest

EDGE_MODULES = ("aiomqtt", "amqtt", "PySide6", "pyqtgraph", "tensorflow", "tf2onnx", "asyncio")
CORE_MODULES = (
    "ecg_stream",
    "ecg_stream.config",
    "ecg_stream.errors",
    "ecg_stream.types",
    "ecg_stream.records",
    "ecg_stream.evaluation",
    "ecg_stream.analysis",
    "ecg_stream.detector.chain",
)
OPTIONAL_CORE = ("ecg_stream.wire", "ecg_stream.pipeline", "ecg_stream.model.classifier")


def imported_after(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return {name.split(".")[0] for name in out.split()}


@pytest.mark.parametrize("module", CORE_MODULES + OPTIONAL_CORE)
def test_core_module_pulls_in_no_edge(module: str) -> None:
    loaded = imported_after(module)
    assert loaded.isdisjoint(EDGE_MODULES), sorted(loaded & set(EDGE_MODULES))
