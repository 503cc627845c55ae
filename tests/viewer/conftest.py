"""Fixtures of the viewer tests: offscreen Qt."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    del config  # the windows draw into memory: no display needed, as on CI
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
