"""The monitor notices when its MQTT worker thread dies, says so, and starts it again."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import aiomqtt
import pytest
from pytestqt.qtbot import QtBot

from ecg_stream.config import MqttConfig
from ecg_stream.viewer.monitor import MonitorWindow
from ecg_stream.viewer.subscriber import BrokerState, Subscriber
from tests.helpers import MqttBroker
from tests.viewer.helpers import beat, status, wire

pytestmark = [pytest.mark.gui, pytest.mark.mqtt]

WAIT_MS = 20_000


class FailingClock:
    """The worker's wall clock; once armed, its next reading raises: a bug in the thread."""

    def __init__(self) -> None:
        self.armed = False

    def __call__(self) -> float:
        if self.armed:
            self.armed = False
            msg = "injected fault: the worker's clock failed"
            raise RuntimeError(msg)
        return time.time()


def publish(config: MqttConfig, payloads: list[tuple[str, bytes]]) -> None:
    async def send() -> None:
        async with aiomqtt.Client(config.host, config.port) as client:
            for topic, payload in payloads:
                await client.publish(topic.replace("ecg/", "test-revive/", 1), payload, qos=1)

    asyncio.run(send())


# The dying thread's traceback is the point: Python reports it through threading.excepthook.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_mqtt_worker_is_restarted_and_the_window_says_so(
    qtbot: QtBot, mqtt_broker: MqttBroker
) -> None:
    config = replace(mqtt_broker.config, topic_prefix="test-revive")
    clock = FailingClock()
    subscriber = Subscriber(config, wall_clock=clock, backoff_s=(0.05, 0.5))
    window = MonitorWindow(subscriber)
    qtbot.addWidget(window)
    with subscriber:
        qtbot.waitUntil(lambda: subscriber.status().state is BrokerState.CONNECTED, timeout=WAIT_MS)
        clock.armed = True
        publish(config, [wire(status("revive"))])  # its receipt time raises in the worker
        qtbot.waitUntil(lambda: subscriber.status().state is BrokerState.FAILED, timeout=WAIT_MS)
        # the window's timer checks the worker (4 times a second) and starts a new one
        qtbot.waitUntil(lambda: subscriber.status().restarts == 1, timeout=WAIT_MS)
        window.refresh_text()
        text = window._status_label.text()
        assert "MQTT worker died, restarted 1 time" in text
        assert "injected fault" in window._status_label.toolTip()
        qtbot.waitUntil(lambda: subscriber.status().state is BrokerState.CONNECTED, timeout=WAIT_MS)
        publish(config, [wire(beat("revive", 720))])
        qtbot.waitUntil(lambda: "revive" in window.trackers, timeout=WAIT_MS)
        tracker = window.trackers["revive"]
        qtbot.waitUntil(lambda: sum(tracker.counts.values()) == 1, timeout=WAIT_MS)
    assert not subscriber.revive()  # stopped: never restarted
