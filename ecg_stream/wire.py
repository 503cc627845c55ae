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

Every payload is a UTF-8 JSON object whose first field is the schema version ``"v"``. Each
message is a ``msgspec.Struct`` that spells its payload once: fields in payload order, wire
names, bounds (``msgspec.Meta``), optional fields left out when absent. Decoders check the size,
the nesting depth and the version first, then let msgspec check required fields, types and
ranges, then check what no type can say (probabilities sum to 1, heart rate agrees with RR, ...).
Every refusal is a :class:`~ecg_stream.errors.PayloadError` that starts with the topic; msgspec's
own words name the field (e.g. ``ecg/100/beats: Expected `int` >= 0 - at `$.sample```). Unknown
extra fields are ignored, so optional fields can be added without a version bump. Whatever the
bytes (deep nesting, huge or non-finite numbers, absurd values), decoding ends in a message or a
``PayloadError``, never in another exception: a subscriber counts the payload as malformed and
carries on.

Example:
    >>> msg = StatusMessage(stream="100", state=StreamState.ONLINE, record="100", fs_hz=360.0,
    ...                     model="beat_lstm", classes=BEAT_CLASSES)
    >>> decode(topic_for("ecg", "100", TopicKind.STATUS), encode(msg)) == msg
    True
"""

from __future__ import annotations

import base64
import functools
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, ClassVar, Self, TypeAlias, TypeVar, cast

import msgspec
import numpy as np
import numpy.typing as npt
from msgspec import Meta

from ecg_stream.config import CHAIN_FS_HZ, SUPPORTED_FS_HZ
from ecg_stream.errors import ConfigError, PayloadError
from ecg_stream.types import (
    BEAT_CLASSES,
    BeatClass,
    EventState,
    FloatArray,
    LabeledBeat,
    RhythmKind,
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

MAX_DEVICE_TIME_S = 1e9
"""Latest sample time a device's clock may reach, ``(start_index + samples) / fs_hz``, in s
(about 31 years of signal): every beat of an accepted chunk stays within the beat message's
bounds (sample indices at 360 Hz, record time)."""

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
_JSON = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


class TopicKind(Enum):
    """The last level of a topic: what its payloads carry."""

    BEATS = "beats"
    SAMPLES = "samples"
    STATUS = "status"
    EVENTS = "events"
    RAW = "raw"

    @property
    def qos(self) -> int:
        """MQTT QoS the publisher uses: beats and status at least once, samples at most once."""
        return 0 if self is TopicKind.SAMPLES else 1

    @property
    def retain(self) -> bool:
        """Whether the broker keeps the last message for new subscribers (status only)."""
        return self is TopicKind.STATUS


OUTPUT_KINDS: tuple[TopicKind, ...] = (
    TopicKind.BEATS,
    TopicKind.SAMPLES,
    TopicKind.STATUS,
    TopicKind.EVENTS,
)
"""What the chain publishes (:func:`decode`); devices publish ``raw`` (:func:`decode_raw`)."""


class StreamState(Enum):
    """State announced on the status topic (in the order a refusal lists them)."""

    OFFLINE = "offline"
    ONLINE = "online"


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


PARTITION_LEVEL = "part"
"""The topic level under which a partitioning broker republishes raw messages:
``<prefix>/part/<K>/<stream>/raw`` (``serve --partition K/N``)."""


def partition_prefix(prefix: str, index: int) -> str:
    """The topic prefix of partition ``index``'s raw messages, e.g. ``ecg/part/1``."""
    return f"{check_topic_prefix(prefix)}/{PARTITION_LEVEL}/{index}"


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
            f"{printable(topic)}: the topic holds control characters or a stream id longer than "
            f"{MAX_TEXT_CHARS} characters; no publisher of the contract sends it"
        )
        raise PayloadError(msg)
    if len(levels) < 3 or levels[-1] not in kinds or not levels[-2] or not all(levels[:-2]):
        msg = (
            f"{printable(topic)}: not an ecg-stream topic; expected "
            "'<prefix>/<stream>/beats', '.../samples', '.../status' or '.../raw'"
        )
        raise PayloadError(msg)
    return TopicParts("/".join(levels[:-2]), levels[-2], kinds[levels[-1]])


Text: TypeAlias = Annotated[str, Meta(min_length=1, max_length=MAX_TEXT_CHARS)]
"""A name on the wire (stream id, record, model, ...); also printable (checked on decode)."""
Index: TypeAlias = Annotated[int, Meta(ge=0, le=MAX_INDEX)]
"""A sample index or a counter."""
Unit: TypeAlias = Annotated[float, Meta(ge=0.0, le=1.0, extra={"digits": 6})]
"""A probability; ``digits``: decimals written on the wire (``round``)."""
UnixTime: TypeAlias = Annotated[float, Meta(ge=0.0, le=MAX_UNIX_TIME_S, extra={"digits": 6})]
ChainRate: TypeAlias = Annotated[float, Meta(ge=SUPPORTED_FS_HZ[0], le=SUPPORTED_FS_HZ[1])]
DeviceRate: TypeAlias = Annotated[float, Meta(ge=RAW_FS_RANGE_HZ[0], le=RAW_FS_RANGE_HZ[1])]
Int16Array: TypeAlias = npt.NDArray[np.int16]


class _WireBytes(np.ndarray):
    """The bytes of a base64 field as decoded, before its message types them (``_validated``)."""


class ClassProbabilities(msgspec.Struct, frozen=True):
    """One probability per class (``"p"`` on the wire); a sequence in ``BEAT_CLASSES`` order."""

    N: Unit
    S: Unit
    V: Unit
    F: Unit
    Q: Unit

    def __iter__(self) -> Iterator[float]:
        return iter(msgspec.structs.astuple(self))

    def __len__(self) -> int:
        return len(BEAT_CLASSES)

    def __getitem__(self, index: int) -> float:
        value: float = msgspec.structs.astuple(self)[index]
        return value


Sequence.register(ClassProbabilities)


class BeatMessage(
    msgspec.Struct, frozen=True, omit_defaults=True, tag_field="v", tag=SCHEMA_VERSION
):
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
        probabilities: One probability per class, in ``BEAT_CLASSES`` order (``"p"``).
        rr_ms: Interval to the previous beat, in ms (None for a stream's first beat).
        hr_bpm: Instantaneous heart rate ``60000 / rr_ms`` (None with ``rr_ms``).
        compute_ms: From the arrival of the last sample the beat needs to its publication, in ms.
        published_at: Unix time of publication, in s.
        sqi: Signal-quality index of the beat in [0, 1] (None: not assessed). Optional on the
            wire (``"sqi"``).
        sqi_issue: Why the beat's signal is unusable (its label is then Q), or None. Optional on
            the wire (``"sqi_issue"``, only with ``"sqi"``).
    """

    kind: ClassVar[TopicKind] = TopicKind.BEATS
    stream: Text
    record: Text
    sample: Index
    chain_sample: Index
    time_s: Annotated[float, Meta(ge=0.0, le=MAX_TIME_S, extra={"digits": 6})]
    r_wall_time: UnixTime
    label: BeatClass
    confidence: Unit
    probabilities: ClassProbabilities = msgspec.field(name="p")
    rr_ms: Annotated[float, Meta(ge=MIN_RR_MS, le=MAX_TIME_S * 1000.0, extra={"digits": 3})] | None
    hr_bpm: Annotated[float, Meta(gt=0.0, le=MAX_HEART_RATE_BPM, extra={"digits": 3})] | None
    compute_ms: Annotated[float, Meta(ge=0.0, le=MAX_COMPUTE_MS, extra={"digits": 4})]
    published_at: UnixTime
    sqi: Annotated[float, Meta(ge=0.0, le=1.0, extra={"digits": 4})] | None = None
    sqi_issue: SignalIssue | None = None

    @classmethod
    def from_beat(
        cls,
        beat: LabeledBeat,
        *,
        stream: str,
        record: str,
        sample: int,
        chain_sample: int,
        time_s: float,
        r_wall_time: float,
        compute_ms: float,
        published_at: float,
    ) -> BeatMessage:
        """Describe a labeled beat as published (the publisher knows the last two arguments).

        Args:
            beat: The beat.
            stream: Stream id.
            record: Record name.
            sample: R-peak index in the record's own clock.
            chain_sample: R-peak index at the chain's rate (360 Hz).
            time_s: R-peak time in the record, in s.
            r_wall_time: Unix time of the R peak, in s.
            compute_ms: Compute latency, in ms.
            published_at: Unix time of publication, in s.
        """
        rr_ms = beat.window.rr.rr_ms
        has_rr = math.isfinite(rr_ms) and rr_ms > 0
        probabilities = ClassProbabilities(*(float(p) for p in beat.probabilities))
        quality = beat.window.quality
        return cls(
            stream=stream,
            record=record,
            sample=sample,
            chain_sample=chain_sample,
            time_s=time_s,
            r_wall_time=r_wall_time,
            label=beat.label,
            confidence=probabilities[beat.label.index],
            probabilities=probabilities,
            rr_ms=rr_ms if has_rr else None,
            hr_bpm=60_000.0 / rr_ms if has_rr else None,
            compute_ms=compute_ms,
            published_at=published_at,
            sqi=None if quality is None else quality.sqi,
            sqi_issue=None if quality is None else quality.issue,
        )

    def _validated(self, where: str) -> Self:
        """What the types cannot say: probabilities sum to 1, RR and heart rate agree, ..."""
        total = sum(self.probabilities)
        if abs(total - 1.0) > PROBABILITY_SUM_TOLERANCE:
            msg = f"{where}: probabilities 'p' sum to {total:.6f}, expected 1"
            raise PayloadError(msg)
        chosen = self.probabilities[self.label.index]
        if abs(self.confidence - chosen) > PROBABILITY_SUM_TOLERANCE:
            msg = f"{where}: 'confidence' {self.confidence} is not p.{self.label.value} {chosen}"
            raise PayloadError(msg)
        rr_ms, hr_bpm = self.rr_ms, self.hr_bpm
        if (rr_ms is None) != (hr_bpm is None):
            msg = f"{where}: 'rr_ms' is {rr_ms} but 'hr_bpm' {hr_bpm}: both null or neither"
            raise PayloadError(msg)
        if (
            rr_ms is not None
            and hr_bpm is not None  # each rounded on the wire: to 0.001 ms and 0.001 bpm
            and not math.isclose(hr_bpm, 60_000.0 / rr_ms, rel_tol=1e-3, abs_tol=1e-3)
        ):
            msg = (
                f"{where}: 'hr_bpm' {hr_bpm} is not 60000 / 'rr_ms' {rr_ms} ({60_000 / rr_ms:.3f})"
            )
            raise PayloadError(msg)
        if self.sqi_issue is not None and (self.sqi is None or self.label is not BeatClass.Q):
            msg = (
                f"{where}: 'sqi_issue' {self.sqi_issue.value!r} comes with label "
                f"{self.label.value!r} and sqi {self.sqi}; an unusable beat carries an 'sqi' "
                "and label 'Q'"
            )
            raise PayloadError(msg)
        return self


class SamplesMessage(msgspec.Struct, frozen=True, tag_field="v", tag=SCHEMA_VERSION):
    """A chunk of filtered samples, as published on ``<prefix>/<stream>/samples``.

    On the wire ``data`` is base64 of little-endian int16 counts of ``scale_uv`` microvolts.

    Args:
        stream: Stream id.
        start_index: Index of the first sample at the chain's rate (same clock as
            ``BeatMessage.chain_sample``).
        fs_hz: Sampling rate of the samples, in Hz.
        scale_uv: Microvolts per count.
        counts: The samples, int16 counts of ``scale_uv`` microvolts (``"data"``).
    """

    kind: ClassVar[TopicKind] = TopicKind.SAMPLES
    stream: Text
    start_index: Index
    fs_hz: ChainRate
    scale_uv: Annotated[float, Meta(gt=0.0, le=MAX_SCALE_UV)]
    counts: Int16Array = msgspec.field(name="data")

    def __post_init__(self) -> None:
        if not isinstance(self.counts, _WireBytes) and self.counts.dtype != np.int16:
            msg = f"SamplesMessage.counts must be int16, as on the wire; got {self.counts.dtype}"
            raise ValueError(msg)

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

    def _validated(self, where: str) -> Self:
        """Whole int16 samples, at most :data:`MAX_SAMPLES_PER_MESSAGE`, typed."""
        size = self.counts.size
        if size % 2:
            msg = f"{where}: 'data' holds {size} bytes, expected int16 pairs (even)"
            raise PayloadError(msg)
        if size // 2 > MAX_SAMPLES_PER_MESSAGE:
            msg = (
                f"{where}: 'data' holds {size // 2} samples, expected at most "
                f"{MAX_SAMPLES_PER_MESSAGE}; publish long stretches in several messages"
            )
            raise PayloadError(msg)
        counts = np.frombuffer(self.counts, dtype="<i2").astype(np.int16)
        return msgspec.structs.replace(self, counts=counts)


class IngestStatus(msgspec.Struct, frozen=True, omit_defaults=True):
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
            Optional on the wire (false when absent).
        refused_sources: Chunks refused because another device (another ``session``) sent on
            this stream id while the first still did: two patients must not be spliced into
            one stream. Optional on the wire (0 when absent).
    """

    worker: Text
    device_fs_hz: DeviceRate
    chunks: Index
    samples: Index
    gaps: Index
    gap_samples: Index
    duplicates: Index
    malformed: Index
    dropped: Index
    interleaved: bool = False
    refused_sources: Index = 0

    @classmethod
    def starting(cls, worker: str, device_fs_hz: float) -> IngestStatus:
        """The counters of a stream not fed yet: all zero."""
        return cls(worker, device_fs_hz, 0, 0, 0, 0, 0, 0, 0)


class StatusMessage(
    msgspec.Struct, frozen=True, omit_defaults=True, tag_field="v", tag=SCHEMA_VERSION
):
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
        rhythm: The ongoing rhythm episode of highest priority (``af``, ``vt``, ...), or None
            when none is (or the stream has no rhythm stage). Optional on the wire
            (``"rhythm"``).
        error: On an ``offline`` status, why the stream was stopped by an error of its own
            (for example a model whose outputs are not probabilities), at most
            ``MAX_TEXT_CHARS`` characters; None when it ended normally. Optional on the wire
            (``"error"``).
    """

    kind: ClassVar[TopicKind] = TopicKind.STATUS
    stream: Text
    state: StreamState
    record: Text
    fs_hz: ChainRate
    model: Text
    classes: Annotated[tuple[BeatClass, ...], Meta(min_length=1)]
    ingest: IngestStatus | None = None
    signal: SignalState | None = None
    rhythm: RhythmKind | None = None
    error: Text | None = None

    @classmethod
    def online(
        cls, stream: str, record: str, model: str, ingest: IngestStatus | None = None
    ) -> StatusMessage:
        """A stream of the chain (360 Hz, the AAMI classes) coming online."""
        return cls(
            stream=stream,
            state=StreamState.ONLINE,
            record=record,
            fs_hz=CHAIN_FS_HZ,
            model=model,
            classes=BEAT_CLASSES,
            ingest=ingest,
        )

    def _validated(self, where: str) -> Self:
        """Each class at most once."""
        if len(set(self.classes)) != len(self.classes):
            msg = f"{where}: 'classes' repeats a class"
            raise PayloadError(msg)
        return self


class EventMessage(
    msgspec.Struct, frozen=True, omit_defaults=True, tag_field="v", tag=SCHEMA_VERSION
):
    """A rhythm event, as published on ``<prefix>/<stream>/events`` (QoS 1, not retained).

    Args:
        stream: Stream id.
        record: Record name.
        kind: The rhythm or event (``af``, ``vt``, ``pause``, ``asystole``, ...).
        state: ``start`` or ``end`` of an episode, or ``instant`` (a couplet, a pause).
        sample: The event's sample in the record's own clock (an episode's first or last
            beat, an instant event's beat, the moment asystole began).
        chain_sample: The same sample at the chain's rate (360 Hz).
        time_s: ``sample / record fs``, in s.
        wall_time: Unix time of the event's sample, in s.
        delay_s: From the event's sample to the moment the stage decided, in signal time, s.
        beats: Beats involved (an episode's beats so far; a run's length).
        rate_bpm: Mean heart rate of those beats (None when there are none).
        detail: Why an episode ended when it did not end by itself (``stream ended``,
            ``lead-off``, ``gap``), or ``sustained``; optional on the wire.
    """

    kind: ClassVar[TopicKind] = TopicKind.EVENTS
    stream: Text
    record: Text
    rhythm: RhythmKind = msgspec.field(name="kind")
    state: EventState
    sample: Index
    chain_sample: Index
    time_s: Annotated[float, Meta(ge=0.0, le=MAX_TIME_S, extra={"digits": 6})]
    wall_time: UnixTime
    delay_s: Annotated[float, Meta(ge=0.0, le=MAX_TIME_S, extra={"digits": 3})]
    beats: Annotated[int, Meta(ge=0, le=MAX_INDEX)]
    rate_bpm: Annotated[float, Meta(gt=0.0, le=MAX_HEART_RATE_BPM, extra={"digits": 3})] | None
    detail: Text | None = None

    def _validated(self, where: str) -> Self:
        """A rate belongs to beats: none without them."""
        if self.beats == 0 and self.rate_bpm is not None:
            msg = f"{where}: 'rate_bpm' {self.rate_bpm} for an event of no beats"
            raise PayloadError(msg)
        return self


WireMessage: TypeAlias = BeatMessage | SamplesMessage | StatusMessage | EventMessage


class RawEncoding(Enum):
    """How the samples of a ``raw`` message are written in ``data`` (base64, little-endian)."""

    INT16 = "int16"  # counts; mV = counts / gain
    FLOAT32 = "float32"  # mV


class RawMessage(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="v", tag=SCHEMA_VERSION
):
    """A chunk of one lead's samples from a device, as published on ``<prefix>/<stream>/raw``.

    Args:
        stream: Stream id.
        start_index: Index of the first sample in the device's clock (its own sample counter).
        fs_hz: The device's sampling rate, in Hz (within :data:`RAW_FS_RANGE_HZ`).
        encoding: How ``data`` is written.
        gain: Counts per mV of int16 data; None for float32 data.
        data: The samples: int16 counts (``encoding`` INT16) or float32 mV (FLOAT32).
        lead: Lead name (e.g. ``MLII``), if the device says.
        t0: Unix time of the first sample by the device's clock, in s, if the device says.
        session: A token the device draws at each start (``device`` sends one), if it says:
            chunks of another session on the same stream id, while this one still sends, are
            another device's and are refused; a new session after a silence is a restart.

    Example:
        >>> msg = RawMessage.from_counts("bed1", 720, 360.0, np.array([200, -100]), gain=200.0)
        >>> decode_raw("ecg/bed1/raw", encode(msg)).millivolts().tolist()
        [1.0, -0.5]
    """

    kind: ClassVar[TopicKind] = TopicKind.RAW
    stream: Text
    start_index: Index
    fs_hz: DeviceRate
    encoding: RawEncoding
    gain: Annotated[float, Meta(ge=RAW_GAIN_RANGE[0], le=RAW_GAIN_RANGE[1])] | None = None
    data: npt.NDArray[np.int16 | np.float32]
    lead: Annotated[str, Meta(min_length=1, max_length=MAX_LEAD_CHARS)] | None = None
    t0: Annotated[float, Meta(ge=0.0, extra={"digits": 6})] | None = None
    session: Text | None = None

    def __post_init__(self) -> None:
        if isinstance(self.data, _WireBytes):
            return  # typed by _validated
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
        session: str | None = None,
    ) -> RawMessage:
        """Int16 counts with their gain (counts per mV), as an ADC delivers them."""
        data = np.asarray(counts)
        if data.size and (data.min() < _INT16_MIN or data.max() > _INT16_MAX):
            msg = f"counts span {data.min()}..{data.max()}, beyond int16; send float32 mV"
            raise ValueError(msg)
        return cls(
            stream=stream,
            start_index=start_index,
            fs_hz=fs_hz,
            encoding=RawEncoding.INT16,
            gain=gain,
            data=data.astype(np.int16),
            lead=lead,
            t0=t0,
            session=session,
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
        session: str | None = None,
    ) -> RawMessage:
        """Float32 samples in mV."""
        data = np.asarray(samples_mv, dtype=np.float32)
        return cls(
            stream=stream,
            start_index=start_index,
            fs_hz=fs_hz,
            encoding=RawEncoding.FLOAT32,
            data=data,
            lead=lead,
            t0=t0,
            session=session,
        )

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
            and (self.t0, self.session) == (other.t0, other.session)
            and np.array_equal(self.data, other.data)
        )

    def _validated(self, where: str) -> Self:
        """Gain only with int16, whole samples, 1 to 10 000 of them, finite float32 mV; typed."""
        int16 = self.encoding is RawEncoding.INT16
        if int16 and self.gain is None:
            msg = f"{where}: int16 'data' needs its 'gain' (counts per mV)"
            raise PayloadError(msg)
        if not int16 and self.gain is not None:
            msg = f"{where}: 'gain' is for int16 counts; float32 'data' is in mV, send no gain"
            raise PayloadError(msg)
        size, itemsize = self.data.size, 2 if int16 else 4
        if size % itemsize:
            msg = (
                f"{where}: 'data' holds {size} bytes, not a whole number of "
                f"{self.encoding.value} samples ({itemsize} bytes each)"
            )
            raise PayloadError(msg)
        count = size // itemsize
        if not 1 <= count <= MAX_RAW_SAMPLES_PER_MESSAGE:
            msg = (
                f"{where}: 'data' holds {count} samples, expected 1 to "
                f"{MAX_RAW_SAMPLES_PER_MESSAGE}; send long stretches in several chunks"
            )
            raise PayloadError(msg)
        end_s = (self.start_index + count) / self.fs_hz
        if end_s > MAX_DEVICE_TIME_S:
            msg = (
                f"{where}: 'start_index' {self.start_index} + {count} samples at {self.fs_hz:g} "
                f"Hz reach {end_s:.3g} s, past the {MAX_DEVICE_TIME_S:.0e} s a device's clock may "
                "count; restart the counter"
            )
            raise PayloadError(msg)
        if self.t0 is not None and self.t0 + end_s > MAX_UNIX_TIME_S:
            msg = (
                f"{where}: 't0' {self.t0:.6g} + {end_s:.6g} s of samples passes "
                f"{MAX_UNIX_TIME_S:.0f} (2100-01-01); send Unix time in s"
            )
            raise PayloadError(msg)
        if int16:
            data = np.frombuffer(self.data, dtype="<i2").astype(np.int16)
        else:
            data = np.frombuffer(self.data, dtype="<f4").astype(np.float32)
            with np.errstate(invalid="ignore"):
                bad = ~(np.abs(data) <= MAX_RAW_ABS_MV)  # also NaN
            if bad.any():
                first = int(np.argmax(bad))
                msg = (
                    f"{where}: float32 sample {first} is {data[first]}, expected a finite "
                    f"value within +-{MAX_RAW_ABS_MV:g} mV"
                )
                raise PayloadError(msg)
        return msgspec.structs.replace(self, data=data)


def kind_of(message: WireMessage | RawMessage) -> TopicKind:
    """The topic kind a message is published on."""
    return message.kind


def encode(message: WireMessage | RawMessage) -> bytes:
    """Encode a message as the UTF-8 JSON payload of its topic.

    ``json.dumps`` writes the text: its floats (``1e-06``, ``1e+16``) and its escapes of
    non-ASCII text are those of contract version 1, byte for byte; msgspec writes others.

    Raises:
        PayloadError: A number is NaN or infinite.
    """
    payload = msgspec.to_builtins(message, enc_hook=_to_builtin)
    _round(payload, type(message))
    try:
        text = _JSON.encode(payload)
    except ValueError as error:
        msg = f"{message.kind.value} message of stream {message.stream!r}: {error}"
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
            f"{printable(topic)}: a raw topic carries device input, not chain output; decode it "
            "with decode_raw (subscribe to the beats, samples and status topics only)"
        )
        raise PayloadError(msg)
    schemas: dict[TopicKind, type[WireMessage]] = {
        TopicKind.BEATS: BeatMessage,
        TopicKind.SAMPLES: SamplesMessage,
        TopicKind.STATUS: StatusMessage,
        TopicKind.EVENTS: EventMessage,
    }
    return _on_topic(topic, parts, _decode(printable(topic), payload, schemas[parts.kind]))


def decode_beat(payload: bytes | bytearray | str) -> BeatMessage:
    """Decode and validate a ``beats`` payload.

    Raises:
        PayloadError: It does not follow the contract.
    """
    return _decode("beats payload", payload, BeatMessage)


def decode_samples(payload: bytes | bytearray | str) -> SamplesMessage:
    """Decode and validate a ``samples`` payload.

    Raises:
        PayloadError: It does not follow the contract.
    """
    return _decode("samples payload", payload, SamplesMessage)


def decode_status(payload: bytes | bytearray | str) -> StatusMessage:
    """Decode and validate a ``status`` payload.

    Raises:
        PayloadError: It does not follow the contract.
    """
    return _decode("status payload", payload, StatusMessage)


def decode_event(payload: bytes | bytearray | str) -> EventMessage:
    """Decode and validate an ``events`` payload.

    Raises:
        PayloadError: It does not follow the contract.
    """
    return _decode("events payload", payload, EventMessage)


def decode_raw(topic: str, payload: bytes | bytearray | str) -> RawMessage:
    """Decode and validate a device's ``raw`` payload received on ``topic``.

    Raises:
        PayloadError: The topic is no ``raw`` topic, the payload does not follow the contract,
            or its ``stream`` differs from the topic's stream level.
    """
    parts = parse_topic(topic)
    if parts.kind is not TopicKind.RAW:
        msg = f"{printable(topic)}: decode_raw reads '<prefix>/<stream>/raw' topics; use decode"
        raise PayloadError(msg)
    return _on_topic(topic, parts, _decode(printable(topic), payload, RawMessage))


_Message = TypeVar("_Message", bound=WireMessage | RawMessage)


def _on_topic(topic: str, parts: TopicParts, message: _Message) -> _Message:
    if message.stream != parts.stream:
        msg = f"{printable(topic)}: payload says stream {message.stream!r}, topic {parts.stream!r}"
        raise PayloadError(msg)
    return message


def _decode(where: str, payload: bytes | bytearray | str, schema: type[_Message]) -> _Message:
    """Size, depth and version first, then msgspec's checks, then the message's own.

    Args:
        where: What starts each error: the topic, or the kind of payload.
        payload: The payload as received.
        schema: The message it must be.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        msg = (
            f"{where}: payload of {len(payload)} bytes, more than the {MAX_PAYLOAD_BYTES} any "
            "message of the contract takes"
        )
        raise PayloadError(msg)
    data = payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload
    depth = _nesting_depth(data)
    if depth > MAX_JSON_DEPTH:  # msgspec would parse any depth; the contract nests two levels
        msg = (
            f"{where}: payload nests arrays or objects too deeply ({depth} levels, at most "
            f"{MAX_JSON_DEPTH})"
        )
        raise PayloadError(msg)
    try:  # to Python objects first: that refuses NaN, Infinity and huge numbers in any field
        obj = msgspec.json.decode(data)
    except msgspec.DecodeError as error:
        msg = f"{where}: {_short(str(error))}"
        raise PayloadError(msg) from error
    version = obj.get("v") if isinstance(obj, dict) else SCHEMA_VERSION  # else msgspec says
    if type(version) is not int or version != SCHEMA_VERSION:  # msgspec takes a missing tag
        got = "missing" if version is None else f"version {_short(repr(version))}"
        msg = (
            f"{where}: schema version 'v' is {got}, this ecg-stream reads version "
            f"{SCHEMA_VERSION}; upgrade the older side (publisher or subscriber)"
        )
        raise PayloadError(msg)
    try:
        message = msgspec.convert(obj, schema, dec_hook=_from_base64)
    except msgspec.ValidationError as error:
        msg = f"{where}: {_short(str(error))}"
        raise PayloadError(msg) from error
    _check_printable(where, message)
    return cast(_Message, message._validated(where))  # Self of a TypeVar's bound: mypy says union


def _short(text: str, limit: int = 300) -> str:
    """``text``, its middle cut to ``limit`` characters: msgspec quotes a wrong enum value whole."""
    return text if len(text) <= limit else f"{text[: limit - 103]}...{text[-100:]}"


def _check_printable(where: str, message: msgspec.Struct) -> None:
    """Refuse text with control characters: printed, it would rewrite a terminal or a log line.

    A check of its own: ``str.isprintable`` goes by Unicode category, which no ``Meta`` pattern
    (Python's ``re``) can say.
    """
    for name, value in msgspec.structs.asdict(message).items():
        if isinstance(value, msgspec.Struct):
            _check_printable(where, value)
        elif isinstance(value, str) and not value.isprintable():
            msg = f"{where}: {name!r} holds control or other non-printable characters"
            raise PayloadError(msg)


def _nesting_depth(payload: bytes | bytearray) -> int:
    """How deep arrays and objects nest in JSON text, brackets inside strings not counted.

    Linear and in numpy, so no parser ever meets more than :data:`MAX_JSON_DEPTH` levels. In
    text that is no valid JSON the count may be off past the first error, but the parser stops
    there too.
    """
    opened = payload.count(b"[") + payload.count(b"{")
    if opened <= MAX_JSON_DEPTH:
        return opened  # a bound, and the common case
    chars = np.frombuffer(payload, dtype=np.uint8)
    opening = (chars == ord("[")) | (chars == ord("{"))
    index = np.arange(chars.size)
    # a quote is escaped when an odd number of backslashes comes right before it
    last_other = np.maximum.accumulate(np.where(chars == ord("\\"), -1, index))
    backslashes_before = index - 1 - np.concatenate(([-1], last_other[:-1]))
    quotes = (chars == ord('"')) & (backslashes_before % 2 == 0)
    inside = np.cumsum(quotes) % 2 == 1
    closing = (chars == ord("]")) | (chars == ord("}"))
    steps = np.where(inside, 0, opening.astype(np.int64) - closing)
    return int(np.cumsum(steps).max(initial=0))


def _to_builtin(value: object) -> object:
    """Encode hook: arrays as base64 of little-endian bytes, numpy scalars as such."""
    if isinstance(value, np.ndarray):
        data = value.astype(value.dtype.newbyteorder("<")).tobytes()
        return base64.b64encode(data).decode("ascii")
    if isinstance(value, np.generic):
        return value.item()
    msg = f"{type(value).__name__} has no place on the wire"
    raise NotImplementedError(msg)


def _from_base64(schema: type[Any], value: Any) -> _WireBytes:
    """Decode hook of the array fields: the bytes of strict base64, typed by ``_validated``."""
    try:
        data = base64.b64decode(value, validate=True)
    except (TypeError, ValueError) as error:  # msgspec adds where, as a ValidationError
        msg = f"Invalid base64 ({error})"
        raise ValueError(msg) from error
    return np.frombuffer(data, np.uint8).view(_WireBytes)


@functools.cache
def _decimals(schema: type[msgspec.Struct]) -> dict[str, int | type[msgspec.Struct]]:
    """Wire names of the rounded floats, with their ``Meta`` digits; of Structs holding some."""
    info = cast(msgspec.inspect.StructType, msgspec.inspect.type_info(schema))
    found: dict[str, int | type[msgspec.Struct]] = {}
    for field in info.fields:
        kind = field.type
        if isinstance(kind, msgspec.inspect.UnionType):  # X | None
            kind = next(t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType))
        if isinstance(kind, msgspec.inspect.Metadata) and kind.extra:
            found[field.encode_name] = kind.extra["digits"]
        elif isinstance(kind, msgspec.inspect.StructType) and _decimals(kind.cls):
            found[field.encode_name] = kind.cls
    return found


def _round(payload: dict[str, Any], schema: type[msgspec.Struct]) -> None:
    """Round the floats of an encoded Struct in place, to the ``digits`` of their ``Meta``."""
    for name, digits in _decimals(schema).items():
        value = payload.get(name)
        if value is None:
            continue
        if isinstance(digits, int):
            payload[name] = round(value, digits)
        else:
            _round(value, digits)
