"""The rhythm stage (``detector/rhythm/stage.py``): each rule on hand-made beats, chunking,
reset, and whole MIT-BIH records through the real chain and the shipped classifier."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from ecg_stream.classify.classifier import OnnxBeatClassifier
from ecg_stream.config import ChainConfig, RhythmSettings
from ecg_stream.detector.chain import BeatExtractor
from ecg_stream.detector.rhythm import RhythmInput, RhythmStage
from ecg_stream.detector.rhythm.stage import ready_index
from ecg_stream.errors import ConfigError
from ecg_stream.live.analysis import analyze_record
from ecg_stream.records import Record, load_record
from ecg_stream.types import (
    BeatClass,
    BeatQuality,
    BeatWindow,
    Chunk,
    EventState,
    LabeledBeat,
    MorphologyFeatures,
    RhythmEvent,
    RhythmKind,
    RPeak,
    RRFeatures,
    SignalIssue,
    SignalState,
)
from tests.test_conformance import state_nbytes

FS = 360
NO_AF = RhythmSettings(af_enabled=False)


def labeled(index: int, label: str, rr_ms: float, *, usable: bool = True) -> LabeledBeat:
    """A beat at R peak ``index`` labelled ``label`` with certainty, as the chain hands it."""
    window = BeatWindow(
        peak=RPeak(index=index, decided_index=index + 100),
        samples=np.zeros(250),
        rr=RRFeatures(rr_ms=rr_ms, local_mean_rr_ms=800.0, long_mean_rr_ms=800.0),
        morphology=MorphologyFeatures(template_correlation=1.0, amplitude_ratio=1.0),
        ready_index=index + 160,
        quality=None if usable else BeatQuality(0.0, SignalIssue.NOISE),
    )
    probabilities = [0.0] * 5
    probabilities[BeatClass(label).index] = 1.0
    p = probabilities
    return LabeledBeat(window=window, probabilities=(p[0], p[1], p[2], p[3], p[4]))


def beats_of(
    pattern: str, rr_s: float | Sequence[float], first_index: int = FS
) -> list[LabeledBeat]:
    """Beats labelled by the letters of ``pattern`` (lowercase: unusable), ``rr_s`` apart."""
    rrs = [rr_s] * len(pattern) if isinstance(rr_s, float) else list(rr_s)
    beats, index = [], first_index
    for position, (letter, rr) in enumerate(zip(pattern, rrs, strict=True)):
        if position:
            index += round(rr * FS)
        rr_ms = math.nan if position == 0 else 1000.0 * rr
        beats.append(labeled(index, letter.upper(), rr_ms, usable=letter.isupper()))
    return beats


def chunked(
    beats: Sequence[LabeledBeat],
    chunk_samples: int | Sequence[int],
    end_index: int | None = None,
    states: dict[int, SignalState] | None = None,
) -> list[RhythmInput]:
    """Inputs of consecutive chunks: each beat in the chunk its window completes in."""
    last = max((ready_index(beat) + 1 for beat in beats), default=0)
    end = last if end_index is None else end_index
    if isinstance(chunk_samples, int):
        edges = [*range(chunk_samples, end, chunk_samples), end]
    else:
        edges = [*list(chunk_samples), end]
    inputs, position, start = [], 0, 0
    for edge in edges:
        taken = []
        while position < len(beats) and ready_index(beats[position]) < edge:
            taken.append(beats[position])
            position += 1
        state = (states or {}).get(start, SignalState.OK)
        inputs.append(RhythmInput(tuple(taken), edge, state))
        start = edge
    assert position == len(beats), "every beat must fall in a chunk"
    return inputs


def run(stage: RhythmStage, inputs: Sequence[RhythmInput]) -> list[RhythmEvent]:
    events = [event for chunk in inputs for event in stage.process(chunk)]
    return events + stage.flush()


def events_of(
    pattern: str, rr_s: float | Sequence[float], settings: RhythmSettings = NO_AF
) -> list[RhythmEvent]:
    return run(RhythmStage(settings, FS), chunked(beats_of(pattern, rr_s), FS))


def kinds(events: Sequence[RhythmEvent]) -> list[tuple[str, str]]:
    return [(event.kind.value, event.state.value) for event in events]


# --- settings ---------------------------------------------------------------------------------


def test_settings_defaults_are_documented_values() -> None:
    settings = RhythmSettings()
    assert (settings.bradycardia_bpm, settings.tachycardia_bpm, settings.rate_beats) == (50, 120, 8)
    assert (settings.pause_s, settings.asystole_s, settings.sustained_vt_s) == (2.0, 4.0, 30.0)
    assert (settings.vt_bpm, settings.svt_bpm, settings.af_enabled) == (90, 100, True)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"bradycardia_bpm": 130.0}, "--bradycardia-bpm 130"),
        ({"rate_beats": 1}, "rate_beats=1"),
        ({"pause_s": 5.0}, "--pause-s 5 "),
        ({"asystole_margin_s": 2.0}, "asystole_margin_s=2.0"),
        ({"run_min_beats": 6}, "run_min_beats=6"),
        ({"vt_bpm": 0.0}, "vt_bpm=0.0"),
        ({"pattern_cycles": 1}, "pattern_cycles=1"),
        ({"sustained_vt_s": -1.0}, "sustained_vt_s=-1.0"),
    ],
)
def test_bad_settings_raise_one_line_naming_the_value(
    changes: dict[str, float], named: str
) -> None:
    with pytest.raises(ConfigError, match=named) as error:
        RhythmSettings(**changes)  # type: ignore[arg-type]
    assert "\n" not in str(error.value)


# --- one rule at a time, on hand-made beats ---------------------------------------------------


def test_regular_sinus_rhythm_gives_no_event() -> None:
    assert events_of("N" * 200, 0.8) == []


def test_couplet_is_an_instant_at_its_first_beat() -> None:
    beats = beats_of("N" * 10 + "VV" + "N" * 10, 0.8)
    events = run(RhythmStage(NO_AF, FS), chunked(beats, FS))
    assert kinds(events) == [("couplet", "instant")]
    assert events[0].index == beats[10].window.peak.index
    assert events[0].decided_index == ready_index(beats[12])  # the run ends at the next beat
    assert events[0].beats == 2


def test_fast_ventricular_run_is_vt_and_a_run() -> None:
    events = events_of("N" * 10 + "VVVV" + "N" * 10, [0.8] * 10 + [0.4] * 4 + [0.8] * 10)
    assert kinds(events) == [("vt", "start"), ("vt", "end"), ("ventricular_run", "instant")]
    start, end, instant = events
    assert (start.beats, end.beats, instant.beats) == (3, 4, 4)
    assert start.rate_bpm == pytest.approx(150.0)
    assert end.detail is None


def test_slow_ventricular_run_is_idioventricular() -> None:
    events = events_of("N" * 10 + "V" * 8 + "N" * 10, 0.8)
    assert kinds(events) == [("idioventricular", "start"), ("idioventricular", "end")]
    assert events[1].beats == 8


def test_vt_of_30_s_is_reported_sustained_once() -> None:
    events = events_of("N" * 10 + "V" * 100 + "N" * 10, [0.8] * 10 + [0.4] * 100 + [0.8] * 10)
    events = [event for event in events if event.kind is RhythmKind.VT]  # tachycardia too
    assert kinds(events) == [("vt", "start"), ("vt", "instant"), ("vt", "end")]
    assert events[1].detail == "sustained"
    assert events[1].index - events[0].index >= 30 * FS


def test_unusable_beats_never_start_vt_and_end_it_with_a_detail() -> None:
    rr = [0.8] * 10 + [0.4] * 4 + [0.8] * 10
    assert kinds(events_of("N" * 10 + "qVVN" + "N" * 10, rr)) == [("couplet", "instant")]
    assert events_of("N" * 10 + "VqqV" + "N" * 10, rr) == []  # two unusable beats split it
    events = events_of("N" * 10 + "VVVVq" + "N" * 10, [*rr, 0.8])
    assert kinds(events) == [("vt", "start"), ("vt", "end")]
    assert events[1].detail == "unusable beat"
    slow_q = [0.8] * 10 + [0.4] * 3 + [0.8] * 11  # the q beat is slower than VT: not held
    events = events_of("N" * 10 + "VVVq" + "N" * 10, slow_q)
    assert kinds(events) == [("vt", "start"), ("vt", "end")]  # ends at the last V beat
    assert (events[1].index, events[1].detail) == (events[0].index + 2 * 144, "unusable beat")


@pytest.mark.parametrize("unusable", ["q", "Q"])
def test_one_unusable_beat_between_v_beats_joins_the_run(unusable: str) -> None:
    rr = [0.8] * 10 + [0.4] * 4 + [0.8] * 10
    beats = beats_of("N" * 10 + f"V{unusable}VV" + "N" * 10, rr)
    events = run(RhythmStage(NO_AF, FS), chunked(beats, FS))
    assert kinds(events) == [("vt", "start"), ("vt", "end"), ("ventricular_run", "instant")]
    start, end, instant = events
    assert (start.index, start.beats) == (beats[10].window.peak.index, 3)
    assert start.decided_index == ready_index(beats[12])  # at the V beat after the held one
    assert (end.index, end.beats, end.detail) == (beats[13].window.peak.index, 4, None)
    assert instant.beats == 4


def test_unusable_beats_at_the_vt_rate_continue_open_vt() -> None:
    rr = [0.8] * 10 + [0.4] * 8 + [0.8] * 10
    beats = beats_of("N" * 10 + "VVVqqQqq" + "N" * 10, rr)
    events = run(RhythmStage(NO_AF, FS), chunked(beats, FS))
    assert kinds(events) == [("vt", "start"), ("vt", "end")]  # 8 beats: no ventricular_run
    assert (events[1].index, events[1].beats, events[1].detail) == (
        beats[17].window.peak.index,
        8,
        None,
    )


def test_vt_starts_above_90_bpm() -> None:
    rr = [0.8] * 10 + [0.63] * 4 + [0.8] * 10  # 95 bpm: VT since the 90 bpm default
    assert kinds(events_of("N" * 10 + "VVVV" + "N" * 10, rr))[:2] == [
        ("vt", "start"),
        ("vt", "end"),
    ]
    slow = [0.8] * 10 + [0.7] * 4 + [0.8] * 10  # 86 bpm: idioventricular
    assert kinds(events_of("N" * 10 + "VVVV" + "N" * 10, slow))[0] == ("idioventricular", "start")


def test_svt_needs_three_fast_s_beats() -> None:
    rr = [0.8] * 10 + [0.4] * 4 + [0.8] * 10
    assert kinds(events_of("N" * 10 + "SSSS" + "N" * 10, rr)) == [("svt", "start"), ("svt", "end")]
    assert events_of("N" * 10 + "SSSS" + "N" * 10, 0.8) == []  # 75 bpm: no SVT


def test_s_beats_in_af_are_read_as_conducted_and_start_no_svt(rng: np.random.Generator) -> None:
    """In AF an S label means nothing: the gate reads it N, for the rules and the session."""
    rr = [0.8] * 20 + list(rng.uniform(0.35, 1.0, size=200))
    pattern = "N" * 20 + "".join(rng.choice(["N", "S"], size=200))
    stage = RhythmStage(RhythmSettings(), FS)
    inputs = chunked(beats_of(pattern, rr), FS)
    conducted, events = [], []
    for chunk in inputs:
        events += stage.process(chunk)
        assert len(stage.conducted) == len(chunk.beats)
        conducted += [flag for flag, beat in zip(stage.conducted, chunk.beats, strict=True) if flag]
        assert all(
            beat.label is BeatClass.S
            for flag, beat in zip(stage.conducted, chunk.beats, strict=True)
            if flag
        )
    assert ("af", "start") in kinds(events)
    assert ("svt", "start") not in kinds(events)
    assert len(conducted) > 50  # most S beats after the onset
    ungated = RhythmStage(RhythmSettings(af_gate=False), FS)
    run(ungated, inputs)
    assert not any(ungated.conducted)


@pytest.mark.parametrize(
    ("cycle", "kind"),
    [("NV", RhythmKind.VENTRICULAR_BIGEMINY), ("NNV", RhythmKind.VENTRICULAR_TRIGEMINY)],
)
def test_bigeminy_and_trigeminy_start_after_three_cycles(cycle: str, kind: RhythmKind) -> None:
    beats = beats_of("N" * 10 + cycle * 6 + "N" * 10, 0.8)
    events = run(RhythmStage(NO_AF, FS), chunked(beats, FS))
    assert [(e.kind, e.state) for e in events] == [(kind, EventState.START), (kind, EventState.END)]
    start, end = events
    assert start.index == beats[10].window.peak.index  # the pattern's first beat
    assert start.decided_index == ready_index(beats[10 + 3 * len(cycle) - 1])
    assert end.beats == 7 * len(cycle) - 1  # the N after the last V still fit the cycle
    assert events_of("N" * 10 + cycle * 2 + "N" * 10, 0.8) == []


def test_bradycardia_and_tachycardia_have_hysteresis() -> None:
    rr = [0.8] * 20 + [1.5] * 20 + [1.15] * 20 + [0.8] * 20  # 75, 40, 52, 75 bpm
    events = events_of("N" * 80, rr)
    assert kinds(events) == [("bradycardia", "start"), ("bradycardia", "end")]
    assert events[1].index >= beats_of("N" * 80, rr)[60].window.peak.index  # not at 52 bpm
    rr = [0.8] * 20 + [0.4] * 20 + [0.8] * 20
    assert kinds(events_of("N" * 60, rr)) == [("tachycardia", "start"), ("tachycardia", "end")]


def test_pause_is_an_instant_at_the_second_beat() -> None:
    rr = [0.8] * 10 + [2.5] + [0.8] * 10
    beats = beats_of("N" * 21, rr)
    events = run(RhythmStage(NO_AF, FS), chunked(beats, FS))
    assert kinds(events) == [("pause", "instant")]
    assert events[0].index == beats[10].window.peak.index
    assert events[0].rate_bpm == pytest.approx(24.0)
    # An interval that touches an unusable beat is not used.
    assert events_of("N" * 10 + "n" + "N" * 10, rr) == []


def test_asystole_is_raised_by_time_and_ended_by_the_next_beat() -> None:
    rr = [0.8] * 10 + [6.0] + [0.8] * 5
    beats = beats_of("N" * 16, rr)
    events = run(RhythmStage(NO_AF, FS), chunked(beats, 36))
    events = [event for event in events if event.kind is RhythmKind.ASYSTOLE]  # bradycardia too
    assert kinds(events) == [("asystole", "start"), ("asystole", "end")]
    last = beats[9].window.peak.index
    start, end = events
    assert start.index == last + 4 * FS
    assert start.decided_index == last + round(4.5 * FS)  # the documented margin, 0.5 s
    assert end.index == beats[10].window.peak.index
    assert end.decided_index == ready_index(beats[10])


def test_no_asystole_when_beats_arrive_at_the_limit() -> None:
    """A beat 4 s after the last is reported before the margin runs out: a pause only."""
    events = events_of("N" * 16, [0.8] * 10 + [4.0] + [0.8] * 5)
    assert kinds(events) == [("pause", "instant")]


def test_lead_off_ends_episodes_and_raises_no_asystole() -> None:
    beats = beats_of("N" * 10 + "V" * 10, [0.8] * 10 + [0.4] * 10)
    resumed = beats_of("N" * 10, 0.8, first_index=23 * FS)  # seen from 22 s on
    inputs = chunked(beats, FS, end_index=13 * FS)
    off = [RhythmInput((), end, SignalState.LEAD_OFF) for end in range(14 * FS, 23 * FS, FS)]
    later = chunked(resumed, FS)
    events = run(RhythmStage(NO_AF, FS), [*inputs, *off, *later[22:]])
    assert not [e for e in events if e.kind in (RhythmKind.ASYSTOLE, RhythmKind.PAUSE)]
    events = [event for event in events if event.kind is RhythmKind.VT]  # tachycardia too
    assert kinds(events) == [("vt", "start"), ("vt", "end")]
    assert events[1].detail == "lead-off"
    assert events[1].index == beats[-1].window.peak.index


def test_flush_ends_episodes_then_the_stream() -> None:
    stage = RhythmStage(NO_AF, FS)
    beats = beats_of("N" * 10 + "V" * 5, [0.8] * 10 + [0.4] * 5)
    for chunk in chunked(beats, FS):
        stage.process(chunk)
    assert stage.current is RhythmKind.VT
    events = stage.flush()
    assert kinds(events) == [("vt", "end")]
    assert events[0].detail == "stream ended"
    assert stage.flush() == []
    with pytest.raises(RuntimeError, match=r"after flush\(\).*call reset\(\)"):
        stage.process(RhythmInput((), 10**6))


def test_current_reports_the_most_urgent_episode() -> None:
    stage = RhythmStage(NO_AF, FS)
    assert stage.current is None
    beats = beats_of("N" * 20 + "V" * 5, [0.4] * 20 + [0.35] * 5)  # tachycardia, then VT
    for chunk in chunked(beats, FS):
        stage.process(chunk)
    assert stage.current is RhythmKind.VT


def mixed_beats(seed: int) -> list[LabeledBeat]:
    """A random stream holding every kind of beat-driven event."""
    rng = np.random.default_rng(seed)
    pieces = ["N" * 12, "NV" * 5, "NNV" * 4, "VVVVV", "SSSS", "VV", "NqN", "VVVVVVVVVV", "N" * 9]
    letters, rrs = "", []
    for _ in range(60):
        piece = pieces[int(rng.integers(len(pieces)))]
        letters += piece
        rrs += list(rng.uniform(0.3, 1.6, size=len(piece)))
    rrs[100] = 2.5  # a pause
    rrs[200] = 7.0  # asystole
    return beats_of(letters, [float(rr) for rr in rrs])


def test_events_do_not_depend_on_chunking(rng: np.random.Generator) -> None:
    beats = mixed_beats(7)
    whole = run(RhythmStage(NO_AF, FS), chunked(beats, 10**9))
    assert {e.kind for e in whole} >= {RhythmKind.ASYSTOLE, RhythmKind.PAUSE, RhythmKind.VT}
    for size in (1, 7, FS, 5 * FS):
        assert run(RhythmStage(NO_AF, FS), chunked(beats, size)) == whole
    end = chunked(beats, 10**9)[-1].end_index
    edges = np.cumsum(rng.integers(1, 2000, size=2000))
    got = run(RhythmStage(NO_AF, FS), chunked(beats, [int(e) for e in edges if e < end]))
    assert got == whole


def test_reset_equals_fresh() -> None:
    stage = RhythmStage(RhythmSettings(), FS)
    run(stage, chunked(mixed_beats(1), FS))
    stage.reset()
    assert run(stage, chunked(mixed_beats(2), FS)) == run(
        RhythmStage(RhythmSettings(), FS), chunked(mixed_beats(2), FS)
    )


def test_state_is_bounded_over_a_long_stream() -> None:
    stage = RhythmStage(RhythmSettings(), FS)
    beats = beats_of(("N" * 7 + "V" + "NV" * 4 + "VVV" + "S") * 150, 0.6)  # 30 min
    sizes = []
    for chunk in chunked(beats, FS):
        stage.process(chunk)
        sizes.append(state_nbytes(stage))
    third = len(sizes) // 3
    assert max(sizes[third:]) <= max(sizes[:third])


# --- real records through the chain and the shipped classifier --------------------------------


def chain_inputs(
    samples: np.ndarray, classifier: OnnxBeatClassifier, chunk_s: float = 1.0
) -> list[RhythmInput]:
    """A record through the chain and the classifier, as the session runs them: one input per
    chunk (the beats it completed, the clock, the input's state), then the chain's flush."""
    extractor, step = BeatExtractor(ChainConfig()), round(chunk_s * FS)
    inputs = []
    for start in range(0, samples.size, step):
        out = extractor.process(Chunk(start, samples[start : start + step]))
        beats = tuple(classifier.classify(out.windows))
        state = extractor.state
        inputs.append(RhythmInput(beats, out.filtered.end_index, state, out.filtered.samples))
    last = extractor.flush()
    inputs.append(RhythmInput(tuple(classifier.classify(last.windows)), samples.size, state))
    return inputs


def record_events(name: str, data_dir: Path, classifier: OnnxBeatClassifier) -> list[RhythmEvent]:
    record = load_record(name, data_dir)
    return run(RhythmStage(RhythmSettings(), FS), chain_inputs(record.samples, classifier))


def with_stretch(record: Record, start_s: int, stretch: np.ndarray) -> Record:
    samples = record.samples[: 60 * FS].copy()
    samples[start_s * FS : start_s * FS + stretch.size] = stretch
    return Record(record.name, record.lead, record.fs_hz, samples)


def test_asystole_through_the_real_chain(
    record_100: Record, shipped_classifier: OnnxBeatClassifier
) -> None:
    """60 s of record 100 with 10 s of low-amplitude baseline noise (0.02 mV) in the middle."""
    noise = np.random.default_rng(100).normal(0.0, 0.02, size=10 * FS)
    record = with_stretch(record_100, 25, noise)
    inputs = chain_inputs(record.samples, shipped_classifier)
    beats = [beat for chunk in inputs for beat in chunk.beats]
    session = analyze_record(record, ChainConfig(), shipped_classifier).labeled  # the same beats
    assert [(b.window.peak.index, b.label) for b in beats] == [
        (b.window.peak.index, b.label) for b in session
    ]
    events = run(RhythmStage(RhythmSettings(), FS), inputs)
    asystole = [e for e in events if e.kind is RhythmKind.ASYSTOLE]
    assert [e.state for e in asystole] == [EventState.START, EventState.END]
    last = max(b.window.peak.index for b in beats if b.window.peak.index < 25 * FS + FS // 2)
    start = asystole[0]
    assert start.index == last + 4 * FS
    assert start.decided_index - (last + 4 * FS) <= FS  # raised within 1 s of its limit
    assert 35 * FS <= asystole[1].index <= 37 * FS  # the first beat after the noise
    assert not [e for e in events if e.kind in (RhythmKind.VT, RhythmKind.VF)]


def test_lead_off_through_the_real_chain_gives_no_asystole(
    record_100: Record, shipped_classifier: OnnxBeatClassifier
) -> None:
    """10 s of flat line (an electrode off) in 60 s of record 100."""
    record = with_stretch(record_100, 25, np.full(10 * FS, 0.1))
    inputs = chain_inputs(record.samples, shipped_classifier)
    assert SignalState.LEAD_OFF in {chunk.signal for chunk in inputs}
    events = run(RhythmStage(RhythmSettings(), FS), inputs)
    assert not [e for e in events if e.kind in (RhythmKind.ASYSTOLE, RhythmKind.PAUSE)]


def test_chunking_of_a_real_record_does_not_change_events(
    data_dir: Path, shipped_classifier: OnnxBeatClassifier
) -> None:
    """Two minutes of record 119 (bigeminy from 20 s on) in chunks of 0.25, 1 and 3.7 s."""
    samples = load_record("119", data_dir).samples[: 120 * FS]
    events = [
        run(RhythmStage(RhythmSettings(), FS), chain_inputs(samples, shipped_classifier, chunk_s))
        for chunk_s in (0.25, 1.0, 3.7)
    ]
    assert RhythmKind.VENTRICULAR_BIGEMINY in {event.kind for event in events[0]}
    assert events[0] == events[1] == events[2]


@pytest.mark.slow
def test_normal_record_100_gives_no_vt_asystole_or_pause(
    data_dir: Path, shipped_classifier: OnnxBeatClassifier
) -> None:
    events = record_events("100", data_dir, shipped_classifier)
    found = {event.kind for event in events}
    assert not found & {RhythmKind.VT, RhythmKind.ASYSTOLE, RhythmKind.PAUSE, RhythmKind.AF}


@pytest.mark.slow
def test_record_119_gives_bigeminy_and_no_vt(
    data_dir: Path, shipped_classifier: OnnxBeatClassifier
) -> None:
    """119 (DS1) holds ventricular bigeminy and trigeminy and no ventricular tachycardia."""
    events = record_events("119", data_dir, shipped_classifier)
    starts = [event.kind for event in events if event.state is EventState.START]
    assert starts.count(RhythmKind.VENTRICULAR_BIGEMINY) >= 10
    assert RhythmKind.VENTRICULAR_TRIGEMINY in starts
    assert not {RhythmKind.VT, RhythmKind.ASYSTOLE, RhythmKind.AF} & set(starts)


@pytest.mark.slow
def test_record_203_gives_vt_runs_in_af(
    data_dir: Path, shipped_classifier: OnnxBeatClassifier
) -> None:
    """203 (DS1): AF throughout, with many ventricular couplets and runs of VT."""
    events = record_events("203", data_dir, shipped_classifier)
    starts = [event.kind for event in events if event.state is EventState.START]
    assert starts.count(RhythmKind.VT) >= 5
    assert RhythmKind.AF in starts
    instants = [event.kind for event in events if event.state is EventState.INSTANT]
    assert instants.count(RhythmKind.COUPLET) >= 20
    assert RhythmKind.VENTRICULAR_RUN in instants
    assert RhythmKind.ASYSTOLE not in starts


@pytest.mark.slow
def test_record_201_gives_af_episodes(
    data_dir: Path, shipped_classifier: OnnxBeatClassifier
) -> None:
    """201 (DS1) holds AF episodes; the AF detector's onsets become episodes of the stage."""
    events = record_events("201", data_dir, shipped_classifier)
    af = [event for event in events if event.kind is RhythmKind.AF]
    assert [e.state for e in af][:2] == [EventState.START, EventState.END]
    assert all(e.index <= e.decided_index for e in af)
    assert af[0].beats > 0
