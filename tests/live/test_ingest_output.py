"""Whatever ``serve`` accepts, it publishes only messages our own decoders take (issue 22).

Any sequence of raw chunks that :func:`ecg_stream.wire.decode_raw` accepts (device clocks far
into their range, any rate, any ``t0``) goes through a device session (ingest, chain,
classifier, rhythm stage); every beat, event and status it hands the sinks, encoded as the
MQTT sink publishes it, must decode.
"""

from __future__ import annotations

import asyncio

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ecg_stream import wire
from ecg_stream.classify.batcher import InferenceBatcher
from ecg_stream.classify.classifier import OnnxBeatClassifier
from ecg_stream.config import CHAIN_FS_HZ, DEFAULT_RHYTHM
from ecg_stream.detector.rhythm import RhythmStage
from ecg_stream.errors import PayloadError
from ecg_stream.live.ingest import IngestSession
from ecg_stream.live.mqtt_sink import event_message, pending
from ecg_stream.live.session import StreamReport, StreamSession
from ecg_stream.live.sinks import BeatCollector
from ecg_stream.records import Record
from ecg_stream.wire import (
    MAX_DEVICE_TIME_S,
    MAX_UNIX_TIME_S,
    RAW_FS_RANGE_HZ,
    IngestStatus,
    RawMessage,
    StatusMessage,
)

PUBLISHED_AT = 1.8e9
CHUNKS = 6


@st.composite
def accepted_chunks(draw: st.DrawFn, counts: np.ndarray) -> list[RawMessage]:
    """Consecutive raw chunks of ``counts`` anywhere in the fields' types, kept only when the
    decoder accepts them (device clocks near their end, ``t0`` near 2100 or far past it)."""
    fs_hz = draw(st.floats(*RAW_FS_RANGE_HZ, allow_nan=False))
    size = min(draw(st.integers(1, 3)) * round(fs_hz), counts.size // CHUNKS)
    end = draw(st.sampled_from([MAX_DEVICE_TIME_S * fs_hz, float(2**53 - 1)]))
    start = draw(
        st.one_of(st.integers(0, 10), st.integers(int(end) - CHUNKS * size - 10, int(end)))
    )
    t0 = draw(st.one_of(st.none(), st.floats(0.0, 1e13), st.just(MAX_UNIX_TIME_S - 1e9)))
    chunks = []
    for k in range(CHUNKS):
        data = counts[k * size : (k + 1) * size]
        message = RawMessage.from_counts("bed1", start + k * size, fs_hz, data, gain=200.0, t0=t0)
        try:
            chunks.append(wire.decode_raw("ecg/bed1/raw", wire.encode(message)))
        except PayloadError:
            assume(False)  # not accepted: nothing to publish
    return chunks


def published(chunks: list[RawMessage], classifier: OnnxBeatClassifier) -> list[tuple[str, bytes]]:
    """Every payload a device session would publish for ``chunks``."""
    collector = BeatCollector()
    first = chunks[0]
    status = StatusMessage.online(
        "bed1", "bed1", classifier.name, IngestStatus.starting("w", first.fs_hz)
    )
    session: StreamSession[RawMessage] = StreamSession(
        IngestSession("bed1", classifier.config, "w"),
        [collector],
        status,
        StreamReport("bed1", "bed1"),
        batcher=InferenceBatcher(classifier),
        rhythm=RhythmStage(DEFAULT_RHYTHM, CHAIN_FS_HZ),
        wall_clock=lambda: PUBLISHED_AT,
    )

    async def run() -> None:
        async with session:
            for k, chunk in enumerate(chunks):
                await session.process(chunk, float(k))

    asyncio.run(run())
    beats = [pending(beat).stamped(1.0, PUBLISHED_AT) for beat in collector.beats["bed1"]]
    events = [event_message(event) for event in collector.events["bed1"]]
    messages: list[wire.WireMessage] = [*beats, *events, *collector.statuses]
    return [
        (wire.topic_for("ecg", "bed1", message.kind), wire.encode(message)) for message in messages
    ]


def lead_counts(record: Record) -> np.ndarray:
    """A minute of record 100 as int16 counts of 1/200 mV."""
    return np.clip(np.rint(record.samples[: 60 * 360] * 200), -32768, 32767).astype(np.int16)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_every_message_of_an_accepted_chunk_sequence_decodes(
    data: st.DataObject, record_100: Record, shipped_classifier: OnnxBeatClassifier
) -> None:
    chunks = data.draw(accepted_chunks(lead_counts(record_100)))
    for topic, payload in published(chunks, shipped_classifier):
        wire.decode(topic, payload)  # raises PayloadError on anything out of the contract


def test_beats_at_the_end_of_a_device_clock_decode(
    record_100: Record, shipped_classifier: OnnxBeatClassifier
) -> None:
    """The last 18 s a 100 Hz device may count, stamped just before 2100: 1e12 was accepted
    before and gave beats every decoder refused."""
    counts, size = lead_counts(record_100), 3 * 360
    start = int(MAX_DEVICE_TIME_S * 100.0) - CHUNKS * size
    t0 = MAX_UNIX_TIME_S - 2 * MAX_DEVICE_TIME_S
    chunks = [
        RawMessage.from_counts(
            "bed1", start + k * size, 100.0, counts[k * size : (k + 1) * size], gain=200.0, t0=t0
        )
        for k in range(CHUNKS)
    ]
    messages = published(chunks, shipped_classifier)
    assert sum(topic.endswith("/beats") for topic, _ in messages) >= 5
    for topic, payload in messages:
        wire.decode(topic, payload)
