"""Signal quality: input faults are flagged and labelled Q, never V or S; the chain recovers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ecg_stream.classify.classifier import OnnxBeatClassifier, default_model_path
from ecg_stream.config import ChainConfig
from ecg_stream.detector.chain import BeatExtractor
from ecg_stream.detector.quality import SignalQuality
from ecg_stream.records import Record, load_record
from ecg_stream.types import BeatClass, BeatWindow, Chunk, FloatArray, LabeledBeat, SignalIssue
from ecg_stream.types import SignalState as State

CONFIG = ChainConfig()
FS = 360
FAULT_START_S, FAULT_S, TOTAL_S = 60, 10, 130
RECOVERED_S = 10
"""After a fault, the chain is back to its clean-signal beats within this long (3 s of
learning, 5 s of context for the quality measures)."""

Fault = Callable[[FloatArray, np.random.Generator], FloatArray]


def flat(part: FloatArray, rng: np.random.Generator) -> FloatArray:
    del rng
    return np.full(part.size, 0.35)


def clipped(part: FloatArray, rng: np.random.Generator) -> FloatArray:
    del rng
    return np.clip(part * 4.0, -0.8, 0.8)  # an over-amplified lead on a narrow ADC


def missing(part: FloatArray, rng: np.random.Generator) -> FloatArray:
    del rng
    return np.full(part.size, np.nan)


def mains(part: FloatArray, rng: np.random.Generator) -> FloatArray:
    del rng
    return 0.5 * np.sin(2 * np.pi * 50.0 * np.arange(part.size) / FS)


def noise(part: FloatArray, rng: np.random.Generator) -> FloatArray:
    return rng.normal(0.0, 0.4, part.size)


FAULTS: dict[str, tuple[Fault, tuple[SignalIssue, ...], State]] = {
    "flat": (flat, (SignalIssue.LEAD_OFF,), State.LEAD_OFF),
    "clipped": (clipped, (SignalIssue.CLIPPED,), State.NOISY),
    "nan": (missing, (SignalIssue.MISSING,), State.GAP),
    "mains": (mains, (SignalIssue.NOISE,), State.NOISY),
    "noise": (noise, (SignalIssue.NOISE, SignalIssue.CLIPPED), State.NOISY),
}


@dataclass(frozen=True)
class Run:
    beats: list[LabeledBeat]
    states: list[State]  # after each 1 s chunk


@pytest.fixture(scope="module")
def classifier() -> OnnxBeatClassifier:
    return OnnxBeatClassifier(default_model_path(), CONFIG)


def stream(samples: FloatArray, classifier: OnnxBeatClassifier, chunk: int = FS) -> Run:
    extractor = BeatExtractor(CONFIG)
    windows: list[BeatWindow] = []
    states: list[State] = []
    for start in range(0, samples.size, chunk):
        windows += extractor.process(Chunk(start, samples[start : start + chunk])).windows
        states.append(extractor.state)
    windows += extractor.flush().windows
    return Run(classifier.classify(windows), states)


def with_fault(record: Record, fault: Fault) -> FloatArray:
    samples = record.samples[: TOTAL_S * FS].copy()
    span = slice(FAULT_START_S * FS, (FAULT_START_S + FAULT_S) * FS)
    samples[span] = fault(samples[span], np.random.default_rng(3))
    return samples


def touches_fault(window: BeatWindow) -> bool:
    first = window.peak.index - CONFIG.window_before_samples
    last = window.peak.index + CONFIG.window_after_samples
    return first < (FAULT_START_S + FAULT_S) * FS and last > FAULT_START_S * FS


@pytest.fixture(scope="module")
def clean_run(record_100: Record, classifier: OnnxBeatClassifier) -> Run:
    return stream(record_100.samples[: TOTAL_S * FS], classifier)


@pytest.mark.parametrize("name", list(FAULTS))
def test_a_fault_gives_q_beats_with_a_reason_and_the_chain_recovers(
    name: str, record_100: Record, classifier: OnnxBeatClassifier, clean_run: Run
) -> None:
    fault, issues, state = FAULTS[name]
    run = stream(with_fault(record_100, fault), classifier)
    peaks = [beat.window.peak.index for beat in run.beats]
    assert peaks == sorted(set(peaks))  # no R peak twice, in order
    in_fault = [beat for beat in run.beats if touches_fault(beat.window)]
    for beat in in_fault:
        assert beat.label is BeatClass.Q, (beat.window.peak, beat.window.quality)
        assert beat.window.quality is not None
        assert beat.window.quality.issue in issues
    # the stream's state in the middle of the fault, then back to ok
    assert run.states[FAULT_START_S + FAULT_S // 2] is state
    assert run.states[-1] is State.OK
    # after the fault: the clean signal's beats again, usable, and no S/V the clean run lacks
    recovered = (FAULT_START_S + FAULT_S + RECOVERED_S) * FS
    after = [beat for beat in run.beats if beat.window.peak.index >= recovered]
    reference = [beat for beat in clean_run.beats if beat.window.peak.index >= recovered]
    assert [b.window.peak.index for b in after] == [b.window.peak.index for b in reference]
    assert all(beat.window.usable for beat in after)
    assert [b.label for b in after] == [b.label for b in reference]
    if name not in ("flat", "nan"):
        return
    # right after a restart (lead-off, NaN): no premature-beat label from an RR across the fault
    restart = [
        beat
        for beat in run.beats
        if (FAULT_START_S + FAULT_S) * FS <= beat.window.peak.index < recovered
        and beat.window.usable
    ]
    assert all(beat.label not in (BeatClass.S, BeatClass.V) for beat in restart)


def test_nan_never_reaches_the_filter(record_100: Record) -> None:
    samples = record_100.samples[: 40 * FS].copy()
    samples[10 * FS : 10 * FS + 5] = np.nan  # a few samples lost inside a beat
    samples[20 * FS] = np.inf
    extractor = BeatExtractor(CONFIG)
    filtered: list[FloatArray] = []
    windows: list[BeatWindow] = []
    for start in range(0, samples.size, 36):
        out = extractor.process(Chunk(start, samples[start : start + 36]))
        filtered.append(out.filtered.samples)
        windows += out.windows
    windows += extractor.flush().windows
    assert np.isfinite(np.concatenate(filtered)).all()
    assert all(np.isfinite(w.samples).all() for w in windows)
    peaks = [w.peak.index for w in windows]
    assert peaks == sorted(set(peaks))
    assert {w.quality.issue for w in windows if w.quality and not w.usable} == {SignalIssue.MISSING}


@pytest.mark.parametrize("name", ["flat", "clipped", "nan", "noise"])
def test_faulty_input_does_not_depend_on_chunking(
    name: str, record_100: Record, rng: np.random.Generator
) -> None:
    samples = with_fault(record_100, FAULTS[name][0])[: 90 * FS]

    def run(parts: list[FloatArray]) -> list[BeatWindow]:
        extractor, start = BeatExtractor(CONFIG), 0
        windows: list[BeatWindow] = []
        for part in parts:
            windows += extractor.process(Chunk(start, part)).windows
            start += part.size
        return windows + list(extractor.flush().windows)

    edges = np.cumsum(rng.integers(1, 700, size=samples.size))
    whole = run([samples])
    chunked = run(np.split(samples, edges[edges < samples.size]))
    assert [w.peak for w in chunked] == [w.peak for w in whole]
    assert [w.quality and w.quality.issue for w in chunked] == [
        w.quality and w.quality.issue for w in whole
    ]
    np.testing.assert_allclose(
        [w.quality.sqi if w.quality else 1.0 for w in chunked],
        [w.quality.sqi if w.quality else 1.0 for w in whole],
        atol=1e-6,
    )


@pytest.mark.parametrize("name", ["flat", "clipped", "nan"])
def test_a_fault_that_starts_inside_a_window_is_judged_alike_at_any_chunking(
    name: str, record_100: Record
) -> None:
    """A flat or clipped run is found some samples after it starts: a window it starts in is
    held until it is, and judged the same whatever later input came in the same chunk."""
    samples = record_100.samples[: 90 * FS].copy()
    peaks = [w.peak.index for w in BeatExtractor(CONFIG).process(Chunk(0, samples)).windows]
    peak = next(p for p in peaks if p > FAULT_START_S * FS)
    start = peak + 30  # inside the window of this beat
    span = slice(start, start + 3 * FS)
    samples[span] = FAULTS[name][0](samples[span], np.random.default_rng(3))

    def issues(chunk: int) -> list[tuple[int, SignalIssue | None]]:
        extractor = BeatExtractor(CONFIG)
        windows: list[BeatWindow] = []
        for first in range(0, samples.size, chunk):
            windows += extractor.process(Chunk(first, samples[first : first + chunk])).windows
        windows += extractor.flush().windows
        return [(w.peak.index, w.quality.issue if w.quality else None) for w in windows]

    judged = issues(36)
    assert judged == issues(1000) == issues(samples.size)
    if name != "clipped":  # the amplified lead reaches its rails only at later R peaks
        assert dict(judged)[peak] is FAULTS[name][1][0]


@pytest.mark.parametrize("name", ["100", "119"])
def test_clean_records_are_rarely_flagged(name: str, data_dir: Path) -> None:
    record = load_record(name, data_dir)
    extractor = BeatExtractor(CONFIG)
    windows: list[BeatWindow] = []
    for start in range(0, record.samples.size, FS):
        windows += extractor.process(Chunk(start, record.samples[start : start + FS])).windows
    windows += extractor.flush().windows
    flagged = sum(not w.usable for w in windows)
    assert flagged < 0.01 * len(windows)


def test_a_gap_marked_by_the_reader_flags_the_beats_it_touches() -> None:
    quality = SignalQuality(CONFIG)
    quality.scan(Chunk(0, np.zeros(1000)))
    quality.add_stretch(1000, 1200, SignalIssue.GAP)
    assert quality.state is State.GAP
