"""The versioned MQTT wire contract: topic names and the ``beats``/``samples``/``status`` payloads.

This module is the one home of the contract (schema version :data:`SCHEMA_VERSION`). It is pure:
it encodes typed messages to bytes and decodes and validates bytes back into typed messages, with
no broker, no asyncio and no clock. Publishers, the reference subscriber and the Qt monitor all
use it, so anything any of them can read, any other MQTT client can read too.

Topics, under a configurable prefix (default ``ecg``) and a stream id (default: the record name):

========================  ===  ========  ============================================
topic                     QoS  retained  payload
========================  ===  ========  ============================================
``ecg/<stream>/beats``    1    no        one JSON object per labeled beat
``ecg/<stream>/samples``  0    no        one JSON object per chunk of filtered samples
``ecg/<stream>/status``   1    yes       online/offline; also the publisher's last will
``ecg/<stream>/raw``      1    no        device input: one JSON object per chunk of raw samples
========================  ===  ========  ============================================

Every payload is a UTF-8 JSON object whose first field is the schema version ``"v"``. Decoders
check the version first, then required fields, types and ranges, and raise
:class:`~ecg_stream.errors.PayloadError` naming the field; unknown extra fields are ignored, so
optional fields can be added without a version bump. Whatever the bytes (deep nesting, huge or
non-finite numbers, absurd values), decoding ends in a message or a ``PayloadError``, never in
another exception: a subscriber counts the payload as malformed and carries on.

Example:
    >>> msg = StatusMessage(stream="100", state=StreamState.ONLINE, record="100", fs_hz=360.0,
    ...                     model="beat_lstm", classes=BEAT_CLASSES)
    >>> decode(topic_for("ecg", "100", TopicKind.STATUS), encode(msg)) == msg
    True
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from ecg_stream.config import SUPPORTED_FS_HZ
from ecg_stream.errors import ConfigError, PayloadError
from ecg_stream.types import (
    BEAT_CLASSES,
    BeatClass,
    FloatArray,
    LabeledBeat,
    SignalIssue,
    SignalState,
)

SCHEMA_VERSION = 1
"""Version of the payload schema; the first field (``"v"``) of every payload."""

DEFAULT_TOPIC_PREFIX = "ecg"
"""Topic prefix when none is configured."""

PROBABILITY_SUM_TOLERANCE = 1e-3
"""How far from 1 the five class probabilities of a beat may sum (rounding on the wire)."""

MAX_PAYLOAD_BYTES = 1 << 20
"""Largest payload decoded, in bytes (a ``samples`` message at its bound takes about 175 kB)."""

MAX_SAMPLES_PER_MESSAGE = 65_536
"""Most samples one ``samples`` message may carry (the publisher sends 36 to 360)."""

MAX_INDEX = 2**53 - 1
"""Largest sample index on the wire: the largest integer every JSON reader holds exactly."""

MAX_JSON_DEPTH = 16
"""Deepest nesting of arrays and objects decoded (the contract's payloads nest two levels)."""

MAX_TEXT_CHARS = 256
"""Longest text field (stream id, record, model, ...) a payload may carry, in characters."""

MAX_TIME_S = MAX_INDEX / SUPPORTED_FS_HZ[0]
"""Latest time in a record, in s: the largest sample index at the lowest rate."""

MAX_UNIX_TIME_S = 4_102_444_800.0
"""Latest wall-clock time a payload may carry (2100-01-01 UTC), in s since the Unix epoch."""

MAX_COMPUTE_MS = 86_400_000.0
"""Longest compute latency a beat may report: one day, in ms."""

MIN_RR_MS = 100.0
"""Shortest RR interval a beat may carry, in ms (600 bpm; the detector's hold allows 200 ms)."""

MAX_HEART_RATE_BPM = 60_000.0 / MIN_RR_MS
"""Fastest heart rate a beat may carry, in bpm."""

MAX_SCALE_UV = 1000.0
"""Largest ``scale_uv`` of a ``samples`` message: 1 mV per count."""

RAW_FS_RANGE_HZ = (100.0, 1000.0)
"""Sampling rates a device may publish on ``raw``, in Hz (the worker resamples to 360 Hz)."""

MAX_RAW_SAMPLES_PER_MESSAGE = 10_000
"""Most samples one ``raw`` message may carry (10 s at 1000 Hz; devices send about 0.1 s)."""

RAW_GAIN_RANGE = (1.0, 1e6)
"""Smallest and largest ``gain`` of int16 ``raw`` data, in counts per mV."""

MAX_RAW_ABS_MV = 32_768.0
"""Largest magnitude of float32 ``raw`` data, in mV (int16 full scale at the smallest gain)."""

MAX_LEAD_CHARS = 32
"""Longest lead name a ``raw`` message may carry."""

_INT16_MIN, _INT16_MAX = -32768, 32767
_WILDCARDS = ("+", "#", "\x00")
_Payload: TypeAlias = dict[str, Any]
_JSON_TYPE_NAMES = {dict: "object", list: "array", str: "string", int: "integer", float: "number"}
Int16Array: TypeAlias = npt.NDArray[np.int16]


class TopicKind(Enum):
    """The last level of a topic: what its payloads carry."""

    BEATS = "beats"
    SAMPLES = "samples"
    STATUS = "status"
    RAW = "raw"

    @property
    def qos(self) -> int:
        """MQTT QoS the publisher uses: beats and status at least once, samples at most once."""
        return 0 if self is TopicKind.SAMPLES else 1

    @property
    def retain(self) -> bool:
        """Whether the broker keeps the last message for new subscribers (status only)."""
        return self is TopicKind.STATUS


OUTPUT_KINDS: tuple[TopicKind, ...] = (TopicKind.BEATS, TopicKind.SAMPLES, TopicKind.STATUS)
"""What the chain publishes (:func:`decode`); devices publish ``raw`` (:func:`decode_raw`)."""


class StreamState(Enum):
    """State announced on the status topic."""

    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class TopicParts:
    """A topic split into its prefix, stream id and kind.

    Args:
        prefix: Everything before the stream id (may contain ``/``).
        stream: The stream id.
        kind: What the topic carries.
    """

    prefix: str
    stream: str
    kind: TopicKind


def check_stream_id(stream: str) -> str:
    """Return ``stream`` if it can be one topic level, else raise.

    Raises:
        ConfigError: It is empty or holds ``/``, ``+``, ``#`` or NUL.
    """
    if (
        not stream
        or "/" in stream
        or any(char in stream for char in _WILDCARDS)
        or len(stream) > MAX_TEXT_CHARS
        or not stream.isprintable()
    ):
        msg = (
            f"stream id {stream!r} cannot be an MQTT topic level: it must be non-empty, without "
            f"'/', '+', '#' or control characters, at most {MAX_TEXT_CHARS} characters; pass "
            "e.g. --stream-id ward3-bed12"
        )
        raise ConfigError(msg)
    return stream


def check_topic_prefix(prefix: str) -> str:
    """Return ``prefix`` if it can start a topic, else raise.

    Raises:
        ConfigError: It is empty, starts or ends with ``/``, or holds a wildcard.
    """
    if (
        not prefix
        or prefix.startswith("/")
        or prefix.endswith("/")
        or "//" in prefix
        or any(char in prefix for char in _WILDCARDS)
    ):
        msg = (
            f"topic prefix {prefix!r} is not valid: it must be non-empty, without wildcards "
            f"('+', '#') or empty levels; e.g. --topic-prefix {DEFAULT_TOPIC_PREFIX} or "
            "--topic-prefix site1/ecg"
        )
        raise ConfigError(msg)
    return prefix


def topic_for(prefix: str, stream: str, kind: TopicKind) -> str:
    """The topic of ``kind`` messages of a stream, e.g. ``ecg/100/beats``.

    Raises:
        ConfigError: The prefix or the stream id cannot be used in a topic.
    """
    return f"{check_topic_prefix(prefix)}/{check_stream_id(stream)}/{kind.value}"


def subscription_for(prefix: str, stream: str | None, kind: TopicKind | None) -> str:
    """A topic filter: one stream's or every stream's (``+``) topics of one kind or all (``+``).

    Example:
        >>> subscription_for("ecg", None, TopicKind.BEATS)
        'ecg/+/beats'
    """
    level = "+" if stream is None else check_stream_id(stream)
    last = "+" if kind is None else kind.value
    return f"{check_topic_prefix(prefix)}/{level}/{last}"


def printable(text: str, limit: int = 120) -> str:
    r"""``text`` as it may be printed or logged: escaped, at most ``limit`` characters.

    A received topic could otherwise rewrite a terminal line or forge a log line.

    Example:
        >>> printable("ecg/100/beats"), printable("ecg/a\nb/beats")
        ('ecg/100/beats', 'ecg/a\\nb/beats')
    """
    shown = text if text.isprintable() else repr(text)[1:-1]
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def parse_topic(topic: str) -> TopicParts:
    """Split a topic of this contract into prefix, stream id and kind.

    Raises:
        PayloadError: The topic does not end in ``<stream>/beats|samples|status``.
    """
    levels = topic.split("/")
    kinds = {kind.value: kind for kind in TopicKind}
    if not topic.isprintable() or len(levels[-2] if len(levels) > 1 else "") > MAX_TEXT_CHARS:
        msg = (
            f"topic {printable(topic)} holds control characters or a stream id longer than "
            f"{MAX_TEXT_CHARS} characters; no publisher of the contract sends it"
        )
        raise PayloadError(msg)
    if len(levels) < 3 or levels[-1] not in kinds or not levels[-2] or not all(levels[:-2]):
        msg = (
            f"topic {printable(topic)} is not an ecg-stream topic; expected "
            "'<prefix>/<stream>/beats', '.../samples', '.../status' or '.../raw'"
        )
        raise PayloadError(msg)
    return TopicParts("/".join(levels[:-2]), levels[-2], kinds[levels[-1]])


@dataclass(frozen=True, slots=True)
class BeatMessage:
    """One labeled beat, as published on ``<prefix>/<stream>/beats``.

    Args:
        stream: Stream id.
        record: Record name.
        sample: R-peak index in the record's own clock.
        chain_sample: R-peak index at the chain's rate (360 Hz).
        time_s: R-peak time in the record, ``sample / record fs``, in s.
        r_wall_time: Unix time of the R peak: wall clock at stream start + ``time_s / speed``.
        label: Most probable class.
        confidence: Probability of ``label``.
        probabilities: One probability per class, in ``BEAT_CLASSES`` order.
        rr_ms: Interval to the previous beat, in ms (None for a stream's first beat).
        hr_bpm: Instantaneous heart rate ``60000 / rr_ms`` (None with ``rr_ms``).
        compute_ms: From the arrival of the last sample the beat needs to its publication, in ms.
        published_at: Unix time of publication, in s.
        sqi: Signal-quality index of the beat in [0, 1] (None: not assessed). Optional on the
            wire (``"sqi"``).
        sqi_issue: Why the beat's signal is unusable (its label is then Q), or None. Optional on
            the wire (``"sqi_issue"``, only with ``"sqi"``).
    """

    stream: str
    record: str
    sample: int
    chain_sample: int
    time_s: float
    r_wall_time: float
    label: BeatClass
    confidence: float
    probabilities: tuple[float, float, float, float, float]
    rr_ms: float | None
    hr_bpm: float | None
    compute_ms: float
    published_at: float
    sqi: float | None = None
    sqi_issue: SignalIssue | None = None

    @classmethod
    def from_beat(
        cls,
        beat: LabeledBeat,
        *,
        stream: str,
        record: str,
        sample: int,
        time_s: float,
        r_wall_time: float,
        compute_ms: float = math.nan,
        published_at: float = math.nan,
    ) -> BeatMessage:
        """Describe a labeled beat; the publisher fills ``compute_ms`` and ``published_at``.

        Args:
            beat: The beat.
            stream: Stream id.
            record: Record name.
            sample: R-peak index in the record's own clock.
            time_s: R-peak time in the record, in s.
            r_wall_time: Unix time of the R peak, in s.
            compute_ms: Compute latency, in ms (NaN until published; NaN does not encode).
            published_at: Unix time of publication (NaN until published).
        """
        rr_ms = beat.window.rr.rr_ms
        has_rr = math.isfinite(rr_ms) and rr_ms > 0
        probabilities = tuple(float(p) for p in beat.probabilities)
        label = beat.label
        quality = beat.window.quality
        return cls(
            stream=stream,
            record=record,
            sample=sample,
            chain_sample=beat.window.peak.index,
            time_s=time_s,
            r_wall_time=r_wall_time,
            label=label,
            confidence=probabilities[label.index],
            probabilities=probabilities,  # type: ignore[arg-type]  # five, checked by LabeledBeat
            rr_ms=rr_ms if has_rr else None,
            hr_bpm=60_000.0 / rr_ms if has_rr else None,
            compute_ms=compute_ms,
            published_at=published_at,
            sqi=None if quality is None else quality.sqi,
            sqi_issue=None if quality is None else quality.issue,
        )


@dataclass(frozen=True, slots=True)
class SamplesMessage:
    """A chunk of filtered samples, as published on ``<prefix>/<stream>/samples``.

    On the wire ``data`` is base64 of little-endian int16 counts of ``scale_uv`` microvolts.

    Args:
        stream: Stream id.
        start_index: Index of the first sample at the chain's rate (same clock as
            ``BeatMessage.chain_sample``).
        fs_hz: Sampling rate of the samples, in Hz.
        scale_uv: Microvolts per count.
        counts: The samples, in counts of ``scale_uv`` microvolts.
    """

    stream: str
    start_index: int
    fs_hz: float
    scale_uv: float
    counts: Int16Array = field(repr=False, compare=False)

    @classmethod
    def from_mv(
        cls, stream: str, start_index: int, fs_hz: float, samples_mv: FloatArray, scale_uv: float
    ) -> SamplesMessage:
        """Quantize samples in mV to counts of ``scale_uv`` µV, clipped to the int16 range.

        Example:
            >>> msg = SamplesMessage.from_mv("100", 0, 360.0, np.array([0.5, -1.25]), 1.0)
            >>> msg.counts.tolist(), msg.samples_mv.tolist()
            ([500, -1250], [0.5, -1.25])
        """
        counts = np.clip(np.rint(samples_mv * (1000.0 / scale_uv)), _INT16_MIN, _INT16_MAX)
        return cls(stream, start_index, fs_hz, scale_uv, counts.astype(np.int16))

    @property
    def samples_mv(self) -> FloatArray:
        """The samples in mV."""
        return self.counts.astype(np.float64) * (self.scale_uv / 1000.0)

    @property
    def end_index(self) -> int:
        """Index one past the last sample."""
        return self.start_index + int(self.counts.size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SamplesMessage):
            return NotImplemented
        return (
            (self.stream, self.start_index, self.fs_hz, self.scale_uv)
            == (other.stream, other.start_index, other.fs_hz, other.scale_uv)
        ) and np.array_equal(self.counts, other.counts)

    __hash__ = None  # type: ignore[assignment]  # holds an array


@dataclass(frozen=True, slots=True)
class StatusMessage:
    """A stream's state, as published (retained) on ``<prefix>/<stream>/status``.

    Args:
        stream: Stream id.
        state: Online, or offline (also the publisher's last will).
        record: Record name.
        fs_hz: Sampling rate of the chain, in Hz.
        model: Name of the classifier model.
        classes: The classes of the probability vectors, in order.
        ingest: For a stream fed by a device on ``raw`` (``ecg-stream serve``): the worker's
            counters; None for a replay. Optional on the wire (``"ingest"``).
        signal: State of the stream's input (ok, noisy, lead-off, gap), or None when not
            known. Optional on the wire (``"signal"``).
    """

    stream: str
    state: StreamState
    record: str
    fs_hz: float
    model: str
    classes: tuple[BeatClass, ...]
    ingest: IngestStatus | None = None
    signal: SignalState | None = None


@dataclass(frozen=True, slots=True)
class IngestStatus:
    """What a ``serve`` worker did with a device's ``raw`` chunks; part of its ``status``.

    Args:
        worker: Id of the worker holding the stream.
        device_fs_hz: The device's sampling rate, in Hz.
        chunks: Chunks processed.
        samples: Device samples processed.
        gaps: Chunks that started after a gap (the chain was flushed and restarted).
        gap_samples: Device samples missing in those gaps.
        duplicates: Chunks dropped as duplicates or older than the last (QoS 1 redelivery).
        malformed: Messages on the stream's ``raw`` topic that did not decode.
        dropped: Chunks dropped because the worker fell behind (each also makes a gap).
        interleaved: The stream's chunks are being split between workers (a shared
            subscription that does not keep a topic on one member): no beats are produced.
    """

    worker: str
    device_fs_hz: float
    chunks: int = 0
    samples: int = 0
    gaps: int = 0
    gap_samples: int = 0
    duplicates: int = 0
    malformed: int = 0
    dropped: int = 0
    interleaved: bool = False


WireMessage: TypeAlias = BeatMessage | SamplesMessage | StatusMessage


class RawEncoding(Enum):
    """How the samples of a ``raw`` message are written in ``data`` (base64, little-endian)."""

    INT16 = "int16"  # counts; mV = counts / gain
    FLOAT32 = "float32"  # mV


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A chunk of one lead's samples from a device, as published on ``<prefix>/<stream>/raw``.

    Args:
        stream: Stream id.
        start_index: Index of the first sample in the device's clock (its own sample counter).
        fs_hz: The device's sampling rate, in Hz (within :data:`RAW_FS_RANGE_HZ`).
        encoding: How ``data`` is written.
        data: The samples: int16 counts (``encoding`` INT16) or float32 mV (FLOAT32).
        gain: Counts per mV of int16 data; None for float32 data.
        lead: Lead name (e.g. ``MLII``), if the device says.
        t0: Unix time of the first sample by the device's clock, in s, if the device says.

    Example:
        >>> msg = RawMessage.from_counts("bed1", 720, 360.0, np.array([200, -100]), gain=200.0)
        >>> decode_raw("ecg/bed1/raw", encode(msg)).millivolts().tolist()
        [1.0, -0.5]
    """

    stream: str
    start_index: int
    fs_hz: float
    encoding: RawEncoding
    data: npt.NDArray[np.int16] | npt.NDArray[np.float32] = field(repr=False, compare=False)
    gain: float | None = None
    lead: str | None = None
    t0: float | None = None

    def __post_init__(self) -> None:
        want = np.int16 if self.encoding is RawEncoding.INT16 else np.float32
        if self.data.dtype != want or self.data.ndim != 1:
            got = f"{self.data.dtype} of shape {self.data.shape}"
            msg = f"RawMessage.data must be 1-D {want.__name__}, got {got}"
            raise ValueError(msg)
        if (self.gain is None) != (self.encoding is RawEncoding.FLOAT32):
            msg = "RawMessage.gain is required for int16 counts and must be None for float32 mV"
            raise ValueError(msg)

    @classmethod
    def from_counts(
        cls,
        stream: str,
        start_index: int,
        fs_hz: float,
        counts: npt.ArrayLike,
        *,
        gain: float,
        lead: str | None = None,
        t0: float | None = None,
    ) -> RawMessage:
        """Int16 counts with their gain (counts per mV), as an ADC delivers them."""
        data = np.asarray(counts)
        if data.size and (data.min() < _INT16_MIN or data.max() > _INT16_MAX):
            msg = f"counts span {data.min()}..{data.max()}, beyond int16; send float32 mV"
            raise ValueError(msg)
        return cls(
            stream, start_index, fs_hz, RawEncoding.INT16, data.astype(np.int16), gain, lead, t0
        )

    @classmethod
    def from_mv(
        cls,
        stream: str,
        start_index: int,
        fs_hz: float,
        samples_mv: npt.ArrayLike,
        *,
        lead: str | None = None,
        t0: float | None = None,
    ) -> RawMessage:
        """Float32 samples in mV."""
        data = np.asarray(samples_mv, dtype=np.float32)
        return cls(stream, start_index, fs_hz, RawEncoding.FLOAT32, data, None, lead, t0)

    @property
    def end_index(self) -> int:
        """Index one past the last sample, in the device's clock."""
        return self.start_index + int(self.data.size)

    def millivolts(self) -> FloatArray:
        """The samples in mV, as float64 (int16: ``counts / gain``)."""
        values = self.data.astype(np.float64)
        return values / self.gain if self.gain is not None else values

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RawMessage):
            return NotImplemented
        mine = (self.stream, self.start_index, self.fs_hz, self.encoding, self.gain, self.lead)
        theirs = (other.stream, other.start_index, other.fs_hz, other.encoding, other.gain)
        return (
            mine == (*theirs, other.lead)
            and self.t0 == other.t0
            and np.array_equal(self.data, other.data)
        )

    __hash__ = None  # type: ignore[assignment]  # holds an array


def kind_of(message: WireMessage | RawMessage) -> TopicKind:
    """The topic kind a message is published on."""
    if isinstance(message, BeatMessage):
        return TopicKind.BEATS
    if isinstance(message, SamplesMessage):
        return TopicKind.SAMPLES
    if isinstance(message, RawMessage):
        return TopicKind.RAW
    return TopicKind.STATUS


def encode(message: WireMessage | RawMessage) -> bytes:
    """Encode a message as the UTF-8 JSON payload of its topic.

    Raises:
        PayloadError: A number is NaN or infinite (e.g. a beat not stamped by the publisher).
    """
    payload: _Payload
    if isinstance(message, BeatMessage):
        payload = {
            "v": SCHEMA_VERSION,
            "stream": message.stream,
            "record": message.record,
            "sample": message.sample,
            "chain_sample": message.chain_sample,
            "time_s": round(message.time_s, 6),
            "r_wall_time": round(message.r_wall_time, 6),
            "label": message.label.value,
            "confidence": round(message.confidence, 6),
            "p": {
                cls.value: round(p, 6)
                for cls, p in zip(BEAT_CLASSES, message.probabilities, strict=True)
            },
            "rr_ms": None if message.rr_ms is None else round(message.rr_ms, 3),
            "hr_bpm": None if message.hr_bpm is None else round(message.hr_bpm, 3),
            "compute_ms": round(message.compute_ms, 4),
            "published_at": round(message.published_at, 6),
        }
        if message.sqi is not None:  # optional: absent, the payload is as before the field
            payload["sqi"] = round(message.sqi, 4)
            if message.sqi_issue is not None:
                payload["sqi_issue"] = message.sqi_issue.value
    elif isinstance(message, SamplesMessage):
        payload = {
            "v": SCHEMA_VERSION,
            "stream": message.stream,
            "start_index": message.start_index,
            "fs_hz": message.fs_hz,
            "scale_uv": message.scale_uv,
            "data": base64.b64encode(message.counts.astype("<i2").tobytes()).decode("ascii"),
        }
    elif isinstance(message, RawMessage):
        payload = _raw_payload(message)
    else:
        payload = {
            "v": SCHEMA_VERSION,
            "stream": message.stream,
            "state": message.state.value,
            "record": message.record,
            "fs_hz": message.fs_hz,
            "model": message.model,
            "classes": [cls.value for cls in message.classes],
        }
        if message.ingest is not None:
            payload["ingest"] = _ingest_payload(message.ingest)
        if message.signal is not None:
            payload["signal"] = message.signal.value
    try:
        text = json.dumps(payload, allow_nan=False, separators=(",", ":"))
    except ValueError as error:
        msg = f"{kind_of(message).value} message of stream {message.stream!r}: {error}"
        raise PayloadError(msg) from error
    return text.encode("utf-8")


def decode(topic: str, payload: bytes | bytearray | str) -> WireMessage:
    """Decode and validate a payload received on ``topic``, dispatching on the topic's kind.

    Raises:
        PayloadError: The topic or the payload does not follow the contract, or the payload's
            ``stream`` differs from the topic's stream level.
    """
    parts = parse_topic(topic)
    if parts.kind is TopicKind.RAW:
        msg = (
            f"{topic}: a raw topic carries device input, not chain output; decode it with "
            "decode_raw (subscribe to the beats, samples and status topics only)"
        )
        raise PayloadError(msg)
    message: WireMessage
    if parts.kind is TopicKind.BEATS:
        message = decode_beat(payload)
    elif parts.kind is TopicKind.SAMPLES:
        message = decode_samples(payload)
    else:
        message = decode_status(payload)
    if message.stream != parts.stream:
        msg = f"{topic}: payload says stream {message.stream!r}, the topic {parts.stream!r}"
        raise PayloadError(msg)
    return message


def decode_beat(payload: bytes | bytearray | str) -> BeatMessage:
    """Decode and validate a ``beats`` payload.

    Raises:
        PayloadError: It does not follow the contract.
    """
    obj = _load(payload, TopicKind.BEATS)
    fields = _Fields(obj, TopicKind.BEATS)
    label = fields.beat_class("label")
    probabilities_obj = fields.get("p", dict)
    p = _Fields(probabilities_obj, TopicKind.BEATS, parent="p")
    probabilities = tuple(p.number(cls.value, 0.0, 1.0) for cls in BEAT_CLASSES)
    total = sum(probabilities)
    if abs(total - 1.0) > PROBABILITY_SUM_TOLERANCE:
        msg = f"beats payload: probabilities 'p' sum to {total:.6f}, expected 1"
        raise PayloadError(msg)
    confidence = fields.number("confidence", 0.0, 1.0)
    if abs(confidence - probabilities[label.index]) > PROBABILITY_SUM_TOLERANCE:
        msg = (
            f"beats payload: 'confidence' {confidence} differs from p[{label.value!r}] "
            f"{probabilities[label.index]}"
        )
        raise PayloadError(msg)
    rr_ms, hr_bpm = _rr_and_heart_rate(fields)
    sqi, sqi_issue = _quality(fields, label)
    return BeatMessage(
        stream=fields.text("stream"),
        record=fields.text("record"),
        sample=fields.integer("sample"),
        chain_sample=fields.integer("chain_sample"),
        time_s=fields.number("time_s", 0.0, MAX_TIME_S),
        r_wall_time=fields.number("r_wall_time", 0.0, MAX_UNIX_TIME_S),
        label=label,
        confidence=confidence,
        probabilities=probabilities,  # type: ignore[arg-type]  # one per class
        rr_ms=rr_ms,
        hr_bpm=hr_bpm,
        compute_ms=fields.number("compute_ms", 0.0, MAX_COMPUTE_MS),
        published_at=fields.number("published_at", 0.0, MAX_UNIX_TIME_S),
        sqi=sqi,
        sqi_issue=sqi_issue,
    )


def _quality(fields: _Fields, label: BeatClass) -> tuple[float | None, SignalIssue | None]:
    """``sqi`` and ``sqi_issue``: optional; an issue needs an ``sqi`` and a Q label."""
    sqi = None if fields.obj.get("sqi") is None else fields.number("sqi", 0.0, 1.0)
    if fields.obj.get("sqi_issue") is None:
        return sqi, None
    issues = {issue.value: issue for issue in SignalIssue}
    text = fields.text("sqi_issue")
    if text not in issues:
        msg = f"beats payload: 'sqi_issue' is {_shown(text)}, expected one of {list(issues)}"
        raise PayloadError(msg)
    if sqi is None or label is not BeatClass.Q:
        msg = (
            f"beats payload: 'sqi_issue' {text!r} comes with label {label.value!r} and sqi "
            f"{sqi}; an unusable beat carries an 'sqi' and label 'Q'"
        )
        raise PayloadError(msg)
    return sqi, issues[text]


def _rr_and_heart_rate(fields: _Fields) -> tuple[float | None, float | None]:
    """``rr_ms`` and ``hr_bpm``: both null (a stream's first beat) or both set, and agreeing."""
    rr_ms = fields.optional_number("rr_ms", MIN_RR_MS, MAX_TIME_S * 1000.0)
    hr_bpm = fields.optional_number("hr_bpm", 0.0, MAX_HEART_RATE_BPM, positive=True)
    if (rr_ms is None) != (hr_bpm is None):
        msg = f"beats payload: 'rr_ms' is {rr_ms} but 'hr_bpm' {hr_bpm}: both null or neither"
        raise PayloadError(msg)
    if (
        rr_ms is not None
        and hr_bpm is not None  # each rounded on the wire: to 0.001 ms and 0.001 bpm
        and not math.isclose(hr_bpm, 60_000.0 / rr_ms, rel_tol=1e-3, abs_tol=1e-3)
    ):
        msg = (
            f"beats payload: 'hr_bpm' {hr_bpm} is not 60000 / 'rr_ms' {rr_ms} "
            f"({60_000.0 / rr_ms:.3f})"
        )
        raise PayloadError(msg)
    return rr_ms, hr_bpm


def decode_samples(payload: bytes | bytearray | str) -> SamplesMessage:
    """Decode and validate a ``samples`` payload.

    Raises:
        PayloadError: It does not follow the contract.
    """
    fields = _Fields(_load(payload, TopicKind.SAMPLES), TopicKind.SAMPLES)
    stream = fields.text("stream")
    start_index = fields.integer("start_index")
    fs_hz = fields.number("fs_hz", *SUPPORTED_FS_HZ)
    scale_uv = fields.number("scale_uv", 0.0, MAX_SCALE_UV, positive=True)
    data = fields.get("data", str)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as error:
        msg = f"samples payload: 'data' is not valid base64 ({error})"
        raise PayloadError(msg) from error
    if len(raw) % 2:
        msg = f"samples payload: 'data' holds {len(raw)} bytes, expected int16 pairs (even)"
        raise PayloadError(msg)
    if len(raw) // 2 > MAX_SAMPLES_PER_MESSAGE:
        msg = (
            f"samples payload: 'data' holds {len(raw) // 2} samples, expected at most "
            f"{MAX_SAMPLES_PER_MESSAGE}; publish long stretches in several messages"
        )
        raise PayloadError(msg)
    counts = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    return SamplesMessage(stream, start_index, fs_hz, scale_uv, counts)


def decode_status(payload: bytes | bytearray | str) -> StatusMessage:
    """Decode and validate a ``status`` payload.

    Raises:
        PayloadError: It does not follow the contract.
    """
    fields = _Fields(_load(payload, TopicKind.STATUS), TopicKind.STATUS)
    state_text = fields.text("state")
    states = {state.value: state for state in StreamState}
    if state_text not in states:
        msg = f"status payload: 'state' is {_shown(state_text)}, expected one of {sorted(states)}"
        raise PayloadError(msg)
    names = fields.get("classes", list)
    known = {cls.value: cls for cls in BeatClass}
    if not names or not all(isinstance(name, str) and name in known for name in names):
        msg = f"status payload: 'classes' is {_shown(names)}, expected a list of {list(known)}"
        raise PayloadError(msg)
    if len(set(names)) != len(names):
        msg = f"status payload: 'classes' {_shown(names)} repeats a class"
        raise PayloadError(msg)
    return StatusMessage(
        stream=fields.text("stream"),
        state=states[state_text],
        record=fields.text("record"),
        fs_hz=fields.number("fs_hz", *SUPPORTED_FS_HZ),
        model=fields.text("model"),
        classes=tuple(known[name] for name in names),
        ingest=_decode_ingest(fields.obj.get("ingest")),
        signal=_decode_signal(fields),
    )


def _decode_signal(fields: _Fields) -> SignalState | None:
    if fields.obj.get("signal") is None:
        return None
    text = fields.text("signal")
    states = {state.value: state for state in SignalState}
    if text not in states:
        msg = f"status payload: 'signal' is {_shown(text)}, expected one of {list(states)}"
        raise PayloadError(msg)
    return states[text]


def _ingest_payload(ingest: IngestStatus) -> _Payload:
    return {
        "worker": ingest.worker,
        "device_fs_hz": ingest.device_fs_hz,
        "chunks": ingest.chunks,
        "samples": ingest.samples,
        "gaps": ingest.gaps,
        "gap_samples": ingest.gap_samples,
        "duplicates": ingest.duplicates,
        "malformed": ingest.malformed,
        "dropped": ingest.dropped,
        "interleaved": ingest.interleaved,
    }


def _decode_ingest(obj: object) -> IngestStatus | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        msg = f"status payload: 'ingest' is {_shown(obj)}, expected an object or null"
        raise PayloadError(msg)
    fields = _Fields(obj, TopicKind.STATUS, parent="ingest")
    interleaved = obj.get("interleaved", False)
    if not isinstance(interleaved, bool):
        msg = f"status payload: 'ingest.interleaved' is {_shown(interleaved)}, expected a boolean"
        raise PayloadError(msg)
    counters = ("chunks", "samples", "gaps", "gap_samples", "duplicates", "malformed", "dropped")
    return IngestStatus(
        worker=fields.text("worker"),
        device_fs_hz=fields.number("device_fs_hz", *RAW_FS_RANGE_HZ),
        interleaved=interleaved,
        **{name: fields.integer(name) for name in counters},
    )


def _raw_payload(message: RawMessage) -> _Payload:
    dtype = "<i2" if message.encoding is RawEncoding.INT16 else "<f4"
    payload: _Payload = {
        "v": SCHEMA_VERSION,
        "stream": message.stream,
        "start_index": message.start_index,
        "fs_hz": message.fs_hz,
        "encoding": message.encoding.value,
    }
    if message.gain is not None:
        payload["gain"] = message.gain
    payload["data"] = base64.b64encode(message.data.astype(dtype).tobytes()).decode("ascii")
    if message.lead is not None:
        payload["lead"] = message.lead
    if message.t0 is not None:
        payload["t0"] = round(message.t0, 6)
    return payload


def decode_raw(topic: str, payload: bytes | bytearray | str) -> RawMessage:
    """Decode and validate a device's ``raw`` payload received on ``topic``.

    Raises:
        PayloadError: The topic is no ``raw`` topic, the payload does not follow the contract,
            or its ``stream`` differs from the topic's stream level.
    """
    parts = parse_topic(topic)
    if parts.kind is not TopicKind.RAW:
        msg = f"{topic}: decode_raw reads '<prefix>/<stream>/raw' topics; use decode"
        raise PayloadError(msg)
    fields = _Fields(_load(payload, TopicKind.RAW), TopicKind.RAW)
    stream = fields.text("stream")
    if stream != parts.stream:
        msg = f"{topic}: payload says stream {stream!r}, the topic {parts.stream!r}"
        raise PayloadError(msg)
    start_index = fields.integer("start_index")
    fs_hz = fields.number("fs_hz", *RAW_FS_RANGE_HZ)
    encoding_text = fields.text("encoding")
    encodings = {encoding.value: encoding for encoding in RawEncoding}
    if encoding_text not in encodings:
        msg = (
            f"raw payload: 'encoding' is {_shown(encoding_text)}, expected one of {list(encodings)}"
        )
        raise PayloadError(msg)
    encoding = encodings[encoding_text]
    gain: float | None = None
    if encoding is RawEncoding.INT16:
        gain = fields.number("gain", *RAW_GAIN_RANGE)
    elif fields.obj.get("gain") is not None:
        msg = "raw payload: 'gain' is for int16 counts; float32 'data' is in mV, send no gain"
        raise PayloadError(msg)
    raw = _base64_field(fields, "data")
    itemsize = 2 if encoding is RawEncoding.INT16 else 4
    if len(raw) % itemsize:
        msg = (
            f"raw payload: 'data' holds {len(raw)} bytes, not a whole number of "
            f"{encoding.value} samples ({itemsize} bytes each)"
        )
        raise PayloadError(msg)
    count = len(raw) // itemsize
    if not 1 <= count <= MAX_RAW_SAMPLES_PER_MESSAGE:
        msg = (
            f"raw payload: 'data' holds {count} samples, expected 1 to "
            f"{MAX_RAW_SAMPLES_PER_MESSAGE}; send long stretches in several chunks"
        )
        raise PayloadError(msg)
    if start_index + count > MAX_INDEX:
        msg = f"raw payload: 'start_index' {start_index} + {count} samples passes {MAX_INDEX}"
        raise PayloadError(msg)
    data: npt.NDArray[np.int16] | npt.NDArray[np.float32]
    if encoding is RawEncoding.INT16:
        data = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    else:
        data = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        with np.errstate(invalid="ignore"):
            bad = ~(np.abs(data) <= MAX_RAW_ABS_MV)  # also NaN
        if bad.any():
            first = int(np.argmax(bad))
            msg = (
                f"raw payload: float32 sample {first} is {data[first]}, expected a finite "
                f"value within +-{MAX_RAW_ABS_MV:g} mV"
            )
            raise PayloadError(msg)
    lead = None
    if fields.obj.get("lead") is not None:
        lead = fields.text("lead")
        if len(lead) > MAX_LEAD_CHARS:
            msg = (
                f"raw payload: 'lead' is {len(lead)} characters, expected at most {MAX_LEAD_CHARS}"
            )
            raise PayloadError(msg)
    t0 = None if fields.obj.get("t0") is None else fields.number("t0", 0.0)
    return RawMessage(stream, start_index, fs_hz, encoding, data, gain, lead, t0)


def _base64_field(fields: _Fields, name: str) -> bytes:
    text = fields.get(name, str)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        msg = f"{fields.kind.value} payload: {name!r} is not valid base64 ({error})"
        raise PayloadError(msg) from error


class _NonFiniteNumberError(ValueError):
    """The JSON text holds NaN, Infinity, or a number beyond the range of a double."""


def _reject_constant(name: str) -> None:
    msg = f"{name} is not a JSON number"
    raise _NonFiniteNumberError(msg)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 30 else text[:27] + "..."
        msg = f"{shown} is beyond the range of a double"
        raise _NonFiniteNumberError(msg)
    return value


def _load(payload: bytes | bytearray | str, kind: TopicKind) -> _Payload:
    """Parse JSON, check it is an object with the supported schema version first."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        msg = (
            f"{kind.value} payload is {len(payload)} bytes, more than the {MAX_PAYLOAD_BYTES} "
            f"any message of the contract takes; got {_preview(payload)}"
        )
        raise PayloadError(msg)
    depth = _nesting_depth(payload)
    if depth > MAX_JSON_DEPTH:
        msg = (
            f"{kind.value} payload nests arrays or objects too deeply ({depth} levels, at most "
            f"{MAX_JSON_DEPTH}), expected a flat JSON object; got {_preview(payload)}"
        )
        raise PayloadError(msg)
    try:
        text = payload if isinstance(payload, str) else bytes(payload).decode("utf-8")
        obj = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError as error:  # the parser recurses once per nested array or object
        msg = (
            f"{kind.value} payload nests arrays or objects too deeply to parse, expected a flat "
            f"JSON object; got {_preview(payload)}"
        )
        raise PayloadError(msg) from error
    except _NonFiniteNumberError as error:
        msg = f"{kind.value} payload: {error}, expected finite numbers; got {_preview(payload)}"
        raise PayloadError(msg) from error
    except (UnicodeDecodeError, ValueError) as error:
        msg = f"{kind.value} payload is not UTF-8 JSON ({error}); got {_preview(payload)}"
        raise PayloadError(msg) from error
    if not isinstance(obj, dict):
        msg = f"{kind.value} payload is a JSON {type(obj).__name__}, expected an object"
        raise PayloadError(msg)
    if "v" not in obj:
        msg = f"{kind.value} payload has no schema version 'v'; got {_preview(payload)}"
        raise PayloadError(msg)
    version = obj["v"]
    if type(version) is not int or version != SCHEMA_VERSION:
        msg = (
            f"{kind.value} payload has schema version {_shown(version)}; this ecg-stream reads "
            f"version {SCHEMA_VERSION}: upgrade the older side (publisher or subscriber)"
        )
        raise PayloadError(msg)
    return obj


def _nesting_depth(payload: bytes | bytearray | str) -> int:
    """How deep arrays and objects nest in JSON text, brackets inside strings not counted.

    Linear and in numpy, so ``json.loads`` (which recurses once per level) never meets more
    than :data:`MAX_JSON_DEPTH` levels. In text that is no valid JSON the count may be off past
    the first error, but the parser stops there too.
    """
    if isinstance(payload, str):
        payload = payload.encode("utf-8", errors="surrogatepass")
    chars = np.frombuffer(payload, dtype=np.uint8)
    opening = (chars == ord("[")) | (chars == ord("{"))
    if np.count_nonzero(opening) <= MAX_JSON_DEPTH:
        return int(np.count_nonzero(opening))  # a bound, and the common case
    index = np.arange(chars.size)
    # a quote is escaped when an odd number of backslashes comes right before it
    last_other = np.maximum.accumulate(np.where(chars == ord("\\"), -1, index))
    backslashes_before = index - 1 - np.concatenate(([-1], last_other[:-1]))
    quotes = (chars == ord('"')) & (backslashes_before % 2 == 0)
    inside = np.cumsum(quotes) % 2 == 1
    closing = (chars == ord("]")) | (chars == ord("}"))
    steps = np.where(inside, 0, opening.astype(np.int64) - closing)
    return int(np.cumsum(steps).max(initial=0))


def _preview(payload: bytes | bytearray | str, limit: int = 60) -> str:
    text = repr(payload[:limit])
    return text + ("..." if len(payload) > limit else "")


def _shown(value: object, limit: int = 60) -> str:
    """A short rendering of a decoded JSON value for a message.

    Nested containers are not expanded: their ``repr`` could recurse as deep as the payload nests.
    """
    if isinstance(value, list | dict):
        items = value.values() if isinstance(value, dict) else value
        if any(isinstance(item, list | dict) for item in items):
            kind = "object" if isinstance(value, dict) else "array"
            return f"a nested JSON {kind} of {len(value)} item(s)"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Fields:
    """Typed, range-checked access to the fields of a decoded JSON object."""

    def __init__(self, obj: _Payload, kind: TopicKind, parent: str | None = None) -> None:
        self.obj, self.kind, self.parent = obj, kind, parent

    def _name(self, name: str) -> str:
        return f"{self.parent}.{name}" if self.parent else name

    def get(self, name: str, expected: type[Any] | tuple[type[Any], ...]) -> Any:
        if name not in self.obj:
            msg = f"{self.kind.value} payload lacks required field {self._name(name)!r}"
            raise PayloadError(msg)
        value = self.obj[name]
        if not isinstance(value, expected) or isinstance(value, bool):
            wanted = expected if isinstance(expected, tuple) else (expected,)
            names = " or ".join(_JSON_TYPE_NAMES.get(kind, kind.__name__) for kind in wanted)
            msg = (
                f"{self.kind.value} payload: {self._name(name)!r} is {_shown(value)}, "
                f"expected {names}"
            )
            raise PayloadError(msg)
        return value

    def text(self, name: str) -> str:
        value: str = self.get(name, str)
        if not value:
            msg = f"{self.kind.value} payload: {self._name(name)!r} is empty"
            raise PayloadError(msg)
        if len(value) > MAX_TEXT_CHARS:
            msg = (
                f"{self.kind.value} payload: {self._name(name)!r} is {len(value)} characters, "
                f"expected at most {MAX_TEXT_CHARS}"
            )
            raise PayloadError(msg)
        if not value.isprintable():  # control characters would rewrite a terminal or a log
            msg = (
                f"{self.kind.value} payload: {self._name(name)!r} is {_shown(value)}, which "
                "holds control or other non-printable characters"
            )
            raise PayloadError(msg)
        return value

    def integer(self, name: str) -> int:
        value: int = self.get(name, int)
        if value < 0:
            msg = f"{self.kind.value} payload: {self._name(name)!r} is {value}, expected >= 0"
            raise PayloadError(msg)
        if value > MAX_INDEX:
            msg = (
                f"{self.kind.value} payload: {self._name(name)!r} is {_shown(value)}, expected "
                f"<= {MAX_INDEX} (2**53 - 1)"
            )
            raise PayloadError(msg)
        return value

    def number(
        self, name: str, low: float, high: float = math.inf, *, positive: bool = False
    ) -> float:
        raw = self.get(name, (int, float))
        try:
            value = float(raw)
        except OverflowError:  # an integer beyond the range of a double
            value = math.inf
        if not math.isfinite(value):
            msg = (
                f"{self.kind.value} payload: {self._name(name)!r} is {_shown(raw)}, expected a "
                "finite number"
            )
            raise PayloadError(msg)
        if not low <= value <= high or (positive and value <= 0):
            lower = f"> {low:g}" if positive else f">= {low:g}"
            if math.isinf(high):
                bound = lower
            else:
                bound = f"in ({low:g}, {high:g}]" if positive else f"in [{low:g}, {high:g}]"
            msg = f"{self.kind.value} payload: {self._name(name)!r} is {value}, expected {bound}"
            raise PayloadError(msg)
        return value

    def optional_number(
        self, name: str, low: float, high: float = math.inf, *, positive: bool = False
    ) -> float | None:
        if self.obj.get(name, ...) is None:
            return None
        return self.number(name, low, high, positive=positive)

    def beat_class(self, name: str) -> BeatClass:
        value = self.text(name)
        known = {cls.value: cls for cls in BeatClass}
        if value not in known:
            msg = (
                f"{self.kind.value} payload: {name!r} is {_shown(value)}, expected one of "
                f"{list(known)}"
            )
            raise PayloadError(msg)
        return known[value]


DEDUPLICATION_CAPACITY = 65_536
"""Beat identities a :class:`BeatDeduplicator` remembers: hours of beats of dozens of streams."""


class BeatDeduplicator:
    """Recognise a beat delivered again (beats are delivered at least once), in bounded memory.

    A beat is identified by its stream and ``chain_sample``, within one run of the stream: a
    redelivery (the broker's, after a reconnection, or the publisher's own re-send of a beat
    whose acknowledgement was lost) repeats ``r_wall_time`` too, while a stream started again
    (its ``chain_sample`` counting from 0 once more) has other wall times.

    Args:
        capacity: Most recent beat identities remembered.

    Attributes:
        duplicates: Beats recognised as delivered before.
    """

    def __init__(self, capacity: int = DEDUPLICATION_CAPACITY) -> None:
        if capacity < 1:
            msg = f"capacity={capacity} must be >= 1 (beat identities remembered)"
            raise ConfigError(msg)
        self.capacity = capacity
        self.reset()

    def reset(self) -> None:
        """Forget every beat seen."""
        self.duplicates = 0
        self._seen: OrderedDict[tuple[str, int, float], None] = OrderedDict()

    def is_new(self, message: BeatMessage) -> bool:
        """Whether ``message`` is a beat not seen before; remembers it (counts it if not)."""
        key = (message.stream, message.chain_sample, message.r_wall_time)
        if key in self._seen:
            self.duplicates += 1
            return False
        self._seen[key] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True
