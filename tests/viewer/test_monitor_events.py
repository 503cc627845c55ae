"""MonitorWindow (offscreen Qt): current rhythm, alarm lines, episode bands and instant marks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtGui
from pytestqt.qtbot import QtBot

from ecg_stream.types import EventState, RhythmKind
from ecg_stream.viewer.monitor import (
    BAND_ALPHA,
    BAND_POOL_SIZE,
    PAPER_COLOUR,
    RHYTHM_COLOURS,
    WARNING_COLOUR,
    MonitorWindow,
    StreamRow,
)
from ecg_stream.viewer.subscriber import Subscriber
from ecg_stream.wire import StreamState
from tests.viewer.helpers import event, rhythm_payloads, status, wire
from tests.viewer.test_monitor import colour_pixels, feed_payloads, image_pixels, make_window

pytestmark = pytest.mark.gui


def shown_bands(row: StreamRow) -> list[tuple[RhythmKind | None, float, float]]:
    """Rhythm and x range (s, to the microsecond) of each band on the strip."""
    shown = []
    for band in row.bands:
        if band.shown:
            x_lo, x_hi = band.region.getRegion()
            shown.append((band.rhythm, round(x_lo, 6), round(x_hi, 6)))
    return shown


def alarm_lines(row: StreamRow) -> list[str]:
    return [row.alarms.item(number).text() for number in range(row.alarms.count())]


def feed_events(feed: Subscriber, *events: tuple[RhythmKind, EventState, int]) -> None:
    for rhythm, state, chain_sample in events:
        feed.handle(*wire(event("bed1", rhythm, state, chain_sample)))


def started(qtbot: QtBot, seconds: float) -> tuple[MonitorWindow, Subscriber]:
    window, feed = make_window(qtbot)
    feed_payloads(feed, rhythm_payloads("bed1", seconds))
    return window, feed


def test_the_current_rhythm_from_the_status_is_shown_in_its_colour(qtbot: QtBot) -> None:
    window, feed = started(qtbot, 4.0)
    window.refresh()
    window.refresh_text()
    info = window.rows["bed1"].info
    assert "AF" not in info.text()  # nothing while no episode is open
    feed.handle(*wire(status("bed1", rhythm=RhythmKind.AF)))
    window.refresh()
    window.refresh_text()
    assert f'color:{WARNING_COLOUR}"><b>AF</b>' in info.text()
    assert "bpm" in info.text()
    feed.handle(*wire(status("bed1", StreamState.OFFLINE, rhythm=RhythmKind.AF)))
    window.refresh()
    window.refresh_text()
    assert "<b>AF</b>" not in info.text()  # an offline stream has no current rhythm


def test_start_and_end_draw_a_band_over_the_episode_and_list_alarm_lines(qtbot: QtBot) -> None:
    window, feed = started(qtbot, 12.0)
    feed_events(feed, (RhythmKind.VT, EventState.START, 3 * 360))
    window.refresh()
    window.refresh_text()
    row = window.rows["bed1"]
    assert shown_bands(row) == [(RhythmKind.VT, 3.0, 12.0)]  # open: to now
    feed_events(feed, (RhythmKind.VT, EventState.END, 7 * 360))
    feed_payloads(feed, rhythm_payloads("bed1", 14.0)[-30:])  # the strip moves on
    window.refresh()
    window.refresh_text()
    assert shown_bands(row) == [(RhythmKind.VT, 3.0, 7.0)]
    assert row.bands[0].label.toPlainText() == "VT"
    lines = alarm_lines(row)
    assert [line.split("  ", 1)[1] for line in lines] == [
        "VT end, 6 beats at 150 bpm",
        "VT start, 6 beats at 150 bpm",
    ]
    first = row.alarms.item(1)
    assert first.foreground().color().name() == RHYTHM_COLOURS[RhythmKind.VT].lower()
    assert "0:03.0 in the record" in first.toolTip()


def test_an_episode_started_before_the_trace_is_drawn_from_its_start_held(
    qtbot: QtBot,
) -> None:
    window, feed = started(qtbot, 90.0)  # 60 s held: from 30 s on
    feed_events(feed, (RhythmKind.AF, EventState.START, 10 * 360))
    window.refresh()
    row = window.rows["bed1"]
    assert shown_bands(row) == [(RhythmKind.AF, 30.0, 90.0)]
    label_x = row.bands[0].label.pos().x()
    assert label_x == pytest.approx(80.0)  # the view's left edge: the name stays in sight


def test_joining_during_an_episode_shows_its_band_from_the_oldest_sample(qtbot: QtBot) -> None:
    window, feed = make_window(qtbot)
    payloads = rhythm_payloads("bed1", 20.0)
    feed.handle(*wire(status("bed1", rhythm=RhythmKind.AF)))  # retained: AF since before
    feed_payloads(feed, payloads[1:])
    window.refresh()
    assert shown_bands(window.rows["bed1"]) == [(RhythmKind.AF, 0.0, 20.0)]


def test_bands_leave_with_the_trace_and_the_pool_stays_bounded(qtbot: QtBot) -> None:
    window, feed = started(qtbot, 60.0)
    for k in range(200):  # far more episodes than the pool holds
        start = round(k * 0.3 * 360)
        feed_events(
            feed,
            (RhythmKind.SVT, EventState.START, start),
            (RhythmKind.SVT, EventState.END, start + 36),
        )
        window.refresh()
    row = window.rows["bed1"]
    assert len(row.bands) == BAND_POOL_SIZE
    assert len(shown_bands(row)) == BAND_POOL_SIZE
    assert min(x_lo for _, x_lo, _ in shown_bands(row)) > 50.0  # the newest ones
    regions = [item for item in row.plot.items if item in {b.region for b in row.bands}]
    assert len(regions) == BAND_POOL_SIZE  # items made once, reused
    feed_payloads(feed, rhythm_payloads("bed1", 200.0)[-5000:])  # 60 s on: all scrolled out
    window.refresh()
    assert shown_bands(row) == []
    window.refresh_text()
    assert row.alarms.count() == 50


def test_instant_events_are_thin_marks_with_a_tooltip(qtbot: QtBot) -> None:
    window, feed = started(qtbot, 12.0)
    feed.handle(*wire(event("bed1", RhythmKind.PAUSE, EventState.INSTANT, 5 * 360, beats=2)))
    window.refresh()
    window.refresh_text()
    row = window.rows["bed1"]
    x, y = row.instant_lines.getData()
    np.testing.assert_allclose(x, [5.0, 5.0])
    assert y[0] < y[1]  # from the bottom of the strip to its top
    (mark,) = row.instant_marks.data
    assert mark["data"].startswith("pause, 2 beats at 150 bpm")
    assert shown_bands(row) == []
    assert alarm_lines(row)[0].endswith("pause, 2 beats at 150 bpm")


def test_screenshot_shows_the_af_band(qtbot: QtBot, tmp_path: Path) -> None:
    window, feed = started(qtbot, 20.0)
    feed.handle(*wire(status("bed1", rhythm=RhythmKind.AF)))
    feed_events(feed, (RhythmKind.AF, EventState.START, 12 * 360))
    pixels = image_pixels(QtGui.QImage(str(window.save_screenshot(tmp_path / "af.png"))))
    paper, band = QtGui.QColor(PAPER_COLOUR), QtGui.QColor(WARNING_COLOUR)
    blend = QtGui.QColor(
        *(
            round((1 - BAND_ALPHA) * getattr(paper, part)() + BAND_ALPHA * getattr(band, part)())
            for part in ("red", "green", "blue")
        )
    )
    assert colour_pixels(pixels, blend.name(), tolerance=4) > 10_000  # 8 s of strip, tinted
    assert colour_pixels(pixels, WARNING_COLOUR, tolerance=4) > 30  # the names, "AF"
