"""One device's ``raw`` chunks into the chain: sequencing, resampling to 360 Hz, device clock.

:class:`IngestSession` is pure and synchronous (no asyncio, no clock: arrival times are passed
in), so ``serve`` only wires it to MQTT. Per chunk it decides the chunk's fate from its first
index in the device's clock:

- the next expected index: processed;
- later than expected: a **gap**. The chain is told: the samples it holds are flushed (the
  resampler's tail, then the extractor's held-back beats), and a fresh chain starts at the new
  index, so no beat is invented across the gap and none before it is lost (a stretch between
  two gaps shorter than one beat window, 250 samples at 360 Hz, holds no whole beat and
  gives none);
- earlier, wholly seen already: a **duplicate** (QoS 1 redelivery, or an older chunk), dropped
  and counted; a chunk that overlaps the end of what was processed has its new samples
  processed and counts as a duplicate too;
- another sampling rate than the session's: the chain restarts as after a gap;
- a counter that started again (a rebooted device: a chunk within ``RESTART_MAX_START_S`` of
  zero while the stream is more than ``RESTART_BACK_S`` further on): a new run from there, as
  after a gap, not duplicates of what came before;
- another device ``session`` than the stream's (the optional token a device draws at each
  start): while the stream's session sent within ``SESSION_SILENCE_S``, a second device on the
  same stream id, refused and counted (``refused_sources``), so two patients are never spliced
  into one stream; after that silence, the same device restarted: a new run from its chunk.

Chunks at 360 Hz go to the chain as they are (the same samples, hence the same beats, as
``replay`` and ``analyze``); other rates go through a streaming resampler
(``soxr.ResampleStream``, state kept between chunks, its delay compensated), and beat indices
are mapped back to the device's clock.

A stream whose chunks keep arriving after gaps of whole chunks is being split between workers
(a shared subscription that hands a topic's messages round-robin to several members): the
session says so (``interleaved``), drops what it receives instead of classifying fragments,
and starts afresh once it receives the stream's chunks consecutively again.
"""

from __future__ import annotations

import math
from collections import deque
from enum import Enum

import numpy as np
import soxr

from ecg_stream.config import CHAIN_FS_HZ, ChainConfig
from ecg_stream.detector.chain import BeatExtractor
from ecg_stream.live.front import ChunkFate, Ingested, PlacedWindow
from ecg_stream.types import BeatWindow, Chunk, FloatArray, SignalIssue, SignalState
from ecg_stream.wire import IngestStatus, RawMessage

RESAMPLER_QUALITY = "LQ"
"""``soxr`` quality of the resampler: libsoxr's 16-bit ``LQ`` keeps the ECG band (< 100 Hz)
flat and holds back the least signal of its linear-phase qualities (``MQ``/``HQ`` buffer 2-4 s
of input at 100-250 Hz)."""

INTERLEAVE_WINDOW_CHUNKS = 12
"""Chunks over which the gap pattern of interleaved delivery is looked for."""

INTERLEAVE_MIN_GAPS = 4
"""Gaps of whole chunks within that window that mean the stream is split between workers."""

INTERLEAVE_MAX_MISSING_CHUNKS = 8
"""Largest gap, in chunks, that counts towards that pattern (more is an outage, not a split)."""

RESTART_MAX_START_S = 10.0
"""A chunk starting this close to sample 0 (in s of the device's clock) may be a restarted one."""

RESTART_BACK_S = 60.0
"""How far behind the stream (in s of the device's clock) such a chunk must be to restart it:
redelivered duplicates (QoS 1, a persistent session) lie seconds behind, not a minute."""

SESSION_SILENCE_S = 5.0
"""Silence of a stream's device session, in s of arrival time, after which a chunk of another
session is a restart of the device rather than a second device on the same stream id."""

RECOVER_CHUNKS = 20
"""Consecutive chunks after which an interleaved stream is taken up again, afresh."""


class _Source(Enum):
    """Whose chunk a session is handed."""

    SAME = "same"  # the stream's device (or a device that sends no session)
    RESTARTED = "restarted"  # the stream's device under a new session, after a silence
    SECOND_DEVICE = "second device"  # another device on the same stream id, refused


class _ChainRun:
    """Consecutive samples of one rate from ``origin_index`` on: one resampler, one extractor."""

    def __init__(self, config: ChainConfig, fs_hz: float, origin_index: int) -> None:
        self.fs_hz, self.origin_index = fs_hz, origin_index
        self.window_samples = config.window_samples
        self.chain_origin = round(origin_index * CHAIN_FS_HZ / fs_hz)
        self.extractor = BeatExtractor(config)
        self.resampler = (
            None
            if fs_hz == CHAIN_FS_HZ
            else soxr.ResampleStream(
                fs_hz, CHAIN_FS_HZ, 1, dtype="float64", quality=RESAMPLER_QUALITY
            )
        )
        self.chain_samples = 0  # samples given to the extractor so far

    def feed(self, samples_mv: FloatArray, arrival_s: float, *, last: bool = False) -> Ingested:
        if self.resampler is None:
            resampled = samples_mv
        else:
            resampled = np.asarray(
                self.resampler.resample_chunk(np.ascontiguousarray(samples_mv), last=last),
                dtype=np.float64,
            )
        if resampled.size == 0:
            return Ingested(ChunkFate.PROCESSED)
        out = self.extractor.process(Chunk(self.chain_samples, resampled, arrival_s))
        self.chain_samples += resampled.size
        filtered = Chunk(
            self.chain_origin + out.filtered.start_index, out.filtered.samples, arrival_s
        )
        return Ingested(ChunkFate.PROCESSED, self._mapped(out.windows), (filtered,))

    def mark_gap(self, *, after: bool) -> None:
        """A gap follows the samples fed so far, or precedes the first: beats touching it are Q."""
        at = self.chain_samples if after else 0
        first, last = (at, at + self.window_samples) if after else (at - self.window_samples, at)
        self.extractor.quality.add_stretch(first, last, SignalIssue.GAP)

    def finish(self, arrival_s: float) -> Ingested:
        """The run ended: the resampler's tail through the chain, then the held-back beats.

        A run shorter than one beat window cannot hold a whole beat: what its detector held
        is dropped, not padded into beats (fragments of a stream split between workers).
        """
        tail = Ingested(ChunkFate.PROCESSED)
        if self.resampler is not None:
            tail = self.feed(np.zeros(0), arrival_s, last=True)
        flushed = self._mapped(self.extractor.flush().windows)
        if self.chain_samples < self.window_samples:
            flushed = ()
        return Ingested(ChunkFate.PROCESSED, tail.windows + flushed, tail.filtered)

    def _mapped(self, windows: tuple[BeatWindow, ...]) -> tuple[PlacedWindow, ...]:
        ratio = self.fs_hz / CHAIN_FS_HZ
        return tuple(
            PlacedWindow(
                window=window,
                sample_index=self.origin_index + round(window.peak.index * ratio),
                chain_index=self.chain_origin + window.peak.index,
                fs_hz=self.fs_hz,
            )
            for window in windows
        )


class IngestSession:
    """One device stream as a worker holds it: raw chunks in, beat windows in device time out.

    Args:
        stream_id: The stream.
        config: The chain's configuration.
        worker: Id of the worker holding the session (reported on ``status``).

    Attributes:
        fs_hz: The device's sampling rate (NaN before the first chunk).
        lead: The lead name the device gave, if any.
        next_index: Device index the next chunk should start at (None before the first).
        interleaved: The stream's chunks are being split between workers.

    Example:
        >>> session = IngestSession("bed1", ChainConfig(), worker="w1")
        >>> msg = RawMessage.from_counts("bed1", 0, 250.0, np.zeros(25, np.int16), gain=200.0)
        >>> session.process(msg, arrival_s=0.0, arrival_wall_s=1.7e9).fate
        <ChunkFate.PROCESSED: 'processed'>
        >>> later = RawMessage.from_counts("bed1", 50, 250.0, np.zeros(25, np.int16), gain=200.0)
        >>> session.process(later, 0.1, 1.7e9).fate, session.ingest().gap_samples
        (<ChunkFate.AFTER_GAP: 'after_gap'>, 25)
        >>> session.process(msg, 0.2, 1.7e9).fate  # redelivered
        <ChunkFate.DUPLICATE: 'duplicate'>
    """

    def __init__(self, stream_id: str, config: ChainConfig, worker: str) -> None:
        self.stream_id, self.config, self.worker = stream_id, config, worker
        self.reset()

    def reset(self) -> None:
        """Forget everything: the session is new."""
        self.fs_hz = math.nan
        self.lead: str | None = None
        self.next_index: int | None = None
        self.interleaved = False
        self._run: _ChainRun | None = None
        self._counts = dict.fromkeys(
            ("chunks", "samples", "gaps", "gap_samples", "duplicates", "malformed", "dropped"), 0
        )
        self._whole_chunk_gaps: deque[bool] = deque(maxlen=INTERLEAVE_WINDOW_CHUNKS)
        self._consecutive_chunks = 0  # while interleaved: chunks received without a gap
        self._last_chunk_samples = 0
        self._wall_anchor: tuple[int, float] | None = None  # (device index, Unix time)
        self._session: str | None = None  # the device session the stream follows, if sent
        self._session_s = math.nan  # arrival of that session's last chunk
        self._refused_sources = 0

    @property
    def record(self) -> str:
        """Beats and status of a device name its stream as their record."""
        return self.stream_id

    def signal(self) -> SignalState | None:
        """The input's state at the newest sample (None before the first chunk)."""
        return None if self._run is None else self._run.extractor.state

    def count_malformed(self) -> None:
        """A message on the stream's ``raw`` topic did not decode."""
        self._counts["malformed"] += 1

    def count_dropped(self) -> None:
        """The worker dropped one of the stream's chunks (it fell behind)."""
        self._counts["dropped"] += 1

    def ingest(self) -> IngestStatus:
        """The counters, as published on the stream's ``status`` topic."""
        fs_hz = self.fs_hz if math.isfinite(self.fs_hz) else CHAIN_FS_HZ
        return IngestStatus(
            worker=self.worker,
            device_fs_hz=fs_hz,
            interleaved=self.interleaved,
            refused_sources=self._refused_sources,
            **self._counts,
        )

    def source_index(self, chain_index: int) -> int:
        """A sample of the stream's chain clock in the device's clock (at its current rate)."""
        return round(chain_index * self.fs_hz / CHAIN_FS_HZ)

    def wall_time(self, sample_index: int) -> float:
        """Unix time of a device sample: from the device's ``t0``, else from chunk arrival."""
        if self._wall_anchor is None or not math.isfinite(self.fs_hz):
            return math.nan
        index, wall_s = self._wall_anchor
        return wall_s + (sample_index - index) / self.fs_hz

    def process(self, message: RawMessage, arrival_s: float, arrival_wall_s: float) -> Ingested:
        """Sequence one chunk and run its new samples through the chain.

        Args:
            message: The chunk (decoded and validated by :func:`ecg_stream.wire.decode_raw`).
            arrival_s: Monotonic clock reading at its arrival, in s.
            arrival_wall_s: Unix time at its arrival, in s (anchors beat times when the device
                sends no ``t0``).

        Raises:
            ValueError: The message belongs to another stream.
        """
        if message.stream != self.stream_id:
            msg = f"chunk of stream {message.stream!r} given to the session of {self.stream_id!r}"
            raise ValueError(msg)
        samples_mv = message.millivolts()
        start, end = message.start_index, message.end_index
        flushed = Ingested(ChunkFate.PROCESSED)
        fate = ChunkFate.PROCESSED
        source = self._source_of(message.session, arrival_s)
        if source is _Source.SECOND_DEVICE:
            self._refused_sources += 1
            return Ingested(ChunkFate.REFUSED_SOURCE)
        if (
            self.next_index is not None
            and message.fs_hz == self.fs_hz
            and source is _Source.SAME
            and not self._restarted(start, end, message.fs_hz)
        ):
            if end <= self.next_index:
                self._counts["duplicates"] += 1
                return Ingested(ChunkFate.DUPLICATE)
            if start < self.next_index:  # overlaps what was processed: keep the new part
                self._counts["duplicates"] += 1
                samples_mv = samples_mv[self.next_index - start :]
                start = self.next_index
        gap = self.next_index is not None and (
            start != self.next_index or message.fs_hz != self.fs_hz
        )
        if gap:
            assert self.next_index is not None  # a gap follows a chunk
            missing = max(start - self.next_index, 0)
            self._counts["gaps"] += 1
            self._counts["gap_samples"] += missing
            self._note_gap(missing)
            if self.interleaved or self._became_interleaved():
                self._run = None  # fragments: nothing of them is worth a beat
                self.next_index, self._last_chunk_samples = end, end - start
                return Ingested(ChunkFate.INTERLEAVED)
            if self._run is not None:
                self._run.mark_gap(after=True)  # beats cut short by the gap are Q ("gap")
                flushed = self._run.finish(arrival_s)
            self._run = None
            fate = ChunkFate.AFTER_GAP
        else:
            self._whole_chunk_gaps.append(False)
            if self.interleaved:
                self._consecutive_chunks += 1
                self.next_index, self._last_chunk_samples = end, end - start
                if self._consecutive_chunks < RECOVER_CHUNKS:
                    return Ingested(ChunkFate.INTERLEAVED)
                self.interleaved = False  # one worker has it again: start afresh
                self._whole_chunk_gaps.clear()
                fate = ChunkFate.AFTER_GAP
        if self._run is None:
            self._run = _ChainRun(self.config, message.fs_hz, start)
            if fate is ChunkFate.AFTER_GAP:
                self._run.mark_gap(after=False)
            self.fs_hz = message.fs_hz
        if message.lead is not None:
            self.lead = message.lead
        if message.t0 is not None:
            self._wall_anchor = (message.start_index, message.t0)
        elif self._wall_anchor is None or fate is ChunkFate.AFTER_GAP:
            self._wall_anchor = (end, arrival_wall_s)  # the last sample arrived just now
        self.next_index, self._last_chunk_samples = end, end - start
        self._counts["chunks"] += 1
        self._counts["samples"] += end - start
        out = self._run.feed(samples_mv, arrival_s)
        return Ingested(fate, flushed.windows + out.windows, flushed.filtered + out.filtered)

    def finish(self, arrival_s: float) -> Ingested:
        """The session ends (device idle, worker stopping): flush what the chain holds."""
        run, self._run = self._run, None
        if run is None:
            return Ingested(ChunkFate.PROCESSED)
        return run.finish(arrival_s)

    def _source_of(self, session: str | None, arrival_s: float) -> _Source:
        """Whose chunk this is: the stream's device, a restart of it, or a second device."""
        if session is None or session == self._session:
            if session is not None:
                self._session_s = arrival_s
            return _Source.SAME
        if self._session is not None and arrival_s - self._session_s < SESSION_SILENCE_S:
            return _Source.SECOND_DEVICE
        restarted = self._session is not None
        self._session, self._session_s = session, arrival_s
        return _Source.RESTARTED if restarted else _Source.SAME

    def _restarted(self, start: int, end: int, fs_hz: float) -> bool:
        """Whether the chunk comes from a device whose sample counter started again."""
        assert self.next_index is not None  # only asked once a chunk came
        near_zero = start < RESTART_MAX_START_S * fs_hz
        return near_zero and self.next_index - end > RESTART_BACK_S * fs_hz

    def _note_gap(self, missing: int) -> None:
        chunk = self._last_chunk_samples
        whole = (
            chunk > 0
            and missing > 0
            and missing % chunk == 0
            and missing // chunk <= INTERLEAVE_MAX_MISSING_CHUNKS
        )
        self._whole_chunk_gaps.append(whole)
        self._consecutive_chunks = 0

    def _became_interleaved(self) -> bool:
        if sum(self._whole_chunk_gaps) < INTERLEAVE_MIN_GAPS:
            return False
        self.interleaved = True
        return True
