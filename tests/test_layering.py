"""The core never imports the edges, and the viewer no edge but the MQTT transport (STYLE.md)."""

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
VIEWER_MODULES = (
    "ecg_stream.viewer.background",
    "ecg_stream.viewer.monitor",
    "ecg_stream.viewer.ring",
    "ecg_stream.viewer.subscriber",
    "ecg_stream.viewer.tracker",
)
VIEWER_MAY_LOAD_FROM_STREAM = {"ecg_stream.stream", "ecg_stream.stream.transport"}


def modules_after(module: str) -> set[str]:
    """Every module a fresh interpreter holds after importing ``module``."""
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


def imported_after(module: str) -> set[str]:
    return {name.split(".")[0] for name in modules_after(module)}


@pytest.mark.parametrize("module", CORE_MODULES + OPTIONAL_CORE)
def test_core_module_pulls_in_no_edge(module: str) -> None:
    loaded = imported_after(module)
    assert loaded.isdisjoint(EDGE_MODULES), sorted(loaded & set(EDGE_MODULES))


@pytest.mark.parametrize("module", VIEWER_MODULES)
def test_viewer_loads_the_mqtt_transport_and_nothing_else_of_stream(module: str) -> None:
    loaded = {name for name in modules_after(module) if name.startswith("ecg_stream.stream")}
    assert loaded <= VIEWER_MAY_LOAD_FROM_STREAM, sorted(loaded - VIEWER_MAY_LOAD_FROM_STREAM)
