"""The optional signal-quality fields of the wire contract: ``sqi``/``sqi_issue`` and ``signal``."""

from __future__ import annotations

import json
from dataclasses import replace

import msgspec
import pytest

from ecg_stream import wire
from ecg_stream.classify.classifier import UNCLASSIFIABLE
from ecg_stream.errors import PayloadError
from ecg_stream.types import BeatClass, BeatQuality, LabeledBeat, SignalIssue, SignalState
from ecg_stream.wire import BeatMessage, StatusMessage
from tests.test_wire import STATUS, make_beat, make_beat_message


def quality_message(quality: BeatQuality) -> BeatMessage:
    beat = make_beat()
    window = replace(beat.window, quality=quality)
    probabilities = beat.probabilities if quality.usable else UNCLASSIFIABLE
    return BeatMessage.from_beat(
        LabeledBeat(window=window, probabilities=probabilities),
        stream="100",
        record="100",
        sample=370,
        chain_sample=370,
        time_s=1.25,
        r_wall_time=1_764_028_800.25,
        compute_ms=1.25,
        published_at=1_764_028_800.5,
    )


def test_a_beat_without_quality_encodes_as_before() -> None:
    payload = json.loads(wire.encode(make_beat_message()))
    assert "sqi" not in payload
    assert "sqi_issue" not in payload
    decoded = wire.decode("ecg/100/beats", wire.encode(make_beat_message()))
    assert isinstance(decoded, BeatMessage)
    assert (decoded.sqi, decoded.sqi_issue) == (None, None)


@pytest.mark.parametrize(
    "quality",
    [
        BeatQuality(0.93),
        BeatQuality(0.0, SignalIssue.LEAD_OFF),
        BeatQuality(0.2, SignalIssue.NOISE),
    ],
)
def test_quality_round_trips(quality: BeatQuality) -> None:
    message = quality_message(quality)
    payload = json.loads(wire.encode(message))
    assert payload["sqi"] == quality.sqi
    assert payload.get("sqi_issue") == (quality.issue.value if quality.issue else None)
    decoded = wire.decode("ecg/100/beats", wire.encode(message))
    assert decoded == message
    if not quality.usable:
        assert message.label is BeatClass.Q
        assert message.confidence == 1.0


def test_an_old_subscriber_reads_a_beat_with_quality() -> None:
    payload = json.loads(wire.encode(quality_message(BeatQuality(0.0, SignalIssue.CLIPPED))))
    known = json.loads(wire.encode(make_beat_message()))
    assert set(known) <= set(payload)  # only fields added, none changed


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sqi": 1.5}, "sqi"),
        ({"sqi_issue": "unplugged"}, "sqi_issue"),
        ({"sqi_issue": "noise"}, "label 'S'"),  # an unusable beat is labelled Q
    ],
)
def test_bad_quality_is_refused(change: dict[str, object], message: str) -> None:
    payload = json.loads(wire.encode(quality_message(BeatQuality(0.8))))
    payload.update(change)
    with pytest.raises(PayloadError, match=message):
        wire.decode("ecg/100/beats", json.dumps(payload))


def test_status_signal_is_optional_and_round_trips() -> None:
    assert "signal" not in json.loads(wire.encode(STATUS))
    for state in SignalState:
        message = msgspec.structs.replace(STATUS, signal=state)
        assert json.loads(wire.encode(message))["signal"] == state.value
        assert wire.decode("ecg/100/status", wire.encode(message)) == message
    payload = json.loads(wire.encode(STATUS)) | {"signal": "sparkly"}
    with pytest.raises(PayloadError, match="signal"):
        wire.decode("ecg/100/status", json.dumps(payload))
    decoded = wire.decode("ecg/100/status", wire.encode(STATUS))
    assert isinstance(decoded, StatusMessage)
    assert decoded.signal is None
