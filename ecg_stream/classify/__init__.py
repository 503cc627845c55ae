"""Beat classification at run time: the ONNX classifier, its contract, the cross-stream batcher."""

from ecg_stream.classify.classifier import (
    ModelContract,
    OnnxBeatClassifier,
    default_model_path,
)

__all__ = ["ModelContract", "OnnxBeatClassifier", "default_model_path"]
