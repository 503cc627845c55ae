"""The VF detector (``detector/rhythm/vf.py``): flutter in record 207, none in other records or in
electrode motion noise, chunking, reset, bounded state, and its episodes through the stage."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from ecg_stream.config import ChainConfig, RhythmSettings
from ecg_stream.detector.chain import BeatExtractor
from ecg_stream.detector.rhythm import RhythmInput, RhythmStage
from ecg_stream.detector.rhythm.vf import VfChange, VfDetector, VfSettings, vf_features
from ecg_stream.errors import ConfigError
from ecg_stream.evaluation.stress import add_noise
from ecg_stream.records import load_record
from ecg_stream.types import (
    Chunk,
    EventState,
    FloatArray,
    LabeledBeat,
    RhythmKind,
    SignalState,
)
from tests.test_conformance import state_nbytes

FS = 360


def filtered_signal(samples: FloatArray) -> FloatArray:
    """The chain's filtered signal of a whole record, as the rhythm stage is handed it."""
    extractor = BeatExtractor(ChainConfig())
    return extractor.process(Chunk(0, samples)).filtered.samples


@cache
def filtered(name: str, data_dir: Path) -> FloatArray:
    """A record's filtered signal, as the chain hands it to the rhythm stage."""
    return filtered_signal(load_record(name, data_dir).samples)


def changes_of(
    samples: FloatArray, edges: Sequence[int] | int = FS, detector: VfDetector | None = None
) -> list[VfChange]:
    """Feed ``samples`` in chunks (ending at ``edges``, or of that many samples)."""
    detector = VfDetector(fs_hz=FS) if detector is None else detector
    if isinstance(edges, int):
        edges = range(edges, samples.size, edges)
    changes, start = [], 0
    for end in [*edges, samples.size]:
        changes += detector.process(samples[start:end], end)
        start = end
    return changes


def episodes(changes: Sequence[VfChange], end: int) -> list[tuple[int, int]]:
    """(onset, end) of each episode; one still open ends at ``end``."""
    spans, onset = [], None
    for change in changes:
        if change.in_vf:
            onset = change.index
        elif onset is not None:
            spans.append((onset, change.index))
            onset = None
    return spans if onset is None else [*spans, (onset, end)]


def sine_vf(seconds: float, hz: float = 4.0, amplitude_mv: float = 0.8) -> FloatArray:
    t = np.arange(round(seconds * FS)) / FS
    return amplitude_mv * np.sin(2 * np.pi * hz * t)


def test_bad_settings_raise_one_line_naming_the_value() -> None:
    with pytest.raises(ConfigError, match="step_s=5"):
        VfSettings(step_s=5.0, window_s=4.0)
    with pytest.raises(ConfigError, match=r"max_leakage=1\.5"):
        VfSettings(max_leakage=1.5)
    with pytest.raises(ConfigError, match="enter_windows=0"):
        VfSettings(enter_windows=0)


def test_features_of_a_sine_and_of_spikes() -> None:
    sine = vf_features(sine_vf(4.0), FS)
    assert sine.band > 0.95
    assert sine.high < 0.01
    assert sine.leakage < 0.2
    assert sine.tcsc > 0.8
    spikes = np.zeros(4 * FS)
    spikes[::FS] = 1.0  # narrow "QRS" once a second
    qrs = vf_features(spikes, FS)
    assert qrs.band < 0.6
    assert qrs.high > 0.1
    assert qrs.tcsc < 0.05


def test_sine_wave_starts_and_ends_an_episode_placed_back() -> None:
    samples = np.concatenate([np.zeros(10 * FS), sine_vf(20.0), np.zeros(10 * FS)])
    changes = changes_of(samples)
    assert [c.in_vf for c in changes] == [True, False]
    onset, end = changes
    assert 9.5 * FS <= onset.index <= 11 * FS  # the middle of the first VF-like window
    assert onset.decided_index - onset.index <= 6 * FS
    assert 29 * FS <= end.index <= 30.5 * FS
    assert end.decided_index - end.index <= 6 * FS


def test_a_hole_in_the_signal_ends_vf_and_empties_the_window() -> None:
    detector = VfDetector(fs_hz=FS)
    assert [c.in_vf for c in detector.process(sine_vf(20.0), 20 * FS)] == [True]
    ended = detector.process(sine_vf(2.0), 25 * FS)  # 3 s missing
    assert [(c.in_vf, c.decided_index) for c in ended] == [(False, 23 * FS - 1)]
    assert detector.process(sine_vf(3.0), 28 * FS) == []  # less than a window since the hole


@pytest.mark.slow
def test_flutter_of_record_207_is_found(data_dir: Path) -> None:
    record = load_record("207", data_dir)
    assert record.annotations is not None
    flutter = [(int(a), int(b)) for a, b in record.annotations.flutter_spans]
    samples = filtered("207", data_dir)
    found = episodes(changes_of(samples), samples.size)
    for start, end in flutter:  # every flutter span is overlapped by an episode
        assert any(s < end and start < e for s, e in found), (start, end, found)
    margin = 3 * FS  # the windows that reach past a span's end
    for s, e in found:  # every episode overlaps a flutter span
        assert any(s < end + margin and start < e for start, end in flutter), (s, e, flutter)
    covered = sum(max(0, min(e, end) - max(s, start)) for s, e in found for start, end in flutter)
    assert covered >= 0.8 * sum(end - start for start, end in flutter)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["100", "119", "203"])
def test_no_vf_in_records_without_it(name: str, data_dir: Path) -> None:
    assert changes_of(filtered(name, data_dir)) == []


@pytest.mark.slow
@pytest.mark.parametrize(("noise", "snr_db"), [("em", -6.0), ("em", 0.0), ("ma", -6.0)])
def test_no_vf_in_strong_noise(noise: str, snr_db: float, data_dir: Path) -> None:
    """Record 100 with NSTDB noise switched on and off every 2 minutes (the stress test's)."""
    noise_samples = load_record(noise, data_dir.parent / "nstdb-noise", annotations=False).samples
    noisy = add_noise(load_record("100", data_dir), noise_samples, snr_db, np.random.default_rng(7))
    assert changes_of(filtered_signal(noisy.samples)) == []


def test_changes_do_not_depend_on_chunking(data_dir: Path, rng: np.random.Generator) -> None:
    """The first 70 s of record 207 (two flutter episodes)."""
    samples = filtered("207", data_dir)[: 70 * FS]
    whole = changes_of(samples, [])
    assert [c.in_vf for c in whole] == [True, False, True, False]
    edges = np.cumsum(rng.integers(1, 500, size=200))
    assert changes_of(samples, [int(e) for e in edges if e < samples.size]) == whole
    assert changes_of(samples, 1) == whole  # sample by sample


def test_reset_equals_fresh(data_dir: Path) -> None:
    samples = filtered("207", data_dir)[: 70 * FS]
    detector = VfDetector(fs_hz=FS)
    changes_of(samples[: 30 * FS], detector=detector)
    detector.reset()
    assert changes_of(samples, detector=detector) == changes_of(samples)


def test_state_is_bounded(data_dir: Path) -> None:
    samples = filtered("207", data_dir)[: 300 * FS]
    detector, sizes = VfDetector(fs_hz=FS), []
    for start in range(0, samples.size, FS):
        detector.process(samples[start : start + FS], min(start + FS, samples.size))
        sizes.append(state_nbytes(detector))
    assert max(sizes) <= 8 * 4 * FS + 1024  # the 4 s window and a few scalars


# --- through the rhythm stage -----------------------------------------------------------------


def stage_inputs(
    samples: FloatArray, chunk: int, states: dict[int, SignalState] | None = None
) -> list[RhythmInput]:
    """Inputs of consecutive chunks of filtered signal, no beats; ``states`` by chunk number."""
    inputs = []
    for number, start in enumerate(range(0, samples.size, chunk)):
        part = samples[start : start + chunk]
        state = (states or {}).get(number, SignalState.OK)
        inputs.append(RhythmInput((), start + part.size, state, part))
    return inputs


def vf_events(inputs: Sequence[RhythmInput]) -> list[tuple[EventState, int, int, str | None]]:
    stage = RhythmStage(RhythmSettings(af_enabled=False), FS)
    events = [event for chunk in inputs for event in stage.process(chunk)] + stage.flush()
    return [
        (e.state, e.index, e.decided_index, e.detail) for e in events if e.kind is RhythmKind.VF
    ]


def test_stage_raises_vf_from_the_signal_and_flush_ends_it() -> None:
    samples = np.concatenate([np.zeros(2 * FS), sine_vf(20.0)])
    events = vf_events(stage_inputs(samples, FS))
    assert [(state, detail) for state, _, _, detail in events] == [
        (EventState.START, None),
        (EventState.END, "stream ended"),
    ]
    assert 2 * FS <= events[0][1] <= 3 * FS


def test_stage_vf_ends_on_lead_off_and_restarts_after_it() -> None:
    samples = sine_vf(40.0)
    events = vf_events(stage_inputs(samples, FS, {15: SignalState.LEAD_OFF}))
    assert [(state, detail) for state, _, _, detail in events] == [
        (EventState.START, None),
        (EventState.END, "lead-off"),
        (EventState.START, None),
        (EventState.END, "stream ended"),
    ]
    assert events[2][1] >= 16 * FS  # found anew from the signal after the lead-off


def test_stage_vf_events_do_not_depend_on_chunking(data_dir: Path) -> None:
    samples = filtered("207", data_dir)[: 70 * FS]
    whole = vf_events(stage_inputs(samples, samples.size))
    assert len(whole) == 4
    for chunk in (1, 37, FS, 1000):
        assert vf_events(stage_inputs(samples, chunk)) == whole


def test_organized_beats_keep_a_vf_like_wave_from_vf() -> None:
    """A wave that looks like flutter is not VF while the chain finds steady beats at 75 bpm."""
    wave = sine_vf(30.0)
    assert episodes(changes_of(wave), wave.size)  # alone: VF
    detector = VfDetector(fs_hz=FS)
    peaks = [(index, index + 150) for index in range(0, wave.size, round(0.8 * FS))]
    changes, start = [], 0
    for end in [*range(FS, wave.size, FS), wave.size]:
        chunk_peaks = [peak for peak in peaks if start <= peak[1] < end]
        changes += detector.process(wave[start:end], end, chunk_peaks)
        start = end
    assert changes == []


@pytest.mark.slow
def test_paced_record_107_gives_no_vf(data_dir: Path) -> None:
    """Paced beats are organized activity: no VF in 107 through the whole stage."""
    record = load_record("107", data_dir)
    extractor = BeatExtractor(ChainConfig())
    stage = RhythmStage(RhythmSettings(), FS)
    events = []
    for start in range(0, record.samples.size, FS):
        extracted = extractor.process(Chunk(start, record.samples[start : start + FS]))
        beats = tuple(
            LabeledBeat(window, (0.0, 0.0, 0.0, 0.0, 1.0)) for window in extracted.windows
        )
        end = start + extracted.filtered.samples.size
        events += stage.process(RhythmInput(beats, end, samples=extracted.filtered.samples))
    assert not [event for event in events if event.kind is RhythmKind.VF]
