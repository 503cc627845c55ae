"""The live monitor window: scrolling ECG traces with labeled beats and rhythm events, from MQTT.

The GUI thread only draws (practice 11): a :class:`~ecg_stream.viewer.subscriber.Subscriber`
thread decodes messages into a bounded queue; a ``QTimer`` at ~30 Hz drains it into per-stream
:class:`~ecg_stream.viewer.tracker.StreamTracker` ring buffers and calls ``setData`` on plot
items created once per stream, with peak downsampling and clip-to-view.
"""

from __future__ import annotations

import math
import os
import signal
import statistics
import sys
import time
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ecg_stream.config import MqttConfig
from ecg_stream.errors import ConfigError, MissingExtraError
from ecg_stream.types import BEAT_CLASSES, BeatClass, EventState, RhythmKind
from ecg_stream.viewer.background import BackgroundJob, CoroutineFactory
from ecg_stream.viewer.ring import DisplayRing
from ecg_stream.viewer.subscriber import BrokerState, Received, Subscriber, SubscriberStatus
from ecg_stream.viewer.tracker import (
    RHYTHM_LABELS,
    EventMark,
    StreamTracker,
    format_record_time,
)
from ecg_stream.wire import BeatMessage, EventMessage, SamplesMessage, StatusMessage, StreamState

VIEWER_EXTRA = "viewer"
"""The optional dependency group holding PySide6 and pyqtgraph."""

try:
    from PySide6 import QtCore, QtGui, QtWidgets
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError(VIEWER_EXTRA, "PySide6") from error
try:
    import pyqtgraph as pg  # binds to the Qt binding imported first: PySide6, above
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError(VIEWER_EXTRA, "pyqtgraph") from error

CLASS_COLOURS: dict[BeatClass, str] = {
    BeatClass.N: "#8f8f8f",  # quiet grey: the common case should not draw the eye
    BeatClass.S: "#0072B2",  # Okabe-Ito blue
    BeatClass.V: "#D55E00",  # Okabe-Ito vermillion: S and V stay apart in every colour vision
    BeatClass.F: "#009E73",  # Okabe-Ito bluish green
    BeatClass.Q: "#CC79A7",  # Okabe-Ito reddish purple
}
"""Colour-blind-safe colour of each beat class (Okabe & Ito 2008)."""

ALARM_COLOUR = "#CC3311"  # red (Tol's vibrant): life-threatening rhythms
WARNING_COLOUR = "#E69F00"  # Okabe-Ito orange, used by no beat class
NOTICE_COLOUR = "#555555"
RHYTHM_COLOURS: dict[RhythmKind, str] = {
    RhythmKind.VF: ALARM_COLOUR,
    RhythmKind.VT: ALARM_COLOUR,
    RhythmKind.ASYSTOLE: ALARM_COLOUR,
    RhythmKind.AF: WARNING_COLOUR,
    RhythmKind.SVT: WARNING_COLOUR,
    RhythmKind.VENTRICULAR_RUN: WARNING_COLOUR,
    RhythmKind.IDIOVENTRICULAR: WARNING_COLOUR,
    RhythmKind.PAUSE: WARNING_COLOUR,
    RhythmKind.COUPLET: NOTICE_COLOUR,
    RhythmKind.VENTRICULAR_BIGEMINY: NOTICE_COLOUR,
    RhythmKind.VENTRICULAR_TRIGEMINY: NOTICE_COLOUR,
    RhythmKind.BRADYCARDIA: NOTICE_COLOUR,
    RhythmKind.TACHYCARDIA: NOTICE_COLOUR,
}
"""Colour of each rhythm by urgency: its band, its label and its alarm lines."""
BAND_ALPHA = 0.16
"""Opacity of an episode band: the trace and the paper stay readable through it."""
BAND_LABEL_PX = 14
"""Size of the rhythm's name on its band, in pixels."""
BAND_POOL_SIZE = 8
"""Most episode bands drawn per stream at once (the newest); their items are made once, reused."""
INSTANT_MARK_HEIGHT = 0.03
"""Height of an instant event's triangle above the bottom of the strip, in strip heights."""
MAX_INSTANT_MARKS = 64
"""Most instant events (a pause, a couplet, a run) marked per stream at once (the newest)."""

PAPER_COLOUR = "#fffaf6"
MINOR_GRID_COLOUR = "#f7d9d4"
MAJOR_GRID_COLOUR = "#eba69e"
TRACE_COLOUR = "#1c1c1c"
ONLINE_COLOUR = "#009E73"
OFFLINE_COLOUR = "#b0b0b0"

MINOR_GRID_S, MAJOR_GRID_S = 0.04, 0.2
"""ECG paper at 25 mm/s: 1 mm small boxes, 5 mm large boxes, in s."""
MINOR_GRID_MV, MAJOR_GRID_MV = 0.1, 0.5
"""ECG paper at 10 mm/mV, in mV."""
PAPER_MV_PER_S = 2.5
"""25 mm/s over 10 mm/mV: with square boxes, 1 s of width spans 2.5 mV of height."""
MINOR_GRID_MIN_PX = 4.0
"""Small boxes narrower than this (zoomed out) are not drawn: they would only grey the paper."""
MAX_Y_TICKS = 20
"""Most labelled ticks on the mV axis; beyond, the tick step grows tenfold."""
LETTER_ROW_MV = 0.4
"""Gap between the tallest wave in view and the row of class letters, in mV."""
CONFIDENCE_LEVELS = 10
"""Marker opacity steps: brushes are made once per class and step."""
INFO_REFRESH_S = 0.25
"""The text panels change at most this often; redrawing text is what costs in Qt."""


class MessageFeed(Protocol):
    """Where the window takes its messages from (a :class:`Subscriber`, or a test double)."""

    @property
    def topic_filter(self) -> str:
        """The MQTT topic filter the messages come from."""
        ...

    def drain(self, max_items: int) -> list[Received]:
        """Take up to ``max_items`` of the oldest received messages."""
        ...

    def status(self) -> SubscriberStatus:
        """Connection state and counters."""
        ...

    def revive(self) -> bool:
        """Start the receiving worker again if it died; whether it did."""
        ...


def _letter_symbol(letter: str) -> QtGui.QPainterPath:
    """A scatter symbol drawing ``letter``, centred and scaled to the unit square."""
    font = QtGui.QFont()
    font.setBold(True)
    path = QtGui.QPainterPath()
    path.addText(0.0, 0.0, font, letter)
    box = path.boundingRect()
    scale = 1.0 / max(box.width(), box.height())
    transform = QtGui.QTransform()
    transform.scale(scale, scale)
    transform.translate(-box.x() - box.width() / 2.0, -box.y() - box.height() / 2.0)
    return transform.map(path)


def _tooltip(x: float, y: float, data: object) -> str:
    """Tooltip of a beat marker: the beat's own description, kept as the spot's data."""
    del x, y  # the description already holds the beat's time
    return str(data)


def _translucent(colour: str, alpha: float) -> QtGui.QColor:
    qcolour = QtGui.QColor(colour)
    qcolour.setAlphaF(alpha)
    return qcolour


class EpisodeBand:
    """A translucent band over the strip with the rhythm's name, reused for any episode.

    Args:
        plot: The plot to draw on.
    """

    def __init__(self, plot: Any) -> None:
        self.region = pg.LinearRegionItem(values=(0.0, 0.0), orientation="vertical", movable=False)
        self.region.setZValue(-15)  # over the paper, under the trace and the markers
        self.label = pg.TextItem(anchor=(0.0, 1.0))
        self.label.setZValue(-14)
        self.rhythm: RhythmKind | None = None
        plot.addItem(self.region, ignoreBounds=True)
        plot.addItem(self.label, ignoreBounds=True)
        self.hide()

    def show(
        self, rhythm: RhythmKind, x_range: tuple[float, float], label_at: float, y: float
    ) -> None:
        """Cover ``x_range`` (s) as an episode of ``rhythm``, named at ``(label_at, y)``."""
        if rhythm is not self.rhythm:  # restyle only when reused for another rhythm
            self.rhythm = rhythm
            colour = RHYTHM_COLOURS[rhythm]
            self.region.setBrush(pg.mkBrush(_translucent(colour, BAND_ALPHA)))
            for line in self.region.lines:
                line.setPen(pg.mkPen(_translucent(colour, 0.5), width=1))
            self.label.setText(RHYTHM_LABELS[rhythm], color=colour)
            font = QtGui.QFont()
            font.setBold(True)
            font.setPixelSize(BAND_LABEL_PX)
            self.label.setFont(font)
        if tuple(self.region.getRegion()) != x_range:
            self.region.setRegion(x_range)
        self.label.setPos(label_at, y)
        self.region.setVisible(True)
        self.label.setVisible(True)

    def hide(self) -> None:
        """Draw nothing (back in the pool)."""
        self.region.setVisible(False)
        self.label.setVisible(False)

    @property
    def shown(self) -> bool:
        """Whether the band is on the strip."""
        return bool(self.region.isVisible())


BACKGROUND_WAIT_S = 3.0
"""Longest wait for the monitor's subscription before its background job (a replay) starts.
With a broker already there the replay starts once the monitor listens, so the monitor counts
every beat the replay publishes; with the replay's own embedded broker, only the replay can
start it."""

CALIBRATION_MV = 1.0
"""Height of the calibration pulse at each trace's left edge: 1 mV, two large boxes."""
CALIBRATION_S = (0.1, 0.04, 0.2, 0.04)
"""The pulse's shape: offset from the left edge, rise after, width at 1 mV, tail after (s)."""
PAPER_SCALE = "25 mm/s, 10 mm/mV"
"""What the paper grid is: small boxes 0.04 s x 0.1 mV, large boxes 0.2 s x 0.5 mV."""


def calibration_pulse(x_lo: float, baseline_mv: float) -> tuple[list[float], list[float]]:
    """The 1 mV calibration pulse drawn from ``x_lo`` (s) on ``baseline_mv``, as x and y.

    Example:
        >>> calibration_pulse(10.0, -1.0)[1]
        [-1.0, -1.0, 0.0, 0.0, -1.0, -1.0]
    """
    offset, rise, width, tail = CALIBRATION_S
    up, down = x_lo + offset + rise, x_lo + offset + rise + width
    top = baseline_mv + CALIBRATION_MV
    x = [x_lo + offset, up, up, down, down, down + tail]
    return x, [baseline_mv, baseline_mv, top, top, baseline_mv, baseline_mv]


def class_legend_html() -> str:
    """The class colours and the paper's scale, for the toolbar."""
    names = {"N": "normal", "S": "supraventricular", "V": "ventricular", "F": "fusion"}
    names["Q"] = "unclassifiable"
    parts = [
        f'<b style="color:{CLASS_COLOURS[beat_class]}">{beat_class.value}</b> '
        f"{names[beat_class.value]}"
        for beat_class in BeatClass
    ]
    return "&nbsp;&nbsp;".join(parts) + f"&nbsp;&nbsp;|&nbsp;&nbsp;paper {PAPER_SCALE}, pulse 1 mV"


class PaperGrid:
    """ECG paper drawn as two line sets (small and large boxes) behind a trace.

    The lines cover three view widths around the visible range and are rebuilt only when the
    view leaves that span or its height changes, so a scrolling trace costs no grid work on
    most frames.

    Args:
        plot: The plot to draw on.
    """

    def __init__(self, plot: Any) -> None:
        self.minor = pg.PlotCurveItem(pen=pg.mkPen(MINOR_GRID_COLOUR, width=1), connect="pairs")
        self.major = pg.PlotCurveItem(pen=pg.mkPen(MAJOR_GRID_COLOUR, width=1), connect="pairs")
        for zorder, item in enumerate((self.minor, self.major)):
            item.setZValue(-20 + zorder)
            plot.addItem(item, ignoreBounds=True)
        self._covered = (math.nan, math.nan, math.nan, math.nan)

    def update(self, x_range: Sequence[float], y_range: Sequence[float], width_px: float) -> None:
        """Make the lines cover the view ``x_range`` (s) x ``y_range`` (mV)."""
        (x_lo, x_hi), (y_lo, y_hi) = x_range, y_range
        span = x_hi - x_lo
        if span <= 0 or y_hi <= y_lo:
            return
        self.minor.setVisible(width_px * MINOR_GRID_S / span >= MINOR_GRID_MIN_PX)
        cover_lo, cover_hi, cover_y_lo, cover_y_hi = self._covered
        if cover_lo <= x_lo and x_hi <= cover_hi and (cover_y_lo, cover_y_hi) == (y_lo, y_hi):
            return
        cover_lo, cover_hi = x_lo - span, x_hi + 2 * span  # room to scroll for a while
        self._covered = (cover_lo, cover_hi, y_lo, y_hi)
        for item, major_only in ((self.minor, False), (self.major, True)):
            vertical = self._lines(cover_lo, cover_hi, MINOR_GRID_S, major_only)
            horizontal = self._lines(y_lo, y_hi, MINOR_GRID_MV, major_only)
            x = np.concatenate(
                [np.repeat(vertical, 2), np.tile([cover_lo, cover_hi], horizontal.size)]
            )
            y = np.concatenate([np.tile([y_lo, y_hi], vertical.size), np.repeat(horizontal, 2)])
            item.setData(x, y)

    @staticmethod
    def _lines(lo: float, hi: float, step: float, major_only: bool) -> npt.NDArray[np.float64]:
        """Positions of the small-box lines in [lo, hi]: every 5th, or all others."""
        steps = np.arange(math.ceil(lo / step), math.floor(hi / step) + 1)
        on_major = steps % 5 == 0  # integer steps: no float drift over hours of signal
        positions: npt.NDArray[np.float64] = (
            steps[on_major] if major_only else steps[~on_major]
        ) * step
        return positions


class StreamRow(QtWidgets.QWidget):
    """One stream: a text panel (figures) beside its scrolling trace with beat markers.

    Args:
        stream: Stream id.
        window_s: Seconds of trace shown while scrolling.
        parent: Parent widget.
    """

    def __init__(
        self, stream: str, window_s: float, parent: QtWidgets.QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.stream, self.window_s = stream, window_s
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        self.info = QtWidgets.QLabel()
        self.info.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.info.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop | QtCore.Qt.AlignmentFlag.AlignLeft)
        self.info.setFixedWidth(250)
        self.info.setWordWrap(True)
        self.alarms = QtWidgets.QListWidget()
        self.alarms.setFixedWidth(250)
        self.alarms.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        self.alarms.setStyleSheet("QListWidget { background: transparent; font-size: 11px; }")
        self.alarms.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.alarms.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.NoSelection)
        self.alarms.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.alarms.setWordWrap(True)
        self.alarms.setToolTip("rhythm events, newest first")
        side = QtWidgets.QVBoxLayout()
        side.setContentsMargins(0, 0, 0, 0)
        side.setSpacing(2)
        side.addWidget(self.info)
        side.addWidget(self.alarms, stretch=1)
        self.plot_widget = pg.PlotWidget(background=PAPER_COLOUR)
        layout.addLayout(side)
        layout.addWidget(self.plot_widget, stretch=1)
        self.plot = self.plot_widget.getPlotItem()
        self.plot.hideButtons()
        self.plot.setMenuEnabled(False)
        self.plot.disableAutoRange()
        self.plot.setLabel("left", "mV")
        self.plot.setLabel("bottom", "time (s)")
        for name in ("bottom", "left"):
            axis = self.plot.getAxis(name)
            axis.setTextPen("#555555")
            axis.setPen("#999999")
            # fixed ticks and no SI prefix: a scrolling axis is re-laid out every frame, and
            # pyqtgraph's automatic ticks and unit labels are most of a row's redraw cost
            axis.enableAutoSIPrefix(False)
        self.plot.getAxis("bottom").setTickSpacing(1.0, 1.0)
        self._y_tick_mv = 1.0
        self.plot.getAxis("left").setTickSpacing(self._y_tick_mv, self._y_tick_mv / 2)
        self.grid = PaperGrid(self.plot)
        self.calibration = pg.PlotCurveItem(pen=pg.mkPen(TRACE_COLOUR, width=1.5))
        self.calibration.setToolTip(f"calibration: 1 mV; paper {PAPER_SCALE}")
        self.plot.addItem(self.calibration, ignoreBounds=True)
        self.curve = self.plot.plot(pen=pg.mkPen(TRACE_COLOUR, width=1))
        self.curve.setDownsampling(auto=True, method="peak")
        self.curve.setClipToView(True)
        self.dots = pg.ScatterPlotItem(size=8, pen=None, hoverable=True, tip=_tooltip)
        self.letters = pg.ScatterPlotItem(
            size=15, pen=pg.mkPen(PAPER_COLOUR, width=0.5), hoverable=True, tip=_tooltip
        )
        self.plot.addItem(self.dots)
        self.plot.addItem(self.letters)
        self.bands: list[EpisodeBand] = []  # made as needed, at most BAND_POOL_SIZE, reused
        self.instant_lines = pg.PlotCurveItem(
            pen=pg.mkPen(NOTICE_COLOUR, width=1, style=QtCore.Qt.PenStyle.DashLine),
            connect="pairs",
        )
        self.instant_lines.setZValue(-13)
        self.instant_marks = pg.ScatterPlotItem(
            size=10, symbol="t1", pen=None, hoverable=True, tip=_tooltip
        )
        self.plot.addItem(self.instant_lines, ignoreBounds=True)
        self.plot.addItem(self.instant_marks, ignoreBounds=True)
        self._instant_brushes = {
            rhythm: pg.mkBrush(colour) for rhythm, colour in RHYTHM_COLOURS.items()
        }
        self._symbols = {beat_class: _letter_symbol(beat_class.value) for beat_class in BeatClass}
        self._brushes = {
            (beat_class, level): pg.mkBrush(self._with_alpha(colour, level))
            for beat_class, colour in CLASS_COLOURS.items()
            for level in range(CONFIDENCE_LEVELS + 1)
        }
        self._x: npt.NDArray[np.float64] = np.empty(0)
        self._y: npt.NDArray[np.float32] = np.empty(0, dtype=np.float32)
        self._offsets: npt.NDArray[np.float64] = np.empty(0)
        self._drawn_end_index = -1
        self._drawn_revision = -1
        self._drawn_y_range = (math.nan, math.nan)
        self._paused_drawn = False
        self._pending_dots = False
        self._drawn_events = (-1, -1, (math.nan, math.nan))  # revision, end index, y range
        self._listed_events_revision = -1
        self._info_text = ""
        self._y_range = (-1.0, 1.5)
        self._letter_y = 1.0
        self._pulse_baseline = -0.5
        self._y_checked_at_index = -1

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802  # Qt's name
        """Refit the y range to the new shape at the next redraw (paper proportions)."""
        super().resizeEvent(event)
        self._y_checked_at_index = -1
        self._drawn_end_index = -1

    @staticmethod
    def _with_alpha(colour: str, level: int) -> QtGui.QColor:
        """``colour`` at the opacity of confidence step ``level`` (low confidence: faint)."""
        qcolour = QtGui.QColor(colour)
        qcolour.setAlphaF(0.25 + 0.75 * level / CONFIDENCE_LEVELS)
        return qcolour

    def redraw(self, tracker: StreamTracker, paused: bool) -> None:
        """Bring trace, markers and grid up to date with ``tracker``.

        While ``paused`` the view stops scrolling and shows the whole history held, so the
        user can pan back through it; data keeps arriving in ``tracker``.
        """
        ring = tracker.ring
        if ring is not None and ring.size > 0:
            if ring.capacity_samples != self._x.size:  # first samples, or a restarted stream
                self._allocate(ring.capacity_samples)
            if paused:
                if not self._paused_drawn:
                    self._draw_trace(ring, tracker.fs_hz, ring.size)
                    self._paused_drawn = True
                    self._drawn_end_index = -1  # catch up on resume
            else:
                self._paused_drawn = False
                if ring.end_index != self._drawn_end_index:
                    window_samples = math.ceil((self.window_s + 0.5) * tracker.fs_hz)
                    self._draw_trace(ring, tracker.fs_hz, window_samples)
                    end_s = ring.end_index / tracker.fs_hz
                    self._fit_y(ring, tracker.fs_hz)
                    view = self.plot.getViewBox()
                    view.setRange(
                        xRange=(end_s - self.window_s, end_s), yRange=self._y_range, padding=0.0
                    )
                    # apply the new range now rather than while painting: items that clip to
                    # the view would otherwise redo their work then and ask for a second paint
                    view.prepareForPaint()
            if not paused and (
                tracker.revision != self._drawn_revision
                or self._y_range != self._drawn_y_range
                or (self._pending_dots and ring.end_index != self._drawn_end_index)
            ):
                self._draw_markers(tracker, ring)
            if not paused:
                self._draw_events(tracker, ring)
                self._drawn_end_index = ring.end_index
        x_range, y_range = self.plot.viewRange()
        self.grid.update(x_range, y_range, self.plot.getViewBox().width())
        if not paused:
            self.calibration.setData(*calibration_pulse(x_range[0], self._pulse_baseline))

    def _allocate(self, capacity: int) -> None:
        """Preallocate the display buffers: no allocation per frame."""
        self._x = np.empty(capacity)
        self._y = np.empty(capacity, dtype=np.float32)
        self._offsets = np.arange(capacity, dtype=np.float64)

    def _draw_trace(self, ring: DisplayRing, fs_hz: float, count: int) -> None:
        values = ring.latest(count)
        n = values.size
        x, y = self._x[:n], self._y[:n]
        np.add(self._offsets[:n], ring.end_index - n, out=x)
        x /= fs_hz
        y[:] = values
        self.curve.setData(x, y)

    def _fit_y(self, ring: DisplayRing, fs_hz: float) -> None:
        """Fit ``_y_range`` to the last window, in whole large boxes, once per second of signal.

        The range keeps paper proportions (square large boxes) when the row is tall enough,
        and otherwise fits the data with room above it for the class letters.
        """
        if 0 <= ring.end_index - self._y_checked_at_index < fs_hz:
            return
        self._y_checked_at_index = ring.end_index
        visible = ring.latest(math.ceil(self.window_s * fs_hz))
        if not np.isfinite(visible).any():
            return
        lo, hi = float(np.nanmin(visible)), float(np.nanmax(visible))
        lo = math.floor((lo - 0.1) / MAJOR_GRID_MV) * MAJOR_GRID_MV
        hi = math.ceil((hi + 0.1) / MAJOR_GRID_MV) * MAJOR_GRID_MV
        self._pulse_baseline = lo  # the pulse stands beside the trace, on a large-box line
        self._letter_y = hi + LETTER_ROW_MV  # just above the tallest wave, whatever the zoom
        hi = self._letter_y + LETTER_ROW_MV
        view = self.plot.getViewBox()
        if view.width() > 0 and view.height() > 0:
            paper_span = view.height() / view.width() * self.window_s * PAPER_MV_PER_S
            if paper_span > hi - lo:
                extra = paper_span - (hi - lo)
                lo, hi = lo - extra / 2, hi + extra / 2
        self._y_range = (lo, hi)
        # fixed ticks, but never thousands of them: pyqtgraph compares every pair of ticks, and
        # a railed input (tens of volts) would ask for gigabytes
        tick_mv = 10.0 ** max(0, math.ceil(math.log10((hi - lo) / MAX_Y_TICKS)))
        if tick_mv != self._y_tick_mv:
            self._y_tick_mv = tick_mv
            self.plot.getAxis("left").setTickSpacing(tick_mv, tick_mv / 2)

    def _draw_markers(self, tracker: StreamTracker, ring: DisplayRing) -> None:
        # only beats on the trace held: older ones would float over an empty strip
        beats = [beat for beat in tracker.beats if beat.chain_sample >= ring.start_index]
        x = np.array([beat.chain_sample for beat in beats], dtype=np.float64) / tracker.fs_hz
        peaks = np.array([ring.value_at(beat.chain_sample) for beat in beats])
        brushes = [
            self._brushes[beat.label, round(beat.confidence * CONFIDENCE_LEVELS)] for beat in beats
        ]
        tips = [beat.describe() for beat in beats]
        on_trace = np.isfinite(peaks)
        # a beat may come before the samples around its R peak: place its dot when they come
        self._pending_dots = any(beat.chain_sample >= ring.end_index for beat in beats)
        self.dots.setData(
            x=x[on_trace],
            y=peaks[on_trace],
            brush=[brush for brush, shown in zip(brushes, on_trace, strict=True) if shown],
            data=[tip for tip, shown in zip(tips, on_trace, strict=True) if shown],
        )
        self.letters.setData(
            x=x,
            y=np.full(x.size, self._letter_y),
            brush=brushes,
            symbol=[self._symbols[beat.label] for beat in beats],
            data=tips,
        )
        self._drawn_revision = tracker.revision
        self._drawn_y_range = self._y_range

    def _draw_events(self, tracker: StreamTracker, ring: DisplayRing) -> None:
        """Bands of the episodes and marks of the instant events on the trace held."""
        drawn = (tracker.events_revision, ring.end_index, self._y_range)
        if drawn == self._drawn_events:
            return
        self._drawn_events = drawn
        fs_hz, held_from, held_to = tracker.fs_hz, ring.start_index, ring.end_index
        episodes = [
            episode
            for episode in tracker.episodes
            if episode.end_sample is None or episode.end_sample >= held_from
        ][-BAND_POOL_SIZE:]  # open ones last: always drawn
        view_lo = self.plot.viewRange()[0][0]
        y_lo, y_hi = self._y_range
        for number, episode in enumerate(episodes):
            if number == len(self.bands):
                self.bands.append(EpisodeBand(self.plot))
            start = held_from if episode.start_sample is None else episode.start_sample
            end = held_to if episode.end_sample is None else episode.end_sample
            x_lo, x_hi = max(start, held_from) / fs_hz, max(start, end, held_from) / fs_hz
            # the name stays in sight while the band's start scrolls out on the left
            label_at = min(max(x_lo, view_lo), x_hi)
            self.bands[number].show(episode.rhythm, (x_lo, x_hi), label_at, y_lo)
        for band in self.bands[len(episodes) :]:
            band.hide()
        instants = [mark for mark in tracker.instants if mark.chain_sample >= held_from][
            -MAX_INSTANT_MARKS:
        ]
        x = np.array([mark.chain_sample for mark in instants], dtype=np.float64) / fs_hz
        self.instant_lines.setData(np.repeat(x, 2), np.tile([y_lo, y_hi], x.size))
        self.instant_marks.setData(
            x=x,
            y=np.full(x.size, y_lo + INSTANT_MARK_HEIGHT * (y_hi - y_lo)),
            brush=[self._instant_brushes[mark.rhythm] for mark in instants],
            data=[_event_tip(mark) for mark in instants],
        )

    def update_info(self, tracker: StreamTracker) -> None:
        """Refresh the text panel and the alarm lines if anything in them changed."""
        text = _info_html(tracker)
        if text != self._info_text:
            self._info_text = text
            self.info.setText(text)
        if tracker.events_revision != self._listed_events_revision:
            self._listed_events_revision = tracker.events_revision
            self.alarms.clear()  # at most MAX_ALARMS lines, and only when an event came
            for mark in tracker.alarms:
                item = QtWidgets.QListWidgetItem(mark.alarm_line())
                ended = mark.state is EventState.END
                item.setForeground(
                    QtGui.QColor(NOTICE_COLOUR if ended else RHYTHM_COLOURS[mark.rhythm])
                )
                if not ended and RHYTHM_COLOURS[mark.rhythm] == ALARM_COLOUR:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                item.setToolTip(_event_tip(mark))
                self.alarms.addItem(item)


def _event_tip(mark: EventMark) -> str:
    """Tooltip of a rhythm event: what, when in the record, and the decision delay."""
    return f"{mark.describe()}\n{mark.where()}"


def _info_html(tracker: StreamTracker) -> str:
    """The text panel of a stream: state, rate and rhythm, counts, last abnormal beat, latency."""
    if tracker.online is None:
        state = f'<span style="color:{OFFLINE_COLOUR}">&#9675; no status yet</span>'
    elif tracker.online:
        state = f'<span style="color:{ONLINE_COLOUR}">&#9679; online</span>'
    else:
        state = f'<span style="color:{OFFLINE_COLOUR}">&#9675; offline</span>'
    heart_rate = tracker.heart_rate_bpm
    rate = "--" if heart_rate is None or tracker.online is False else f"{heart_rate:.0f}"
    rhythm = ""
    if tracker.rhythm is not None and tracker.online is not False:
        rhythm = (
            f' &nbsp;<span style="font-size:20px;color:{RHYTHM_COLOURS[tracker.rhythm]}">'
            f"<b>{RHYTHM_LABELS[tracker.rhythm]}</b></span>"
        )
    counts = " ".join(
        f'<span style="color:{CLASS_COLOURS[cls]}"><b>{cls.value}</b></span>&nbsp;'
        f"{tracker.counts[cls]}"
        for cls in BEAT_CLASSES
    )
    last = tracker.last_abnormal
    if last is None:
        abnormal = "none yet"
    else:
        clock = datetime.fromtimestamp(last.wall_time_s).strftime("%H:%M:%S")
        abnormal = (
            f'<span style="color:{CLASS_COLOURS[last.label]}"><b>{last.label.value}</b></span>'
            f" at {format_record_time(last.time_s)} ({clock})"
        )
    compute, end_to_end = tracker.median_compute_ms, tracker.median_end_to_end_ms
    latency = (
        "--"
        if compute is None or end_to_end is None
        # non-breaking hyphens (U+2011): the narrow panel must not wrap "end-to-end" in the
        # middle (Qt breaks at hyphens even inside white-space:nowrap)
        else f"compute {compute:.1f} ms, end&#8209;to&#8209;end {end_to_end:.0f}&nbsp;ms"
    )
    source = " &middot; ".join(part for part in (f"record {tracker.record}", tracker.model) if part)
    return (
        f'<div style="font-size:15px"><b>{tracker.stream}</b> {state}</div>'
        f'<div style="color:#555555">{source}</div>'
        f'<div><span style="font-size:26px"><b>{rate}</b></span> bpm{rhythm}</div>'
        f"<div>{counts}</div>"
        f'<div style="color:#555555">last abnormal: {abnormal}</div>'
        f'<div style="color:#555555">latency (median): {latency}</div>'
    )


class MonitorWindow(QtWidgets.QMainWindow):
    """Live ECG monitor: one stacked row per stream, appearing as streams come online.

    Args:
        feed: Source of decoded messages and connection state (usually a started Subscriber).
        window_s: Seconds of trace shown while scrolling.
        history_s: Seconds of trace and beats kept per stream (reachable while paused).
        refresh_hz: Redraw rate, in Hz.
        screenshot_dir: Where the screenshot action saves PNG files.

    Attributes:
        trackers: What is known about each stream, by stream id.
        rows: The row drawing each stream, by stream id.
        frame_ms: Cost of the most recent redraws (drain + draw calls), in ms.
    """

    closed = QtCore.Signal()
    """Emitted when the window is closed."""

    def __init__(
        self,
        feed: MessageFeed,
        window_s: float = 10.0,
        history_s: float = 60.0,
        refresh_hz: float = 30.0,
        screenshot_dir: Path | None = None,
    ) -> None:
        if not 0 < window_s <= history_s or not refresh_hz > 0:
            msg = (
                f"window_s={window_s}, history_s={history_s}, refresh_hz={refresh_hz}: need "
                "0 < window_s <= history_s and refresh_hz > 0"
            )
            raise ConfigError(msg)
        super().__init__()
        self.feed, self.window_s, self.history_s = feed, window_s, history_s
        self.screenshot_dir = screenshot_dir if screenshot_dir is not None else Path.cwd()
        self.trackers: dict[str, StreamTracker] = {}
        self.rows: dict[str, StreamRow] = {}
        self.frame_ms: deque[float] = deque(maxlen=100)
        self._info_refreshed_s = -math.inf
        self._status_text = ""
        self.setWindowTitle(f"ecg-stream monitor - {feed.status().broker}")
        self.resize(1500, 820)

        central = QtWidgets.QWidget()
        self._rows_layout = QtWidgets.QVBoxLayout(central)
        self._rows_layout.setContentsMargins(0, 0, 0, 0)
        self._rows_layout.setSpacing(0)
        self._placeholder = QtWidgets.QLabel(f"waiting for streams on {feed.topic_filter} ...")
        self._placeholder.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self._rows_layout.addWidget(self._placeholder)
        self.setCentralWidget(central)

        toolbar = self.addToolBar("monitor")
        toolbar.setMovable(False)
        self.pause_action = QtGui.QAction("Pause", self)
        self.pause_action.setCheckable(True)
        self.pause_action.setShortcut(QtGui.QKeySequence(QtCore.Qt.Key.Key_Space))
        self.pause_action.setToolTip("Stop scrolling (data keeps arriving); pan back in time")
        self.pause_action.toggled.connect(self._on_pause_toggled)
        self.screenshot_action = QtGui.QAction("Screenshot", self)
        self.screenshot_action.setShortcut(QtGui.QKeySequence.StandardKey.Save)
        self.screenshot_action.triggered.connect(self._on_screenshot)
        toolbar.addAction(self.pause_action)
        toolbar.addAction(self.screenshot_action)
        toolbar.addSeparator()
        self.legend = QtWidgets.QLabel(class_legend_html())
        self.legend.setTextFormat(QtCore.Qt.TextFormat.RichText)
        toolbar.addWidget(self.legend)
        self._status_label = QtWidgets.QLabel()
        self.statusBar().addWidget(self._status_label, stretch=1)

        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(max(1, round(1000.0 / refresh_hz)))
        self.timer.timeout.connect(self.refresh)
        self.timer.start()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802  # Qt's name
        """Stop redrawing and say so (``run_monitor`` ends its event loop then)."""
        self.timer.stop()
        super().closeEvent(event)
        self.closed.emit()

    @property
    def paused(self) -> bool:
        """Whether scrolling is paused."""
        return self.pause_action.isChecked()

    def refresh(self) -> None:
        """Drain the feed, update the trackers and redraw; called by the timer."""
        started = time.perf_counter()
        for item in self.feed.drain(max_items=100_000):
            self._take(item)
        for stream, tracker in self.trackers.items():
            self.rows[stream].redraw(tracker, self.paused)
        if time.monotonic() - self._info_refreshed_s >= INFO_REFRESH_S:
            self.refresh_text()
        self.frame_ms.append((time.perf_counter() - started) * 1000.0)

    def refresh_text(self) -> None:
        """Update the text panels and the status bar now (the timer does it 4 times a second)."""
        self._info_refreshed_s = time.monotonic()
        self.feed.revive()  # a dead MQTT worker is started again; the status bar says so
        for stream, tracker in self.trackers.items():
            self.rows[stream].update_info(tracker)
        self._update_status_bar(self.feed.status())

    def _take(self, item: Received) -> None:
        message = item.message
        tracker = self.trackers.get(message.stream)
        if tracker is None:
            if isinstance(message, StatusMessage) and message.state is StreamState.OFFLINE:
                return  # a retained leftover of a stream that ended before we started
            tracker = self._add_stream(message.stream)
        if isinstance(message, SamplesMessage):
            tracker.add_samples(message)
        elif isinstance(message, BeatMessage):
            tracker.add_beat(message, item.receipt_wall_s)
        elif isinstance(message, StatusMessage):
            tracker.add_status(message)
        elif isinstance(message, EventMessage):
            tracker.add_event(message)

    def _add_stream(self, stream: str) -> StreamTracker:
        """Start tracking a stream and insert its row, rows sorted by stream id."""
        tracker = StreamTracker(stream, self.history_s)
        self.trackers[stream] = tracker
        row = StreamRow(stream, self.window_s)
        self.rows[stream] = row
        self._placeholder.hide()
        position = sorted(self.rows).index(stream)
        self._rows_layout.insertWidget(position, row, stretch=1)
        # show and lay out now, not at the next event loop turn: the row draws right away
        # (a screenshot may be taken before the loop runs again)
        row.show()
        self._rows_layout.activate()
        return tracker

    def stream_order(self) -> list[str]:
        """Stream ids of the rows, top to bottom."""
        shown = {row: stream for stream, row in self.rows.items()}
        order = []
        for position in range(self._rows_layout.count()):
            item = self._rows_layout.itemAt(position)
            widget = item.widget() if item is not None else None
            if isinstance(widget, StreamRow):
                order.append(shown[widget])
        return order

    def _update_status_bar(self, status: SubscriberStatus) -> None:
        state = status.state.value
        if math.isfinite(status.retry_at_s):
            state += f" (next try in {max(0.0, status.retry_at_s - time.time()):.0f} s)"
        malformed = f"malformed {status.malformed}"
        if status.malformed:
            malformed = f'<span style="color:{CLASS_COLOURS[BeatClass.V]}">{malformed}</span>'
        frame = f"{statistics.median(self.frame_ms):.1f} ms" if self.frame_ms else "--"
        parts = [
            f"broker {status.broker}: <b>{state}</b>",
            f"{len(self.trackers)} stream{'s' if len(self.trackers) != 1 else ''}",
            f"received {status.received}",
            malformed,
            f"dropped {status.dropped}",
            f"redraw {frame}",
        ]
        if status.duplicates:
            parts.insert(-1, f"duplicates {status.duplicates}")
        if status.restarts:
            restarted = (
                f"MQTT worker died, restarted {status.restarts} "
                f"time{'s' if status.restarts != 1 else ''}"
            )
            parts.insert(1, f'<span style="color:{CLASS_COLOURS[BeatClass.V]}">{restarted}</span>')
        if self.paused:
            parts.insert(0, "<b>PAUSED</b>")
        text = " &middot; ".join(parts)
        if text != self._status_text:
            self._status_text = text
            self._status_label.setText(text)
            self._status_label.setToolTip(status.last_problem)

    def _on_pause_toggled(self, paused: bool) -> None:
        self.pause_action.setText("Resume" if paused else "Pause")
        self._info_refreshed_s = -math.inf  # show PAUSED at once

    def _on_screenshot(self) -> None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = self.save_screenshot(self.screenshot_dir / f"ecg-monitor-{stamp}.png")
        self.statusBar().showMessage(f"saved {path}", 5000)

    def save_screenshot(self, path: Path) -> Path:
        """Redraw, then write the window as a PNG image.

        Raises:
            ConfigError: The image cannot be written there.
        """
        self.refresh()
        self.refresh_text()
        # lay out the side panels for their new text now, not at the next event loop turn
        QtWidgets.QApplication.sendPostedEvents(None, QtCore.QEvent.Type.LayoutRequest)
        if not self.grab().save(str(path), "PNG"):
            msg = f"cannot write the screenshot to {path}; check that its folder exists"
            raise ConfigError(msg)
        return path


def _quiet_offscreen_notices(
    kind: QtCore.QtMsgType, context: QtCore.QMessageLogContext, message: str
) -> None:
    """Qt's messages on stderr, but the offscreen platform's notices about what it lacks."""
    del context
    if "does not support" in message and kind is not QtCore.QtMsgType.QtCriticalMsg:
        return
    print(message, file=sys.stderr)


def run_monitor(
    config: MqttConfig,
    *,
    stream: str | None = None,
    screenshot: Path | None = None,
    duration_s: float = 10.0,
    window_s: float = 10.0,
    background: CoroutineFactory | None = None,
    client_id: str | None = None,
) -> int:
    """Open the monitor on a broker until closed (or Ctrl-C); headless with ``screenshot``.

    Args:
        config: Broker, credentials and topic prefix.
        stream: Stream id to show, or None for every stream.
        screenshot: Collect offscreen for ``duration_s``, write a PNG here, then exit.
        duration_s: Seconds to collect before the screenshot, in s.
        window_s: Seconds of trace shown.
        background: Makes a coroutine to run in a worker thread meanwhile (a replay); it is
            cancelled when the monitor closes, and the monitor closes if it fails.
        client_id: MQTT client id of the monitor's session (default: a random one).

    Returns:
        The process exit code: 0, or 130 after Ctrl-C.

    Raises:
        ConfigError: A setting is out of range or the screenshot cannot be written.
        EcgStreamError: What ``background`` raised (any other exception too, as a bug).
    """
    if screenshot is not None:
        if not duration_s > 0:
            msg = f"--duration {duration_s} must be > 0 s"
            raise ConfigError(msg)
        # headless: no display needed; set before the QApplication exists, as Qt reads it once
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        QtCore.qInstallMessageHandler(_quiet_offscreen_notices)
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    subscriber = Subscriber(config, stream=stream, client_id=client_id)
    window = MonitorWindow(subscriber, window_s=window_s)
    # an event loop of our own, not app.exec(): quitting the application leaves it closing for
    # good, and a caller (a test, a notebook) may open another window afterwards
    loop = QtCore.QEventLoop(app)
    window.closed.connect(loop.quit)
    job = BackgroundJob(background, name="ecg-monitor-background") if background else None
    errors: list[ConfigError] = []
    interrupted: list[bool] = []

    def finish(path: Path) -> None:
        try:
            window.save_screenshot(path)
        except ConfigError as error:
            errors.append(error)
        loop.quit()

    def fit_and_finish(path: Path) -> None:
        # one row of ECG-strip proportions per stream, then a moment to lay them out
        window.resize(1600, min(1400, 110 + 300 * max(1, len(window.rows))))
        QtCore.QTimer.singleShot(300, lambda: finish(path))

    opened_s, job_started = time.monotonic(), [False]

    def watch_job() -> None:
        if job is None:
            return
        if not job_started[0]:  # the replay starts once the monitor listens: it sees every beat
            subscribed = subscriber.status().state is BrokerState.CONNECTED
            if subscribed or time.monotonic() - opened_s >= BACKGROUND_WAIT_S:
                job_started[0] = True
                job.start()
            return
        if job.done and job.error is not None:
            loop.quit()  # e.g. the record or the broker is not usable: say so, do not hang

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        del signum, frame  # runs at the next Python bytecode: the refresh timer ensures one soon
        interrupted.append(True)
        loop.quit()

    watchdog = QtCore.QTimer(window)
    watchdog.timeout.connect(watch_job)
    watchdog.start(200)
    previous_handler = signal.signal(signal.SIGINT, on_interrupt)
    try:
        with subscriber:
            window.show()
            if screenshot is not None:
                path = screenshot
                QtCore.QTimer.singleShot(round(duration_s * 1000), lambda: fit_and_finish(path))
            loop.exec()
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        watchdog.stop()
        window.close()
        if job is not None and job_started[0]:
            job.stop()
    if job is not None and job.error is not None:
        raise job.error
    if errors:
        raise errors[0]
    return 130 if interrupted else 0
