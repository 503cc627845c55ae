"""The wire contract's codec, without a broker."""

from __future__ import annotations

import base64
import doctest
import json
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from ecg_stream import wire
from ecg_stream.errors import ConfigError, PayloadError
from ecg_stream.types import (
    BEAT_CLASSES,
    BeatClass,
    BeatWindow,
    LabeledBeat,
    MorphologyFeatures,
    RPeak,
    RRFeatures,
)
from ecg_stream.wire import (
    BeatMessage,
    SamplesMessage,
    StatusMessage,
    StreamState,
    TopicKind,
)


def make_beat(rr_ms: float = 800.0, peak_index: int = 370) -> LabeledBeat:
    window = BeatWindow(
        peak=RPeak(index=peak_index, decided_index=peak_index + 60),
        samples=np.zeros(250),
        rr=RRFeatures(rr_ms=rr_ms, local_mean_rr_ms=810.0, long_mean_rr_ms=820.0),
        morphology=MorphologyFeatures(template_correlation=1.0, amplitude_ratio=1.0),
        ready_index=peak_index + 160,
    )
    return LabeledBeat(window=window, probabilities=(0.05, 0.9, 0.03, 0.01, 0.01))


def make_beat_message(rr_ms: float = 800.0) -> BeatMessage:
    return BeatMessage.from_beat(
        make_beat(rr_ms),
        stream="100",
        record="100",
        sample=370,
        time_s=370 / 360,
        r_wall_time=1_764_028_800.25,
        compute_ms=1.25,
        published_at=1_764_028_800.5,
    )


STATUS = StatusMessage(
    stream="100",
    state=StreamState.ONLINE,
    record="100",
    fs_hz=360.0,
    model="beat_lstm",
    classes=BEAT_CLASSES,
)


def test_doctests_pass() -> None:
    result = doctest.testmod(wire)
    assert result.attempted > 0
    assert result.failed == 0


def test_beat_round_trips() -> None:
    message = make_beat_message()
    decoded = wire.decode("ecg/100/beats", wire.encode(message))
    assert isinstance(decoded, BeatMessage)
    assert decoded.label is BeatClass.S
    assert decoded.confidence == pytest.approx(0.9)
    assert decoded.probabilities == pytest.approx(message.probabilities)
    assert decoded.hr_bpm == pytest.approx(75.0)
    assert decoded.rr_ms == pytest.approx(800.0)
    assert (decoded.sample, decoded.chain_sample) == (370, 370)
    assert decoded.time_s == pytest.approx(370 / 360, abs=1e-6)
    assert decoded.compute_ms == pytest.approx(1.25)


def test_beat_payload_starts_with_version_and_has_every_contract_field() -> None:
    obj = json.loads(wire.encode(make_beat_message()))
    assert next(iter(obj)) == "v"
    assert obj["v"] == wire.SCHEMA_VERSION
    assert set(obj) >= {
        "stream",
        "record",
        "sample",
        "chain_sample",
        "time_s",
        "r_wall_time",
        "label",
        "confidence",
        "p",
        "rr_ms",
        "hr_bpm",
        "compute_ms",
        "published_at",
    }
    assert list(obj["p"]) == ["N", "S", "V", "F", "Q"]


def test_first_beat_has_null_rr_and_heart_rate() -> None:
    message = make_beat_message(rr_ms=math.nan)
    obj = json.loads(wire.encode(message))
    assert obj["rr_ms"] is None
    assert obj["hr_bpm"] is None
    decoded = wire.decode_beat(wire.encode(message))
    assert (decoded.rr_ms, decoded.hr_bpm) == (None, None)


def test_unstamped_beat_does_not_encode() -> None:
    message = replace(make_beat_message(), compute_ms=math.nan)
    with pytest.raises(PayloadError, match="beats message of stream '100'"):
        wire.encode(message)


def test_samples_round_trip_in_microvolt_counts() -> None:
    rng = np.random.default_rng(4)
    samples_mv = rng.normal(0.0, 1.0, size=36)
    message = SamplesMessage.from_mv("100", 3600, 360.0, samples_mv, scale_uv=1.0)
    decoded = wire.decode("ecg/100/samples", wire.encode(message))
    assert decoded == message
    assert isinstance(decoded, SamplesMessage)
    np.testing.assert_allclose(decoded.samples_mv, samples_mv, atol=0.5e-3)
    assert decoded.end_index == 3636


def test_samples_data_is_little_endian_int16() -> None:
    message = SamplesMessage.from_mv("7", 0, 360.0, np.array([1.0, -0.002]), scale_uv=2.0)
    obj = json.loads(wire.encode(message))
    assert base64.b64decode(obj["data"]) == b"\xf4\x01\xff\xff"  # 500, -1 counts of 2 uV


def test_samples_clip_to_int16_range() -> None:
    message = SamplesMessage.from_mv("1", 0, 360.0, np.array([100.0, -100.0]), scale_uv=1.0)
    assert message.counts.tolist() == [32767, -32768]


def test_status_round_trips() -> None:
    for state in StreamState:
        status = replace(STATUS, state=state)
        assert wire.decode("site/a/ecg/100/status", wire.encode(status)) == status


@pytest.mark.parametrize(
    ("kind", "qos", "retain"),
    [(TopicKind.BEATS, 1, False), (TopicKind.SAMPLES, 0, False), (TopicKind.STATUS, 1, True)],
)
def test_topic_kinds_carry_qos_and_retain(kind: TopicKind, qos: int, retain: bool) -> None:
    assert (kind.qos, kind.retain) == (qos, retain)


def test_topics_are_built_and_parsed() -> None:
    topic = wire.topic_for("site1/ecg", "bed-12", TopicKind.BEATS)
    assert topic == "site1/ecg/bed-12/beats"
    assert wire.parse_topic(topic) == wire.TopicParts("site1/ecg", "bed-12", TopicKind.BEATS)
    assert wire.subscription_for("ecg", "100", None) == "ecg/100/+"


@pytest.mark.parametrize("stream", ["", "a/b", "a+", "#", "x\x00"])
def test_bad_stream_ids_are_refused(stream: str) -> None:
    with pytest.raises(ConfigError, match="stream id"):
        wire.topic_for("ecg", stream, TopicKind.BEATS)


@pytest.mark.parametrize("prefix", ["", "/ecg", "ecg/", "a//b", "ecg/+"])
def test_bad_topic_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ConfigError, match="topic prefix"):
        wire.topic_for(prefix, "100", TopicKind.BEATS)


@pytest.mark.parametrize("topic", ["ecg/100", "100/beats", "ecg/100/other", "ecg//beats"])
def test_foreign_topics_are_refused(topic: str) -> None:
    with pytest.raises(PayloadError, match="not an ecg-stream topic"):
        wire.parse_topic(topic)


def test_stream_of_payload_must_match_topic() -> None:
    with pytest.raises(PayloadError, match="payload says stream '100'"):
        wire.decode("ecg/200/status", wire.encode(STATUS))


def beat_obj() -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(wire.encode(make_beat_message()))
    return obj


def with_field(name: str, value: object) -> bytes:
    obj = beat_obj()
    obj[name] = value
    return json.dumps(obj).encode()


def without_field(name: str) -> bytes:
    obj = beat_obj()
    del obj[name]
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"{not json", "not UTF-8 JSON"),
        (b"[1, 2]", "JSON list, expected an object"),
        (without_field("v"), "no schema version"),
        (with_field("v", 2), "schema version 2"),
        (with_field("v", True), "schema version True"),
        (without_field("label"), "lacks required field 'label'"),
        (with_field("label", "X"), "'label' is 'X'"),
        (with_field("sample", -1), "'sample' is -1, expected >= 0"),
        (with_field("sample", 1.5), "'sample' is 1.5, expected integer"),
        (with_field("sample", True), "expected integer"),
        (with_field("time_s", "1.0"), "expected integer or number"),
        (with_field("p", {"N": 0.5}), "lacks required field 'p.S'"),
        (with_field("p", {"N": 0.9, "S": 0.9, "V": 0, "F": 0, "Q": 0}), "sum to 1.8"),
        (with_field("p", {"N": 1.5, "S": 0, "V": 0, "F": 0, "Q": 0}), "'p.N' is 1.5"),
        (with_field("confidence", 0.5), "differs from p"),
        (with_field("rr_ms", 0), "'rr_ms' is 0.0, expected > 0"),
        (without_field("rr_ms"), "lacks required field 'rr_ms'"),
        (b'{"v": 1, "stream": "100", "time_s": NaN}', "NaN is not a JSON number"),
    ],
)
def test_malformed_beats_raise_payload_error(payload: bytes, match: str) -> None:
    with pytest.raises(PayloadError, match=match):
        wire.decode("ecg/100/beats", payload)


def test_extra_fields_are_ignored() -> None:
    decoded = wire.decode("ecg/100/beats", with_field("future_field", [1, 2]))
    assert isinstance(decoded, BeatMessage)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"data": "***"}, "not valid base64"),
        ({"data": base64.b64encode(b"abc").decode()}, "3 bytes"),
        ({"fs_hz": 0}, "'fs_hz' is 0.0, expected > 0"),
        ({"start_index": "0"}, "expected integer"),
    ],
)
def test_malformed_samples_raise_payload_error(change: dict[str, object], match: str) -> None:
    obj = json.loads(wire.encode(SamplesMessage.from_mv("100", 0, 360.0, np.zeros(4), 1.0)))
    obj.update(change)
    with pytest.raises(PayloadError, match=match):
        wire.decode("ecg/100/samples", json.dumps(obj))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"state": "sleeping"}, "'state' is 'sleeping'"),
        ({"classes": ["N", "Z"]}, "'classes' is"),
        ({"classes": ["N", "N"]}, "repeats a class"),
        ({"classes": []}, "'classes' is"),
        ({"model": ""}, "'model' is empty"),
    ],
)
def test_malformed_status_raises_payload_error(change: dict[str, object], match: str) -> None:
    obj = json.loads(wire.encode(STATUS))
    obj.update(change)
    with pytest.raises(PayloadError, match=match):
        wire.decode("ecg/100/status", json.dumps(obj))
