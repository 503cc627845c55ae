"""The monitor on real pipeline output: record 208 replayed over MQTT into the window."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import statistics
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtGui
from pytestqt.qtbot import QtBot

from ecg_stream.classify.classifier import OnnxBeatClassifier
from ecg_stream.config import CHAIN_FS_HZ, ChainConfig, MqttConfig
from ecg_stream.detector.chain import BeatExtractor
from ecg_stream.errors import DataNotFoundError
from ecg_stream.live.replay import RecordReplay
from ecg_stream.live.replay_command import replay_sinks
from ecg_stream.live.session import RunSummary
from ecg_stream.live.sources import ReplaySource, StreamSpec
from ecg_stream.records import Record, load_record
from ecg_stream.types import BeatClass
from ecg_stream.viewer.monitor import CLASS_COLOURS, MonitorWindow, run_monitor
from ecg_stream.viewer.subscriber import BrokerState, Subscriber
from tests.helpers import MqttBroker
from tests.viewer.test_monitor import colour_pixels, image_pixels

pytestmark = [pytest.mark.gui, pytest.mark.mqtt]

WAIT_MS = 60_000


def first_seconds(data_dir: Path, seconds: float) -> Record:
    record = load_record("208", data_dir)
    return dataclasses.replace(record, samples=record.samples[: round(seconds * CHAIN_FS_HZ)])


def record_replay(
    record: Record,
    stream: str,
    config: MqttConfig,
    classifier: OnnxBeatClassifier,
    *,
    speed: float,
    summary: RunSummary,
) -> RecordReplay:
    """What the ``replay`` command runs: the chain, the shipped model, the MQTT sink."""
    sinks = replay_sinks(config, summary, speed=speed, samples_s=None, say=None)
    return RecordReplay(
        [StreamSpec(stream, record)], classifier, sinks, speed=speed, summary=summary
    )


def replay_in_thread(
    record: Record, stream: str, config: MqttConfig, classifier: OnnxBeatClassifier
) -> tuple[threading.Thread, RunSummary, list[BaseException]]:
    """Start the real replay (chain -> classifier -> MQTT sink -> broker) in a thread of its own."""
    summary, errors = RunSummary(), []
    live = record_replay(record, stream, config, classifier, speed=math.inf, summary=summary)

    def run() -> None:
        try:
            asyncio.run(live.run())
        except BaseException as error:  # reported by the test, not lost
            errors.append(error)

    thread = threading.Thread(target=run, name=f"replay-{stream}")
    thread.start()
    return thread, summary, errors


def test_monitor_holds_what_the_live_pipeline_published(
    qtbot: QtBot, mqtt_broker: MqttBroker, data_dir: Path, shipped_classifier: OnnxBeatClassifier
) -> None:
    record, stream, classifier = first_seconds(data_dir, 40.0), "live-208", shipped_classifier
    reference = BeatExtractor(ChainConfig())  # the same chain offline, for the expected values
    outputs = [reference.process(chunk) for chunk in ReplaySource(record.samples, 360.0).chunks()]
    filtered = np.concatenate([output.filtered.samples for output in outputs])
    windows = [window for output in outputs for window in output.windows]
    beats = classifier.classify([*windows, *reference.flush().windows])

    subscriber = Subscriber(mqtt_broker.config, stream=stream)
    window = MonitorWindow(subscriber)
    qtbot.addWidget(window)
    window.resize(1400, 500)
    window.show()
    with subscriber:
        qtbot.waitUntil(lambda: subscriber.status().state is BrokerState.CONNECTED, timeout=WAIT_MS)
        thread, summary, errors = replay_in_thread(record, stream, mqtt_broker.config, classifier)
        qtbot.waitUntil(
            lambda: stream in window.trackers and window.trackers[stream].online is False,
            timeout=WAIT_MS,
        )
        thread.join()
        window.refresh()
        window.refresh_text()
    assert errors == []
    tracker, row = window.trackers[stream], window.rows[stream]

    # trace: every sample, the filtered signal as published (1 uV counts), no gaps
    assert tracker.ring is not None
    assert tracker.ring.end_index == filtered.size == 40 * 360
    assert tracker.ring.gap_samples == 0
    shown = tracker.ring.latest(3600)
    np.testing.assert_allclose(shown, filtered[-3600:], atol=1e-3)
    x, y = row.curve.getOriginalDataset()
    assert x[-1] == pytest.approx((filtered.size - 1) / 360.0)
    np.testing.assert_allclose(y, filtered[-y.size :], atol=1e-3)

    # markers and counters: every beat, once, in order, with its label
    expected = [(beat.window.peak.index, beat.label) for beat in beats]
    assert [(mark.chain_sample, mark.label) for mark in tracker.beats] == expected
    assert Counter({cls: n for cls, n in tracker.counts.items() if n}) == Counter(
        label for _, label in expected
    )
    assert tracker.counts == summary.streams[stream].beats
    assert tracker.counts[BeatClass.V] > 0  # record 208 has many premature beats
    np.testing.assert_allclose(
        row.letters.data["x"], [index / 360.0 for index, _ in expected], rtol=0, atol=1e-9
    )
    on_screen = row.dots.data["x"]
    assert on_screen.size == len(expected)  # every R peak is on the 60 s of trace held

    # figures
    rr_ms = [beat.window.rr.rr_ms for beat in beats if math.isfinite(beat.window.rr.rr_ms)]
    assert tracker.heart_rate_bpm == pytest.approx(60_000 / statistics.median(rr_ms[-8:]), 1e-3)
    assert tracker.model == classifier.name
    abnormal = [mark for mark in expected if mark[1] is not BeatClass.N]
    assert tracker.last_abnormal is not None
    assert (tracker.last_abnormal.chain_sample, tracker.last_abnormal.label) == abnormal[-1]
    assert tracker.median_compute_ms is not None
    assert tracker.median_compute_ms >= 0
    assert tracker.median_end_to_end_ms is not None
    assert subscriber.status().malformed == subscriber.status().dropped == 0
    assert "offline" in row.info.text()


def test_headless_monitor_runs_the_replay_beside_it_and_writes_a_screenshot(
    qtbot: QtBot,
    mqtt_broker: MqttBroker,
    data_dir: Path,
    tmp_path: Path,
    shipped_classifier: OnnxBeatClassifier,
) -> None:
    del qtbot  # for the QApplication it owns
    stream, path, summary = "shot-208", tmp_path / "monitor.png", RunSummary()
    record = first_seconds(data_dir, 60.0)
    config = mqtt_broker.config
    live = record_replay(record, stream, config, shipped_classifier, speed=10.0, summary=summary)
    code = run_monitor(
        mqtt_broker.config, stream=stream, screenshot=path, duration_s=2.5, background=live.run
    )
    assert code == 0
    report = summary.streams[stream]
    assert 0 < report.signal_s < 60.0  # the replay ran, and stopped with the window
    pixels = image_pixels(QtGui.QImage(str(path)))
    assert np.unique(pixels.reshape(-1, 3), axis=0).shape[0] > 50  # not blank
    assert colour_pixels(pixels, CLASS_COLOURS[BeatClass.N]) > 50  # markers are there


def test_monitor_closes_and_reports_when_its_background_job_fails(
    qtbot: QtBot, mqtt_broker: MqttBroker
) -> None:
    del qtbot  # for the QApplication it owns

    async def replay_of_a_missing_record() -> None:
        msg = "record '999' not found"
        raise DataNotFoundError(msg, "999", ())

    with pytest.raises(DataNotFoundError, match="999"):
        run_monitor(mqtt_broker.config, background=replay_of_a_missing_record)
