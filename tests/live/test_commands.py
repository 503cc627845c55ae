"""The ``ecg-stream`` MQTT commands as a user runs them: broker, subscribe, replay."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ecg_stream.cli import main
from ecg_stream.config import MqttConfig
from ecg_stream.documents import read_json
from ecg_stream.live.session import SummaryDocument
from ecg_stream.mqtt.broker import probe_broker
from ecg_stream.mqtt.mosquitto import free_port
from tests.helpers import MqttBroker, run

ROOT = Path(__file__).parents[2]


def command(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ecg_stream.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )


def stop(process: subprocess.Popen[str], timeout_s: float = 20.0) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=timeout_s)
    return process.returncode, out


@pytest.mark.mqtt
def test_broker_command_serves_until_sigterm() -> None:
    port = free_port()
    with command("broker", "--port", str(port)) as process:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert f"listening on mqtt://127.0.0.1:{port}" in first
        assert run(probe_broker(MqttConfig(host="127.0.0.1", port=port)))
        code, out = stop(process)
    assert code == 0
    assert "embedded MQTT broker stopped" in out


@pytest.mark.mqtt
def test_broker_command_on_a_busy_port_is_one_line_and_exit_2() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with command("broker", "--port", str(port)) as process:
            out, _ = process.communicate(timeout=30)
    assert process.returncode == 2
    assert out == (
        f"ecg-stream broker: error: cannot start the embedded MQTT broker: 127.0.0.1:{port} is "
        "already in use (another broker or program listens there); stop it, pick another "
        "--port, or use the broker that is there with --broker\n"
    )


@pytest.mark.mqtt
def test_subscribe_command_stops_cleanly_on_sigterm(mqtt_broker: MqttBroker) -> None:
    with command("subscribe", "--broker", f"mqtt://127.0.0.1:{mqtt_broker.port}") as process:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("subscribed to every stream")
        code, _ = stop(process)
    assert code == 0


def test_credentials_in_a_broker_url_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "100", "--broker", "mqtt://me:secret@localhost"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ecg-stream replay: error: broker URL mqtt://...@localhost holds")
    assert "secret" not in err


def test_unreachable_broker_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["subscribe", "--broker", f"mqtt://127.0.0.1:{free_port()}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "cannot connect to the MQTT broker at mqtt://127.0.0.1:" in err


@pytest.mark.mqtt
@pytest.mark.slow
def test_replay_command_stops_on_sigterm_with_summary_and_offline(
    mqtt_broker: MqttBroker, data_dir: Path
) -> None:
    url = f"mqtt://127.0.0.1:{mqtt_broker.port}"
    with command(
        "subscribe", "--broker", url, "--topic-prefix", "cmd", "--stream", "r100"
    ) as subscriber:
        assert subscriber.stdout is not None
        assert subscriber.stdout.readline().startswith("subscribed to stream r100")
        with command(
            "replay",
            "100",
            "--speed",
            "20",
            "--broker",
            url,
            "--topic-prefix",
            "cmd",
            "--stream-id",
            "r100",
            "--data-dir",
            str(data_dir),
        ) as replay:
            assert replay.stdout is not None
            assert replay.stdout.readline().startswith("replaying 100 (MLII) as r100 at 20x")
            time.sleep(3.0)
            code, out = stop(replay)
        time.sleep(1.0)
        _, received = stop(subscriber)
    assert code == 130
    assert "interrupted: summary so far" in out
    assert "dropped: 0" in out
    assert "status online" in received
    assert (
        received.rstrip()
        .splitlines()[-1]
        .endswith("status offline: record 100, 360 Hz, model beat_lstm (NSVFQ)")
    )


@pytest.mark.mqtt
def test_replay_writes_its_summary_as_json(
    mqtt_broker: MqttBroker, short_record: Path, tmp_path: Path
) -> None:
    path = tmp_path / "summary.json"
    url = f"mqtt://127.0.0.1:{mqtt_broker.port}"
    argv = ["replay", str(short_record), "--speed", "max", "--quiet", "--broker", url]
    assert main([*argv, "--summary-json", str(path)]) == 0
    summary = read_json(path, SummaryDocument, made_by="ecg-stream replay --summary-json")
    (stream,) = summary.streams
    assert stream.stream == "short"
    assert stream.detected == sum(stream.beats.values()) >= 10
    assert stream.published["beats"] == stream.detected
    assert (summary.beats_lost, summary.exit_status) == (0, 0)


def test_a_summary_json_that_cannot_be_a_file_is_refused_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", "100", "--summary-json", str(tmp_path)]) == 2
    assert "is a directory; name a file to write" in capsys.readouterr().err


@pytest.mark.mqtt
def test_replay_serves_prometheus_metrics_while_it_runs(
    mqtt_broker: MqttBroker, short_record: Path
) -> None:
    """``--metrics-port``: a scrape during a real-time replay sees its stream and beats."""
    port = free_port()
    url = f"mqtt://127.0.0.1:{mqtt_broker.port}"
    with command(
        "replay", str(short_record), "--speed", "1", "--quiet", "--broker", url,
        "--metrics-port", str(port),
    ) as process:  # fmt: skip
        text, deadline = "", time.monotonic() + 30.0
        beats = re.compile(r'ecg_stream_beats_total\{class="N"\} [1-9]')
        while not beats.search(text):
            assert time.monotonic() < deadline, text
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as answer:
                    text = answer.read().decode()
            except OSError:
                continue
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert "ecg_stream_streams_online 1.0" in text
    assert "ecg_stream_compute_latency_seconds_bucket" in text
    assert 'ecg_stream_messages_dropped_total{topic="beats"} 0.0' in text
