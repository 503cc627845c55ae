"""One inference call per event-loop turn for the beats that every stream has ready.

The streams of a process fall due together (their chunks are paced by the same clock), and the
model costs much less per beat in a batch than one beat at a time. Each stream extracts its
windows itself (sync, per stream) and awaits :meth:`InferenceBatcher.classify`; the first request
of a loop turn schedules one flush with ``loop.call_soon``, which runs after every task woken in
that turn has submitted, classifies all their windows in one call and hands each stream its own
beats, in order.

Devices are not synchronised: in ``serve`` their chunks arrive spread over time, one or two per
loop turn. A ``tick_s`` makes the first request wait that long for the others (a few ms buy
batches of dozens), or until :data:`FULL_BATCH` windows are waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ecg_stream.config import ChainConfig
from ecg_stream.types import BeatWindow, LabeledBeat


class ClassifierLike(Protocol):
    """A beat classifier (``ecg_stream.classify.classifier.OnnxBeatClassifier``)."""

    @property
    def name(self) -> str:
        """The model's name (on every stream's status)."""

    @property
    def config(self) -> ChainConfig:
        """The chain configuration the classifier's contract was checked against."""

    def classify(self, windows: Sequence[BeatWindow]) -> list[LabeledBeat]:
        """Label each window, in input order."""


FULL_BATCH = 64
"""Windows that end a tick's wait early: a batch this size costs little more per beat."""


@dataclass(frozen=True, slots=True)
class _Request:
    windows: tuple[BeatWindow, ...]
    future: asyncio.Future[tuple[LabeledBeat, ...]]


class InferenceBatcher:
    """Collect the windows submitted during one event-loop turn; classify them in one call.

    Args:
        classifier: The classifier every submitting stream shares (it batches internally).
        tick_s: How long the first request waits for others, in s (0: until the loop turn
            ends).

    Attributes:
        calls: Classifier calls made so far.
        windows: Windows classified so far (``windows / calls`` is the mean batch).
        seconds: Wall time spent in the classifier so far, in s.
    """

    def __init__(self, classifier: ClassifierLike, tick_s: float = 0.0) -> None:
        self.classifier, self.tick_s = classifier, tick_s
        self.calls = 0
        self.windows = 0
        self.seconds = 0.0
        self._pending: list[_Request] = []  # this tick's requests; emptied by each flush
        self._waiting = 0  # windows of the pending requests
        self._flush_handle: asyncio.Handle | None = None

    async def classify(self, windows: Sequence[BeatWindow]) -> tuple[LabeledBeat, ...]:
        """Label ``windows`` together with every other stream's windows of this loop turn.

        Returns:
            The beats of ``windows``, in their order.

        Raises:
            Exception: Whatever the classifier raised for the batch.
        """
        if not windows:  # nothing to wait for: most chunks complete no beat
            return ()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[LabeledBeat, ...]] = loop.create_future()
        if not self._pending:  # first request of this tick: flush once it is over
            if self.tick_s > 0:
                self._flush_handle = loop.call_later(self.tick_s, self._flush)
            else:
                self._flush_handle = loop.call_soon(self._flush)
        self._pending.append(_Request(tuple(windows), future))
        filled = self._waiting < FULL_BATCH <= self._waiting + len(windows)
        self._waiting += len(windows)
        if filled and self.tick_s > 0:
            assert self._flush_handle is not None  # scheduled by the first request
            self._flush_handle.cancel()
            self._flush_handle = loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        requests = [request for request in self._pending if not request.future.cancelled()]
        self._pending, self._waiting, self._flush_handle = [], 0, None
        batch = [window for request in requests for window in request.windows]
        if not batch:
            return
        started = time.perf_counter()
        try:
            beats = self.classifier.classify(batch)
        except Exception as error:  # every waiting stream sees it; the task group reports it
            for request in requests:
                request.future.set_exception(error)
            return
        self.seconds += time.perf_counter() - started
        self.calls += 1
        self.windows += len(batch)
        start = 0
        for request in requests:
            end = start + len(request.windows)
            request.future.set_result(tuple(beats[start:end]))
            start = end
