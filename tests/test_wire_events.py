"""The ``events`` topic: rhythm events encode and decode byte for byte; bad ones are refused."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from ecg_stream.errors import PayloadError
from ecg_stream.types import EventState, RhythmKind
from ecg_stream.wire import (
    EventMessage,
    TopicKind,
    decode,
    decode_event,
    encode,
    topic_for,
)

TOPIC = topic_for("ecg", "bed1", TopicKind.EVENTS)
GOLDEN = (
    b'{"v":1,"stream":"bed1","record":"201","kind":"af","state":"start","sample":3600,'
    b'"chain_sample":3600,"time_s":10.0,"wall_time":1764028810.0,"delay_s":2.5,"beats":12,'
    b'"rate_bpm":110.123}'
)


def event(**change: Any) -> EventMessage:
    fields: dict[str, Any] = {
        "stream": "bed1",
        "record": "201",
        "rhythm": RhythmKind.AF,
        "state": EventState.START,
        "sample": 3600,
        "chain_sample": 3600,
        "time_s": 10.0,
        "wall_time": 1_764_028_810.0,
        "delay_s": 2.5,
        "beats": 12,
        "rate_bpm": 110.1234,
    }
    return EventMessage(**(fields | change))


def test_an_event_is_encoded_as_the_contract_spells_it_and_decodes_back() -> None:
    assert encode(event()) == GOLDEN  # rate rounded to 0.001 bpm, optional detail absent
    assert decode(TOPIC, GOLDEN) == event(rate_bpm=110.123)
    assert decode_event(GOLDEN) == event(rate_bpm=110.123)


@pytest.mark.parametrize("kind", list(RhythmKind))
@pytest.mark.parametrize("state", list(EventState))
def test_every_kind_and_state_round_trips(kind: RhythmKind, state: EventState) -> None:
    message = event(rhythm=kind, state=state, detail="stream ended", beats=0, rate_bpm=None)
    assert decode(TOPIC, encode(message)) == message


@pytest.mark.parametrize(
    ("change", "word"),
    [
        ({"kind": "flutter"}, "kind"),
        ({"state": "begin"}, "state"),
        ({"sample": -1}, "sample"),
        ({"beats": -2}, "beats"),
        ({"rate_bpm": 0}, "rate_bpm"),
        ({"delay_s": -0.1}, "delay_s"),
        ({"beats": 0}, "rate_bpm"),  # a rate without beats
        ({"stream": "bed2"}, "bed2"),  # not the topic's stream
        ({"detail": ""}, "detail"),
    ],
)
def test_a_bad_event_is_refused_naming_the_field(change: dict[str, Any], word: str) -> None:
    payload = json.dumps(json.loads(GOLDEN) | change).encode()
    with pytest.raises(PayloadError, match=word) as refused:
        decode(TOPIC, payload)
    assert str(refused.value).startswith(TOPIC)


def test_an_event_without_its_required_fields_is_refused() -> None:
    payload = msgspec.json.encode({"v": 1, "stream": "bed1", "kind": "af"})
    with pytest.raises(PayloadError, match="record"):
        decode(TOPIC, payload)
