"""Live replay end to end: records -> session -> MQTT -> a real subscriber, beat for beat.

Every test runs the shipped model; the expected beats come from the chain and the classifier
called directly, without the session.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ecg_stream.classify.classifier import OnnxBeatClassifier
from ecg_stream.config import MqttConfig
from ecg_stream.errors import ConfigError
from ecg_stream.live.mqtt_sink import SamplesCollector
from ecg_stream.live.replay import MAX_SPEED_CHUNK_S, RecordReplay, plan_streams
from ecg_stream.live.replay_command import ReplaySettings, replay_sinks, run_replay
from ecg_stream.live.session import RunSummary
from ecg_stream.live.sources import StreamSpec
from ecg_stream.mqtt.broker import EmbeddedBroker
from ecg_stream.records import Record
from ecg_stream.types import Chunk, LabeledBeat
from ecg_stream.wire import BeatMessage, StreamState, TopicKind
from tests.helpers import Collector, MqttBroker, collect_until, expected_beats, run

FS_HZ = 360


def sliced(record: Record, start_s: float, duration_s: float) -> Record:
    start = round(start_s * FS_HZ)
    return replace(record, samples=record.samples[start : start + round(duration_s * FS_HZ)])


async def replay_and_collect(
    config: MqttConfig,
    specs: Sequence[StreamSpec],
    classifier: OnnxBeatClassifier,
    *,
    speed: float = math.inf,
    samples: bool = False,
    cancel_after_s: float | None = None,
) -> tuple[RunSummary, Collector]:
    """Replay ``specs`` while a real subscriber collects until every stream says offline."""
    collector = Collector()
    ids = [spec.stream_id for spec in specs]
    kinds = (TopicKind.BEATS, TopicKind.STATUS) + ((TopicKind.SAMPLES,) if samples else ())
    listen = asyncio.create_task(
        collect_until(config, collector, lambda c: all(c.offline_seen(i) for i in ids), kinds=kinds)
    )
    await collector.ready.wait()
    summary = RunSummary()
    sinks = replay_sinks(config, summary, speed=speed, samples_s=None, say=None)
    live = RecordReplay(specs, classifier, sinks, speed=speed, summary=summary)
    task = asyncio.create_task(live.run())
    if cancel_after_s is not None:
        await asyncio.sleep(cancel_after_s)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        await task
    await listen
    return summary, collector


def check_stream(
    collector: Collector, stream_id: str, record: Record, expected: Sequence[LabeledBeat]
) -> None:
    """Every expected beat arrived exactly once, in order, with the same label and fields."""
    got = [beat for beat in collector.beats if beat.stream == stream_id]
    assert [b.chain_sample for b in got] == [e.window.peak.index for e in expected]
    assert [b.label for b in got] == [e.label for e in expected]
    for message, beat in zip(got, expected, strict=True):
        assert message.probabilities == pytest.approx(beat.probabilities, abs=1e-6)
        assert message.record == record.name
        assert message.sample == record.to_record_index(beat.window.peak.index)
        assert message.time_s == pytest.approx(message.sample / record.fs_hz, abs=1e-6)
        assert message.compute_ms >= 0
    statuses = [s for s in collector.statuses if s.stream == stream_id]
    # online, then online again when the input's state or the rhythm changes, then offline
    assert [s.state for s in statuses[:1] + statuses[-1:]] == [
        StreamState.ONLINE,
        StreamState.OFFLINE,
    ]
    assert all(s.state is StreamState.ONLINE for s in statuses[1:-1])
    changes = [(s.signal, s.rhythm) for s in statuses[:-1]]
    assert all(a != b for a, b in itertools.pairwise(changes))  # re-published on a change only


@pytest.mark.mqtt
def test_replay_delivers_every_beat_once_in_order(
    mqtt_broker: MqttBroker, record_100: Record, classifier: OnnxBeatClassifier
) -> None:
    record = sliced(record_100, 0.0, 120.0)
    config = replace(mqtt_broker.config, topic_prefix="test-live-one")
    specs = [StreamSpec("100", record)]
    summary, collector = run(replay_and_collect(config, specs, classifier, samples=True))
    expected = expected_beats(record, classifier)
    assert len(expected) > 100
    check_stream(collector, "100", record, expected)
    starts = [m.start_index for m in collector.samples]
    chunk = round(MAX_SPEED_CHUNK_S * FS_HZ)
    assert starts == list(range(0, record.samples.size, chunk))  # every chunk, in order
    assert collector.malformed == []
    assert summary.total_dropped == 0
    assert sum(summary.streams["100"].beats.values()) == len(expected)
    assert summary.streams["100"].publisher.compute.count == len(expected)


@pytest.mark.mqtt
def test_replay_through_the_embedded_broker(
    record_100: Record, classifier: OnnxBeatClassifier
) -> None:
    record = sliced(record_100, 300.0, 60.0)
    expected = expected_beats(record, classifier)

    async def scenario() -> Collector:
        async with EmbeddedBroker(port=0) as broker:
            config = MqttConfig(host=broker.host, port=broker.port, topic_prefix="emb")
            _, collector = await replay_and_collect(config, [StreamSpec("100", record)], classifier)
            return collector

    check_stream(run(scenario()), "100", record, expected)


@pytest.mark.mqtt
@pytest.mark.parametrize("streams", [2, 8])
def test_concurrent_streams_each_arrive_whole(
    mqtt_broker: MqttBroker, record_100: Record, classifier: OnnxBeatClassifier, streams: int
) -> None:
    records = [sliced(record_100, 30.0 * k, 20.0) for k in range(streams)]
    specs = [StreamSpec(f"bed{k}", record) for k, record in enumerate(records)]
    config = replace(mqtt_broker.config, topic_prefix=f"test-live-{streams}")
    summary, collector = run(replay_and_collect(config, specs, classifier))
    for spec in specs:
        expected = expected_beats(spec.record, classifier)
        check_stream(collector, spec.stream_id, spec.record, expected)
    assert summary.total_dropped == 0
    assert len(summary.streams) == streams


@pytest.mark.mqtt
def test_cancel_publishes_the_last_beats_then_offline(
    mqtt_broker: MqttBroker, record_100: Record, classifier: OnnxBeatClassifier
) -> None:
    """Ctrl-C (cancellation) mid-record: what was labeled is published, then offline."""
    specs = [StreamSpec(f"c{k}", sliced(record_100, 60.0 * k, 60.0)) for k in range(2)]
    config = replace(mqtt_broker.config, topic_prefix="test-live-cancel")
    summary, collector = run(
        replay_and_collect(config, specs, classifier, speed=20.0, cancel_after_s=1.5)
    )
    for report in summary.streams.values():
        got = [b for b in collector.beats if b.stream == report.stream_id]
        assert 0 < len(got) == sum(report.beats.values())
        assert report.signal_s < 60.0  # really interrupted
        statuses = [s.state for s in collector.statuses if s.stream == report.stream_id]
        assert statuses == [StreamState.ONLINE, StreamState.OFFLINE]
    assert summary.total_dropped == 0
    assert summary.pacing().count > 0
    assert "summary" in summary.format()


def test_stream_ids_default_to_record_names_and_must_be_distinct(record_100: Record) -> None:
    assert [s.stream_id for s in plan_streams([record_100], None)] == ["100"]
    assert [s.stream_id for s in plan_streams([record_100], ["bed-1"])] == ["bed-1"]
    with pytest.raises(ConfigError, match="repeat"):
        plan_streams([record_100, record_100], None)
    with pytest.raises(ConfigError, match="one per record"):
        plan_streams([record_100, record_100], ["a"])
    with pytest.raises(ConfigError, match="stream id"):
        plan_streams([record_100], ["a/b"])


# Whole records and many streams ---------------------------------------------------------------


@pytest.mark.mqtt
@pytest.mark.slow
def test_replay_command_whole_record_with_shipped_model(
    mqtt_broker: MqttBroker, record_100: Record, data_dir: Path, classifier: OnnxBeatClassifier
) -> None:
    """``replay 100 --speed max --broker ...``: every beat the chain finds, once."""
    expected = expected_beats(record_100, classifier)
    prefix = "test-live-model"
    collector = Collector()
    lines: list[str] = []

    async def scenario() -> RunSummary:
        mqtt = replace(mqtt_broker.config, topic_prefix=prefix)
        listen = asyncio.create_task(
            collect_until(
                mqtt,
                collector,
                lambda c: c.offline_seen("100"),
                kinds=(TopicKind.BEATS, TopicKind.STATUS),
            )
        )
        await collector.ready.wait()
        settings = ReplaySettings(
            ("100",),
            math.inf,
            broker_url=f"mqtt://127.0.0.1:{mqtt_broker.port}",
            topic_prefix=prefix,
            data_dir=data_dir,
            quiet=True,
        )
        summary = await run_replay(settings, lines.append, RunSummary())
        await listen
        return summary

    summary = run(scenario(), timeout_s=300)
    check_stream(collector, "100", record_100, expected)
    assert summary.total_dropped == 0
    assert lines[0].startswith("replaying 100 (MLII) as 100 as fast as possible with model")
    assert all(isinstance(b, BeatMessage) for b in collector.beats)
    assert np.isfinite(summary.compute().summary().p99_ms)


BATCH_RECORDS = ("100", "101", "103", "105", "106", "119", "200", "208")


@pytest.mark.mqtt
@pytest.mark.slow
def test_64_batched_streams_get_the_labels_of_the_chain(
    mqtt_broker: MqttBroker, data_dir: Path, classifier: OnnxBeatClassifier
) -> None:
    """64 streams share one classifier (one call per loop turn) and keep the chain's labels."""
    from ecg_stream.records import load_record

    specs = [
        StreamSpec(f"{name}-{k}", sliced(load_record(name, data_dir), 30.0 * k, 30.0))
        for name in BATCH_RECORDS
        for k in range(8)
    ]
    mqtt = replace(mqtt_broker.config, topic_prefix="test-live-batched")
    expected = {spec.stream_id: expected_beats(spec.record, classifier) for spec in specs}
    summary, collector = run(replay_and_collect(mqtt, specs, classifier), timeout_s=300)
    for spec in specs:
        check_stream(collector, spec.stream_id, spec.record, expected[spec.stream_id])
    beats = sum(len(beats) for beats in expected.values())
    assert len(collector.beats) == beats
    assert summary.total_dropped == 0
    assert summary.inference_windows == beats
    assert summary.inference_calls < beats / 4  # the streams' beats went out in shared calls


def test_samples_collector_joins_chunks_and_closes_at_a_jump() -> None:
    collector = SamplesCollector("s", duration_s=0.2)  # 72 samples at 360 Hz
    parts = [Chunk(k * 36, np.full(36, 0.001 * k)) for k in range(3)]
    assert collector.add(parts[0]) == ()
    (first,) = collector.add(parts[1])
    assert (first.start_index, first.counts.size) == (0, 72)
    assert collector.add(parts[2]) == ()
    (held, jumped) = collector.add(Chunk(1000, np.zeros(80)))  # a gap: what was held closes
    assert (held.start_index, held.counts.size) == (72, 36)
    assert (jumped.start_index, jumped.counts.size) == (1000, 80)
    assert collector.take() is None


def test_samples_collector_of_zero_length_sends_every_chunk() -> None:
    collector = SamplesCollector("s", duration_s=0.0)
    messages = [m for k in range(3) for m in collector.add(Chunk(k * 36, np.zeros(36)))]
    assert [m.start_index for m in messages] == [0, 36, 72]
