"""The beat classifier: runtime ONNX classifier (core) and offline dataset, training, report."""

from ecg_stream.model.classifier import (
    ModelContract,
    OnnxBeatClassifier,
    default_model_path,
)

__all__ = ["ModelContract", "OnnxBeatClassifier", "default_model_path"]
