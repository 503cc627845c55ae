"""Every streaming stage through the same checks (STYLE.md practice 14)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from ecg_stream.config import ChainConfig
from ecg_stream.detector.chain import BeatExtractor
from ecg_stream.detector.filter import CausalBandpass
from ecg_stream.detector.rpeak import RPeakDetector
from ecg_stream.records import Record
from ecg_stream.types import BeatWindow, Chunk, FloatArray, RPeak

CONFIG = ChainConfig()
SECONDS = 120


def random_parts(samples: FloatArray, rng: np.random.Generator) -> list[FloatArray]:
    edges = np.cumsum(rng.integers(1, 500, size=samples.size))
    return np.split(samples, edges[edges < samples.size])


def run_filter(stage: CausalBandpass, parts: list[FloatArray]) -> FloatArray:
    return np.concatenate([stage.process(part) for part in parts])


def run_detector(stage: RPeakDetector, parts: list[FloatArray]) -> list[RPeak]:
    peaks = [peak for part in parts for peak in stage.process(part)]
    return peaks + stage.flush()


def run_chain(stage: BeatExtractor, parts: list[FloatArray]) -> list[BeatWindow]:
    windows: list[BeatWindow] = []
    start = 0
    for part in parts:
        windows += stage.process(Chunk(start, part)).windows
        start += part.size
    return windows + list(stage.flush())


def filtered(record: Record) -> FloatArray:
    return CausalBandpass.from_config(CONFIG).process(record.samples[: int(SECONDS * 360)])


def test_filter_output_does_not_depend_on_chunking(
    record_100: Record, rng: np.random.Generator
) -> None:
    x = record_100.samples[: int(SECONDS * 360)]
    whole = CausalBandpass.from_config(CONFIG).process(x)
    got = run_filter(CausalBandpass.from_config(CONFIG), random_parts(x, rng))
    np.testing.assert_allclose(got, whole, rtol=0, atol=1e-9)


def test_detector_events_do_not_depend_on_chunking(
    record_100: Record, rng: np.random.Generator
) -> None:
    x = filtered(record_100)
    whole = run_detector(RPeakDetector(CONFIG.fs_hz), [x])
    chunked = run_detector(RPeakDetector(CONFIG.fs_hz), random_parts(x, rng))
    assert chunked == whole
    sample_by_sample = RPeakDetector(CONFIG.fs_hz)
    one_at_a_time = [p for sample in x[: 20 * 360] for p in sample_by_sample.process(sample[None])]
    assert one_at_a_time == RPeakDetector(CONFIG.fs_hz).process(x[: 20 * 360])


def test_chain_windows_do_not_depend_on_chunking(
    record_100: Record, rng: np.random.Generator
) -> None:
    x = record_100.samples[: int(SECONDS * 360)]
    whole = run_chain(BeatExtractor(CONFIG), [x])
    chunked = run_chain(BeatExtractor(CONFIG), random_parts(x, rng))
    assert [w.peak for w in chunked] == [w.peak for w in whole]
    np.testing.assert_allclose(
        np.array([w.samples for w in chunked]), np.array([w.samples for w in whole]), atol=1e-9
    )


Make = Callable[[], CausalBandpass | RPeakDetector | BeatExtractor]
STAGES: dict[str, Make] = {
    "filter": lambda: CausalBandpass.from_config(CONFIG),
    "detector": lambda: RPeakDetector(CONFIG.fs_hz),
    "chain": lambda: BeatExtractor(CONFIG),
}


def feed(stage: CausalBandpass | RPeakDetector | BeatExtractor, x: FloatArray) -> object:
    if isinstance(stage, BeatExtractor):
        return run_chain(stage, [x])
    if isinstance(stage, RPeakDetector):
        return run_detector(stage, [x])
    return run_filter(stage, [x])


@pytest.mark.parametrize("name", STAGES)
def test_reset_equals_fresh(name: str, record_100: Record) -> None:
    x = record_100.samples[: 30 * 360]
    used = STAGES[name]()
    feed(used, record_100.samples[50_000:60_000])
    used.reset()
    fresh_out, used_out = feed(STAGES[name](), x), feed(used, x)
    if isinstance(fresh_out, np.ndarray):
        np.testing.assert_array_equal(used_out, fresh_out)
    else:
        assert repr(used_out) == repr(fresh_out)


@pytest.mark.parametrize("name", STAGES)
def test_input_is_not_mutated(name: str, record_100: Record) -> None:
    x = record_100.samples[: 20 * 360].copy()
    before = x.copy()
    feed(STAGES[name](), x)
    np.testing.assert_array_equal(x, before)


@pytest.mark.slow
def test_state_stays_bounded_over_a_whole_record(record_100: Record) -> None:
    extractor = BeatExtractor(CONFIG)
    x = record_100.samples
    sizes = []
    for start in range(0, x.size, 3600):
        extractor.process(Chunk(start, x[start : start + 3600]))
        state = [
            value
            for stage in (extractor.detector, extractor.segmenter)
            for value in vars(stage).values()
            if hasattr(value, "__len__")
        ]
        sizes.append(sum(len(value) for value in state))
    assert max(sizes[-20:]) <= max(sizes[:20]) + 3600
