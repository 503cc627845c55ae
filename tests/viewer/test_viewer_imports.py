"""The viewer sees only the wire: it imports wire, L0 and the MQTT transport, nothing else."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ecg_stream.viewer

VIEWER_DIR = Path(ecg_stream.viewer.__file__).parent
ALLOWED = (
    "ecg_stream.config",
    "ecg_stream.errors",
    "ecg_stream.types",
    "ecg_stream.wire",
    "ecg_stream.mqtt.transport",  # the one MQTT transport, shared with the stream edge
)


def package_imports(path: Path) -> set[str]:
    """The ``ecg_stream`` modules a source file imports (absolute imports: STYLE.md)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
    return {name for name in names if name.split(".")[0] == "ecg_stream"}


@pytest.mark.parametrize("path", sorted(VIEWER_DIR.glob("*.py")), ids=lambda path: path.name)
def test_viewer_imports_only_wire_and_l0(path: Path) -> None:
    imported = package_imports(path)
    own = {name for name in imported if name.startswith("ecg_stream.viewer")}
    outside = imported - own - set(ALLOWED)
    assert not outside, f"{path.name} imports {sorted(outside)}; the viewer may use {ALLOWED}"
