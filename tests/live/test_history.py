"""The history store (issue 24): beats kept once, time ranges read back, a live run stored whole."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import wfdb

from ecg_stream.cli import main
from ecg_stream.errors import ConfigError
from ecg_stream.live.history import HistoryStore, database_path, history_lines, run_store
from ecg_stream.wire import TopicKind
from tests.helpers import MqttBroker, beat_message, run, stamped, status_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty history database: a SQLite file, or a fresh database on a real PostgreSQL."""
    if request.param == "sqlite":
        yield str(tmp_path / "h.sqlite")
        return
    server: str = request.getfixturevalue("postgres_url")
    name = f"h{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield server.rsplit("/", 1)[0] + f"/{name}"


def test_beats_are_kept_once_and_read_back_by_time_range(database: str) -> None:
    store = HistoryStore(database)
    beats = [stamped(beat_message("bed1", 360 * k)) for k in range(5)]
    for beat in [*beats, beats[2]]:  # one delivered twice
        store.add(beat, received_at=1.8e9)
    store.add(status_of("bed1"), received_at=1.8e9)
    store.close()
    again = HistoryStore(database)
    assert again.written == dict.fromkeys(TopicKind, 0)
    times = [moment for moment, _ in again.payloads(TopicKind.BEATS, "bed1")]
    assert len(times) == 5
    assert times == sorted(times)
    middle = list(again.payloads(TopicKind.BEATS, "bed1", times[1], times[3]))
    assert [moment for moment, _ in middle] == times[1:3]
    lines = list(history_lines(again, "bed1", times[1], times[3], "json"))
    assert [json.loads(line)["chain_sample"] for line in lines] == [360, 720]
    csv = list(history_lines(again, "bed1", -1e18, 1e18, "csv"))
    assert csv[0] == "type,wall_time,sample,time_s,what,detail"
    assert all(row.startswith("beat,") for row in csv[1:])
    assert again.prune(keep_days=1.0, now=times[-1] + 86400.0 + 0.5) == 5  # the status is newer
    again.close()


def test_other_databases_and_bad_times_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match=r"give a SQLite file \(or sqlite:///PATH\)"):
        database_path("mysql://db.example/ecg")
    assert database_path("postgresql://db.example/ecg") == "postgresql://db.example/ecg"
    assert database_path(f"sqlite:///{tmp_path}/x.sqlite") == str(tmp_path / "x.sqlite")
    HistoryStore(str(tmp_path / "x.sqlite")).close()
    assert main(["history", "bed1", "--db", str(tmp_path / "x.sqlite"), "--from", "noon"]) == 2
    assert "'noon' is no time" in capsys.readouterr().err
    assert main(["history", "bed1", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "run `ecg-stream store` first" in capsys.readouterr().err


@pytest.mark.mqtt
def test_a_replay_is_stored_whole_and_history_prints_it(
    mqtt_broker: MqttBroker, short_record: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, summary_path = tmp_path / "history.sqlite", tmp_path / "summary.json"
    store = HistoryStore(str(db))
    url = f"mqtt://127.0.0.1:{mqtt_broker.port}"
    lines: list[str] = []

    async def scenario() -> None:
        subscribed = asyncio.Event()

        def say(line: str) -> None:
            lines.append(line)
            if line.startswith("storing"):
                subscribed.set()

        storing = asyncio.create_task(run_store(mqtt_broker.config, store, say))
        await subscribed.wait()
        replay = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ecg_stream.cli", "replay", str(short_record), "--speed",
            "max", "--quiet", "--broker", url, "--summary-json", str(summary_path),
            cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        assert await replay.wait() == 0
        await asyncio.sleep(1.5)  # the last messages arrive and are flushed
        storing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await storing

    run(scenario())
    store.close()
    published = json.loads(summary_path.read_text())["streams"][0]["published"]["beats"]
    assert main(["history", "short", "--db", str(db), "--json"]) == 0
    printed = capsys.readouterr().out.splitlines()
    documents = [json.loads(line) for line in printed]
    beats = [document for document in documents if document["topic"].endswith("/beats")]
    assert len(beats) == published >= 10
    assert len({beat["chain_sample"] for beat in beats}) == published
    assert lines[-1].startswith(f"stored {published} beats")

    assert main(["history", "short", "--db", str(db), "--wfdb", str(tmp_path / "wfdb")]) == 0
    record = wfdb.rdrecord(str(tmp_path / "wfdb" / "short"))
    annotations = wfdb.rdann(str(tmp_path / "wfdb" / "short"), "ecgs")
    assert record.fs == 360
    assert record.sig_len >= 8 * 360  # the stored filtered signal
    beat_symbols = [symbol for symbol in annotations.symbol if symbol in "NSVFQ"]
    assert len(beat_symbols) >= published - 2  # beats within the stored signal
