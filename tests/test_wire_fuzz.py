"""Property-based tests of the wire codec (issue 13): nothing on the wire crashes a reader.

Hypothesis feeds every decoder random bytes, random JSON, mutated valid payloads, deep nesting,
huge and non-finite numbers; each must return a message or raise ``PayloadError`` with one
short line. Valid messages, drawn across the whole contract, round-trip byte for byte.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, TypeAlias

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecg_stream import wire
from ecg_stream.config import SUPPORTED_FS_HZ
from ecg_stream.errors import ConfigError, PayloadError
from ecg_stream.types import BEAT_CLASSES, BeatClass, EventState, RhythmKind
from ecg_stream.wire import (
    BeatMessage,
    ClassProbabilities,
    EventMessage,
    SamplesMessage,
    StatusMessage,
    StreamState,
    TopicKind,
    WireMessage,
)

FUZZ = settings(
    max_examples=300,
    deadline=None,  # two shared cores: timing says nothing here
    database=None,  # no .hypothesis directory in the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MAX_ERROR_CHARS = 600
"""An error names the field and shows a short preview, never the payload."""

Json: TypeAlias = Any
Decoder: TypeAlias = Callable[[str, bytes], object]


def decoders() -> dict[str, tuple[str, Decoder]]:
    """Every decoder of the contract, by topic kind, with a topic it reads."""
    found: dict[str, tuple[str, Decoder]] = {}
    for kind in TopicKind:
        topic = f"site/ecg/s1/{kind.value}"
        own = getattr(wire, f"decode_{kind.value}", None)  # e.g. decode_raw(topic, payload)
        if kind.value == "raw" and own is not None:
            found[kind.value] = (topic, own)
        else:
            found[kind.value] = (topic, wire.decode)
    return found


DECODERS = decoders()


def decodes_or_refuses(topic: str, decoder: Decoder, payload: bytes) -> object | None:
    """Decode; a PayloadError is the only way to refuse, in one short line."""
    try:
        return decoder(topic, payload)
    except PayloadError as error:
        text = str(error)
        assert "\n" not in text, text
        assert len(text) <= MAX_ERROR_CHARS, text[:200]
        return None


# Strategies: valid messages over the whole contract, JSON of any shape, adversarial numbers.

names = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Cf", "Zl", "Zp", "Co", "Cn")),
    min_size=1,
    max_size=wire.MAX_TEXT_CHARS,
).filter(lambda text: text.isprintable())
stream_ids = names.filter(lambda text: not set(text) & {"/", "+", "#"})
unit = st.floats(0.0, 1.0, allow_nan=False)
huge_numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=2**53 - 5, max_value=2**53 + 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -0.0, 1e308, -1e308, 5e-324, 2**63, -(2**63), 10**400]),
)
json_scalars = st.one_of(st.none(), st.booleans(), st.text(max_size=40), huge_numbers)
json_values: st.SearchStrategy[Json] = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@st.composite
def probabilities(draw: st.DrawFn) -> tuple[float, float, float, float, float]:
    weights = draw(st.lists(st.floats(0.0, 1.0), min_size=5, max_size=5))
    total = sum(weights)
    if total <= 1e-6:
        return (1.0, 0.0, 0.0, 0.0, 0.0)
    p = [round(w / total, 6) for w in weights]
    top = int(np.argmax(p))
    p[top] = round(p[top] + 1.0 - sum(p), 6)  # still on the wire's 1e-6 grid
    return (p[0], p[1], p[2], p[3], p[4])


@st.composite
def beat_messages(draw: st.DrawFn, stream: str | None = None) -> BeatMessage:
    p = draw(probabilities())
    label = BEAT_CLASSES[int(np.argmax(p))]
    rr_ms = draw(st.none() | st.floats(wire.MIN_RR_MS, 1e7).map(lambda v: round(v, 3)))
    return BeatMessage(
        stream=stream or draw(stream_ids),
        record=draw(names),
        sample=draw(st.integers(0, wire.MAX_INDEX)),
        chain_sample=draw(st.integers(0, wire.MAX_INDEX)),
        time_s=round(draw(st.floats(0.0, 1e9)), 6),
        r_wall_time=round(draw(st.floats(0.0, wire.MAX_UNIX_TIME_S)), 6),
        label=label,
        confidence=p[label.index],
        probabilities=ClassProbabilities(*p),
        rr_ms=rr_ms,
        hr_bpm=None if rr_ms is None else round(60_000.0 / rr_ms, 3),
        compute_ms=round(draw(st.floats(0.0, wire.MAX_COMPUTE_MS)), 4),
        published_at=round(draw(st.floats(0.0, wire.MAX_UNIX_TIME_S)), 6),
    )


@st.composite
def samples_messages(draw: st.DrawFn, stream: str | None = None) -> SamplesMessage:
    counts = draw(st.lists(st.integers(-32768, 32767), max_size=400))
    return SamplesMessage(
        stream=stream or draw(stream_ids),
        start_index=draw(st.integers(0, wire.MAX_INDEX)),
        fs_hz=draw(st.floats(*SUPPORTED_FS_HZ)),
        scale_uv=draw(st.floats(1e-6, wire.MAX_SCALE_UV)),
        counts=np.array(counts, dtype=np.int16),
    )


@st.composite
def status_messages(draw: st.DrawFn, stream: str | None = None) -> StatusMessage:
    classes = draw(st.permutations(list(BeatClass)).flatmap(lambda c: st.just(tuple(c))))
    return StatusMessage(
        stream=stream or draw(stream_ids),
        state=draw(st.sampled_from(StreamState)),
        record=draw(names),
        fs_hz=draw(st.floats(*SUPPORTED_FS_HZ)),
        model=draw(names),
        classes=classes[: draw(st.integers(1, len(classes)))],
    )


@st.composite
def event_messages(draw: st.DrawFn, stream: str | None = None) -> EventMessage:
    beats = draw(st.integers(0, 10_000))
    return EventMessage(
        stream=stream or draw(stream_ids),
        record=draw(names),
        rhythm=draw(st.sampled_from(RhythmKind)),
        state=draw(st.sampled_from(EventState)),
        sample=draw(st.integers(0, wire.MAX_INDEX)),
        chain_sample=draw(st.integers(0, wire.MAX_INDEX)),
        time_s=round(draw(st.floats(0.0, 1e9)), 6),
        wall_time=round(draw(st.floats(0.0, wire.MAX_UNIX_TIME_S)), 6),
        delay_s=round(draw(st.floats(0.0, 1e5)), 3),
        beats=beats,
        rate_bpm=round(draw(st.floats(1.0, wire.MAX_HEART_RATE_BPM)), 3) if beats else None,
        detail=draw(st.none() | names),
    )


VALID: dict[str, Callable[..., st.SearchStrategy[WireMessage]]] = {
    "beats": beat_messages,
    "samples": samples_messages,
    "status": status_messages,
    "events": event_messages,
}


@st.composite
def raw_messages(draw: st.DrawFn, stream: str | None = None) -> wire.RawMessage:
    counts = draw(st.lists(st.integers(-32768, 32767), min_size=1, max_size=400))
    return wire.RawMessage.from_counts(
        stream or draw(stream_ids),
        draw(st.integers(0, wire.MAX_INDEX - len(counts))),
        draw(st.floats(*wire.RAW_FS_RANGE_HZ)),
        np.array(counts),
        gain=draw(st.floats(*wire.RAW_GAIN_RANGE)),
    )


def valid_payload(kind: str) -> st.SearchStrategy[bytes]:
    """Valid payloads of a kind for stream ``s1``."""
    if kind == TopicKind.RAW.value:
        return raw_messages(stream="s1").map(wire.encode)
    return VALID[kind](stream="s1").map(wire.encode)


@st.composite
def mutated(draw: st.DrawFn, kind: str) -> bytes:
    """A valid payload with fields replaced, deleted or added, or its bytes edited."""
    payload = draw(valid_payload(kind))
    if draw(st.booleans()):
        obj: dict[str, Json] = json.loads(payload)
        for _ in range(draw(st.integers(1, 3))):
            key = draw(st.sampled_from([*obj, "extra", "ingest"]))
            if draw(st.booleans()) and key in obj:
                del obj[key]
            else:
                obj[key] = draw(json_values)
        return json.dumps(obj).encode()  # NaN and Infinity as their literals
    data = bytearray(payload)
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, max(0, len(data) - 1)))
        action = draw(st.integers(0, 2))
        byte = draw(st.sampled_from(list(b'{}[]",:0123456789.eE+-\\nuIN\x00\xff ')))
        if action == 0 and data:
            data[position] = byte
        elif action == 1:
            data.insert(position, byte)
        elif len(data) > 1:
            del data[position]
    return bytes(data)


@st.composite
def deeply_nested(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(wire.MAX_JSON_DEPTH + 1, 200_000))
    opening = draw(st.sampled_from([b"[", b'{"a":', b'[{"b":']))
    inner = opening * depth
    return draw(st.sampled_from([inner, b'{"v":1,"x":' + inner, b'{"v":1,"s":"[[[","x":' + inner]))


@st.composite
def huge_numbers_in_fields(draw: st.DrawFn, kind: str) -> bytes:
    obj: dict[str, Json] = json.loads(draw(valid_payload(kind)))
    key = draw(st.sampled_from(list(obj)))
    number = draw(huge_numbers)
    text = json.dumps(obj | {key: "@@"}).replace('"@@"', json.dumps(number))
    return text.encode()


any_payload = st.one_of(
    st.binary(max_size=2048),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.text(max_size=200).map(str.encode),
)


@pytest.mark.parametrize("kind", list(DECODERS))
@FUZZ
@given(data=st.data())
def test_random_payloads_decode_or_raise_payload_error(kind: str, data: st.DataObject) -> None:
    topic, decoder = DECODERS[kind]
    stream_levels = st.text(max_size=300).map(lambda level: f"ecg/{level}/{kind}")
    topic = data.draw(st.one_of(st.just(topic), stream_levels, st.text(max_size=100)))
    payload = data.draw(
        st.one_of(
            any_payload,
            mutated(kind),
            deeply_nested(),
            huge_numbers_in_fields(kind),
            st.just(b'{"v":1,"stream":"s1","x":' + b"NaN,Infinity,-Infinity" + b"}"),
        )
    )
    decodes_or_refuses(topic, decoder, payload)


@pytest.mark.parametrize("kind", list(VALID))
@FUZZ
@given(data=st.data())
def test_valid_messages_round_trip_byte_for_byte(kind: str, data: st.DataObject) -> None:
    message = data.draw(VALID[kind]())
    payload = wire.encode(message)
    topic = wire.topic_for("site1/ecg", message.stream, TopicKind(kind))
    decoded = wire.decode(topic, payload)
    assert decoded == message
    assert wire.encode(decoded) == payload


@pytest.mark.parametrize("kind", list(DECODERS))
@FUZZ
@given(depth=st.integers(wire.MAX_JSON_DEPTH + 1, 50_000))
def test_nesting_beyond_the_bound_is_refused_by_depth(kind: str, depth: int) -> None:
    topic, decoder = DECODERS[kind]
    with pytest.raises(PayloadError, match=f"too deeply \\({depth} levels, at most"):
        decoder(topic, b"[" * depth + b"]" * depth)


def test_two_kilobytes_of_nested_arrays_is_a_payload_error_whatever_the_recursion_limit() -> None:
    """The depth is counted before parsing: a raised recursion limit changes nothing."""
    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100)  # json.loads would raise RecursionError at the first level
    try:
        for kind, (topic, decoder) in DECODERS.items():
            with pytest.raises(PayloadError, match="1024 levels"):
                decoder(topic, b"[" * 1024 + b"]" * 1024)
            ok = decodes_or_refuses(topic, decoder, b'{"v":1,"a":[[1]],"s":"[[[[[[[[[["}')
            assert ok is None, kind  # refused for its fields, not its depth
    finally:
        sys.setrecursionlimit(limit)


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ('{"v":1}', 1),
        ('{"a":"[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', 1),
        ('{"a":"\\\\","b":[[[]]]}', 4),
        ('{"a":"\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', 1),
        ('{"a":"\\\\\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', 1),
        ("[" * 40 + "]" * 40, 40),
    ],
)
def test_nesting_depth_skips_brackets_in_strings(text: str, depth: int) -> None:
    assert wire._nesting_depth(text.encode()) == depth  # the counter itself


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("stream", "x" * (wire.MAX_TEXT_CHARS + 1), "stream"),
        ("record", "100\x1b[2J", "'record' holds control or other non-printable characters"),
        ("record", "100\nFAKE LINE", "non-printable"),
        ("time_s", 1e300, "time_s"),
        ("r_wall_time", 5e9, "r_wall_time"),
        ("published_at", 1e12, "published_at"),
        ("compute_ms", 1e10, "compute_ms"),
        ("rr_ms", 50.0, "rr_ms"),
        ("hr_bpm", 700.0, "hr_bpm"),
        ("hr_bpm", 80.0, "'hr_bpm' 80.0 is not 60000 / 'rr_ms' 800.0 \\(75.000\\)"),
        ("hr_bpm", None, "'rr_ms' is 800.0 but 'hr_bpm' None: both null or neither"),
    ],
)
def test_beat_fields_are_bounded_to_physical_ranges(field: str, value: Json, match: str) -> None:
    message = BeatMessage(
        stream="s1",
        record="100",
        sample=370,
        chain_sample=370,
        time_s=1.0,
        r_wall_time=1.7e9,
        label=BeatClass.N,
        confidence=0.9,
        probabilities=ClassProbabilities(0.9, 0.04, 0.03, 0.02, 0.01),
        rr_ms=800.0,
        hr_bpm=75.0,
        compute_ms=1.0,
        published_at=1.7e9,
    )
    obj = json.loads(wire.encode(message)) | {field: value}
    with pytest.raises(PayloadError, match=match):
        wire.decode("ecg/s1/beats", json.dumps(obj).encode())


@pytest.mark.parametrize("stream", ["x" * 257, "bed\x1b12", "bed\t1"])
def test_stream_ids_a_decoder_refuses_are_not_published(stream: str) -> None:
    with pytest.raises(ConfigError, match="stream id"):
        wire.check_stream_id(stream)


def test_bounds_are_finite_and_ordered() -> None:
    assert math.isfinite(wire.MAX_TIME_S)
    assert wire.MAX_TIME_S > 30 * 24 * 3600
    assert pytest.approx(60_000.0 / wire.MIN_RR_MS) == wire.MAX_HEART_RATE_BPM
