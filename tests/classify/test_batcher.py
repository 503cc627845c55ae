"""The inference batcher: one classifier call per loop turn, each stream its own beats."""

from __future__ import annotations

import asyncio

import pytest

from ecg_stream.classify.batcher import InferenceBatcher
from ecg_stream.classify.classifier import OnnxBeatClassifier, default_model_path
from ecg_stream.config import ChainConfig
from ecg_stream.live.analysis import detect_record
from ecg_stream.records import Record
from ecg_stream.types import BeatWindow, LabeledBeat
from tests.helpers import run


def shipped_classifier() -> OnnxBeatClassifier:
    path = default_model_path()
    if not path.is_file():
        pytest.skip(f"the shipped model {path} is not there yet")
    return OnnxBeatClassifier(path, ChainConfig())


def test_requests_of_one_turn_share_one_call_and_keep_their_beats(record_100: Record) -> None:
    windows = detect_record(record_100, ChainConfig(), chunk_s=1.0).windows[:40]
    parts = [windows[0:1], windows[1:8], (), windows[8:9], windows[9:40]]
    with shipped_classifier() as classifier:
        batcher = InferenceBatcher(classifier)

        async def submit_all() -> list[tuple[LabeledBeat, ...]]:
            return list(await asyncio.gather(*(batcher.classify(p) for p in parts)))

        got = run(submit_all())
        alone = [tuple(classifier.classify(part)) if part else () for part in parts]
    assert batcher.calls == 1
    assert batcher.windows == len(windows)
    for beats, own, part in zip(got, alone, parts, strict=True):
        assert [b.window for b in beats] == list(part)
        assert [b.label for b in beats] == [b.label for b in own]
        for beat, reference in zip(beats, own, strict=True):
            assert beat.probabilities == pytest.approx(reference.probabilities, abs=1e-6)


def test_later_turns_get_calls_of_their_own(record_100: Record) -> None:
    windows = detect_record(record_100, ChainConfig(), chunk_s=1.0).windows[:6]
    with shipped_classifier() as classifier:
        batcher = InferenceBatcher(classifier)

        async def one_after_another() -> list[tuple[LabeledBeat, ...]]:
            return [await batcher.classify(windows[k : k + 2]) for k in range(0, 6, 2)]

        got = run(one_after_another())
    assert batcher.calls == 3
    assert [b.window for part in got for b in part] == list(windows)


def test_a_classifier_error_reaches_every_waiting_stream(record_100: Record) -> None:
    good = detect_record(record_100, ChainConfig(), chunk_s=1.0).windows[:2]
    bad = BeatWindow(
        peak=good[1].peak,
        samples=good[1].samples[:100],  # not the contract's 250 samples
        rr=good[1].rr,
        morphology=good[1].morphology,
        ready_index=good[1].ready_index,
    )
    with shipped_classifier() as classifier:
        batcher = InferenceBatcher(classifier)

        async def submit_both() -> list[tuple[LabeledBeat, ...] | BaseException]:
            return list(
                await asyncio.gather(
                    batcher.classify(good), batcher.classify([bad]), return_exceptions=True
                )
            )

        outcomes = run(submit_both())
    assert all(isinstance(o, ValueError) and "shape" in str(o) for o in outcomes)
