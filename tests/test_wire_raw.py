"""The ingest contract (``raw`` topic) and the status's ingest counters, without a broker."""

from __future__ import annotations

import base64
import json
from typing import Any

import msgspec
import numpy as np
import pytest

from ecg_stream import wire
from ecg_stream.errors import PayloadError
from ecg_stream.types import BEAT_CLASSES
from ecg_stream.wire import (
    RawEncoding,
    RawMessage,
    StatusMessage,
    StreamState,
    TopicKind,
)
from tests.golden.wire_cases import INGEST

RAW = RawMessage.from_counts(
    "bed1",
    36_000,
    250.0,
    np.array([0, 200, -150, 32767, -32768]),
    gain=200.0,
    lead="MLII",
    t0=1.7e9,
)

# Change aversion: the exact bytes of a raw message, as a device must write them.
GOLDEN_RAW = (
    b'{"v":1,"stream":"bed1","start_index":36000,"fs_hz":250.0,"encoding":"int16",'
    b'"gain":200.0,"data":"AADIAGr//38AgA==","lead":"MLII","t0":1700000000.0}'
)


def payload_of(message: RawMessage, **change: Any) -> str:
    obj = json.loads(wire.encode(message))
    for name, value in change.items():
        if value is ...:
            del obj[name]
        else:
            obj[name] = value
    return json.dumps(obj)


def test_raw_golden_payload() -> None:
    assert wire.encode(RAW) == GOLDEN_RAW
    assert wire.decode_raw("ecg/bed1/raw", GOLDEN_RAW) == RAW


def test_raw_topic_kind() -> None:
    assert wire.topic_for("ecg", "bed1", TopicKind.RAW) == "ecg/bed1/raw"
    assert wire.subscription_for("site/ecg", None, TopicKind.RAW) == "site/ecg/+/raw"
    assert wire.parse_topic("site/ecg/bed1/raw").kind is TopicKind.RAW
    assert (TopicKind.RAW.qos, TopicKind.RAW.retain) == (1, False)
    assert TopicKind.RAW not in wire.OUTPUT_KINDS
    assert wire.kind_of(RAW) is TopicKind.RAW


@pytest.mark.parametrize("fs_hz", [100.0, 128.0, 250.0, 360.0, 500.0, 1000.0])
def test_int16_round_trip(fs_hz: float, rng: np.random.Generator) -> None:
    counts = rng.integers(-32768, 32768, size=100)
    message = RawMessage.from_counts("d", 7, fs_hz, counts, gain=1000.0)
    decoded = wire.decode_raw("ecg/d/raw", wire.encode(message))
    assert decoded == message
    np.testing.assert_array_equal(decoded.millivolts(), counts / 1000.0)
    assert (decoded.lead, decoded.t0, decoded.end_index) == (None, None, 107)


def test_float32_round_trip(rng: np.random.Generator) -> None:
    mv = rng.normal(0.0, 1.0, size=250).astype(np.float32)
    message = RawMessage.from_mv("d", 0, 500.0, mv, lead="II")
    decoded = wire.decode_raw("ecg/d/raw", wire.encode(message))
    assert decoded == message
    assert decoded.encoding is RawEncoding.FLOAT32
    assert decoded.gain is None
    np.testing.assert_array_equal(decoded.millivolts(), mv.astype(np.float64))


def float32_data(values: list[float]) -> str:
    return base64.b64encode(np.array(values, "<f4").tobytes()).decode()


FLOAT32 = RawMessage.from_mv("bed1", 0, 250.0, np.zeros(4))


@pytest.mark.parametrize(
    ("message", "change", "expected"),
    [
        (RAW, {"fs_hz": 50.0}, "fs_hz"),
        (RAW, {"fs_hz": 1000.5}, "fs_hz"),
        (RAW, {"fs_hz": "250"}, "fs_hz"),
        (RAW, {"start_index": -1}, "start_index"),
        (RAW, {"start_index": 2**53}, "start_index"),
        (RAW, {"start_index": 2**53 - 2}, "a device's clock may count"),
        (RAW, {"start_index": 10**12}, "a device's clock may count"),  # 127 years at 250 Hz
        (RAW, {"t0": 1e12}, "2100-01-01"),
        (RAW, {"encoding": "int24"}, "encoding"),
        (RAW, {"gain": ...}, "gain"),
        (RAW, {"gain": 0}, "gain"),
        (RAW, {"gain": 1e9}, "gain"),
        (RAW, {"data": ""}, "0 samples"),
        (RAW, {"data": "AAA"}, "base64"),
        (RAW, {"data": base64.b64encode(b"abc").decode()}, "3 bytes"),
        (RAW, {"data": base64.b64encode(bytes(2 * 10_001)).decode()}, "10001 samples"),
        (RAW, {"lead": "x" * 33}, "lead"),
        (RAW, {"lead": 5}, "lead"),
        (RAW, {"t0": -1.0}, "t0"),
        (RAW, {"stream": "bed2"}, "payload says stream 'bed2'"),
        (RAW, {"v": 2}, "schema version"),
        (FLOAT32, {"data": float32_data([0.0, float("nan")])}, "sample 1 is nan"),
        (FLOAT32, {"data": float32_data([float("inf")])}, "finite"),
        (FLOAT32, {"data": float32_data([1e5])}, "32768"),
        (FLOAT32, {"gain": 200.0}, "'gain' is for int16"),
        (FLOAT32, {"data": base64.b64encode(bytes(6)).decode()}, "float32 samples"),
    ],
)
def test_raw_decoder_refuses(message: RawMessage, change: dict[str, Any], expected: str) -> None:
    with pytest.raises(PayloadError, match=expected) as caught:
        wire.decode_raw("ecg/bed1/raw", payload_of(message, **change))
    assert str(caught.value).startswith("ecg/bed1/raw: ")


@pytest.mark.parametrize(
    "payload", [b"", b"\xff\xfe", b"[]", b"{", b"[" * 100_000, b'{"v":1}', b"x" * (2 << 20)]
)
def test_raw_decoder_never_raises_anything_else(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        wire.decode_raw("ecg/bed1/raw", payload)


def test_topics_of_the_other_kind_are_refused() -> None:
    with pytest.raises(PayloadError, match="decode_raw"):
        wire.decode("ecg/bed1/raw", GOLDEN_RAW)
    with pytest.raises(PayloadError, match="use decode"):
        wire.decode_raw("ecg/bed1/beats", GOLDEN_RAW)
    with pytest.raises(PayloadError, match="not an ecg-stream topic"):
        wire.decode_raw("ecg/bed1/rawdata", GOLDEN_RAW)


def test_raw_message_checks_its_arrays() -> None:
    with pytest.raises(ValueError, match="int16"):
        RawMessage(
            stream="d",
            start_index=0,
            fs_hz=250.0,
            encoding=RawEncoding.INT16,
            data=np.zeros(3, np.float32),
            gain=200.0,
        )
    with pytest.raises(ValueError, match="gain"):
        RawMessage(
            stream="d",
            start_index=0,
            fs_hz=250.0,
            encoding=RawEncoding.FLOAT32,
            data=np.zeros(3, np.float32),
            gain=200.0,
        )
    with pytest.raises(ValueError, match="beyond int16"):
        RawMessage.from_counts("d", 0, 250.0, np.array([40_000]), gain=200.0)


STATUS = StatusMessage(
    stream="bed1",
    state=StreamState.ONLINE,
    record="bed1",
    fs_hz=360.0,
    model="beat_lstm",
    classes=BEAT_CLASSES,
    ingest=INGEST,
)


def test_status_with_ingest_round_trip() -> None:
    payload = wire.encode(STATUS)
    assert json.loads(payload)["ingest"]["gaps"] == 1
    assert wire.decode("ecg/bed1/status", payload) == STATUS


def test_status_without_ingest_is_unchanged_on_the_wire() -> None:
    plain = msgspec.structs.replace(STATUS, ingest=None)
    assert "ingest" not in json.loads(wire.encode(plain))
    assert wire.decode("ecg/bed1/status", wire.encode(plain)) == plain


@pytest.mark.parametrize(
    ("ingest", "expected"),
    [
        ([], "ingest"),
        ({"worker": "w", "device_fs_hz": 250.0}, "chunks"),
        ({**msgspec.to_builtins(STATUS.ingest), "gaps": -1}, "ingest.gaps"),
        ({**msgspec.to_builtins(STATUS.ingest), "interleaved": 1}, "interleaved"),
    ],
)
def test_status_ingest_is_validated(ingest: object, expected: str) -> None:
    obj = json.loads(wire.encode(STATUS))
    obj["ingest"] = ingest
    with pytest.raises(PayloadError, match=expected):
        wire.decode("ecg/bed1/status", json.dumps(obj))
