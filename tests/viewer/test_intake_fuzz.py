"""The monitor's intake under random and adversarial traffic (issue 13): counted, never a crash.

Whatever arrives, :meth:`Subscriber.handle` queues a valid message or counts a malformed one;
the trackers and the window take any valid message, however extreme its values.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PySide6 import QtWidgets
from pytestqt.qtbot import QtBot

from ecg_stream import wire
from ecg_stream.config import MqttConfig
from ecg_stream.types import EventState, RhythmKind
from ecg_stream.viewer.monitor import MonitorWindow
from ecg_stream.viewer.subscriber import Subscriber
from ecg_stream.viewer.tracker import MAX_CLOSED_EPISODES, StreamTracker
from ecg_stream.wire import (
    BeatMessage,
    EventMessage,
    SamplesMessage,
    StatusMessage,
    WireMessage,
)
from tests.test_wire_fuzz import (
    FUZZ,
    any_payload,
    beat_messages,
    deeply_nested,
    json_values,
    mutated,
    names,
    samples_messages,
    status_messages,
)

STREAMS = ("s1", "s2")


@st.composite
def event_messages(draw: st.DrawFn, stream: str) -> EventMessage:
    """Any valid rhythm event, at extreme samples and rates too."""
    beats = draw(st.integers(0, wire.MAX_INDEX))
    chain_sample = draw(st.integers(0, wire.MAX_INDEX))
    return EventMessage(
        stream=stream,
        record=draw(names),
        rhythm=draw(st.sampled_from(RhythmKind)),
        state=draw(st.sampled_from(EventState)),
        sample=chain_sample,
        chain_sample=chain_sample,
        time_s=draw(st.floats(0.0, 1e6)),
        wall_time=draw(st.floats(0.0, wire.MAX_UNIX_TIME_S)),
        delay_s=draw(st.floats(0.0, 1e3)),
        beats=beats,
        rate_bpm=None if beats == 0 else draw(st.floats(1.0, wire.MAX_HEART_RATE_BPM)),
        detail=draw(st.none() | names),
    )


@st.composite
def status_with_rhythm(draw: st.DrawFn, stream: str) -> StatusMessage:
    rhythm = draw(st.none() | st.sampled_from(RhythmKind))
    return msgspec.structs.replace(draw(status_messages(stream)), rhythm=rhythm)


topics = st.one_of(
    st.sampled_from([f"ecg/{s}/{k.value}" for s in STREAMS for k in wire.TopicKind]),
    st.text(max_size=40),
)
valid_messages: st.SearchStrategy[WireMessage] = st.sampled_from(STREAMS).flatmap(
    lambda stream: st.one_of(
        beat_messages(stream=stream),
        samples_messages(stream=stream),
        status_with_rhythm(stream),
        event_messages(stream),
    )
)


def as_traffic(message: WireMessage) -> tuple[str, bytes]:
    return wire.topic_for("ecg", message.stream, wire.kind_of(message)), wire.encode(message)


traffic = st.lists(
    st.one_of(
        valid_messages.map(as_traffic),
        st.tuples(topics, st.one_of(any_payload, deeply_nested())),
        st.tuples(
            st.sampled_from([f"ecg/s1/{kind}" for kind in ("beats", "samples", "status")]),
            st.sampled_from(["beats", "samples", "status"]).flatmap(mutated),
        ),
        st.tuples(topics, json_values.map(lambda v: json.dumps({"v": 1, "stream": v}).encode())),
    ),
    max_size=30,
)


@FUZZ
@given(messages=traffic)
def test_subscriber_counts_every_message_as_received_or_malformed(
    messages: list[tuple[str, bytes]],
) -> None:
    feed = Subscriber(MqttConfig(), queue_size=8)
    for topic, payload in messages:
        feed.handle(topic, payload)
    status = feed.status()
    shown = [topic for topic, _ in messages if not topic.endswith("/raw")]  # devices' input
    # a beat delivered again (same stream, chain_sample, r_wall_time) counts as a duplicate
    assert status.received + status.malformed + status.duplicates == len(shown)
    assert len(feed.drain(100)) == min(status.received, 8)
    assert status.dropped == max(0, status.received - 8)
    assert "\n" not in status.last_problem


@FUZZ
@given(messages=st.lists(valid_messages, max_size=40))
def test_trackers_take_any_valid_message_and_stay_bounded(messages: list[WireMessage]) -> None:
    trackers = {stream: StreamTracker(stream, history_s=2.0) for stream in STREAMS}
    for message in messages:
        tracker = trackers[message.stream]
        if isinstance(message, SamplesMessage):
            tracker.add_samples(message)
        elif isinstance(message, BeatMessage):
            tracker.add_beat(message, receipt_wall_s=1.7e9)
        elif isinstance(message, StatusMessage):
            tracker.add_status(message)
        elif isinstance(message, EventMessage):
            tracker.add_event(message)
        _ = (tracker.heart_rate_bpm, tracker.median_compute_ms, tracker.median_end_to_end_ms)
        assert len(tracker.beats) <= tracker.beats.maxlen  # type: ignore[operator]
        assert len(tracker.alarms) <= tracker.alarms.maxlen  # type: ignore[operator]
        assert len(tracker.instants) <= tracker.instants.maxlen  # type: ignore[operator]
        assert len(tracker.episodes) <= MAX_CLOSED_EPISODES + len(RhythmKind)
        _ = [(mark.alarm_line(), mark.where()) for mark in tracker.alarms]
        if tracker.ring is not None:
            assert tracker.ring.size <= tracker.ring.capacity_samples
            _ = tracker.ring.latest(tracker.ring.size)


@pytest.fixture(scope="module")
def window_and_feed(qapp: QtWidgets.QApplication) -> Iterator[tuple[MonitorWindow, Subscriber]]:
    """One window for every example: traffic piles up across them, as in a long session."""
    del qapp  # created first
    feed = Subscriber(MqttConfig())
    window = MonitorWindow(feed, window_s=2.0, history_s=4.0)
    window.timer.stop()  # the test calls refresh() itself
    window.resize(900, 500)
    window.show()
    yield window, feed
    window.close()


@pytest.mark.gui
@settings(FUZZ, max_examples=25, suppress_health_check=list(HealthCheck))
@given(messages=traffic)
def test_the_window_draws_whatever_arrives(
    qtbot: QtBot,
    window_and_feed: tuple[MonitorWindow, Subscriber],
    messages: list[tuple[str, bytes]],
) -> None:
    del qtbot  # the QApplication
    window, feed = window_and_feed
    for topic, payload in messages:
        feed.handle(topic, payload)
    window.refresh()
    window.refresh_text()
    assert set(window.trackers) <= set(STREAMS)
