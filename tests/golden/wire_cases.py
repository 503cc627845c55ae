"""Golden wire payloads of contract version 1, and malformed ones the contract refuses.

Run ``python tests/golden/wire_cases.py`` to write ``wire_payloads.json`` and
``wire_malformed.json`` next to this file from the codec as it is; ``tests/test_wire_golden.py``
then checks the codec against them (change aversion: rewrite them only on purpose). The files
were written by the codec of contract version 1 before its rewrite on msgspec Structs. Only
payloads are kept: which ones are refused is the contract, the wording of the refusal is not.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from ecg_stream import wire
from ecg_stream.errors import PayloadError
from ecg_stream.types import BEAT_CLASSES, BeatClass, SignalIssue, SignalState
from ecg_stream.wire import (
    BeatMessage,
    ClassProbabilities,
    IngestStatus,
    RawMessage,
    SamplesMessage,
    StatusMessage,
    StreamState,
    WireMessage,
)

HERE = Path(__file__).parent
PAYLOADS = HERE / "wire_payloads.json"
MALFORMED = HERE / "wire_malformed.json"


def beat(**change: Any) -> BeatMessage:
    fields: dict[str, Any] = {
        "stream": "100",
        "record": "100",
        "sample": 370,
        "chain_sample": 370,
        "time_s": 370 / 360,
        "r_wall_time": 1_764_028_800.25,
        "label": BeatClass.S,
        "confidence": 0.9,
        "probabilities": ClassProbabilities(0.05, 0.9, 0.03, 0.01, 0.01),
        "rr_ms": 800.0,
        "hr_bpm": 75.0,
        "compute_ms": 1.25,
        "published_at": 1_764_028_800.5,
    }
    return BeatMessage(**(fields | change))


INGEST = IngestStatus(
    worker="host-12",
    device_fs_hz=250.0,
    chunks=10,
    samples=250,
    gaps=1,
    gap_samples=25,
    duplicates=2,
    malformed=3,
    dropped=0,
    interleaved=True,
)


def status(**change: Any) -> StatusMessage:
    fields: dict[str, Any] = {
        "stream": "100",
        "state": StreamState.ONLINE,
        "record": "100",
        "fs_hz": 360.0,
        "model": "beat_lstm",
        "classes": BEAT_CLASSES,
    }
    return StatusMessage(**(fields | change))


def valid_messages() -> dict[str, WireMessage | RawMessage]:
    """A representative message of every kind and optional field, by name."""
    q_probabilities = ClassProbabilities(0.0, 0.0, 0.0, 0.0, 1.0)
    rng = np.random.default_rng(12)
    return {
        "beat": beat(),
        "beat_first_no_rr": beat(rr_ms=None, hr_bpm=None),
        "beat_sqi": beat(sqi=0.9312),
        "beat_sqi_issue": beat(
            label=BeatClass.Q,
            confidence=1.0,
            probabilities=q_probabilities,
            sqi=0.0,
            sqi_issue=SignalIssue.LEAD_OFF,
        ),
        "beat_unrounded": beat(
            time_s=1234.56789012345,
            r_wall_time=1_764_028_800.123456789,
            confidence=0.376543211,
            probabilities=ClassProbabilities(0.123456789, 0.2, 0.3, 0.376543211, 0.0),
            label=BeatClass.F,
            rr_ms=833.33333333,
            hr_bpm=60_000 / 833.33333333,
            compute_ms=0.000123456,
            published_at=1_764_028_801.000001,
            sqi=0.123456,
        ),
        "beat_tiny_and_huge": beat(
            time_s=2.5e-6,
            probabilities=ClassProbabilities(0.9, 1e-06, 0.099999, 0.0, 0.0),
            label=BeatClass.N,
            r_wall_time=0.0,
            sample=wire.MAX_INDEX,
            chain_sample=0,
            rr_ms=100.0,
            hr_bpm=600.0,
            compute_ms=0.0,
            published_at=4_102_444_800.0,
        ),
        "beat_unicode": beat(stream="bed-é", record='rec "ü" \\ 中'),
        "samples": SamplesMessage.from_mv("100", 3600, 360.0, np.array([0.5, -1.25, 0.001]), 1.0),
        "samples_random": SamplesMessage.from_mv(
            "ward3-bed12", 10_000_000, 250.0, rng.normal(0, 1, 360), scale_uv=2.5
        ),
        "samples_empty": SamplesMessage("s", 0, 10_000.0, 1e-06, np.zeros(0, np.int16)),
        "samples_small_scale": SamplesMessage.from_mv("s", 7, 50.0, np.array([1e-7]), 1.5e-5),
        "status_online": status(),
        "status_offline": status(state=StreamState.OFFLINE),
        "status_ingest": status(ingest=INGEST),
        "status_ingest_defaults": status(ingest=IngestStatus.starting("w1", 360.0)),
        "status_signal": status(signal=SignalState.LEAD_OFF),
        "status_ingest_signal": status(
            state=StreamState.OFFLINE, ingest=INGEST, signal=SignalState.OK
        ),
        "status_few_classes": status(classes=(BeatClass.Q, BeatClass.N), fs_hz=128.5),
        "raw_int16": RawMessage.from_counts(
            "bed1", 36_000, 250.0, np.array([0, 200, -150, 32767, -32768]), gain=200.0
        ),
        "raw_int16_lead_t0": RawMessage.from_counts(
            "bed1", 36_000, 250.0, np.array([1, 2]), gain=200.0, lead="MLII", t0=1.7e9
        ),
        "raw_float32": RawMessage.from_mv("bed1", 0, 500.0, rng.normal(0, 1, 50)),
        "raw_float32_lead_t0": RawMessage.from_mv(
            "bed1", 12, 1000.0, [0.5, -32768.0], lead="II", t0=1_764_028_800.1234567
        ),
        "raw_int16_t0_only": RawMessage.from_counts(
            "bed1", 0, 100.0, np.array([5]), gain=1e6, t0=0.0
        ),
    }


def topic_of(message: WireMessage | RawMessage) -> str:
    return f"ecg/{message.stream}/{wire.kind_of(message).value}"


def decode_any(topic: str, payload: bytes | str) -> WireMessage | RawMessage:
    """Decode with the decoder of the topic's kind."""
    if topic.endswith("/raw"):
        return wire.decode_raw(topic, payload)
    return wire.decode(topic, payload)


def obj_of(message: WireMessage | RawMessage) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(wire.encode(message))
    return obj


def with_raw_value(obj: dict[str, Any], path: tuple[str, ...], text: str | None) -> bytes:
    """``obj`` as JSON with the value at ``path`` replaced by JSON ``text`` (None: deleted)."""
    copy = json.loads(json.dumps(obj))
    inner = copy
    for key in path[:-1]:
        inner = inner[key]
    if text is None:
        del inner[path[-1]]
        return json.dumps(copy).encode()
    inner[path[-1]] = "@@marker@@"
    return json.dumps(copy).encode().replace(b'"@@marker@@"', text.encode())


# JSON texts put in place of each field in turn: every wrong type, bound and edge of the contract.
SWEEP_VALUES = (
    "null",
    "true",
    '"x"',
    '""',
    "-1",
    "0",
    "1.5",
    "1e300",
    "-1e-300",
    "1" + "0" * 400,
    "9007199254740992",
    "[]",
    '["N"]',
    "{}",
    "[[1]]",
    '"' + "y" * 257 + '"',
    '"a\\nb"',
)


def f32(values: list[float]) -> str:
    return json.dumps(base64.b64encode(np.array(values, "<f4").tobytes()).decode())


def b64(data: bytes) -> str:
    return json.dumps(base64.b64encode(data).decode())


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


BASES = {
    "beats": "beat_sqi",
    "samples": "samples",
    "status": "status_ingest_signal",
    "raw": "raw_int16_lead_t0",
    "raw32": "raw_float32_lead_t0",
}
"""The valid payload each kind's mutations start from."""

Case: TypeAlias = tuple[str, str, "bytes | str | Mutation"]


@dataclass(frozen=True)
class Mutation:
    """A valid golden payload with the value at ``path`` replaced by JSON ``text`` (or deleted)."""

    base: str
    path: tuple[str, ...]
    text: str | None

    def payload(self, valid: dict[str, bytes]) -> bytes:
        return with_raw_value(json.loads(valid[self.base]), self.path, self.text)


def malformed_cases() -> Iterator[Case]:
    """(name, topic, payload or mutation) of payloads the contract refuses."""
    messages = valid_messages()
    for base_name, golden_name in BASES.items():
        message = messages[golden_name]
        topic = topic_of(message)
        obj = obj_of(message)

        def mutation(path: tuple[str, ...], text: str | None, base: str = golden_name) -> Mutation:
            return Mutation(base, path, text)

        paths: list[tuple[str, ...]] = [(key,) for key in obj]
        paths += [
            (key, inner) for key, value in obj.items() if isinstance(value, dict) for inner in value
        ]
        for path in paths:
            name = ".".join(path)
            yield f"{base_name}: no {name}", topic, mutation(path, None)
            for text in SWEEP_VALUES:
                yield f"{base_name}: {name}={text[:20]}", topic, mutation(path, text)
        for text in ("NaN", "Infinity", "-Infinity", "1e999", "-1" + "0" * 400 + ".5"):
            yield f"{base_name}: extra={text[:20]}", topic, mutation(("extra",), text)
            yield f"{base_name}: v={text[:20]}", topic, mutation(("v",), text)
        for text in ("2", "0", "1.0", '"1"', "true", "null"):
            yield f"{base_name}: v={text}", topic, mutation(("v",), text)
        yield f"{base_name}: extra nested 17", topic, mutation(("extra",), nested(17).decode())
        other = topic.replace(f"/{message.stream}/", "/other/")
        yield f"{base_name}: stream of other topic", other, mutation(("x",), "1")
        if base_name in {"beats", "raw"}:
            yield f"{base_name}: 5000-digit int", topic, mutation(("x",), "1" + "0" * 5000)
        for payload in (
            b"",
            b"\xff\xfe",
            b"{not json",
            b"{",
            b"[]",
            b"[1, 2]",
            b'"text"',
            b"42",
            b"null",
            b"true",
            b"[{}]",
            b'{"v":1}',
            b'{"v":1,"stream":"' + message.stream.encode() + b'"}',
            b'{"v": 1, "stream": "100", "time_s": NaN}',
            b'{"v":1,"stream":"s1","x":NaN,Infinity,-Infinity}',
            b'{"v":1,"a":[[1]],"s":"[[[[[[[[[["}',
            nested(17),
            nested(1024),
            b'{"v": 1, "extra": ' + nested(300) + b"}",
            b'{"v": 1, "extra": ' + b'{"a": ' * 300 + b"0" + b"}" * 301,
            b'{"v":1,"s":"[[[","x":' + b"[" * 40,
        ):
            yield f"{base_name}: {payload[:40]!r}", topic, payload
        yield f"{base_name}: text payload", topic, with_raw_value(obj, ("v",), "3").decode()
    beat_changes = {
        "p sums to 1.8": ("p", '{"N": 0.9, "S": 0.9, "V": 0, "F": 0, "Q": 0}'),
        "p sums to 0.2": ("p", '{"N": 0.1, "S": 0.1, "V": 0, "F": 0, "Q": 0}'),
        "p.N negative": ("p", '{"N": -0.1, "S": 1.1, "V": 0, "F": 0, "Q": 0}'),
        "p partial": ("p", '{"N": 0.5}'),
        "p array": ("p", "[0.05, 0.9, 0.03, 0.01, 0.01]"),
        "confidence differs": ("confidence", "0.5"),
        "label X": ("label", '"X"'),
        "label nested": ("label", json.dumps([[[1]]])),
        "hr disagrees": ("hr_bpm", "80.0"),
        "hr null": ("hr_bpm", "null"),
        "rr null": ("rr_ms", "null"),
        "rr 50": ("rr_ms", "50.0"),
        "hr 700": ("hr_bpm", "700.0"),
        "sqi_issue unplugged": ("sqi_issue", '"unplugged"'),
        "sqi_issue noise on S": ("sqi_issue", '"noise"'),
        "sqi_issue number": ("sqi_issue", "5"),
        "record control": ("record", '"100\\u001b[2J"'),
        "time_s 1e300": ("time_s", "1e300"),
        "r_wall_time 5e9": ("r_wall_time", "5e9"),
        "compute_ms 1e10": ("compute_ms", "1e10"),
    }
    for name, (key, text) in beat_changes.items():
        yield f"beats: {name}", "ecg/100/beats", Mutation("beat_sqi", (key,), text)
    yield (
        "beats: sqi_issue without sqi",
        "ecg/100/beats",
        Mutation("beat", ("sqi_issue",), '"noise"'),
    )
    samples_changes = {
        "data ***": ("data", '"***"'),
        "data AAA": ("data", '"AAA"'),
        "data 3 bytes": ("data", b64(b"abc")),
        "data nested": ("data", json.dumps([[[1]]])),
        "scale_uv 0": ("scale_uv", "0"),
        "fs_hz 49.9": ("fs_hz", "49.9"),
        "fs_hz 10000.5": ("fs_hz", "10000.5"),
        "fs_hz string": ("fs_hz", '"360"'),
        "start_index 2**60": ("start_index", str(2**60)),
    }
    for name, (key, text) in samples_changes.items():
        yield f"samples: {name}", "ecg/100/samples", Mutation("samples", (key,), text)
    ingest = obj_of(messages["status_ingest"])["ingest"]
    status_changes = {
        "state sleeping": ("state", '"sleeping"'),
        "state list": ("state", '["online"]'),
        "state nested": ("state", json.dumps([[[1]]])),
        "classes N Z": ("classes", '["N", "Z"]'),
        "classes N N": ("classes", '["N", "N"]'),
        "classes string": ("classes", '"NSVFQ"'),
        "classes nested": ("classes", '[["N"], "S"]'),
        "classes N 1": ("classes", '["N", 1]'),
        "signal sparkly": ("signal", '"sparkly"'),
        "ingest partial": ("ingest", '{"worker": "w", "device_fs_hz": 250.0}'),
        "ingest gaps -1": ("ingest", json.dumps(ingest | {"gaps": -1})),
        "ingest interleaved 1": ("ingest", json.dumps(ingest | {"interleaved": 1})),
        "ingest interleaved null": ("ingest", json.dumps(ingest | {"interleaved": None})),
        "ingest worker empty": ("ingest", json.dumps(ingest | {"worker": ""})),
        "ingest device_fs_hz 50": ("ingest", json.dumps(ingest | {"device_fs_hz": 50})),
    }
    for name, (key, text) in status_changes.items():
        yield f"status: {name}", "ecg/100/status", Mutation("status_ingest", (key,), text)
    no_interleaved = {k: v for k, v in ingest.items() if k != "interleaved"} | {"gaps": -5}
    yield (
        "status: ingest without interleaved",
        "ecg/100/status",
        Mutation("status_ingest", ("ingest",), json.dumps(no_interleaved)),
    )
    raw, raw32 = "raw_int16_lead_t0", "raw_float32_lead_t0"
    raw_changes = {
        "fs_hz 50": (raw, "fs_hz", "50.0"),
        "fs_hz 1000.5": (raw, "fs_hz", "1000.5"),
        "start_index passes": (raw, "start_index", str(2**53 - 2)),
        "encoding int24": (raw, "encoding", '"int24"'),
        "gain 1e9": (raw, "gain", "1e9"),
        "data empty": (raw, "data", '""'),
        "data AAA": (raw, "data", '"AAA"'),
        "data 3 bytes": (raw, "data", b64(b"abc")),
        "lead 33": (raw, "lead", json.dumps("x" * 33)),
        "lead 5": (raw, "lead", "5"),
        "t0 -1": (raw, "t0", "-1.0"),
        "float32 nan": (raw32, "data", f32([0.0, float("nan")])),
        "float32 inf": (raw32, "data", f32([float("inf")])),
        "float32 1e5": (raw32, "data", f32([1e5])),
        "float32 gain": (raw32, "gain", "200.0"),
        "float32 6 bytes": (raw32, "data", b64(bytes(6))),
    }
    for name, (base, key, text) in raw_changes.items():
        yield f"raw: {name}", "ecg/bed1/raw", Mutation(base, (key,), text)
    beats_payload = wire.encode(messages["beat_sqi"])
    raw_payload = wire.encode(messages["raw_int16_lead_t0"])
    for topic in (
        "ecg/100",
        "100/beats",
        "ecg/100/other",
        "ecg//beats",
        "ecg/a\nb/beats",
        f"ecg/{'s' * 257}/beats",
        "ecg/100/raw",
    ):
        yield f"topic {topic[:40]!r}", topic, beats_payload
    yield "topic beats for decode_raw", "ecg/bed1/beats", raw_payload


# Too big to store: made from a recipe at load time.
RECIPES: dict[str, Callable[[], bytes]] = {
    "oversized beats": lambda: b'{"v":1,"extra":"' + b"x" * wire.MAX_PAYLOAD_BYTES + b'"}',
    "oversized raw": lambda: b"x" * (2 << 20),
    "raw 10001 samples": lambda: (
        b'{"v":1,"stream":"bed1","start_index":0,"fs_hz":250.0,'
        + b'"encoding":"int16","gain":200.0,"data":"'
        + base64.b64encode(bytes(2 * 10_001))
        + b'"}'
    ),
    "nested 100000": lambda: nested(100_000),
    "nested arrays 5000 in a field": lambda: b'{"v": 1, "extra": ' + nested(5000) + b"}",
    "nested objects 5000 in a field": lambda: (
        b'{"v": 1, "extra": ' + b'{"a": ' * 5000 + b"0" + b"}" * 5001
    ),
}
RECIPE_TOPICS = {
    "oversized beats": "ecg/100/beats",
    "oversized raw": "ecg/bed1/raw",
    "raw 10001 samples": "ecg/bed1/raw",
    "nested 100000": "ecg/100/status",
    "nested arrays 5000 in a field": "ecg/100/samples",
    "nested objects 5000 in a field": "ecg/bed1/raw",
}


def refused(topic: str, payload: bytes | str) -> bool:
    """Whether decoding ``payload`` raises a PayloadError."""
    try:
        decode_any(topic, payload)
    except PayloadError:
        return True
    return False


def stored(payload: bytes | str) -> dict[str, str]:
    """A payload as JSON-safe fields: text, or base64 when it is no UTF-8."""
    if isinstance(payload, str):
        return {"text": payload}
    try:
        return {"payload": payload.decode("utf-8")}
    except UnicodeDecodeError:
        return {"payload_b64": base64.b64encode(payload).decode("ascii")}


def loaded(case: dict[str, Any], valid: dict[str, bytes]) -> bytes | str:
    """The payload of a stored case (see :func:`stored`); ``valid``: golden payloads by name."""
    if "base" in case:
        return Mutation(case["base"], tuple(case["path"]), case["value"]).payload(valid)
    if "text" in case:
        return str(case["text"])
    if "payload_b64" in case:
        return base64.b64decode(case["payload_b64"])
    if "recipe" in case:
        return RECIPES[case["recipe"]]()
    return str(case["payload"]).encode("utf-8")


def write_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    lines = ",\n".join(json.dumps(row, ensure_ascii=False) for row in rows)
    path.write_text(f"[\n{lines}\n]\n", encoding="utf-8")


def main() -> None:
    messages = valid_messages()
    valid = {name: wire.encode(message) for name, message in messages.items()}
    for name, encoded in valid.items():
        assert wire.encode(decode_any(topic_of(messages[name]), encoded)) == encoded, name
    malformed: list[dict[str, Any]] = []
    seen: set[tuple[str, bytes | str]] = set()
    for name, topic, spec in malformed_cases():
        payload = spec.payload(valid) if isinstance(spec, Mutation) else spec
        if (topic, payload) in seen:
            continue
        seen.add((topic, payload))
        if not refused(topic, payload):  # the sweep also makes valid payloads: skipped
            continue
        where: dict[str, Any] = stored(payload)
        if isinstance(spec, Mutation):
            where = {"base": spec.base, "path": list(spec.path), "value": spec.text}
        malformed.append({"name": name, "topic": topic, **where})
    for name, make in RECIPES.items():
        assert refused(RECIPE_TOPICS[name], make()), name
        malformed.append({"name": name, "topic": RECIPE_TOPICS[name], "recipe": name})
    rows = [
        {"name": name, "topic": topic_of(messages[name]), **stored(payload)}
        for name, payload in valid.items()
    ]
    write_lines(PAYLOADS, rows)
    write_lines(MALFORMED, malformed)
    print(f"{len(rows)} payloads -> {PAYLOADS}, {len(malformed)} malformed -> {MALFORMED}")


if __name__ == "__main__":
    main()
