"""The live tests' classifier: the shipped model, one session for every test."""

from __future__ import annotations

import pytest

from ecg_stream.classify.classifier import OnnxBeatClassifier


@pytest.fixture
def classifier(shipped_classifier: OnnxBeatClassifier) -> OnnxBeatClassifier:
    return shipped_classifier
