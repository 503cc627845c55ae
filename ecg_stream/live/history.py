"""The history of beats, events, statuses and signal: ``ecg-stream store`` and ``history``.

``store`` is a subscriber (a persistent session, de-duplicated, surviving broker restarts as
``subscribe`` does) that keeps every stream's messages in a database; ``history`` reads a
stream's time range back as the wire payloads. The embedded database is SQLite (Python's own
``sqlite3``, one file); ``--db postgresql://...`` uses a PostgreSQL server (psycopg 3, the
``postgres`` extra). Both are written in batched transactions with the same SQL. Schema version
1, one table per topic kind, each row the wire payload (JSON text, as published) and the
columns a query needs:

- ``beats(stream, chain_sample, r_wall_time, label, payload)``, unique per stream, chain sample
  and R-peak time (a beat delivered twice is kept once);
- ``events(stream, chain_sample, wall_time, kind, state, payload)``, unique likewise;
- ``statuses(stream, received_at, state, payload)``;
- ``samples(stream, start_index, received_at, payload)``, the filtered signal;
- ``meta(key, value)`` holds ``schema_version``.

Times are Unix seconds: a beat's R peak, an event's wall time, a status's or samples message's
arrival at the store. ``--keep-days`` deletes what is older.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecg_stream.config import MqttConfig, without_credentials
from ecg_stream.errors import ConfigError, MissingExtraError
from ecg_stream.mqtt.subscriber import WireSubscriber
from ecg_stream.wire import (
    BeatMessage,
    EventMessage,
    SamplesMessage,
    StatusMessage,
    TopicKind,
    WireMessage,
    encode,
)

POSTGRES_EXTRA = "postgres"
"""Optional dependency group of ``--db postgresql://...`` (psycopg 3)."""
SCHEMA_VERSION = 1
"""Version of the database layout; a store refuses a database of another version."""
FLUSH_INTERVAL_S = 0.5
"""Longest time a received message waits before its batch is written, in s."""
FLUSH_ROWS = 2000
"""A batch this large is written at once."""
PRUNE_INTERVAL_S = 3600.0
"""How often ``--keep-days`` deletes old rows while the store runs, in s."""
SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS beats (stream TEXT NOT NULL, chain_sample BIGINT NOT NULL, "
    "r_wall_time DOUBLE PRECISION NOT NULL, label TEXT NOT NULL, payload TEXT NOT NULL, "
    "PRIMARY KEY (stream, chain_sample, r_wall_time))",
    "CREATE INDEX IF NOT EXISTS beats_by_time ON beats (stream, r_wall_time)",
    "CREATE TABLE IF NOT EXISTS events (stream TEXT NOT NULL, chain_sample BIGINT NOT NULL, "
    "wall_time DOUBLE PRECISION NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL, "
    "payload TEXT NOT NULL, PRIMARY KEY (stream, kind, state, chain_sample, wall_time))",
    "CREATE INDEX IF NOT EXISTS events_by_time ON events (stream, wall_time)",
    "CREATE TABLE IF NOT EXISTS statuses (stream TEXT NOT NULL, "
    "received_at DOUBLE PRECISION NOT NULL, state TEXT NOT NULL, payload TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS statuses_by_time ON statuses (stream, received_at)",
    "CREATE TABLE IF NOT EXISTS samples (stream TEXT NOT NULL, start_index BIGINT NOT NULL, "
    "received_at DOUBLE PRECISION NOT NULL, payload TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS samples_by_time ON samples (stream, received_at)",
)
"""The tables and indices, in SQL that SQLite and PostgreSQL both take."""

_INSERT = {
    TopicKind.BEATS: "INSERT INTO beats VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    TopicKind.EVENTS: "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    TopicKind.STATUS: "INSERT INTO statuses VALUES (?, ?, ?, ?)",
    TopicKind.SAMPLES: "INSERT INTO samples VALUES (?, ?, ?, ?)",
}
_TIME_COLUMN = {
    TopicKind.BEATS: "r_wall_time",
    TopicKind.EVENTS: "wall_time",
    TopicKind.STATUS: "received_at",
    TopicKind.SAMPLES: "received_at",
}
_TABLE = {
    TopicKind.BEATS: "beats",
    TopicKind.EVENTS: "events",
    TopicKind.STATUS: "statuses",
    TopicKind.SAMPLES: "samples",
}


def default_database() -> Path:
    """The store's file when none is given: ``$XDG_DATA_HOME/ecg-stream/history.sqlite``."""
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "ecg-stream" / "history.sqlite"


def database_path(db: str | None) -> str:
    """What ``--db`` names: a SQLite file's path, or a ``postgresql://`` URL as it is.

    A SQLite file is a path or ``sqlite:///PATH``; None names the default file.

    Raises:
        ConfigError: Another kind of URL.
    """
    if db is None:
        return str(default_database())
    if db.startswith(SQLITE_PREFIX):
        return db.removeprefix(SQLITE_PREFIX)
    if db.startswith(POSTGRES_SCHEMES):
        return db
    if "://" in db:
        scheme = db.split("://", 1)[0]
        msg = f"--db {scheme}://...: give a SQLite file (or sqlite:///PATH) or postgresql://..."
        raise ConfigError(msg)
    return db


def _row(message: WireMessage, received_at: float) -> tuple[object, ...]:
    payload = encode(message).decode()
    if isinstance(message, BeatMessage):
        return (
            message.stream,
            message.chain_sample,
            message.r_wall_time,
            message.label.value,
            payload,
        )
    if isinstance(message, EventMessage):
        return (
            message.stream,
            message.chain_sample,
            message.wall_time,
            message.rhythm.value,
            message.state.value,
            payload,
        )
    if isinstance(message, StatusMessage):
        return (message.stream, received_at, message.state.value, payload)
    assert isinstance(message, SamplesMessage)  # the union's last member
    return (message.stream, message.start_index, received_at, payload)


@dataclass
class HistoryStore:
    """A history database: messages in, batched; time ranges of a stream out.

    Args:
        where: A SQLite file (made, with its directory, if missing) or a ``postgresql://`` URL
            (its credentials are never shown).

    Attributes:
        written: Rows written so far, per topic kind (duplicates not counted).

    Raises:
        ConfigError: The database cannot be opened, or holds another schema version.
        MissingExtraError: A PostgreSQL URL without psycopg installed.
    """

    where: str
    written: dict[TopicKind, int] = field(default_factory=lambda: dict.fromkeys(TopicKind, 0))

    def __post_init__(self) -> None:
        postgres = self.where.startswith(POSTGRES_SCHEMES)
        self.shown = without_credentials(self.where) if postgres else self.where
        self._placeholder = "%s" if postgres else "?"
        try:
            self._db: Any = _connect_postgres(self.where) if postgres else self._connect_sqlite()
            cursor = self._db.cursor()
            for statement in _SCHEMA:
                cursor.execute(statement)
            cursor.execute(self._sql("SELECT value FROM meta WHERE key = ?"), ("schema_version",))
            version = cursor.fetchone()
            if version is None:
                insert = "INSERT INTO meta VALUES (?, ?)"
                cursor.execute(self._sql(insert), ("schema_version", str(SCHEMA_VERSION)))
            self._db.commit()
        except (OSError, sqlite3.Error) as error:
            msg = f"cannot open the history database {self.shown} ({error}); give another --db"
            raise ConfigError(msg) from None
        if version is not None and version[0] != str(SCHEMA_VERSION):
            msg = (
                f"{self.shown} holds history schema version {version[0]}, this version reads "
                f"{SCHEMA_VERSION}; give another --db"
            )
            raise ConfigError(msg)
        self._pending: dict[TopicKind, list[tuple[object, ...]]] = {k: [] for k in TopicKind}

    def _connect_sqlite(self) -> sqlite3.Connection:
        path = Path(self.where)
        path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(path)

    def _sql(self, statement: str) -> str:
        """``statement`` with this database's parameter placeholders."""
        return statement.replace("?", self._placeholder)

    @property
    def pending(self) -> int:
        """Messages received and not written yet."""
        return sum(len(rows) for rows in self._pending.values())

    def add(self, message: WireMessage, received_at: float) -> None:
        """Queue one message; a full batch is written at once."""
        self._pending[message.kind].append(_row(message, received_at))
        if self.pending >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write what is queued, in one transaction."""
        if not self.pending:
            return
        cursor = self._db.cursor()
        for kind, rows in self._pending.items():
            if rows:
                cursor.executemany(self._sql(_INSERT[kind]), rows)
                self.written[kind] += max(cursor.rowcount, 0)
                rows.clear()
        self._db.commit()

    def prune(self, keep_days: float, now: float) -> int:
        """Delete every row older than ``keep_days``; how many were deleted."""
        cutoff, deleted = now - keep_days * 86400.0, 0
        cursor = self._db.cursor()
        for kind, table in _TABLE.items():
            column = _TIME_COLUMN[kind]
            cursor.execute(self._sql(f"DELETE FROM {table} WHERE {column} < ?"), (cutoff,))
            deleted += max(cursor.rowcount, 0)
        self._db.commit()
        return deleted

    def payloads(
        self, kind: TopicKind, stream: str, start: float = -math.inf, end: float = math.inf
    ) -> Iterator[tuple[float, str]]:
        """``(time, payload)`` of a stream's messages of ``kind`` in ``[start, end)``, in order."""
        table, column = _TABLE[kind], _TIME_COLUMN[kind]
        query = (
            f"SELECT {column}, payload FROM {table} WHERE stream = ? AND {column} >= ? "
            f"AND {column} < ? ORDER BY {column}"
        )
        cursor = self._db.cursor()
        cursor.execute(self._sql(query), (stream, max(start, -1e300), min(end, 1e300)))
        yield from cursor

    def close(self) -> None:
        """Write what is queued and close the file."""
        self.flush()
        self._db.close()


HISTORY_CSV_COLUMNS = ("type", "wall_time", "sample", "time_s", "what", "detail")
"""``history --csv``: a beat's label and confidence, or an event's kind and state."""


def history_lines(
    store: HistoryStore, stream: str, start: float, end: float, form: str
) -> Iterator[str]:
    """A stream's beats and events of ``[start, end)``, merged in time order, as lines.

    ``form``: ``table`` (the lines ``subscribe`` prints), ``json`` (one object per message:
    its topic and the wire payload's fields) or ``csv`` (``HISTORY_CSV_COLUMNS``).
    """
    import heapq

    from ecg_stream.mqtt.subscriber import format_message, json_line
    from ecg_stream.wire import decode, topic_for

    if form == "csv":
        yield ",".join(HISTORY_CSV_COLUMNS)

    def rows(kind: TopicKind) -> Iterator[tuple[float, TopicKind, str]]:
        for moment, payload in store.payloads(kind, stream, start, end):
            yield moment, kind, payload

    merged = heapq.merge(rows(TopicKind.BEATS), rows(TopicKind.EVENTS), key=lambda row: row[0])
    for moment, kind, payload in merged:
        topic = topic_for("ecg", stream, kind)
        message = decode(topic, payload)
        if form == "json":
            yield json_line(topic, message)
        elif form == "csv":
            yield _csv_row(moment, message)
        else:
            yield format_message(message, moment)


def _csv_row(moment: float, message: WireMessage) -> str:
    if isinstance(message, BeatMessage):
        kind, what, detail = "beat", message.label.value, f"{message.confidence:.4f}"
    else:
        assert isinstance(message, EventMessage)  # history reads beats and events
        kind, what, detail = "event", message.rhythm.value, message.state.value
    return f"{kind},{moment:.6f},{message.sample},{message.time_s:.6f},{what},{detail}"


def _connect_postgres(url: str) -> Any:
    """A psycopg 3 connection to ``url``.

    Raises:
        MissingExtraError: psycopg is not installed.
        ConfigError: The server cannot be reached or refuses the login.
    """
    try:
        import psycopg
    except ImportError as error:
        raise MissingExtraError(POSTGRES_EXTRA, error.name or "psycopg") from error
    try:
        return psycopg.connect(url, connect_timeout=10)
    except psycopg.Error as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        msg = f"cannot open the history database {without_credentials(url)} ({reason})"
        raise ConfigError(msg) from None


def write_wfdb(
    store: HistoryStore, stream: str, start: float, end: float, out_dir: Path
) -> tuple[Path, Path | None]:
    """A stream's stored range as a WFDB record, ``out_dir/<stream>``, and its annotations.

    The signal is the filtered signal of the stored ``samples`` messages at the chain's rate,
    one lead in mV; samples no message brought are WFDB's invalid value. Beats and rhythm
    events become ``<stream>.ecgs`` (the annotation file of ``analyze``) in the same clock.

    Raises:
        ConfigError: No signal is stored for the stream in the range.
    """
    import numpy as np
    import wfdb

    from ecg_stream.documents import make_output_dir, written_aside
    from ecg_stream.live.sinks import AnnotationTrack
    from ecg_stream.wire import decode_beat, decode_event, decode_samples

    pieces = [
        decode_samples(payload)
        for _, payload in store.payloads(TopicKind.SAMPLES, stream, start, end)
    ]
    if not pieces:
        msg = f"no signal of stream {stream!r} is stored in that range; widen --from/--to"
        raise ConfigError(msg)
    fs_hz = pieces[0].fs_hz
    first = min(piece.start_index for piece in pieces)
    last = max(piece.start_index + piece.counts.size for piece in pieces)
    signal = np.full(last - first, np.nan)
    for piece in pieces:
        at = piece.start_index - first
        signal[at : at + piece.counts.size] = piece.counts * piece.scale_uv / 1000.0
    track = AnnotationTrack(stream)
    for _, payload in store.payloads(TopicKind.BEATS, stream, start, end):
        beat = decode_beat(payload)
        if first <= beat.chain_sample < last:
            track.add(beat.chain_sample - first, beat.label.value, "", fs_hz)
    for _, payload in store.payloads(TopicKind.EVENTS, stream, start, end):
        event = decode_event(payload)
        if first <= event.chain_sample < last:
            track.add_event(event.rhythm, event.state, event.chain_sample - first, fs_hz)
    make_output_dir(out_dir)
    record = out_dir / stream
    with written_aside(out_dir / f"{stream}.dat", out_dir / f"{stream}.hea") as scratch:
        wfdb.wrsamp(  # wfdb names the files itself
            stream,
            fs=fs_hz,
            units=["mV"],
            sig_name=["ECG"],
            p_signal=signal[:, np.newaxis],
            fmt=["16"],
            adc_gain=[200.0],
            baseline=[0],
            write_dir=str(scratch),
        )
    return record, track.write(out_dir, "ecgs")


async def run_store(
    config: MqttConfig,
    store: HistoryStore,
    say: Callable[[str], None],
    *,
    keep_days: float | None = None,
    client_id: str | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    """``ecg-stream store``: keep every stream's messages until cancelled (Ctrl-C).

    A persistent session (``client_id``, default one per topic prefix) gets what was published
    while the store was down, up to the broker's queue; beats delivered twice are kept once.
    """
    subscriber = WireSubscriber(
        config,
        kinds=(TopicKind.BEATS, TopicKind.EVENTS, TopicKind.STATUS, TopicKind.SAMPLES),
        client_id=client_id or f"ecg-stream-store-{config.topic_prefix.replace('/', '-')}",
        on_malformed=lambda topic, error: say(f"skipped malformed message: {error}"),
    )

    def keep(_topic: str, message: WireMessage) -> bool:
        store.add(message, clock())
        return False

    async def flush_now_and_then() -> None:
        pruned_at = -math.inf
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            store.flush()
            if keep_days is not None and clock() - pruned_at >= PRUNE_INTERVAL_S:
                pruned_at = clock()
                store.prune(keep_days, pruned_at)

    flusher = asyncio.create_task(flush_now_and_then())
    try:
        await subscriber.follow(
            keep, on_connect=lambda: say(f"storing {config.url} into {store.shown}")
        )
    finally:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        store.flush()
        counts = ", ".join(f"{n} {kind.value}" for kind, n in store.written.items())
        say(f"stored {counts} in {store.shown}")
