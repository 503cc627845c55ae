"""Guard against a Qt binding that corrupts reference counts (the monitor emits signals forever)."""

from __future__ import annotations

import sys

import pytest
from PySide6 import QtCore

pytestmark = pytest.mark.gui


class Emitter(QtCore.QObject):
    changed = QtCore.Signal(object)


def test_signal_emission_keeps_reference_counts_of_constants() -> None:
    # PySide6 6.12.0 drops a reference to True on every emit: harmless where True is immortal
    # (Python >= 3.12), a "deallocating True" crash after a few thousand redraws on 3.11.
    emitter = Emitter()
    received: list[object] = []
    emitter.changed.connect(received.append)
    before = sys.getrefcount(True), sys.getrefcount(False)
    for value in range(1000):
        emitter.changed.emit(value)
    after = sys.getrefcount(True), sys.getrefcount(False)
    assert len(received) == 1000
    assert after == before, (
        f"PySide6 {QtCore.qVersion()} changes the reference counts of True/False by "
        f"{after[0] - before[0]}/{after[1] - before[1]} per 1000 signals: this version crashes "
        "long-running windows; install another (pyproject.toml excludes the known bad one)"
    )
