"""Shared pieces of the viewer tests: wire messages as a publisher would send them."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ecg_stream.types import BEAT_CLASSES, BeatClass, EventState, RhythmKind
from ecg_stream.wire import (
    BeatMessage,
    ClassProbabilities,
    EventMessage,
    SamplesMessage,
    StatusMessage,
    StreamState,
    WireMessage,
    encode,
    kind_of,
    topic_for,
)


def status(
    stream: str, state: StreamState = StreamState.ONLINE, rhythm: RhythmKind | None = None
) -> StatusMessage:
    return StatusMessage(stream, state, stream, 360.0, "beat_lstm", BEAT_CLASSES, rhythm=rhythm)


def event(
    stream: str,
    rhythm: RhythmKind,
    state: EventState,
    chain_sample: int,
    *,
    beats: int = 6,
    rate_bpm: float | None = 150.0,
    detail: str | None = None,
    wall_time: float = 1.7e9,
) -> EventMessage:
    """An event of the stream's rhythm stage; its wall time is ``wall_time`` + the sample's."""
    return EventMessage(
        stream=stream,
        record=stream,
        rhythm=rhythm,
        state=state,
        sample=chain_sample,
        chain_sample=chain_sample,
        time_s=chain_sample / 360.0,
        wall_time=wall_time + chain_sample / 360.0,
        delay_s=0.5,
        beats=beats,
        rate_bpm=rate_bpm,
        detail=detail,
    )


def samples(stream: str, start_index: int, values_mv: npt.NDArray[np.float64]) -> SamplesMessage:
    return SamplesMessage.from_mv(stream, start_index, 360.0, values_mv, 1.0)


def beat(
    stream: str,
    chain_sample: int,
    label: BeatClass = BeatClass.N,
    *,
    rr_ms: float | None = 800.0,
    confidence: float = 0.96,
    compute_ms: float = 2.0,
    published_at: float = 1.7e9,
) -> BeatMessage:
    rest = (1.0 - confidence) / 4
    probabilities = [rest] * 5
    probabilities[label.index] = confidence
    return BeatMessage(
        stream=stream,
        record=stream,
        sample=chain_sample,
        chain_sample=chain_sample,
        time_s=chain_sample / 360.0,
        r_wall_time=published_at - 0.5,
        label=label,
        confidence=confidence,
        probabilities=ClassProbabilities(*probabilities),
        rr_ms=rr_ms,
        hr_bpm=None if rr_ms is None else 60_000 / rr_ms,
        compute_ms=compute_ms,
        published_at=published_at,
    )


def rhythm_payloads(
    stream: str, seconds: float, rr_s: float = 0.8, v_every: int = 4
) -> list[tuple[str, bytes]]:
    """Wire payloads of a simple rhythm, in publication order: status, then chunks and beats.

    Every ``rr_s`` an R peak (a 1.5 mV spike); every ``v_every``-th beat is labeled V. A beat
    is published with the chunk that completes 160 samples after its R peak, as the chain does.
    """
    fs_hz, chunk = 360.0, 36
    total = round(seconds * fs_hz)
    peaks = np.arange(round(0.5 * fs_hz), total, round(rr_s * fs_hz))
    signal = 0.1 * np.sin(2 * np.pi * np.arange(total) / fs_hz)
    signal[peaks] += 1.5
    payloads = [wire(status(stream))]
    published = 0
    for start in range(0, total - chunk + 1, chunk):
        payloads.append(wire(samples(stream, start, signal[start : start + chunk])))
        while published < peaks.size and peaks[published] + 160 <= start + chunk:
            label = BeatClass.V if published % v_every == v_every - 1 else BeatClass.N
            rr_ms = None if published == 0 else rr_s * 1000
            payloads.append(wire(beat(stream, int(peaks[published]), label, rr_ms=rr_ms)))
            published += 1
    return payloads


def wire(message: WireMessage) -> tuple[str, bytes]:
    """Topic and payload of a message."""
    return topic_for("ecg", message.stream, kind_of(message)), encode(message)
