"""``ecg-stream monitor`` and ``replay --monitor`` on the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtGui
from pytestqt.qtbot import QtBot

from ecg_stream.cli import EXIT_USER_ERROR, main
from tests.helpers import MqttBroker
from tests.viewer.test_monitor import image_pixels


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["monitor", "--duration", "3"], "give --screenshot PNG too"),
        (["monitor", "--screenshot", "x.png", "--duration", "0"], "--duration 0.0 must be > 0"),
        (["replay", "208", "--screenshot", "x.png"], "add --monitor"),
        (["monitor", "--broker", "http://localhost"], "scheme 'http'"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


@pytest.mark.gui
@pytest.mark.mqtt
def test_headless_monitor_command_writes_a_png(
    qtbot: QtBot, mqtt_broker: MqttBroker, tmp_path: Path
) -> None:
    del qtbot  # for the QApplication it owns
    path = tmp_path / "empty.png"
    argv = ["monitor", "--broker", mqtt_broker.config.url, "--stream", "nobody"]
    assert main([*argv, "--screenshot", str(path), "--duration", "0.5"]) == 0
    pixels = image_pixels(QtGui.QImage(str(path)))
    assert pixels.shape[1] == 1600
    assert np.unique(pixels.reshape(-1, 3), axis=0).shape[0] > 2  # toolbar, text, status bar


@pytest.mark.gui
@pytest.mark.mqtt
def test_replay_with_monitor_ended_by_its_screenshot_prints_the_normal_summary(
    qtbot: QtBot,
    mqtt_broker: MqttBroker,
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    del qtbot  # for the QApplication it owns
    path = tmp_path / "replay.png"
    argv = ["replay", "100", "--monitor", "--quiet", "--broker", mqtt_broker.config.url]
    argv += ["--data-dir", str(data_dir), "--stream-id", "cli-shot"]
    assert main([*argv, "--screenshot", str(path), "--duration", "1"]) == 0
    out = capsys.readouterr().out
    assert path.is_file()
    assert "\nsummary\n" in f"\n{out}"  # the screenshot is the run's planned end
    assert "interrupted" not in out
