"""``replay``, ``broker``, ``subscribe``, ``serve``, ``device`` and ``monitor``: over MQTT."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecg_stream.cli.common import (
    add_broker_arguments,
    add_data_arguments,
    add_metrics_argument,
    add_rhythm_arguments,
    add_scale_arguments,
    add_screenshot_arguments,
    add_summary_json_argument,
    check_model_argument,
    check_screenshot_arguments,
    check_summary_json,
    rhythm_settings,
    say,
    say_error,
)
from ecg_stream.config import DEFAULT_MAX_STREAMS
from ecg_stream.errors import ConfigError

if TYPE_CHECKING:
    from ecg_stream.cli.common import Commands
    from ecg_stream.config import MqttConfig
    from ecg_stream.live.replay_command import ReplaySettings


def add_replay(commands: Commands) -> None:
    """Add ``replay``: records streamed through the classifier, beats published."""
    replay = commands.add_parser(
        "replay", help="stream records in real time through the classifier, publish beats (MQTT)"
    )
    replay.add_argument(
        "records",
        nargs="+",
        metavar="RECORD",
        help="record names or WFDB path stems, one stream each",
    )
    add_data_arguments(replay)
    replay.add_argument("--speed", default="1", help="factor of real time (1, 10), or 'max'")
    add_broker_arguments(replay, default_help="localhost:1883 if a broker answers, else embedded")
    replay.add_argument(
        "--stream-id",
        action="append",
        metavar="ID",
        help="stream id (topic level), once per record in order (default: the record names)",
    )
    replay.add_argument("--model", type=Path, help="ONNX model (default: the shipped one)")
    replay.add_argument("--quiet", action="store_true", help="no line per beat, summary only")
    add_scale_arguments(replay)
    add_summary_json_argument(replay)
    add_metrics_argument(replay)
    add_rhythm_arguments(replay)
    replay.add_argument(
        "--monitor", action="store_true", help="also open the live monitor window on the streams"
    )
    add_screenshot_arguments(replay, needs=" (with --monitor)")
    replay.set_defaults(handler=_replay)


def add_broker(commands: Commands) -> None:
    """Add ``broker``: the embedded MQTT broker."""
    broker = commands.add_parser("broker", help="run the embedded MQTT broker (amqtt)")
    broker.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: loopback only)"
    )
    broker.add_argument("--port", type=int, default=1883, help="TCP port (default: 1883)")
    broker.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help="only these users may connect (USER:HASH lines, Argon2 or bcrypt); needed to "
        "listen on any address but loopback",
    )
    broker.set_defaults(handler=_broker)


def add_nats_cluster(commands: Commands) -> None:
    """Add ``nats-cluster``: a local NATS cluster that partitions the streams."""
    cluster = commands.add_parser(
        "nats-cluster",
        help="run a local NATS cluster (MQTT on every node) that partitions the raw topics, "
        "for serve --partition (docs/cluster.md)",
    )
    cluster.add_argument("--nodes", type=int, default=3, help="nodes (default: 3)")
    cluster.add_argument(
        "--partitions", type=int, default=3, help="partitions of the raw topics (default: 3)"
    )
    cluster.add_argument(
        "--port",
        type=int,
        default=1883,
        help="MQTT port of the first node on 127.0.0.1; the next nodes take the next ports "
        "(default: 1883)",
    )
    cluster.add_argument(
        "--dir",
        type=Path,
        help="where the configurations, logs and JetStream stores go (default: a new "
        "temporary directory)",
    )
    cluster.set_defaults(handler=_nats_cluster)


def add_store(commands: Commands) -> None:
    """Add ``store``: keep every stream's messages in a history database."""
    store = commands.add_parser(
        "store", help="keep every stream's beats, events, statuses and signal in a database"
    )
    add_broker_arguments(store, default_help="mqtt://localhost:1883")
    store.add_argument(
        "--db",
        help="SQLite file, sqlite:///PATH or postgresql://... (default: "
        "$XDG_DATA_HOME/ecg-stream/history.sqlite, named at start)",
    )
    store.add_argument(
        "--keep-days", type=float, help="delete what is older than this many days (default: keep)"
    )
    store.add_argument(
        "--client-id",
        metavar="ID",
        help="MQTT session name: the broker keeps what is published while the store is down "
        "(default: one per topic prefix)",
    )
    store.set_defaults(handler=_store)


def add_history(commands: Commands) -> None:
    """Add ``history``: a stream's beats and events of a time range, from the database."""
    history = commands.add_parser(
        "history", help="print a stream's stored beats and events of a time range"
    )
    history.add_argument("stream", help="stream id")
    history.add_argument(
        "--db", help="SQLite file, sqlite:///PATH or postgresql://... (default: store's default)"
    )
    history.add_argument(
        "--from", dest="start", metavar="T", help="from T: Unix seconds or ISO 8601 (default: all)"
    )
    history.add_argument(
        "--to", dest="end", metavar="T", help="before T: Unix seconds or ISO 8601 (default: all)"
    )
    form = history.add_mutually_exclusive_group()
    form.add_argument(
        "--json", action="store_true", help="one JSON object per beat or event (the wire payload)"
    )
    form.add_argument("--csv", action="store_true", help="CSV, one row per beat or event")
    form.add_argument(
        "--wfdb",
        type=Path,
        metavar="DIR",
        help="write the range as a WFDB record DIR/STREAM (the filtered signal) with its "
        "annotation file DIR/STREAM.ecgs (beats and rhythm changes)",
    )
    history.set_defaults(handler=_history)


def add_subscribe(commands: Commands) -> None:
    """Add ``subscribe``: received beats and status printed."""
    subscribe = commands.add_parser("subscribe", help="print beats and status received over MQTT")
    add_broker_arguments(subscribe, default_help="mqtt://localhost:1883")
    subscribe.add_argument("--stream", help="one stream id (default: every stream)")
    subscribe.add_argument("--samples", action="store_true", help="also list samples messages")
    subscribe.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per message on stdout: its topic and the fields of its wire "
        "payload (other lines go to stderr)",
    )
    subscribe.add_argument(
        "--share", metavar="GROUP", help="join shared subscription $share/GROUP/... (a pool)"
    )
    subscribe.add_argument(
        "--client-id",
        metavar="ID",
        help="MQTT client id: the broker keeps this session's beats while it is away, for the "
        "next run with the same id (default: a random one, this run only)",
    )
    subscribe.set_defaults(handler=_subscribe)


def add_serve(commands: Commands) -> None:
    """Add ``serve``: the worker, raw samples in and labeled beats out."""
    serve = commands.add_parser(
        "serve", help="worker: devices' raw samples in over MQTT, labeled beats out, per stream"
    )
    add_broker_arguments(serve, default_help="mqtt://localhost:1883")
    split = serve.add_mutually_exclusive_group()
    split.add_argument(
        "--shard",
        metavar="I/N",
        help="keep only the streams whose stable hash (BLAKE2b-64 of the id) %% N == I (any "
        "broker; every worker receives every raw message)",
    )
    split.add_argument(
        "--share",
        metavar="GROUP",
        help="subscribe as a member of $share/GROUP/ (a broker that keeps a topic on one "
        "member, e.g. EMQX with hash_topic)",
    )
    split.add_argument(
        "--partition",
        metavar="K/N",
        help="subscribe to <prefix>/part/K/+/raw, partition K of the N into which the broker "
        "hashes the streams (a NATS cluster's subject mapping: docs/cluster.md)",
    )
    serve.add_argument(
        "--idle-timeout-s",
        type=float,
        default=10.0,
        help="a device silent this long goes offline and its state is freed (default: 10)",
    )
    serve.add_argument(
        "--reorder-s",
        type=float,
        default=0.0,
        help="after a gap in a stream, wait this long for the missing chunks: a broker that "
        "sends unacknowledged messages again after an ack wait sends them behind newer ones "
        "(NATS: 10, a lost node's leader election and its 2 s ack wait; default: 0, no wait)",
    )
    serve.add_argument(
        "--batch-tick-ms",
        type=float,
        default=5.0,
        help="with 32 streams or more, a stream's beat windows wait this long for other "
        "streams' before one ONNX call (devices are not synchronised; 0: only those of the same "
        "event-loop turn; default: 5)",
    )
    add_summary_json_argument(serve)
    add_metrics_argument(serve)
    serve.add_argument(
        "--max-streams",
        type=int,
        default=DEFAULT_MAX_STREAMS,
        help="streams served at once; chunks of more are dropped and counted until one goes "
        "idle (default: %(default)s). Each stream may also send at most twice its rate on "
        "average, beyond a backlog of 10 minutes of signal: the excess is dropped and counted "
        "on its status (ingest 'dropped')",
    )
    serve.add_argument(
        "--worker-id",
        help="names this worker on each stream's status and its persistent broker session: "
        "raw chunks sent while it is down wait for it at the broker (default: host-pid, a "
        "fresh session each start)",
    )
    serve.add_argument(
        "--samples-ms",
        type=float,
        help="signal per samples message, in ms (default: one per raw chunk; 500 or 1000 for "
        "hundreds of devices: fewer publishes, a coarser monitor trace)",
    )
    serve.add_argument("--model", type=Path, help="ONNX model (default: the shipped one)")
    serve.add_argument("--quiet", action="store_true", help="no line per beat, summary only")
    add_rhythm_arguments(serve)
    serve.set_defaults(handler=_serve)


def add_device(commands: Commands) -> None:
    """Add ``device``: the device simulator."""
    device = commands.add_parser(
        "device", help="device simulator: publish records' raw samples on <prefix>/<stream>/raw"
    )
    device.add_argument(
        "records", nargs="+", metavar="RECORD", help="record names or WFDB path stems, one each"
    )
    add_data_arguments(device)
    add_broker_arguments(device, default_help="mqtt://localhost:1883")
    device.add_argument("--speed", default="1", help="factor of real time (1, 10), or 'max'")
    device.add_argument(
        "--chunk-ms", type=float, default=100.0, help="signal per message, in ms (default: 100)"
    )
    device.add_argument(
        "--fs",
        type=float,
        metavar="HZ",
        help="publish at this rate, 100-1000 Hz (default: the record's own), resampled",
    )
    device.add_argument(
        "--stream-id",
        action="append",
        metavar="ID",
        help="stream id, once per record in order (default: the record names)",
    )
    device.add_argument(
        "--duration-s", type=float, help="publish only the first seconds of each record"
    )
    device.add_argument(
        "--float32", action="store_true", help="publish float32 mV instead of int16 counts"
    )
    device.set_defaults(handler=_device)


def add_monitor(commands: Commands) -> None:
    """Add ``monitor``: the live window."""
    monitor = commands.add_parser(
        "monitor", help="live window: scrolling ECG traces with labeled beats, over MQTT"
    )
    add_broker_arguments(monitor, default_help="mqtt://localhost:1883")
    monitor.add_argument("--stream", help="one stream id (default: every stream)")
    monitor.add_argument(
        "--window", type=float, default=10.0, help="seconds of trace shown (default: 10)"
    )
    monitor.add_argument(
        "--client-id",
        metavar="ID",
        help="MQTT client id: a restarted monitor with the same id gets the beats published "
        "while it was closed (default: a random one, this run only)",
    )
    add_screenshot_arguments(monitor, needs="")
    monitor.set_defaults(handler=_monitor)


def _replay(args: argparse.Namespace) -> int:
    from ecg_stream.live.replay_command import ReplaySettings, replay_main
    from ecg_stream.live.sources import parse_speed

    speed = parse_speed(args.speed)
    check_model_argument(args.model)
    check_summary_json(args.summary_json)
    settings = ReplaySettings(
        records=tuple(args.records),
        speed=speed,
        broker_url=args.broker,
        stream_ids=None if args.stream_id is None else tuple(args.stream_id),
        lead=args.lead,
        topic_prefix=args.topic_prefix,
        data_dir=args.data_dir,
        model_path=args.model,
        quiet=args.quiet,
        samples_s=None if args.samples_ms is None else args.samples_ms / 1e3,
        workers=args.workers,
        rhythm=rhythm_settings(args),
        metrics_port=args.metrics_port,
    )
    if args.monitor:
        return _replay_with_monitor(args, settings)
    check_screenshot_arguments(args, needs="--monitor")
    return replay_main(settings, say, args.summary_json)


def _replay_with_monitor(args: argparse.Namespace, settings: ReplaySettings) -> int:
    """The replay in a worker thread, the monitor window in this one, on the same broker."""
    from ecg_stream.config import MqttConfig
    from ecg_stream.live.replay_command import run_replay
    from ecg_stream.live.session import RunSummary
    from ecg_stream.mqtt.broker import DEFAULT_BROKER_URL
    from ecg_stream.viewer.monitor import run_monitor

    check_screenshot_arguments(args, needs="")
    # without --broker the replay uses localhost:1883 or starts an embedded broker there;
    # the monitor's subscriber retries until that broker is up
    config = MqttConfig.from_url(args.broker or DEFAULT_BROKER_URL, args.topic_prefix)
    summary, finished = RunSummary(), []

    async def replay() -> None:
        await run_replay(settings, say, summary)
        finished.append(True)

    code = run_monitor(
        config,
        screenshot=args.screenshot,
        duration_s=10.0 if args.duration is None else args.duration,
        background=replay,
    )
    # a --screenshot run ends the replay when the picture is taken: a normal end, not a stop
    summary.interrupted = code == 130 or (not finished and args.screenshot is None)
    summary.report_to(say, args.summary_json)
    return code


def _monitor(args: argparse.Namespace) -> int:
    from ecg_stream.config import MqttConfig
    from ecg_stream.mqtt.broker import DEFAULT_BROKER_URL
    from ecg_stream.viewer.monitor import run_monitor

    check_screenshot_arguments(args, needs="")
    config = MqttConfig.from_url(args.broker or DEFAULT_BROKER_URL, args.topic_prefix)
    return run_monitor(
        config,
        stream=args.stream,
        screenshot=args.screenshot,
        duration_s=10.0 if args.duration is None else args.duration,
        window_s=args.window,
        client_id=args.client_id,
    )


def _broker(args: argparse.Namespace) -> int:
    return _broker_main(args.host, args.port, say, args.password_file)


def _broker_main(
    host: str, port: int, say: Callable[[str], None], password_file: Path | None = None
) -> int:
    """Serve the embedded broker until Ctrl-C or SIGTERM.

    Returns:
        0 once stopped (a signal is how it stops).
    """
    from ecg_stream.live.runner import run_until_stopped
    from ecg_stream.mqtt.broker import run_broker

    run_until_stopped(run_broker(host, port, say, password_file))
    say("embedded MQTT broker stopped")
    return 0


def _nats_cluster(args: argparse.Namespace) -> int:
    import asyncio
    import tempfile

    from ecg_stream.live.runner import run_until_stopped
    from ecg_stream.live.serve import MAX_SHARDS
    from ecg_stream.mqtt.mosquitto import port_open
    from ecg_stream.mqtt.nats import MAX_NODES, NatsCluster

    if not 1 <= args.nodes <= MAX_NODES or not 1 <= args.partitions <= MAX_SHARDS:
        msg = (
            f"--nodes {args.nodes} --partitions {args.partitions}: use 1 to {MAX_NODES} nodes "
            f"and 1 to {MAX_SHARDS} partitions"
        )
        raise ConfigError(msg)
    ports = [args.port + k for k in range(args.nodes)]
    if not 0 < ports[0] <= ports[-1] < 65536 or any(port_open(port) for port in ports):
        msg = f"MQTT ports {ports[0]}-{ports[-1]} are taken or out of range; pass --port"
        raise ConfigError(msg)
    directory = args.dir or Path(tempfile.mkdtemp(prefix="ecg-stream-nats-"))
    directory.mkdir(parents=True, exist_ok=True)
    with NatsCluster(directory, args.nodes, args.partitions, ports) as cluster:
        url = cluster.config.url
        say(f"NATS cluster of {args.nodes} nodes in {directory}: --broker {url}")
        say(
            f"workers: ecg-stream serve --broker {url} --partition K/{args.partitions} "
            f"--worker-id wK --reorder-s 10, for K = 0 ... {args.partitions - 1}; Ctrl-C stops"
        )
        run_until_stopped(asyncio.Event().wait())
    say("NATS cluster stopped")
    return 0


def _store(args: argparse.Namespace) -> int:
    from ecg_stream.config import MqttConfig
    from ecg_stream.live.history import HistoryStore, database_path, run_store
    from ecg_stream.live.runner import run_until_stopped
    from ecg_stream.mqtt.broker import DEFAULT_BROKER_URL

    if args.keep_days is not None and not args.keep_days > 0:
        msg = f"--keep-days {args.keep_days} must be > 0"
        raise ConfigError(msg)
    config = MqttConfig.from_url(args.broker or DEFAULT_BROKER_URL, args.topic_prefix)
    store = HistoryStore(database_path(args.db))
    try:
        run_until_stopped(
            run_store(config, store, say, keep_days=args.keep_days, client_id=args.client_id)
        )
    finally:
        store.close()
    return 0


def _history(args: argparse.Namespace) -> int:
    from ecg_stream.live.history import (
        POSTGRES_SCHEMES,
        HistoryStore,
        database_path,
        history_lines,
        write_wfdb,
    )

    where = database_path(args.db)
    if not where.startswith(POSTGRES_SCHEMES) and not Path(where).is_file():
        msg = f"no history database at {where}; run `ecg-stream store` first, or give --db"
        raise ConfigError(msg)
    start, end = _moment(args.start, -math.inf), _moment(args.end, math.inf)
    store = HistoryStore(where)
    try:
        if args.wfdb is not None:
            record, annotations = write_wfdb(store, args.stream, start, end, args.wfdb)
            print(f"wrote {record}.hea, {record}.dat" + (f", {annotations}" if annotations else ""))
            return 0
        form = "json" if args.json else "csv" if args.csv else "table"
        for line in history_lines(store, args.stream, start, end, form):
            print(line)
    finally:
        store.close()
    return 0


def _moment(text: str | None, default: float) -> float:
    """A ``--from``/``--to`` value as Unix seconds: a number, or an ISO 8601 date and time."""
    import datetime

    if text is None:
        return default
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        msg = f"{text!r} is no time: give Unix seconds or ISO 8601, e.g. 2026-12-07T02:14"
        raise ConfigError(msg) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # local time, as a user at the bedside means it
    return moment.timestamp()


def _subscribe(args: argparse.Namespace) -> int:
    from ecg_stream.config import MqttConfig
    from ecg_stream.mqtt.broker import DEFAULT_BROKER_URL

    config = MqttConfig.from_url(args.broker or DEFAULT_BROKER_URL, args.topic_prefix)
    return _subscribe_main(
        config,
        say,
        stream=args.stream,
        samples=args.samples,
        shared_group=args.share,
        client_id=args.client_id,
        json_lines=args.json,
        note=say_error if args.json else None,
    )


def _subscribe_main(config: MqttConfig, say: Callable[[str], None], **options: Any) -> int:
    """Print received messages until Ctrl-C, SIGTERM or the ``limit`` option.

    Returns:
        0 once stopped.
    """
    from ecg_stream.live.runner import run_until_stopped
    from ecg_stream.mqtt.subscriber import run_subscribe

    run_until_stopped(run_subscribe(config, say, **options))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from ecg_stream.live.serve import Partition, ServeSettings, Shard, serve_main

    settings = ServeSettings(
        broker_url=args.broker,
        topic_prefix=args.topic_prefix,
        shard=None if args.shard is None else Shard.parse(args.shard),
        share_group=args.share,
        partition=None if args.partition is None else Partition.parse(args.partition),
        idle_timeout_s=args.idle_timeout_s,
        reorder_s=args.reorder_s,
        batch_tick_s=args.batch_tick_ms / 1e3,
        max_streams=args.max_streams,
        metrics_port=args.metrics_port,
        worker_id=args.worker_id,
        samples_s=None if args.samples_ms is None else args.samples_ms / 1e3,
        model_path=args.model,
        quiet=args.quiet,
        rhythm=rhythm_settings(args),
    )
    settings.check()  # a bad value fails before the model loads
    check_model_argument(args.model)
    check_summary_json(args.summary_json)
    return serve_main(settings, say, args.summary_json)


def _device(args: argparse.Namespace) -> int:
    from ecg_stream.live.device import check_device_rate
    from ecg_stream.live.sources import parse_speed

    speed = parse_speed(args.speed)
    if args.fs is not None:
        check_device_rate(args.fs)
    if args.broker is not None:
        from ecg_stream.config import MqttConfig

        MqttConfig.from_url(args.broker, args.topic_prefix)
    return _device_main(
        args.records,
        say=say,
        broker_url=args.broker,
        topic_prefix=args.topic_prefix,
        stream_ids=args.stream_id,
        speed=speed,
        chunk_ms=args.chunk_ms,
        fs_hz=args.fs,
        duration_s=args.duration_s,
        float32=args.float32,
        lead=args.lead,
        data_dir=args.data_dir,
    )


def _device_main(records: Sequence[str], *, say: Callable[[str], None], **options: Any) -> int:
    """Run the devices to the end of the records or to Ctrl-C, then say what was sent.

    Returns:
        0 at the end of the records, 130 after Ctrl-C or SIGTERM.
    """
    from ecg_stream.live.device import DeviceReport, run_devices
    from ecg_stream.live.runner import run_until_stopped

    reports: list[DeviceReport] = []
    try:
        stopped = run_until_stopped(run_devices(records, say=say, reports=reports, **options))
    except BaseExceptionGroup as errors:  # one device's broker error: the first, as one line
        first = errors.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    for report in reports:
        say(
            f"  {report.stream_id} (record {report.record}, {report.fs_hz:g} Hz): "
            f"{report.messages} chunks, {report.samples / report.fs_hz:.1f} s of signal"
        )
    return 130 if stopped else 0
