"""Streams spread over worker processes: same labels, every beat once, offline when one dies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from ecg_stream.classify.classifier import OnnxBeatClassifier, default_model_path
from ecg_stream.live.replay_command import replay_job
from ecg_stream.live.session import RunSummary, StreamReport
from ecg_stream.live.sources import StreamSpec
from ecg_stream.live.workers import WorkerJob, merge_results, run_workers, split_streams
from ecg_stream.wire import StreamState, TopicKind
from tests.helpers import Collector, MqttBroker, collect_until, expected_beats, run
from tests.live.test_live import BATCH_RECORDS, check_stream, sliced


def test_streams_are_dealt_round_robin_and_no_share_is_empty() -> None:
    specs = [StreamSpec(str(k), None) for k in range(5)]  # type: ignore[arg-type]

    shares = split_streams(specs, 2)
    assert [[s.stream_id for s in share] for share in shares] == [["0", "2", "4"], ["1", "3"]]
    assert len(split_streams(specs[:1], 4)) == 1


@pytest.mark.mqtt
@pytest.mark.slow
def test_streams_over_two_workers_get_the_labels_of_the_chain(
    mqtt_broker: MqttBroker, data_dir: Path, classifier: OnnxBeatClassifier
) -> None:
    from ecg_stream.records import load_record

    specs = [
        StreamSpec(name, sliced(load_record(name, data_dir), 0.0, 60.0))
        for name in BATCH_RECORDS[:4]
    ]
    mqtt = replace(mqtt_broker.config, topic_prefix="test-workers")
    analyzed = {spec.stream_id: expected_beats(spec.record, classifier) for spec in specs}
    collector = Collector()

    async def scenario() -> list[int]:
        listen = asyncio.create_task(
            collect_until(
                mqtt,
                collector,
                lambda c: all(c.offline_seen(s.stream_id) for s in specs),
                kinds=(TopicKind.BEATS, TopicKind.STATUS),
            )
        )
        await collector.ready.wait()
        model = default_model_path()
        jobs = [
            WorkerJob(share, mqtt, model, speed=float("inf")) for share in split_streams(specs, 2)
        ]
        results = await run_workers(jobs, replay_job)
        await listen
        return [len(result.summary.streams) for result in results]

    assert run(scenario(), timeout_s=300) == [2, 2]
    for spec in specs:
        check_stream(collector, spec.stream_id, spec.record, analyzed[spec.stream_id])
    assert len(collector.beats) == sum(len(beats) for beats in analyzed.values())


def worker_pids(parent: int) -> list[int]:
    """The replay's worker processes (spawned children running multiprocessing's spawn_main)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [
        int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


@pytest.mark.mqtt
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_a_killed_worker_s_streams_go_offline_and_the_others_do_not(
    mqtt_broker: MqttBroker, data_dir: Path
) -> None:
    prefix = "test-workers-kill"
    mqtt = replace(mqtt_broker.config, topic_prefix=prefix)
    command = [
        *(sys.executable, "-m", "ecg_stream.cli", "replay", "100", "101", "--workers", "2"),
        *("--broker", f"mqtt://127.0.0.1:{mqtt_broker.port}", "--topic-prefix", prefix),
        *("--data-dir", str(data_dir), "--quiet"),
    ]
    collector = Collector()

    def state(stream: str) -> StreamState | None:
        states = [s.state for s in collector.statuses if s.stream == stream]
        return states[-1] if states else None

    async def wait_for(condition: object, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():  # type: ignore[operator]
            assert time.monotonic() < deadline, collector.statuses
            await asyncio.sleep(0.1)

    async def scenario() -> tuple[int, str]:
        listen = asyncio.create_task(
            collect_until(mqtt, collector, lambda c: False, kinds=(TopicKind.STATUS,))
        )
        await collector.ready.wait()
        replay = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE)
        try:
            await wait_for(lambda: state("100") is state("101") is StreamState.ONLINE, 60.0)
            workers = worker_pids(replay.pid)
            assert len(workers) == 2
            os.kill(workers[0], signal.SIGKILL)
            await wait_for(lambda: StreamState.OFFLINE in (state("100"), state("101")), 10.0)
            await asyncio.sleep(1.0)
            assert {state("100"), state("101")} == {StreamState.ONLINE, StreamState.OFFLINE}
            replay.send_signal(signal.SIGTERM)  # passed on to the surviving worker
            await wait_for(lambda: state("100") is state("101") is StreamState.OFFLINE, 20.0)
            out, _ = await asyncio.wait_for(replay.communicate(), timeout=30)
        finally:
            if replay.returncode is None:
                replay.kill()
            listen.cancel()
        assert replay.returncode is not None
        return replay.returncode, out.decode()

    returncode, out = run(scenario(), timeout_s=120)
    assert returncode == 130
    assert "died (exit status -9)" in out
    assert "summary" in out


def test_merged_results_keep_every_stream_and_count_every_call() -> None:
    from ecg_stream.live.workers import WorkerResult

    first = RunSummary({"a": StreamReport("a", "100")}, inference_calls=3, inference_windows=5)
    second = RunSummary({"b": StreamReport("b", "101")}, interrupted=True, inference_calls=2)
    merged = merge_results([WorkerResult(first), WorkerResult(second)], into=RunSummary())

    assert list(merged.streams) == ["a", "b"]
    assert (merged.inference_calls, merged.inference_windows) == (5, 5)
    assert merged.interrupted
