"""The wire contract's codec, without a broker."""

from __future__ import annotations

import base64
import doctest
import json
import math
from collections.abc import Callable
from typing import Any

import msgspec
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
        chain_sample=370,
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


def test_a_non_finite_number_does_not_encode() -> None:
    message = msgspec.structs.replace(make_beat_message(), compute_ms=math.nan)
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


def test_samples_message_takes_int16_counts_only() -> None:
    with pytest.raises(ValueError, match="int16"):
        SamplesMessage("1", 0, 360.0, 1.0, np.zeros(3, np.int64))


def test_status_round_trips() -> None:
    for state in StreamState:
        status = msgspec.structs.replace(STATUS, state=state)
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
        (b"\xff\xfe", "JSON"),
        (b"{not json", "JSON"),
        (b"[1, 2]", "object"),
        (without_field("v"), "schema version"),
        (with_field("v", 2), "schema version"),
        (with_field("v", True), "schema version"),
        (without_field("label"), "label"),
        (with_field("label", "X"), "label"),
        (with_field("sample", -1), "sample"),
        (with_field("sample", 1.5), "sample"),
        (with_field("sample", True), "sample"),
        (with_field("time_s", "1.0"), "time_s"),
        (with_field("p", {"N": 0.5}), "p"),
        (with_field("p", {"N": 0.9, "S": 0.9, "V": 0, "F": 0, "Q": 0}), "sum to 1.8"),
        (with_field("p", {"N": 1.5, "S": 0, "V": 0, "F": 0, "Q": 0}), "p.N"),
        (with_field("confidence", 0.5), "confidence"),
        (with_field("rr_ms", 0), "rr_ms"),
        (without_field("rr_ms"), "rr_ms"),
        (b'{"v": 1, "stream": "100", "time_s": NaN}', "JSON"),
    ],
)
def test_malformed_beats_raise_payload_error(payload: bytes, match: str) -> None:
    with pytest.raises(PayloadError, match=match) as caught:
        wire.decode("ecg/100/beats", payload)
    assert str(caught.value).startswith("ecg/100/beats: ")


def test_extra_fields_are_ignored() -> None:
    decoded = wire.decode("ecg/100/beats", with_field("future_field", [1, 2]))
    assert isinstance(decoded, BeatMessage)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"data": "***"}, "base64"),
        ({"data": base64.b64encode(b"abc").decode()}, "3 bytes"),
        ({"fs_hz": 0}, "fs_hz"),
        ({"start_index": "0"}, "start_index"),
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
        ({"state": "sleeping"}, "state"),
        ({"classes": ["N", "Z"]}, "classes"),
        ({"classes": ["N", "N"]}, "repeats a class"),
        ({"classes": []}, "classes"),
        ({"model": ""}, "model"),
    ],
)
def test_malformed_status_raises_payload_error(change: dict[str, object], match: str) -> None:
    obj = json.loads(wire.encode(STATUS))
    obj.update(change)
    with pytest.raises(PayloadError, match=match):
        wire.decode("ecg/100/status", json.dumps(obj))


# Every class of malformed payload is refused with a PayloadError (issue 13), whatever the bytes.


def samples_obj() -> dict[str, Any]:
    message = SamplesMessage.from_mv("100", 0, 360.0, np.zeros(4), 1.0)
    obj: dict[str, Any] = json.loads(wire.encode(message))
    return obj


def status_obj() -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(wire.encode(STATUS))
    return obj


VALID_PAYLOADS: dict[str, Callable[[], dict[str, Any]]] = {
    "ecg/100/beats": beat_obj,
    "ecg/100/samples": samples_obj,
    "ecg/100/status": status_obj,
}


def changed(topic: str, **fields: object) -> bytes:
    obj: dict[str, Any] = VALID_PAYLOADS[topic]()
    obj.update(fields)
    return json.dumps(obj).encode()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_valid_payloads_are_encoded_byte_for_byte_as_in_contract_version_1() -> None:
    """Change aversion: the bytes of contract version 1 stay as they are."""
    assert wire.encode(make_beat_message()) == (
        b'{"v":1,"stream":"100","record":"100","sample":370,"chain_sample":370,'
        b'"time_s":1.027778,"r_wall_time":1764028800.25,"label":"S","confidence":0.9,'
        b'"p":{"N":0.05,"S":0.9,"V":0.03,"F":0.01,"Q":0.01},"rr_ms":800.0,"hr_bpm":75.0,'
        b'"compute_ms":1.25,"published_at":1764028800.5}'
    )
    assert wire.encode(STATUS) == (
        b'{"v":1,"stream":"100","state":"online","record":"100","fs_hz":360.0,'
        b'"model":"beat_lstm","classes":["N","S","V","F","Q"]}'
    )
    samples = SamplesMessage.from_mv("100", 3600, 360.0, np.array([0.5, -1.25, 0.001]), 1.0)
    assert wire.encode(samples) == (
        b'{"v":1,"stream":"100","start_index":3600,"fs_hz":360.0,"scale_uv":1.0,"data":"9AEe+wEA"}'
    )


@pytest.mark.parametrize("topic", list(VALID_PAYLOADS))
@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (nested(1024), "nests arrays or objects too deeply"),  # the 2 kB of the issue
        (nested(100_000), "nests arrays or objects too deeply"),
        (b'{"v": 1, "extra": ' + nested(5000) + b"}", "nests arrays or objects too deeply"),
        (b'{"v": 1, "extra": ' + b'{"a": ' * 5000 + b"0" + b"}" * 5001, "too deeply"),
    ],
)
def test_deeply_nested_json_is_refused(topic: str, payload: bytes, match: str) -> None:
    with pytest.raises(PayloadError, match=match):
        wire.decode(topic, payload)


@pytest.mark.parametrize("topic", list(VALID_PAYLOADS))
def test_nested_garbage_in_a_field_is_refused_without_expanding_it(topic: str) -> None:
    field = {"ecg/100/beats": "label", "ecg/100/samples": "data", "ecg/100/status": "state"}
    payload = changed(topic, **{field[topic]: json.loads(nested(wire.MAX_JSON_DEPTH - 1))})
    with pytest.raises(PayloadError, match=field[topic]) as caught:
        wire.decode(topic, payload)
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize("topic", list(VALID_PAYLOADS))
@pytest.mark.parametrize("payload", [b"[]", b'"text"', b"42", b"null", b"true", b"[{}]"])
def test_json_that_is_not_an_object_is_refused(topic: str, payload: bytes) -> None:
    with pytest.raises(PayloadError, match="object"):
        wire.decode(topic, payload)


@pytest.mark.parametrize("topic", list(VALID_PAYLOADS))
def test_oversized_payloads_are_refused_before_parsing(topic: str) -> None:
    payload = changed(topic, extra="x" * wire.MAX_PAYLOAD_BYTES)
    with pytest.raises(PayloadError, match=f"more than the {wire.MAX_PAYLOAD_BYTES}"):
        wire.decode(topic, payload)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b'{"v": 1, "time_s": NaN}', "JSON"),
        (b'{"v": 1, "time_s": Infinity}', "JSON"),
        (b'{"v": 1, "time_s": -Infinity}', "JSON"),
        (b'{"v": 1, "time_s": 1e999}', "range"),
        (b'{"v": 1, "time_s": -1' + b"0" * 400 + b".5}", "range"),
        (b'{"v": 1e999}', "range"),
        (b'{"v": 1, "sample": 1' + b"0" * 5000 + b"}", "range"),  # int digit limit
        (with_field("v", 1.0), "schema version"),
        (with_field("time_s", 10**400), "time_s"),
        (with_field("sample", 2**53), "sample"),
        (with_field("sample", 10**400), "sample"),
        (with_field("chain_sample", -360), "chain_sample"),
        (with_field("time_s", -0.5), "time_s"),
        (with_field("compute_ms", -1), "compute_ms"),
        (with_field("published_at", -1), "published_at"),
        (with_field("rr_ms", -800.0), "rr_ms"),
        (with_field("hr_bpm", 0), "hr_bpm"),
        (with_field("confidence", 1.5), "confidence"),
        (with_field("confidence", -0.1), "confidence"),
        (with_field("p", {"N": -0.1, "S": 1.1, "V": 0, "F": 0, "Q": 0}), "p.N"),
        (with_field("p", {"N": 0.1, "S": 0.1, "V": 0, "F": 0, "Q": 0}), "sum to 0.2"),
        (with_field("p", [0.05, 0.9, 0.03, 0.01, 0.01]), "p"),
        (with_field("label", 3), "label"),
        (with_field("stream", None), "stream"),
        (with_field("record", ""), "record"),
    ],
)
def test_non_finite_huge_and_absurd_beat_values_are_refused(payload: bytes, match: str) -> None:
    with pytest.raises(PayloadError, match=match):
        wire.decode("ecg/100/beats", payload)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"fs_hz": 49.9}, "fs_hz"),
        ({"fs_hz": 10_000.5}, "fs_hz"),
        ({"fs_hz": -360}, "fs_hz"),
        ({"fs_hz": 10**400}, "fs_hz"),
        ({"scale_uv": 0}, "scale_uv"),
        ({"scale_uv": 1e300}, "scale_uv"),
        ({"start_index": -36}, "start_index"),
        ({"start_index": 2**60}, "start_index"),
        ({"data": None}, "data"),
        ({"data": [1, 2, 3]}, "data"),
        (
            {"data": base64.b64encode(bytes(2 * wire.MAX_SAMPLES_PER_MESSAGE + 2)).decode()},
            f"holds {wire.MAX_SAMPLES_PER_MESSAGE + 1} samples, expected at most",
        ),
    ],
)
def test_absurd_samples_values_are_refused(change: dict[str, object], match: str) -> None:
    with pytest.raises(PayloadError, match=match):
        wire.decode("ecg/100/samples", changed("ecg/100/samples", **change))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"fs_hz": 5.0}, "fs_hz"),
        ({"state": ["online"]}, "state"),
        ({"classes": "NSVFQ"}, "classes"),
        ({"classes": [["N"], "S"]}, "classes"),
        ({"classes": ["N", 1]}, "classes"),
    ],
)
def test_absurd_status_values_are_refused(change: dict[str, object], match: str) -> None:
    with pytest.raises(PayloadError, match=match):
        wire.decode("ecg/100/status", changed("ecg/100/status", **change))


def test_bounds_themselves_are_valid() -> None:
    low, high = (50.0, 10_000.0)
    for fs_hz in (low, high):
        message = SamplesMessage.from_mv("100", wire.MAX_INDEX, fs_hz, np.zeros(2), 1000.0)
        assert wire.decode("ecg/100/samples", wire.encode(message)) == message
    longest = SamplesMessage.from_mv("100", 0, 360.0, np.zeros(wire.MAX_SAMPLES_PER_MESSAGE), 1)
    payload = wire.encode(longest)
    assert len(payload) < wire.MAX_PAYLOAD_BYTES
    assert wire.decode("ecg/100/samples", payload) == longest
    assert isinstance(
        wire.decode("ecg/100/beats", with_field("sample", wire.MAX_INDEX)), BeatMessage
    )


@pytest.mark.parametrize("topic", list(VALID_PAYLOADS))
def test_any_corruption_of_a_valid_payload_decodes_or_raises_payload_error(topic: str) -> None:
    """Property: random byte edits of a valid payload never raise anything but PayloadError."""
    rng = np.random.default_rng(13)
    valid = changed(topic)
    problems: list[str] = []
    alphabet = np.frombuffer(b'{}[]",:0123456789.eE+-ntfaluNIy \\\x00\xff', dtype=np.uint8)
    for _ in range(1500):
        data = bytearray(valid)
        for _ in range(int(rng.integers(1, 6))):
            position = int(rng.integers(0, len(data)))
            action = int(rng.integers(0, 3))
            byte = int(rng.choice(alphabet))
            if action == 0:
                data[position] = byte
            elif action == 1:
                data.insert(position, byte)
            elif len(data) > 1:
                del data[position]
        try:
            wire.decode(topic, bytes(data))
        except PayloadError as error:
            problems.extend([str(error)] if "\n" in str(error) else [])
    assert problems == []  # every message one line
