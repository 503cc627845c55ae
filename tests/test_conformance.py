"""Every streaming stage through the same checks (STYLE.md practice 14, ``detector/stage.py``).

Each stage is registered once, with a factory, the chunks it takes made from a stretch of
MIT-BIH record 100 cut at given edges, and how the batches of successive calls join into one.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, TypeVar

import numpy as np
import pytest

from ecg_stream.config import ChainConfig, RhythmSettings
from ecg_stream.detector.chain import BeatExtractor, Extracted
from ecg_stream.detector.filter import CausalBandpass
from ecg_stream.detector.rhythm import RhythmInput, RhythmStage
from ecg_stream.detector.rpeak import RPeakDetector
from ecg_stream.detector.segment import BeatSegmenter, Detected
from ecg_stream.detector.stage import Stage
from ecg_stream.records import Record
from ecg_stream.types import BeatClass, BeatWindow, Chunk, FloatArray, LabeledBeat

CONFIG = ChainConfig()
FS = 360
CHUNKED_S = 120
"""Signal fed in random chunk sizes (and whole) to every stage."""
SAMPLE_BY_SAMPLE_S = 15
"""Signal fed one sample at a time: past the detector's learning, a dozen beats."""

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(frozen=True)
class Case(Generic[In, Out]):
    """One stage: how to build it, what it takes, how its batches join (types checked by mypy).

    Args:
        make: A fresh stage.
        chunks: The stage's input for raw samples cut at the given edges (sample indices).
        join: The batches of successive ``process`` and ``flush`` calls, as one output.
        atol: How far chunked and whole runs may differ: float rounding in the filter's state,
            carried across chunks (and float32 inference on other batches, for labels).
    """

    make: Callable[[], Stage[In, Out]]
    chunks: Callable[[FloatArray, Sequence[int]], list[In]]
    join: Callable[[Sequence[Out]], object]
    atol: float = 1e-9


def raw_chunks(samples: FloatArray, edges: Sequence[int]) -> list[FloatArray]:
    return np.split(samples, edges)


def filtered_chunks(samples: FloatArray, edges: Sequence[int]) -> list[FloatArray]:
    return np.split(CausalBandpass.from_config(CONFIG).process(samples), edges)


def detected_chunks(samples: FloatArray, edges: Sequence[int]) -> list[Detected]:
    detector = RPeakDetector(CONFIG.fs_hz)
    chunks = [
        Detected(part, tuple(detector.process(part))) for part in filtered_chunks(samples, edges)
    ]
    return [*chunks, Detected(np.empty(0), tuple(detector.flush()))]


def stream_chunks(samples: FloatArray, edges: Sequence[int]) -> list[Chunk]:
    parts = np.split(samples, edges)
    return [Chunk(start, part) for start, part in zip([0, *edges], parts, strict=True)]


def labeled_by_rr(window: BeatWindow) -> LabeledBeat:
    """A stand-in label (the stage's checks do not need a model): premature beats are V."""
    premature = window.usable and window.rr.rr_ratio < 0.85
    label = BeatClass.V if premature else BeatClass.N if window.usable else BeatClass.Q
    p = [1.0 if beat_class is label else 0.0 for beat_class in BeatClass]
    return LabeledBeat(window, (p[0], p[1], p[2], p[3], p[4]))


def rhythm_chunks(samples: FloatArray, edges: Sequence[int]) -> list[RhythmInput]:
    """The chain's beats, labeled, with the clock and the input's state, per raw chunk."""
    extractor = BeatExtractor(CONFIG)
    inputs = []
    for chunk in stream_chunks(samples, edges):
        out = extractor.process(chunk)
        beats = tuple(labeled_by_rr(window) for window in out.windows)
        inputs.append(RhythmInput(beats, chunk.end_index, extractor.state, out.filtered.samples))
    last = tuple(labeled_by_rr(window) for window in extractor.flush().windows)
    return [*inputs, RhythmInput(last, samples.size, extractor.state)]


def joined_arrays(batches: Sequence[FloatArray]) -> FloatArray:
    return np.concatenate(batches)


def joined_events(batches: Sequence[Sequence[object]]) -> list[object]:
    return [event for batch in batches for event in batch]


def joined_extracted(batches: Sequence[Extracted]) -> tuple[FloatArray, list[object]]:
    filtered = np.concatenate([batch.filtered.samples for batch in batches])
    return filtered, [window for batch in batches for window in batch.windows]


def entry(
    make: Callable[[], Stage[In, Out]],
    chunks: Callable[[FloatArray, Sequence[int]], list[In]],
    join: Callable[[Sequence[Out]], object],
    atol: float = 1e-9,
) -> Case[Any, Any]:
    """A registry entry; mypy checks that its stage, chunks and join fit one another."""
    return Case(make, chunks, join, atol)


CASES: dict[str, Case[Any, Any]] = {
    "filter": entry(lambda: CausalBandpass.from_config(CONFIG), raw_chunks, joined_arrays),
    "detector": entry(lambda: RPeakDetector(CONFIG.fs_hz), filtered_chunks, joined_events),
    "segmenter": entry(lambda: BeatSegmenter(CONFIG), detected_chunks, joined_events),
    "chain": entry(lambda: BeatExtractor(CONFIG), stream_chunks, joined_extracted),
    "rhythm": entry(
        lambda: RhythmStage(RhythmSettings(), CONFIG.fs_hz), rhythm_chunks, joined_events
    ),
}


def run(stage: Stage[In, Out], chunks: list[In]) -> list[Out]:
    """The batches of a whole stream: each chunk processed, then the flush."""
    return [*(stage.process(chunk) for chunk in chunks), stage.flush()]


def random_edges(size: int, rng: np.random.Generator) -> list[int]:
    edges = np.cumsum(rng.integers(1, 500, size=size))
    return [int(edge) for edge in edges[edges < size]]


def assert_same(got: object, want: object, atol: float) -> None:
    """Equal, arrays and floats to ``atol`` (NaN equals NaN), through lists and dataclasses."""
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray)
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=atol, nan_ok=True)
    elif isinstance(want, list | tuple):
        assert isinstance(got, list | tuple)
        assert len(got) == len(want)
        for got_item, want_item in zip(got, want, strict=True):
            assert_same(got_item, want_item, atol)
    elif dataclasses.is_dataclass(want):
        assert type(got) is type(want)
        for field in dataclasses.fields(want):
            assert_same(getattr(got, field.name), getattr(want, field.name), atol)
    else:
        assert got == want


def state_nbytes(value: object, seen: set[int] | None = None) -> int:
    """Bytes a stage holds: its arrays, and 8 per scalar, through its attributes and containers.

    Objects of other packages (the ONNX session) count 0: they hold no stream state.
    """
    seen = set() if seen is None else seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if value is None or isinstance(value, int | float | str | Enum | np.generic):
        return 8
    if isinstance(value, list | tuple | deque | set | frozenset):
        return sum(state_nbytes(item, seen) for item in value)
    if isinstance(value, dict):
        return sum(state_nbytes(item, seen) for item in value.values())
    if not type(value).__module__.startswith("ecg_stream"):
        return 0
    names = list(getattr(value, "__dict__", {})) + list(getattr(type(value), "__slots__", ()))
    return sum(state_nbytes(getattr(value, name), seen) for name in names)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("chunking", ["random", "sample by sample"])
def test_output_does_not_depend_on_chunking(
    name: str, chunking: str, record_100: Record, rng: np.random.Generator
) -> None:
    case = CASES[name]
    if chunking == "random":
        samples = record_100.samples[: CHUNKED_S * FS]
        edges = random_edges(samples.size, rng)
    else:
        samples = record_100.samples[: SAMPLE_BY_SAMPLE_S * FS]
        edges = list(range(1, samples.size))
    whole = case.join(run(case.make(), case.chunks(samples, [])))
    chunked = case.join(run(case.make(), case.chunks(samples, edges)))
    assert_same(chunked, whole, case.atol)


@pytest.mark.parametrize("name", CASES)
def test_reset_equals_fresh(name: str, record_100: Record, rng: np.random.Generator) -> None:
    case = CASES[name]
    samples = record_100.samples[: 30 * FS]
    edges = random_edges(samples.size, rng)
    used = case.make()
    run(used, case.chunks(record_100.samples[50_000:60_000], []))
    used.reset()
    want = case.join(run(case.make(), case.chunks(samples, edges)))
    assert_same(case.join(run(used, case.chunks(samples, edges))), want, atol=0.0)


@pytest.mark.parametrize("name", CASES)
def test_flush_ends_the_stream_without_resetting(name: str, record_100: Record) -> None:
    case = CASES[name]
    stage = case.make()
    chunks = case.chunks(record_100.samples[: 30 * FS], [10 * FS])
    batches = run(stage, chunks)
    assert_same(case.join([*batches, stage.flush()]), case.join(batches), atol=0.0)
    assert state_nbytes(stage) > state_nbytes(case.make())  # what it learned is still there
    with pytest.raises(RuntimeError, match=r"after flush\(\).*call reset\(\)"):
        stage.process(chunks[0])


@pytest.mark.parametrize("name", CASES)
def test_input_is_not_mutated(name: str, record_100: Record) -> None:
    case = CASES[name]
    chunks = case.chunks(record_100.samples[: 20 * FS].copy(), [7 * FS])
    before = copy.deepcopy(chunks)
    run(case.make(), chunks)
    assert_same(chunks, before, atol=0.0)


MAX_HELD_WINDOWS = 4
"""Windows the quality stage may hold back: those of the last second (a run of equal samples
is judged once it breaks or lasts 1 s), at most 4 beats at 240 bpm. They are outputs in
flight, counted apart from the state."""


def held_windows(stage: object) -> tuple[BeatWindow, ...]:
    return stage.quality.held if isinstance(stage, BeatExtractor) else ()


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_state_is_bounded(name: str, record_100: Record) -> None:
    """After 5 minutes nothing grows: the longest queue (256 RR intervals) is full by then."""
    case = CASES[name]
    stage = case.make()
    samples = record_100.samples[: 10 * 60 * FS]
    sizes = []
    for chunk in case.chunks(samples, list(range(FS, samples.size, FS))):  # 1 s chunks
        stage.process(chunk)
        held = held_windows(stage)
        assert len(held) <= MAX_HELD_WINDOWS
        sizes.append(state_nbytes(stage, seen={id(window) for window in held}))
    fifth_minute, later = sizes[4 * 60 : 5 * 60], sizes[5 * 60 :]
    assert max(later) <= max(fifth_minute), (max(fifth_minute), max(later))
