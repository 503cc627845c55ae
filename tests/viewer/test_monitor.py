"""MonitorWindow (offscreen Qt): trace, markers, figures, pause, malformed messages, screenshots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PySide6 import QtGui
from pytestqt.qtbot import QtBot

from ecg_stream.config import MqttConfig
from ecg_stream.types import BeatClass
from ecg_stream.viewer.monitor import CLASS_COLOURS, MAX_Y_TICKS, MonitorWindow
from ecg_stream.viewer.subscriber import Subscriber
from ecg_stream.wire import SamplesMessage
from tests.helpers import MqttBroker
from tests.viewer.helpers import rhythm_payloads, wire

pytestmark = pytest.mark.gui


def make_window(qtbot: QtBot) -> tuple[MonitorWindow, Subscriber]:
    """A window fed by a subscriber that is never started: ``handle`` is its decode path."""
    feed = Subscriber(MqttConfig())
    window = MonitorWindow(feed)
    window.timer.stop()  # the test calls refresh() itself
    qtbot.addWidget(window)
    window.resize(1400, 700)
    window.show()
    return window, feed


def feed_payloads(feed: Subscriber, payloads: list[tuple[str, bytes]]) -> None:
    for topic, payload in payloads:
        feed.handle(topic, payload)


def image_pixels(image: QtGui.QImage) -> npt.NDArray[np.uint8]:
    """RGB pixels of ``image``, shape (height, width, 3)."""
    rgb = image.convertToFormat(QtGui.QImage.Format.Format_RGB888)
    width, height, stride = rgb.width(), rgb.height(), rgb.bytesPerLine()
    raw = np.frombuffer(rgb.constBits(), dtype=np.uint8, count=stride * height)
    return raw.reshape(height, stride)[:, : width * 3].reshape(height, width, 3).copy()


def colour_pixels(pixels: npt.NDArray[np.uint8], colour: str, tolerance: int = 12) -> int:
    target = QtGui.QColor(colour)
    want = np.array([target.red(), target.green(), target.blue()])
    return int((np.abs(pixels.astype(int) - want).max(axis=2) <= tolerance).sum())


def test_streams_appear_as_they_come_online_in_id_order(qtbot: QtBot) -> None:
    window, feed = make_window(qtbot)
    assert window.rows == {}
    feed_payloads(feed, rhythm_payloads("b-bed", 2.0))
    window.refresh()
    feed_payloads(feed, rhythm_payloads("a-bed", 2.0))
    window.refresh()
    assert list(window.trackers) == ["b-bed", "a-bed"]
    assert window.stream_order() == ["a-bed", "b-bed"]
    assert all(row.isVisible() for row in window.rows.values())


def test_trace_holds_the_last_window_and_scrolls_with_the_data(qtbot: QtBot) -> None:
    window, feed = make_window(qtbot)
    payloads = rhythm_payloads("100", 30.0)
    feed_payloads(feed, payloads[: len(payloads) // 2])
    window.refresh()
    feed_payloads(feed, payloads[len(payloads) // 2 :])
    window.refresh()
    tracker, row = window.trackers["100"], window.rows["100"]
    assert tracker.ring is not None
    end_index = tracker.ring.end_index
    assert end_index == 30 * 360
    x, y = row.curve.getOriginalDataset()
    assert x[-1] == pytest.approx((end_index - 1) / 360.0)
    np.testing.assert_array_equal(y, tracker.ring.latest(x.size))
    assert x.size == round(10.5 * 360)  # the window plus half a second: no gap at the left edge
    (x_lo, x_hi), _ = row.plot.viewRange()
    assert (x_lo, x_hi) == pytest.approx((end_index / 360.0 - 10.0, end_index / 360.0))
    assert np.all(np.diff(x) > 0)  # drawn in order: no jumps back at chunk edges


def test_each_trace_shows_a_1_mv_calibration_pulse_and_the_window_a_legend(
    qtbot: QtBot,
) -> None:
    """The class colours, the paper's scale and a 1 mV pulse at each trace's left edge."""
    window, feed = make_window(qtbot)
    feed_payloads(feed, rhythm_payloads("100", 12.0))
    window.refresh()
    row = window.rows["100"]
    x, y = row.calibration.getData()
    (x_lo, _), (y_lo, y_hi) = row.plot.viewRange()
    assert max(y) - min(y) == pytest.approx(1.0)  # 1 mV
    assert x_lo < min(x) < max(x) < x_lo + 1.0  # at the left edge, in view
    assert y_lo < min(y) < max(y) < y_hi
    legend = window.legend.text()
    assert "25 mm/s, 10 mm/mV" in legend
    for beat_class, colour in CLASS_COLOURS.items():
        assert f'color:{colour}">{beat_class.value}</b>' in legend


def test_markers_sit_on_r_peaks_with_class_letters_and_colours(qtbot: QtBot) -> None:
    window, feed = make_window(qtbot)
    feed_payloads(feed, rhythm_payloads("208", 12.0, rr_s=0.8, v_every=4))
    window.refresh()
    tracker, row = window.trackers["208"], window.rows["208"]
    beats = list(tracker.beats)
    letters = row.letters.data
    dots = row.dots.data
    assert len(letters) == len(beats) == 14
    np.testing.assert_allclose(letters["x"], [b.chain_sample / 360.0 for b in beats])
    np.testing.assert_allclose(dots["y"], 1.5 + 0.1 * np.sin(dots["x"] * 2 * np.pi), atol=2e-3)
    brushes = {
        b.label: spot["brush"].color().name() for b, spot in zip(beats, letters, strict=True)
    }
    assert brushes[BeatClass.V] == CLASS_COLOURS[BeatClass.V].lower()
    assert brushes[BeatClass.N] == CLASS_COLOURS[BeatClass.N].lower()
    assert letters[3]["data"].startswith("V (96%)")  # the tooltip


def test_info_panel_shows_rate_counts_abnormal_beat_latency_and_state(qtbot: QtBot) -> None:
    window, feed = make_window(qtbot)
    feed_payloads(feed, rhythm_payloads("119", 12.0, rr_s=0.8, v_every=4))
    window.refresh()
    tracker = window.trackers["119"]
    assert tracker.heart_rate_bpm == pytest.approx(75.0)
    assert tracker.counts[BeatClass.V] == 3
    assert tracker.counts[BeatClass.N] == 11
    text = window.rows["119"].info.text()
    assert "<b>75</b></span> bpm" in text
    assert "online" in text
    assert "beat_lstm" in text
    assert "last abnormal:" in text
    assert "compute 2.0 ms" in text


def test_time_axis_is_labelled_in_seconds(qtbot: QtBot) -> None:
    window, feed = make_window(qtbot)
    feed_payloads(feed, rhythm_payloads("100", 3.0))
    window.refresh()
    axis = window.rows["100"].plot.getAxis("bottom")
    assert axis.labelText == "time (s)"


def laid_out_lines(html: str, font: QtGui.QFont, width: int) -> list[str]:
    """The lines Qt wraps rich text into at ``width`` pixels, as a QLabel lays it out."""
    document = QtGui.QTextDocument()
    document.setDefaultFont(font)
    document.setHtml(html)
    document.setTextWidth(width)
    document.size()  # lays the text out
    lines = []
    block = document.begin()
    while block.isValid():
        layout = block.layout()
        for number in range(layout.lineCount()):
            line = layout.lineAt(number)
            lines.append(block.text()[line.textStart() : line.textStart() + line.textLength()])
        block = block.next()
    return lines


def test_info_panel_never_wraps_inside_end_to_end(qtbot: QtBot) -> None:
    window, feed = make_window(qtbot)
    feed_payloads(feed, rhythm_payloads("119", 12.0, rr_s=0.8, v_every=4))
    window.refresh()
    info = window.rows["119"].info
    whole = "end\u2011to\u2011end"  # joined by non-breaking hyphens
    for width in range(100, info.width() + 1, 10):  # fonts differ between machines
        lines = laid_out_lines(info.text(), info.font(), width)
        assert any(whole in line for line in lines), (width, lines)


def test_pause_freezes_the_view_while_data_keeps_arriving(qtbot: QtBot) -> None:
    window, feed = make_window(qtbot)
    payloads = rhythm_payloads("100", 40.0)
    feed_payloads(feed, payloads[: len(payloads) // 2])
    window.refresh()
    row, tracker = window.rows["100"], window.trackers["100"]
    window.pause_action.trigger()
    window.refresh()
    frozen_range = row.plot.viewRange()[0]
    x_paused, _ = row.curve.getOriginalDataset()
    feed_payloads(feed, payloads[len(payloads) // 2 :])
    window.refresh()
    assert tracker.ring is not None
    assert tracker.ring.end_index == 40 * 360  # kept arriving
    assert row.plot.viewRange()[0] == pytest.approx(frozen_range)
    assert x_paused.size > round(10.5 * 360)  # the whole history, to pan back through
    window.pause_action.trigger()
    window.refresh()
    assert row.plot.viewRange()[0][1] == pytest.approx(40.0)


def test_malformed_messages_are_counted_in_the_status_bar(qtbot: QtBot) -> None:
    window, feed = make_window(qtbot)
    feed_payloads(feed, rhythm_payloads("100", 2.0))
    feed.handle("ecg/100/beats", b'{"v": 1, "stream": "100"}')
    feed.handle("ecg/100/samples", b"\xff\xfe")
    feed.handle("ecg/100/beats", b'{"v": 99}')
    window.refresh()
    window.refresh_text()
    assert feed.status().malformed == 3
    assert "malformed 3" in window._status_label.text()
    assert "'v'" not in window._status_label.text()  # details in the tooltip, not the bar
    assert "version 99" in window._status_label.toolTip()
    assert window.trackers["100"].ring is not None


@pytest.mark.mqtt
def test_broker_state_is_shown(qtbot: QtBot, own_mqtt_broker: MqttBroker) -> None:
    own_mqtt_broker.stop()
    subscriber = Subscriber(own_mqtt_broker.config, backoff_s=(0.05, 0.2))
    window = MonitorWindow(subscriber)
    qtbot.addWidget(window)
    with subscriber:
        qtbot.waitUntil(lambda: "unreachable" in window._status_label.text(), timeout=20_000)
        own_mqtt_broker.start()
        qtbot.waitUntil(lambda: "connected</b>" in window._status_label.text(), timeout=20_000)


def test_screenshot_is_not_blank_and_shows_the_markers(qtbot: QtBot, tmp_path: Path) -> None:
    window, feed = make_window(qtbot)
    feed_payloads(feed, rhythm_payloads("208", 20.0, v_every=3))
    path = window.save_screenshot(tmp_path / "monitor.png")
    image = QtGui.QImage(str(path))
    assert (image.width(), image.height()) == (window.width(), window.height())
    pixels = image_pixels(image)
    assert np.unique(pixels.reshape(-1, 3), axis=0).shape[0] > 50
    assert colour_pixels(pixels, CLASS_COLOURS[BeatClass.V]) > 100
    assert colour_pixels(pixels, CLASS_COLOURS[BeatClass.N]) > 100


def test_screenshot_action_saves_into_the_screenshot_dir(qtbot: QtBot, tmp_path: Path) -> None:
    window, _ = make_window(qtbot)
    window.screenshot_dir = tmp_path
    window.screenshot_action.trigger()
    (saved,) = tmp_path.glob("ecg-monitor-*.png")
    assert saved.stat().st_size > 0


def test_markers_cover_only_the_trace_held_on_a_long_stream(qtbot: QtBot) -> None:
    window, feed = make_window(qtbot)
    feed_payloads(feed, rhythm_payloads("long", 90.0, rr_s=0.8))
    window.refresh()
    tracker, row = window.trackers["long"], window.rows["long"]
    assert tracker.ring is not None
    held_from_s = tracker.ring.start_index / 360.0
    assert held_from_s == pytest.approx(30.0)
    letters = row.letters.data["x"]
    assert letters.min() >= held_from_s
    assert letters.size == row.dots.data.size == 75  # 60 s at 75 bpm
    assert tracker.counts[BeatClass.N] + tracker.counts[BeatClass.V] == 112  # counted since start


def test_a_railed_input_keeps_the_mv_axis_to_a_few_ticks(qtbot: QtBot) -> None:
    window, feed = make_window(qtbot)
    railed = np.tile([-30_000.0, 30_000.0], 360)  # a device at full scale, 1 mV per count
    feed.handle(*wire(SamplesMessage.from_mv("rail", 0, 360.0, railed, 1000.0)))
    window.refresh()
    row = window.rows["rail"]
    (lo, hi) = row.plot.viewRange()[1]
    assert hi - lo > 60_000
    ticks = row.plot.getAxis("left").tickValues(lo, hi, 300)
    assert sum(len(values) for _, values in ticks) <= 2 * 2 * MAX_Y_TICKS
