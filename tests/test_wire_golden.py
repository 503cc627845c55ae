"""Change aversion: the payloads of contract version 1, valid and malformed.

The golden files were written from the codec as it was before its rewrite on msgspec Structs
(``tests/golden/wire_cases.py``): every valid payload decodes and encodes again byte for byte,
every malformed one is refused with a ``PayloadError`` that starts with its topic (the wording
is msgspec's or the codec's, not part of the contract).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecg_stream import wire
from ecg_stream.errors import PayloadError
from tests.golden.wire_cases import MALFORMED, PAYLOADS, beat, decode_any, loaded, valid_messages

VALID_ROWS: list[dict[str, Any]] = json.loads(PAYLOADS.read_text(encoding="utf-8"))
VALID = {row["name"]: loaded(row, {}) for row in VALID_ROWS}
VALID_BYTES = {
    name: payload.encode() if isinstance(payload, str) else payload
    for name, payload in VALID.items()
}
MALFORMED_ROWS: list[dict[str, Any]] = json.loads(MALFORMED.read_text(encoding="utf-8"))
FLOATS = settings(max_examples=500, deadline=None, database=None)


@pytest.mark.parametrize("row", VALID_ROWS, ids=[row["name"] for row in VALID_ROWS])
def test_golden_payload_decodes_and_encodes_again_byte_for_byte(row: dict[str, Any]) -> None:
    payload = VALID_BYTES[row["name"]]
    assert wire.encode(decode_any(row["topic"], payload)) == payload
    assert wire.encode(decode_any(row["topic"], payload.decode())) == payload


@pytest.mark.parametrize("name", list(VALID))
def test_messages_encode_to_the_golden_payload(name: str) -> None:
    assert wire.encode(valid_messages()[name]) == VALID_BYTES[name]


@pytest.mark.parametrize("row", MALFORMED_ROWS, ids=[row["name"] for row in MALFORMED_ROWS])
def test_malformed_payload_is_refused_naming_its_topic(row: dict[str, Any]) -> None:
    with pytest.raises(PayloadError) as caught:
        decode_any(row["topic"], loaded(row, VALID_BYTES))
    assert str(caught.value).startswith(f"{wire.printable(row['topic'])}: ")


def test_the_corpus_covers_every_kind() -> None:
    """Every kind but ``events``, added after the corpus was captured: its refusals are in
    tests/test_wire_events.py and the fuzz tests."""
    kinds = {row["topic"].rsplit("/", 1)[-1] for row in MALFORMED_ROWS}
    assert kinds >= {kind.value for kind in wire.TopicKind} - {wire.TopicKind.EVENTS.value}
    assert len(MALFORMED_ROWS) > 1000


def test_a_non_finite_number_does_not_encode() -> None:
    with pytest.raises(PayloadError, match="beats message of stream '100'"):
        wire.encode(beat(compute_ms=math.nan))


def field_text(payload: bytes, name: str) -> str:
    """The JSON text of a top-level number field, as written."""
    start = payload.index(f'"{name}":'.encode()) + len(name) + 3
    end = min(payload.find(b",", start) % len(payload), payload.find(b"}", start))
    return payload[start:end].decode()


any_float = st.floats(allow_nan=False, allow_infinity=False)


@FLOATS
@given(time_s=any_float, compute_ms=any_float, rr_ms=any_float, sqi=any_float)
def test_rounded_floats_are_written_as_python_writes_them(
    time_s: float, compute_ms: float, rr_ms: float, sqi: float
) -> None:
    payload = wire.encode(beat(time_s=time_s, compute_ms=compute_ms, rr_ms=rr_ms, sqi=sqi))
    for name, value, digits in [
        ("time_s", time_s, 6),
        ("compute_ms", compute_ms, 4),
        ("rr_ms", rr_ms, 3),
        ("sqi", sqi, 4),
    ]:
        assert field_text(payload, name) == json.dumps(round(value, digits))


@FLOATS
@given(fs_hz=any_float, scale_uv=any_float)
def test_unrounded_floats_are_written_as_python_writes_them(fs_hz: float, scale_uv: float) -> None:
    message = wire.SamplesMessage("s", 0, fs_hz, scale_uv, np.zeros(1, np.int16))
    payload = wire.encode(message)
    assert field_text(payload, "fs_hz") == json.dumps(fs_hz)
    assert field_text(payload, "scale_uv") == json.dumps(scale_uv)
