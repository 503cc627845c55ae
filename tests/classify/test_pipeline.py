from __future__ import annotations

import numpy as np
import pytest

from ecg_stream.classify.classifier import OnnxBeatClassifier
from ecg_stream.classify.pipeline import BeatPipeline, PipelineOutput
from ecg_stream.config import ChainConfig
from ecg_stream.detector.chain import BeatExtractor
from ecg_stream.errors import ModelContractError
from ecg_stream.records import Record
from ecg_stream.training.dataset import stream_record_windows
from ecg_stream.types import Chunk, LabeledBeat
from tests.models import MakeModel

CONFIG = ChainConfig()


def run(pipeline: BeatPipeline, samples: np.ndarray, edges: list[int]) -> list[LabeledBeat]:
    pipeline.reset()  # a new stream: flush() ended the last one
    beats: list[LabeledBeat] = []
    for start, stop in zip([0, *edges], [*edges, samples.size], strict=True):
        out = pipeline.process(Chunk(start, samples[start:stop]))
        assert isinstance(out, PipelineOutput)
        assert out.filtered.start_index == start
        assert out.filtered.samples.size == stop - start
        beats += out.beats
    return beats + list(pipeline.flush().beats)


def test_pipeline_labels_every_window_whatever_the_chunking(
    make_model: MakeModel, record_100: Record, rng: np.random.Generator
) -> None:
    samples = record_100.samples[: 360 * 60]
    windows = stream_record_windows(samples, CONFIG)
    with OnnxBeatClassifier(make_model(), CONFIG) as classifier:
        pipeline = BeatPipeline(BeatExtractor(CONFIG), classifier)
        by_second = run(pipeline, samples, list(range(360, samples.size, 360)))
        edges = np.cumsum(rng.integers(1, 2000, size=100))
        random_chunks = run(pipeline, samples, [int(e) for e in edges[edges < samples.size]])
    assert [beat.window.peak for beat in by_second] == [window.peak for window in windows]
    assert [b.window.peak for b in random_chunks] == [b.window.peak for b in by_second]
    np.testing.assert_allclose(
        [b.probabilities for b in random_chunks], [b.probabilities for b in by_second], atol=1e-6
    )


def test_classifier_checked_against_another_chain_is_refused(make_model: MakeModel) -> None:
    classifier = OnnxBeatClassifier(make_model(), CONFIG)
    with pytest.raises(ModelContractError, match="same ChainConfig"):
        BeatPipeline(BeatExtractor(ChainConfig(notch_hz=50.0)), classifier)
