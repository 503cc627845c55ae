"""The live path in one object: raw chunks in, labelled beats out (sync, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

from ecg_stream.classify.classifier import OnnxBeatClassifier
from ecg_stream.detector.chain import BeatExtractor, Extracted
from ecg_stream.errors import ModelContractError
from ecg_stream.types import Chunk, LabeledBeat


@dataclass(frozen=True, slots=True)
class PipelineOutput:
    """What one chunk yields: its filtered samples and the beats it completed, labelled.

    Args:
        filtered: The chunk after the band-pass, same indices and arrival time (at
            ``flush()``, an empty chunk at the stream's end).
        beats: Beats whose window completed with this chunk, in R-peak order.
    """

    filtered: Chunk
    beats: tuple[LabeledBeat, ...]


class BeatPipeline:
    """Beat extractor followed by the classifier; the beats of a chunk are classified in one batch.

    A ``Stage`` of chunks in, ``PipelineOutput`` out.

    Args:
        extractor: The streaming chain (filter, R-peak detector, segmenter).
        classifier: The ONNX classifier; its contract was checked against a chain config.

    Raises:
        ModelContractError: The classifier was checked against another chain configuration.
    """

    def __init__(self, extractor: BeatExtractor, classifier: OnnxBeatClassifier) -> None:
        if classifier.config != extractor.config:
            msg = (
                f"the classifier was checked against {classifier.config}, the extractor runs "
                f"{extractor.config}; build both from the same ChainConfig"
            )
            raise ModelContractError(msg)
        self.extractor, self.classifier = extractor, classifier

    def reset(self) -> None:
        """Forget all past input (the classifier is stateless)."""
        self.extractor.reset()

    def process(self, chunk: Chunk) -> PipelineOutput:
        """Run one chunk through the chain and classify the beats it completed."""
        return self._classified(self.extractor.process(chunk))

    def flush(self) -> PipelineOutput:
        """The stream has ended: classify the beats still held back."""
        return self._classified(self.extractor.flush())

    def _classified(self, extracted: Extracted) -> PipelineOutput:
        beats = self.classifier.classify(extracted.windows) if extracted.windows else []
        return PipelineOutput(filtered=extracted.filtered, beats=tuple(beats))
