"""IngestSession without a broker: sequencing, gaps, duplicates, interleaving, resampling."""

from __future__ import annotations

import doctest
import itertools

import numpy as np
import pytest

from ecg_stream.config import ChainConfig
from ecg_stream.live import ingest, serve
from ecg_stream.live.analysis import detect_record
from ecg_stream.live.device import resample_lead
from ecg_stream.live.front import ChunkFate, Ingested
from ecg_stream.live.ingest import (
    INTERLEAVE_MIN_GAPS,
    RECOVER_CHUNKS,
    SESSION_SILENCE_S,
    IngestSession,
)
from ecg_stream.records import Record, resample_to_chain
from ecg_stream.types import FloatArray
from ecg_stream.wire import RawMessage

GAIN = 200.0
CONFIG = ChainConfig()


def counts_of(samples_mv: FloatArray) -> FloatArray:
    """A lead as int16 counts of 1/200 mV (MIT-BIH's gain)."""
    return np.clip(np.rint(samples_mv * GAIN), -32768, 32767)


def chunk(
    start: int,
    counts: FloatArray,
    fs_hz: float = 360.0,
    t0: float | None = None,
    session: str | None = None,
) -> RawMessage:
    return RawMessage.from_counts("s", start, fs_hz, counts, gain=GAIN, t0=t0, session=session)


def feed(
    session: IngestSession,
    counts: FloatArray,
    fs_hz: float,
    edges: list[int],
    *,
    offset: int = 0,
) -> list[Ingested]:
    """Feed ``counts[edges[k]:edges[k+1]]`` as chunks starting at ``offset + edges[k]``."""
    return [
        session.process(chunk(offset + a, counts[a:b], fs_hz), float(a), 1.7e9)
        for a, b in itertools.pairwise(edges)
    ]


def every(step: int, size: int) -> list[int]:
    return [*range(0, size, step), size]


def peaks(outputs: list[Ingested]) -> list[int]:
    return [w.sample_index for out in outputs for w in out.windows]


@pytest.fixture(scope="module")
def lead(record_100: Record) -> FloatArray:
    """Two minutes of record 100 as int16 counts at 360 Hz."""
    return counts_of(record_100.samples[: 120 * 360])


def analyzed(counts: FloatArray, fs_hz: float) -> list[int]:
    """``analyze``'s R peaks, in the signal's own clock."""
    record = Record("s", "MLII", fs_hz, resample_to_chain(counts / GAIN, fs_hz))
    return [int(i) for i in detect_record(record, CONFIG, 1.0).record_indices]


def test_at_360_hz_the_chain_sees_the_device_samples_as_they_are(lead: FloatArray) -> None:
    session = IngestSession("s", CONFIG, "w")
    outputs = feed(session, lead, 360.0, every(36, lead.size))
    outputs.append(session.finish(0.0))
    assert peaks(outputs) == analyzed(lead, 360.0)
    assert all(w.chain_index == w.sample_index for out in outputs for w in out.windows)
    filtered = [c for out in outputs for c in out.filtered]
    assert [c.start_index for c in filtered] == every(36, lead.size)[:-1]
    status = session.ingest()
    assert (status.chunks, status.samples, status.gaps, status.duplicates) == (
        len(filtered),
        lead.size,
        0,
        0,
    )


@pytest.mark.parametrize("fs_hz", [250.0, 500.0, 128.0])
def test_resampled_device_gives_the_beats_of_the_same_signal(
    lead: FloatArray, fs_hz: float, rng: np.random.Generator
) -> None:
    device = counts_of(resample_lead(lead / GAIN, 360.0, fs_hz))
    expected = analyzed(device, fs_hz)
    edges = np.cumsum(rng.integers(1, round(fs_hz / 5), size=2000))
    parts = [0, *[int(e) for e in edges if e < device.size], device.size]
    session = IngestSession("s", CONFIG, "w")
    outputs = feed(session, device, fs_hz, parts, offset=1_000_000)
    outputs.append(session.finish(0.0))
    got = [p - 1_000_000 for p in peaks(outputs)]
    assert len(got) == len(expected) > 100
    assert np.abs(np.subtract(got, expected)).max() <= 1  # one sample at the device rate


def test_chunking_does_not_change_resampled_beats(lead: FloatArray) -> None:
    device = counts_of(resample_lead(lead / GAIN, 360.0, 250.0))
    results = []
    for step in (1_000, 25, 7):
        session = IngestSession("s", CONFIG, "w")
        outputs = feed(session, device, 250.0, every(step, device.size))
        outputs.append(session.finish(0.0))
        results.append(peaks(outputs))
    assert results[0] == results[1] == results[2]


def test_a_gap_flushes_the_chain_and_starts_afresh(lead: FloatArray) -> None:
    first, second = lead[: 50 * 360], lead[52 * 360 :]
    session = IngestSession("s", CONFIG, "w")
    before = feed(session, first, 360.0, every(36, first.size))
    after_gap = feed(session, second, 360.0, every(36, second.size), offset=52 * 360)
    after_gap.append(session.finish(0.0))
    assert after_gap[0].fate is ChunkFate.AFTER_GAP
    # the chain was told: what it held of the first part came out with the gap, nothing invented
    alone = IngestSession("s", CONFIG, "w")
    expected_first = feed(alone, first, 360.0, every(36, first.size))
    expected_first.append(alone.finish(0.0))
    fresh = IngestSession("s", CONFIG, "w")
    expected_second = feed(fresh, second, 360.0, every(36, second.size), offset=52 * 360)
    expected_second.append(fresh.finish(0.0))
    assert peaks(before + after_gap) == peaks(expected_first) + peaks(expected_second)
    status = session.ingest()
    assert (status.gaps, status.gap_samples, status.interleaved) == (1, 2 * 360, False)


def test_duplicates_and_older_chunks_are_dropped_and_counted(lead: FloatArray) -> None:
    part = lead[: 30 * 360]
    clean = IngestSession("s", CONFIG, "w")
    expected = peaks([*feed(clean, part, 360.0, every(36, part.size)), clean.finish(0.0)])
    session = IngestSession("s", CONFIG, "w")
    outputs = []
    for a in range(0, part.size, 36):
        outputs.append(session.process(chunk(a, part[a : a + 36]), 0.0, 1.7e9))
        if a == 36 * 10:  # QoS 1 redelivery, then an older chunk
            again = session.process(chunk(a, part[a : a + 36]), 0.0, 1.7e9)
            older = session.process(chunk(36, part[36:72]), 0.0, 1.7e9)
            assert again.fate is older.fate is ChunkFate.DUPLICATE
            assert again.windows == older.windows == ()
        if a == 36 * 20:  # re-chunked: overlaps the end of what was processed
            overlap = session.process(chunk(a + 18, part[a + 18 : a + 72]), 0.0, 1.7e9)
            outputs.append(overlap)
            assert overlap.fate is ChunkFate.PROCESSED
    outputs = [o for o in outputs if o.fate is not ChunkFate.DUPLICATE]
    # the overlapping chunk brought samples a+36..a+72; the next regular chunk is a duplicate now
    outputs.append(session.finish(0.0))
    assert peaks(outputs) == expected
    status = session.ingest()
    assert (status.duplicates, status.gaps) == (4, 0)


def test_a_device_whose_counter_restarts_is_taken_up_again_not_dropped(
    lead: FloatArray,
) -> None:
    """A rebooted device counts from 0 again: 90 s in, its new samples are a new run."""
    session = IngestSession("s", CONFIG, "w")
    first = feed(session, lead[: 90 * 360], 360.0, every(360, 90 * 360))
    again = feed(session, lead[: 20 * 360], 360.0, every(360, 20 * 360))
    again.append(session.finish(0.0))
    assert again[0].fate is ChunkFate.AFTER_GAP
    fresh = IngestSession("s", CONFIG, "w")
    alone = peaks([*feed(fresh, lead[: 20 * 360], 360.0, every(360, 20 * 360)), fresh.finish(0.0)])
    assert peaks(again) == alone  # the same beats as a device that just started
    status = session.ingest()
    assert (status.duplicates, status.gaps) == (0, 1)
    assert len(peaks(first)) > 100


def test_a_second_device_on_the_stream_id_is_refused_a_restarted_one_taken_up(
    lead: FloatArray,
) -> None:
    """Two sessions at once on one id would splice two patients: the second is refused and
    counted; a new session after a silence is the same device restarted: a new run."""
    session = IngestSession("s", CONFIG, "w")
    fates = []
    for k, a in enumerate(range(0, 20 * 360, 360)):
        mine = chunk(a, lead[a : a + 360], session="first")
        twin = chunk(5000 + a, lead[a : a + 360], session="twin")
        fates.append(session.process(mine, float(k), 1.7e9).fate)
        fates.append(session.process(twin, float(k), 1.7e9).fate)
    assert fates[::2] == [ChunkFate.PROCESSED] * 20
    assert fates[1::2] == [ChunkFate.REFUSED_SOURCE] * 20
    assert session.ingest().refused_sources == 20
    later = chunk(0, lead[:360], session="second start")
    assert session.process(later, 19.0 + SESSION_SILENCE_S, 1.7e9).fate is ChunkFate.AFTER_GAP
    assert session.ingest().duplicates == 0


def test_chunks_split_between_workers_are_detected_not_classified(lead: FloatArray) -> None:
    session = IngestSession("s", CONFIG, "w")
    fates = []
    for k, a in enumerate(range(0, lead.size, 36)):
        if k % 2 and k < 600:  # the other worker got the odd chunks for the first minute
            continue
        out = session.process(chunk(a, lead[a : a + 36]), 0.0, 1.7e9)
        fates.append(out.fate)
        if out.fate is ChunkFate.INTERLEAVED:
            assert out.windows == ()
    assert session.ingest().gaps >= INTERLEAVE_MIN_GAPS
    assert fates.index(ChunkFate.INTERLEAVED) <= INTERLEAVE_MIN_GAPS + 1
    # one worker gets it all again: after RECOVER_CHUNKS it starts afresh and finds beats
    recovered = fates.index(ChunkFate.AFTER_GAP, INTERLEAVE_MIN_GAPS + 1)
    assert fates[recovered - RECOVER_CHUNKS : recovered] == [ChunkFate.INTERLEAVED] * RECOVER_CHUNKS
    assert not session.interleaved
    assert session.ingest().interleaved is False


def test_occasional_gaps_are_not_interleaving(lead: FloatArray) -> None:
    session = IngestSession("s", CONFIG, "w")
    for k, a in enumerate(range(0, lead.size, 36)):
        if k % 40 == 39:  # a lost chunk now and then
            continue
        assert session.process(chunk(a, lead[a : a + 36]), 0.0, 1.7e9).fate is not (
            ChunkFate.INTERLEAVED
        )
    assert session.ingest().gaps > 25


def test_a_new_rate_restarts_the_chain(lead: FloatArray) -> None:
    session = IngestSession("s", CONFIG, "w")
    session.process(chunk(0, lead[:360]), 0.0, 1.7e9)
    out = session.process(chunk(250, lead[:250], fs_hz=250.0), 0.0, 1.7e9)
    assert out.fate is ChunkFate.AFTER_GAP
    assert session.fs_hz == 250.0
    assert session.ingest().device_fs_hz == 250.0


def test_beat_wall_time_follows_the_device_clock(lead: FloatArray) -> None:
    session = IngestSession("s", CONFIG, "w")
    session.process(chunk(3600, lead[:360], t0=1_700_000_010.0), 0.0, 1.8e9)
    assert session.wall_time(3600 + 720) == pytest.approx(1_700_000_012.0)
    anonymous = IngestSession("s", CONFIG, "w")
    anonymous.process(chunk(0, lead[:360]), 0.0, 1_700_000_000.0)  # arrival of its last sample
    assert anonymous.wall_time(360) == pytest.approx(1_700_000_000.0)


def test_counters_and_reset() -> None:
    session = IngestSession("s", CONFIG, "w")
    session.count_malformed()
    session.count_dropped()
    assert (session.ingest().malformed, session.ingest().dropped) == (1, 1)
    session.reset()
    fresh = IngestSession("s", CONFIG, "w")
    assert session.ingest() == fresh.ingest()
    with pytest.raises(ValueError, match="stream 'x'"):
        session.process(RawMessage.from_counts("x", 0, 360.0, [0], gain=GAIN), 0.0, 0.0)


@pytest.mark.parametrize("module", [ingest, serve])
def test_doctests_pass(module: object) -> None:
    failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert tried > 0
    assert failures == 0
