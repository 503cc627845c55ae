"""The inference batcher: one classifier call per loop turn, each stream its own beats."""

from __future__ import annotations

import asyncio

import pytest

from ecg_stream.classify.batcher import FULL_BATCH, InferenceBatcher
from ecg_stream.classify.classifier import OnnxBeatClassifier
from ecg_stream.config import ChainConfig
from ecg_stream.detector.chain import BeatExtractor
from ecg_stream.records import Record
from ecg_stream.types import BeatWindow, Chunk, LabeledBeat
from tests.helpers import run

STRETCH_S = 50
"""Of record 100, at about 75 beats a minute: the 40 windows the tests need, and a few more."""


@pytest.fixture(scope="module")
def windows(record_100: Record) -> tuple[BeatWindow, ...]:
    """The first 40 beat windows of record 100, from the streaming chain in 1 s chunks."""
    extractor, fs_hz = BeatExtractor(ChainConfig()), round(ChainConfig().fs_hz)
    stretch = record_100.samples[: STRETCH_S * fs_hz]
    found = [
        window
        for start in range(0, stretch.size, fs_hz)
        for window in extractor.process(Chunk(start, stretch[start : start + fs_hz])).windows
    ]
    assert len(found) >= 40
    return tuple(found[:40])


def test_requests_of_one_turn_share_one_call_and_keep_their_beats(
    windows: tuple[BeatWindow, ...], shipped_classifier: OnnxBeatClassifier
) -> None:
    classifier = shipped_classifier
    parts = [windows[0:1], windows[1:8], (), windows[8:9], windows[9:40]]
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


def test_later_turns_get_calls_of_their_own(
    windows: tuple[BeatWindow, ...], shipped_classifier: OnnxBeatClassifier
) -> None:
    classifier = shipped_classifier
    batcher = InferenceBatcher(classifier)

    async def one_after_another() -> list[tuple[LabeledBeat, ...]]:
        return [await batcher.classify(windows[k : k + 2]) for k in range(0, 6, 2)]

    got = run(one_after_another())
    assert batcher.calls == 3
    assert [b.window for part in got for b in part] == list(windows[:6])


def test_a_classifier_error_reaches_every_waiting_stream(
    windows: tuple[BeatWindow, ...], shipped_classifier: OnnxBeatClassifier
) -> None:
    classifier = shipped_classifier
    good = windows[:2]
    bad = BeatWindow(
        peak=good[1].peak,
        samples=good[1].samples[:100],  # not the contract's 250 samples
        rr=good[1].rr,
        morphology=good[1].morphology,
        ready_index=good[1].ready_index,
    )
    batcher = InferenceBatcher(classifier)

    async def submit_both() -> list[tuple[LabeledBeat, ...] | BaseException]:
        return list(
            await asyncio.gather(
                batcher.classify(good), batcher.classify([bad]), return_exceptions=True
            )
        )

    outcomes = run(submit_both())
    assert all(isinstance(o, ValueError) and "shape" in str(o) for o in outcomes)


def test_a_tick_gathers_requests_of_later_turns_into_one_call(
    windows: tuple[BeatWindow, ...], shipped_classifier: OnnxBeatClassifier
) -> None:
    """Unsynchronised devices: requests 1 ms apart share one call within a 50 ms tick."""
    batcher = InferenceBatcher(shipped_classifier, tick_s=0.05)

    async def one(k: int) -> tuple[LabeledBeat, ...]:
        await asyncio.sleep(0.001 * k)
        return await batcher.classify(windows[k : k + 1])

    async def all_of_them() -> list[tuple[LabeledBeat, ...]]:
        return list(await asyncio.gather(*(one(k) for k in range(10))))

    got = run(all_of_them())
    assert batcher.calls == 1
    assert [beats[0].window for beats in got] == list(windows[:10])


def test_a_full_batch_ends_the_ticks_wait(
    windows: tuple[BeatWindow, ...], shipped_classifier: OnnxBeatClassifier
) -> None:
    batcher = InferenceBatcher(shipped_classifier, tick_s=60.0)
    many = (windows * 2)[:FULL_BATCH]

    async def classify_in_time() -> tuple[LabeledBeat, ...]:
        async with asyncio.timeout(5.0):  # not the tick's minute
            return await batcher.classify(many)

    assert len(run(classify_in_time())) == FULL_BATCH
    assert batcher.calls == 1
