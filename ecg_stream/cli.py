"""The ``ecg-stream`` command line; subcommand modules are imported only when used."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecg_stream.detector.segment import FEATURE_NAMES
from ecg_stream.errors import ConfigError, EcgStreamError

if TYPE_CHECKING:
    from ecg_stream.records import DataDirs
    from ecg_stream.training.card import CvRun

EXIT_USER_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; user errors become one line on stderr and exit code 2."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except EcgStreamError as error:
        print(f"ecg-stream {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
    return code


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecg-stream", description="Real-time ECG beat classification over MQTT."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    analyze = commands.add_parser(
        "analyze", help="run records through the streaming chain, write one CSV per record"
    )
    _add_record_arguments(analyze)
    analyze.add_argument("--out-dir", type=Path, default=Path("out"), help="CSV directory")
    analyze.add_argument("--jobs", type=int, default=1, help="records analysed in parallel")
    analyze.add_argument(
        "--model", type=Path, help="ONNX model for the label columns (default: the shipped one)"
    )
    analyze.add_argument(
        "--no-classify", action="store_true", help="detections only: sample,time_s,rr_ms"
    )
    analyze.add_argument(
        "--chunk-s",
        type=float,
        default=1.0,
        help="chunk length fed to the chain, in s (results do not depend on it; speed does)",
    )
    analyze.set_defaults(handler=_analyze)

    evaluate = commands.add_parser(
        "evaluate", help="score detection or classification against the annotations"
    )
    what = evaluate.add_mutually_exclusive_group(required=True)
    what.add_argument("--detector", action="store_true", help="score R-peak detection")
    what.add_argument(
        "--classifier", action="store_true", help="score beat classes (JSON + pictures)"
    )
    _add_record_arguments(evaluate)
    evaluate.add_argument(
        "--xqrs", action="store_true", help="--detector: also score wfdb's xqrs_detect"
    )
    evaluate.add_argument("--json", type=Path, help="--detector: write the figures to this file")
    evaluate.add_argument("--jobs", type=int, default=1, help="--detector: records in parallel")
    evaluate.add_argument(
        "--model", type=Path, help="--classifier: ONNX model (default: the shipped one)"
    )
    evaluate.add_argument(
        "--out-dir",
        type=Path,
        default=Path("out/evaluation"),
        help="--classifier: directory for classification.json and the PNG pictures",
    )
    evaluate.add_argument(
        "--training-log", type=Path, help="--classifier: training_log.csv to plot the history"
    )
    evaluate.set_defaults(handler=_evaluate)

    train = commands.add_parser("train", help="train the stacked-LSTM classifier (Keras)")
    train.add_argument("out_dir", type=Path, help="run directory (resumed if it holds a run)")
    train.add_argument(
        "--protocol",
        choices=["inter-patient", "intra-patient"],
        default="inter-patient",
        help="inter-patient: the training pool, whole records (default); intra-patient: "
        "random beat split, only to compare with intra-patient claims",
    )
    train.add_argument(
        "--cv",
        type=int,
        metavar="K",
        help="patient-grouped K-fold cross-validation over the pool: trains the K fold models "
        "and reports pooled out-of-fold figures (terminal and OUT_DIR/cv.json)",
    )
    train.add_argument(
        "--records",
        nargs="+",
        metavar="RECORD",
        help="inter-patient training pool: names, path stems or groups (default: pool = DS1 "
        "+ svdb-train)",
    )
    train.add_argument(
        "--dataset",
        type=Path,
        help="train on a dataset file written by `ecg-stream dataset` instead of the records",
    )
    train.add_argument("--arch", choices=["lean", "reference"], help="network (default: lean)")
    train.add_argument(
        "--score-only",
        action="store_true",
        help="with --cv: train no fold, score the folds already trained (a run cut short)",
    )
    train.add_argument(
        "--baseline",
        action="store_true",
        help="with --cv: gradient-boosted trees (scikit-learn) on the same folds, the baseline "
        "the LSTM must beat",
    )
    inputs = train.add_mutually_exclusive_group()
    inputs.add_argument(
        "--features",
        type=_feature_names,
        help="comma-separated per-beat features of the second input (default: all of "
        f"{','.join(FEATURE_NAMES)})",
    )
    inputs.add_argument(
        "--no-rr", action="store_true", help="window-only model, no second input (ablation)"
    )
    train.add_argument(
        "--no-template",
        action="store_true",
        help="the beat alone as window input, without the template channel (ablation)",
    )
    train.add_argument(
        "--no-augment", action="store_true", help="no noise, jitter or stretch (ablation)"
    )
    train.add_argument("--max-per-class", type=int, help="training beats drawn per class and epoch")
    train.add_argument(
        "--max-per-record-class",
        type=int,
        help="training beats drawn per record, class and epoch (patient balance)",
    )
    train.add_argument("--epochs", type=int, help="epochs (at most, for a single run)")
    train.add_argument("--batch-size", type=int, help="mini-batch size")
    train.add_argument("--learning-rate", type=float, help="initial Adam learning rate")
    train.add_argument("--patience", type=int, help="epochs without improvement before stopping")
    train.add_argument("--seed", type=int, help="seed of sampling, splits and weights")
    train.add_argument("--threads", type=int, help="TensorFlow threads (default: all cores)")
    _add_data_dir(train, "the WFDB files, and the noise records bw/em/ma to augment")
    train.set_defaults(handler=_train)

    stress = commands.add_parser(
        "stress", help="noise stress test: real noise at set SNRs, detection and V/S figures"
    )
    stress.add_argument("records", nargs="+", metavar="RECORD", help="annotated records, e.g. DS2")
    stress.add_argument("--noise", default="em", help="noise record: bw, em or ma (default: em)")
    stress.add_argument(
        "--snr",
        type=float,
        nargs="+",
        default=[24.0, 18.0, 12.0, 6.0, 0.0, -6.0],
        help="SNR levels in dB (default: 24 18 12 6 0 -6)",
    )
    stress.add_argument("--model", type=Path, help="ONNX model (default: the shipped one)")
    stress.add_argument("--seed", type=int, default=0, help="seed of the noise offsets")
    stress.add_argument("--json", type=Path, help="write the figures to this file")
    _add_data_dir(stress, "the records and the noise records bw/em/ma")
    stress.set_defaults(handler=_stress)

    dataset = commands.add_parser(
        "dataset", help="cut the labelled beats of records into one .npz that `train` reads"
    )
    dataset.add_argument("out_path", type=Path, help="the .npz file to write")
    dataset.add_argument(
        "records", nargs="+", metavar="RECORD", help="record names, path stems or groups"
    )
    dataset.add_argument(
        "--max-per-record-class",
        type=int,
        help="keep at most this many random beats per record and class (a smaller file)",
    )
    dataset.add_argument("--seed", type=int, default=0, help="seed of that subsample")
    _add_data_dir(dataset)
    dataset.set_defaults(handler=_dataset)

    export = commands.add_parser("export", help="export a training run to ONNX, parity-checked")
    export.add_argument("run_dir", type=Path, help="directory of an `ecg-stream train` run")
    export.add_argument("out_path", type=Path, help="the .onnx file to write")
    export.add_argument("--name", default="beat_lstm", help="model name in the contract")
    _add_data_dir(export)
    export.set_defaults(handler=_export)

    card = commands.add_parser(
        "card", help="write the model card (markdown + JSON) from the runs' re-runnable outputs"
    )
    card.add_argument(
        "--run",
        type=Path,
        required=True,
        help="the shipped model's cross-validation run (with calibration.json and eval_ds2/)",
    )
    card.add_argument(
        "--compare",
        type=_compared_run,
        action="append",
        default=[],
        metavar="LABEL=RUN_DIR",
        help="another cross-validation run to compare with, e.g. 'no template=runs/lean_nt'",
    )
    card.add_argument("--model", type=Path, help="the shipped .onnx (default: the shipped one)")
    card.add_argument(
        "--ds2-evaluations", type=int, default=1, help="DS2 evaluations made (default: 1)"
    )
    card.add_argument(
        "--device", default="2 shared CPU cores", help="where the fold models were trained"
    )
    card.add_argument(
        "--training-data", default="every beat of the pool", help="what the folds trained on"
    )
    card.add_argument("--intra", type=Path, help="an intra-patient run (secondary figure)")
    card.add_argument(
        "--out-dir", type=Path, help="where to write the card (default: the package's assets)"
    )
    card.set_defaults(handler=_card)

    replay = commands.add_parser(
        "replay", help="stream records in real time through the classifier, publish beats (MQTT)"
    )
    replay.add_argument(
        "records",
        nargs="+",
        metavar="RECORD",
        help="record names or WFDB path stems, one stream each",
    )
    _add_data_arguments(replay)
    replay.add_argument("--speed", default="1", help="factor of real time (1, 10), or 'max'")
    _add_broker_arguments(replay, default_help="localhost:1883 if a broker answers, else embedded")
    replay.add_argument(
        "--stream-id",
        action="append",
        metavar="ID",
        help="stream id (topic level), once per record in order (default: the record names)",
    )
    replay.add_argument("--model", type=Path, help="ONNX model (default: the shipped one)")
    replay.add_argument("--quiet", action="store_true", help="no line per beat, summary only")
    _add_scale_arguments(replay)
    replay.add_argument(
        "--monitor", action="store_true", help="also open the live monitor window on the streams"
    )
    _add_screenshot_arguments(replay, needs=" (with --monitor)")
    replay.set_defaults(handler=_replay)

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

    subscribe = commands.add_parser("subscribe", help="print beats and status received over MQTT")
    _add_broker_arguments(subscribe, default_help="mqtt://localhost:1883")
    subscribe.add_argument("--stream", help="one stream id (default: every stream)")
    subscribe.add_argument("--samples", action="store_true", help="also list samples messages")
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

    serve = commands.add_parser(
        "serve", help="worker: devices' raw samples in over MQTT, labeled beats out, per stream"
    )
    _add_broker_arguments(serve, default_help="mqtt://localhost:1883")
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
    serve.add_argument(
        "--idle-timeout-s",
        type=float,
        default=10.0,
        help="a device silent this long goes offline and its state is freed (default: 10)",
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
    serve.set_defaults(handler=_serve)

    device = commands.add_parser(
        "device", help="device simulator: publish records' raw samples on <prefix>/<stream>/raw"
    )
    device.add_argument(
        "records", nargs="+", metavar="RECORD", help="record names or WFDB path stems, one each"
    )
    _add_data_arguments(device)
    _add_broker_arguments(device, default_help="mqtt://localhost:1883")
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

    monitor = commands.add_parser(
        "monitor", help="live window: scrolling ECG traces with labeled beats, over MQTT"
    )
    _add_broker_arguments(monitor, default_help="mqtt://localhost:1883")
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
    _add_screenshot_arguments(monitor, needs="")
    monitor.set_defaults(handler=_monitor)

    bench = commands.add_parser(
        "bench",
        help="latency benchmark: per-stage and end-to-end latency, Keras vs ONNX, throughput",
    )
    bench.add_argument("record", nargs="?", default="100", help="record name (default: 100)")
    _add_data_arguments(bench)
    bench.add_argument(
        "--quick", action="store_true", help="the first 3 minutes of signal, 40 inference rounds"
    )
    bench.add_argument("--model", type=Path, help="ONNX model (default: the shipped one)")
    bench.add_argument(
        "--keras",
        type=Path,
        default=Path("runs/lean_noaugment/fold-0/final.keras"),
        help="Keras fold model compared with its ONNX conversion (skipped if missing; "
        "default: %(default)s)",
    )
    bench.add_argument("--batch", type=int, default=32, help="beats per batched inference call")
    bench.add_argument(
        "--rounds", type=int, help="inference rounds per variant (default: 40 quick, else 300)"
    )
    bench.add_argument("--broker", metavar="URL", help="a running broker (default: a mosquitto)")
    bench.add_argument(
        "--embedded", action="store_true", help="start the embedded broker (amqtt), not mosquitto"
    )
    bench.add_argument(
        "--streams",
        type=_stream_counts,
        help="instead: the scale curve, N concurrent real-time streams per point "
        "(e.g. 1,8,32,64,128,256,512), up to the first point that does not hold",
    )
    bench.add_argument(
        "--duration-s", type=float, default=60.0, help="--streams: seconds of signal per stream"
    )
    _add_scale_arguments(bench)
    bench.add_argument(
        "--ramp-s",
        type=float,
        help="--streams: the streams start spread over this many seconds (0: all at once, as "
        "after a server restart; default: 5)",
    )
    bench.add_argument("--json", type=Path, help="write the results to this JSON file")
    bench.add_argument("--plot-dir", type=Path, help="write latency CDF plots (PNG) here")
    bench.set_defaults(handler=_bench)
    return parser


def _add_screenshot_arguments(parser: argparse.ArgumentParser, needs: str) -> None:
    parser.add_argument(
        "--screenshot",
        type=Path,
        metavar="PNG",
        help=f"run headless{needs}: collect for --duration s, write this PNG, exit",
    )
    parser.add_argument(
        "--duration", type=float, help="seconds to collect before --screenshot (default: 10)"
    )


def _add_broker_arguments(parser: argparse.ArgumentParser, default_help: str) -> None:
    parser.add_argument(
        "--broker",
        metavar="URL",
        help=f"mqtt://host:port or mqtts://host:port (default: {default_help}); credentials "
        "from $ECG_STREAM_MQTT_USERNAME / $ECG_STREAM_MQTT_PASSWORD",
    )
    parser.add_argument("--topic-prefix", default="ecg", help="first topic level(s) (default: ecg)")


def _add_scale_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes to spread the streams over, one per core at most (default: 1)",
    )
    parser.add_argument(
        "--samples-ms",
        type=float,
        help="signal per samples message, in ms (default: one per 100 ms chunk; 500 or 1000 "
        "for hundreds of streams: fewer publishes, a coarser monitor trace)",
    )


def _stream_counts(text: str) -> tuple[int, ...]:
    """``--streams 1,8,32``: positive counts, in the order given."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        msg = f"{text!r} is not a list of stream counts >= 1 such as 1,8,32"
        raise argparse.ArgumentTypeError(msg)
    return counts


def _add_data_dir(parser: argparse.ArgumentParser, holding: str = "the WFDB files") -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        action="append",
        help=f"directory holding {holding} (repeat for more)",
    )


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    _add_data_dir(parser)
    parser.add_argument("--lead", default="0", help="lead name or index (default: first)")


def _add_record_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "records", nargs="+", metavar="RECORD", help="record names, or all / DS1 / DS2"
    )
    _add_data_arguments(parser)


def _analyze(args: argparse.Namespace) -> int:
    from ecg_stream.live.analysis import map_records
    from ecg_stream.records import expand_record_names

    names = expand_record_names(args.records)
    if not 0 < args.chunk_s <= 60:
        msg = f"--chunk-s {args.chunk_s} must lie in (0, 60] s"
        raise ConfigError(msg)
    _check_model_argument(args.model)
    model = None if args.no_classify else args.model or _default_model()
    tasks = [(name, args.data_dir, args.lead, args.out_dir, args.chunk_s, model) for name in names]
    signal_s = chain_s = inference_s = 0.0
    for name, beats, seconds, chain, inference, path in map_records(_analyze_one, tasks, args.jobs):
        signal_s, chain_s, inference_s = (
            signal_s + seconds,
            chain_s + chain,
            inference_s + inference,
        )
        print(f"{name}: {beats} beats -> {path}  (chain {seconds / chain:.0f}x real time)")
    print(
        f"analyzed {len(names)} record(s), {signal_s / 60:.1f} min of signal: chain "
        f"(filter + detector + windows) {chain_s:.2f} s = {signal_s / chain_s:.0f}x real time "
        f"on one core" + (f"; classification {inference_s:.2f} s" if model else "")
    )
    return 0


def _analyze_one(
    name: str, data_dir: DataDirs, lead: str, out_dir: Path, chunk_s: float, model: Path | None
) -> tuple[str, int, float, float, float, Path]:
    import time

    from ecg_stream.config import ChainConfig
    from ecg_stream.live.analysis import detect_record, write_beats_csv
    from ecg_stream.records import load_record

    config = ChainConfig()
    record = load_record(name, data_dir, lead, annotations=False)  # the CSV needs none
    result = detect_record(record, config, chunk_s)
    labeled = None
    started = time.perf_counter()
    if model is not None:
        from ecg_stream.classify.classifier import OnnxBeatClassifier

        with OnnxBeatClassifier(model, config) as classifier:
            labeled = classifier.classify(result.windows)
    inference_s = time.perf_counter() - started
    path = out_dir / f"{record.name}.csv"
    write_beats_csv(result, path, labeled)
    signal_s = record.samples.size / config.fs_hz
    return record.name, len(result.windows), signal_s, result.chain_s, inference_s, path


def _default_model() -> Path:
    from ecg_stream.classify.classifier import default_model_path

    return default_model_path()


def _check_model_argument(model: Path | None) -> None:
    """Refuse a ``--model`` that is no file before any record is loaded."""
    if model is None or model.is_file():
        return
    if model.is_dir():
        found = sorted(model.glob("*.onnx"))
        example = found[0] if found else model / "beat_lstm.onnx"
        msg = f"--model {model} is a directory; pass the .onnx file itself, e.g. --model {example}"
    else:
        msg = f"--model {model} does not exist; pass the path of an exported .onnx file"
    raise ConfigError(msg)


def _evaluate(args: argparse.Namespace) -> int:
    if args.detector:
        return _evaluate_detector(args)
    _check_model_argument(args.model)
    from ecg_stream.evaluation import Span
    from ecg_stream.evaluation.classification import evaluate_classifier
    from ecg_stream.records import expand_record_names

    report = evaluate_classifier(
        expand_record_names(args.records),
        args.model or _default_model(),
        args.out_dir,
        data_dir=args.data_dir,
        training_log=args.training_log,
    )
    for span in Span:
        print(f"== {span.title} ==\n{report.format_table(span)}")
    print(f"wrote {args.out_dir}/classification.json and pictures")
    return 0


def _feature_names(text: str) -> tuple[str, ...]:
    """``--features``: comma-separated names (checked by ``TrainSettings``)."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _train(args: argparse.Namespace) -> int:
    import logging

    import numpy as np

    from ecg_stream.evaluation.classification import format_score_table
    from ecg_stream.records import expand_record_names
    from ecg_stream.training.dataset import load_dataset
    from ecg_stream.training.run import Architecture, Protocol, TrainSettings
    from ecg_stream.training.train import cross_validate, train_model

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    given: dict[str, Any] = {
        name: getattr(args, name)
        for name in (
            "max_per_class",
            "max_per_record_class",
            "epochs",
            "batch_size",
            "learning_rate",
            "patience",
            "seed",
        )
        if getattr(args, name) is not None
    }  # the others keep TrainSettings' defaults
    if args.no_rr or args.features is not None:
        given["features"] = () if args.no_rr else args.features
    if args.records:
        given["records"] = tuple(expand_record_names(args.records))
    if args.arch:
        given["arch"] = Architecture(args.arch)
    if args.no_template:
        given["channels"] = ("beat",)
    if args.no_augment:
        given["augment"] = False
    dataset = None
    if args.dataset is not None:
        dataset = load_dataset(args.dataset)
        if args.records:
            missing = sorted(set(given["records"]) - set(dataset.record_names))
            if missing:
                msg = (
                    f"records {missing} are not in {args.dataset}; it holds "
                    f"{' '.join(dataset.record_names)}"
                )
                raise ConfigError(msg)
            dataset = dataset.of_records(given["records"])
        given["records"] = tuple(str(name) for name in np.unique(dataset.records))
    settings = TrainSettings(protocol=Protocol(args.protocol), **given)
    if args.cv is not None:
        result = cross_validate(
            args.out_dir,
            settings,
            args.cv,
            data_dir=args.data_dir,
            dataset=dataset,
            baseline=args.baseline,
            train_missing=not args.score_only,
            threads=args.threads,
        )
        print(f"== out-of-fold, {args.cv} folds of whole records ({result.train_seconds:.0f} s) ==")
        print(format_score_table(result.score))
        print(f"wrote {result.result_path}")
        return 0
    if dataset is not None:
        msg = "--dataset trains with --cv only; a single run reads the records"
        raise ConfigError(msg)
    run = train_model(args.out_dir, settings, data_dir=args.data_dir, threads=args.threads)
    print(f"trained {run.epochs_run} epochs: best {run.best_model_path}")
    return 0


def _stress(args: argparse.Namespace) -> int:
    from ecg_stream.evaluation.stress import stress_test
    from ecg_stream.records import expand_record_names

    report = stress_test(
        expand_record_names(args.records),
        args.model or _default_model(),
        args.noise,
        args.snr,
        data_dir=args.data_dir,
        seed=args.seed,
    )
    print(report.format_table())
    if args.json is not None:
        args.json.write_text(report.to_json())
        print(f"wrote {args.json}")
    return 0


def _dataset(args: argparse.Namespace) -> int:
    import logging

    import numpy as np

    from ecg_stream.config import ChainConfig
    from ecg_stream.records import expand_record_names
    from ecg_stream.training.dataset import build_dataset, patient_balanced_sample, save_dataset

    if args.max_per_record_class is not None and args.max_per_record_class < 1:
        msg = f"--max-per-record-class {args.max_per_record_class} must be >= 1"
        raise ConfigError(msg)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    dataset = build_dataset(
        expand_record_names(args.records), ChainConfig(), data_dir=args.data_dir
    )
    if args.max_per_record_class is not None:
        _, groups = np.unique(dataset.records, return_inverse=True)
        rng = np.random.default_rng(args.seed)
        cap = args.max_per_record_class
        dataset = dataset.subset(
            patient_balanced_sample(dataset.labels, groups, cap, len(dataset), rng)
        )
    save_dataset(dataset, args.out_path)
    counts = " ".join(f"{c.value}={n}" for c, n in dataset.class_counts().items())
    print(f"wrote {args.out_path}: {len(dataset)} beats ({counts})")
    return 0


def _export(args: argparse.Namespace) -> int:
    import logging

    from ecg_stream.training.export import export_model

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result = export_model(args.run_dir, args.out_path, model_name=args.name, data_dir=args.data_dir)
    print(
        f"wrote {result.path} ({result.size_bytes / 1e6:.2f} MB): parity on "
        f"{result.parity_windows} real windows, max |difference| {result.max_abs_difference:.1e}"
    )
    return 0


def _evaluate_detector(args: argparse.Namespace) -> int:
    from ecg_stream.evaluation import Span
    from ecg_stream.evaluation.detection import evaluate_detector
    from ecg_stream.records import expand_record_names

    report = evaluate_detector(
        expand_record_names(args.records),
        data_dir=args.data_dir,
        lead=args.lead,
        with_xqrs=args.xqrs,
        jobs=args.jobs,
    )
    for span in Span:
        print(f"\n== R-peak detection, {span.title}, 150 ms matching ==")
        print(report.format_table(span))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(report.to_json())
        print(f"\nwrote {args.json}")
    return 0


def _card(args: argparse.Namespace) -> int:
    from ecg_stream.training.card import CardInputs, write_model_card

    _check_model_argument(args.model)
    model = args.model or _default_model()
    inputs = CardInputs(
        model,
        args.run,
        tuple(args.compare),
        args.ds2_evaluations,
        args.device,
        args.training_data,
        args.intra,
    )
    for path in write_model_card(inputs, args.out_dir or _default_model().parent):
        print(f"wrote {path}")
    return 0


def _compared_run(text: str) -> CvRun:
    """``--compare LABEL=RUN_DIR``."""
    from ecg_stream.training.card import CvRun

    label, separator, path = text.partition("=")
    if not separator or not label or not path:
        msg = f"--compare {text!r}: give LABEL=RUN_DIR, e.g. 'no template=runs/lean_notemplate'"
        raise argparse.ArgumentTypeError(msg)
    return CvRun(label, Path(path))


def _replay(args: argparse.Namespace) -> int:
    from ecg_stream.live.replay import replay_main
    from ecg_stream.live.sources import parse_speed

    options: dict[str, Any] = {
        "broker_url": args.broker,
        "stream_ids": args.stream_id,
        "lead": args.lead,
        "topic_prefix": args.topic_prefix,
        "data_dir": args.data_dir,
        "model_path": args.model,
        "quiet": args.quiet,
        "samples_s": None if args.samples_ms is None else args.samples_ms / 1e3,
        "workers": args.workers,
    }
    speed = parse_speed(args.speed)
    _check_model_argument(args.model)
    if args.monitor:
        return _replay_with_monitor(args, speed, options)
    _check_screenshot_arguments(args, needs="--monitor")
    return replay_main(args.records, speed=speed, say=_say, **options)


def _replay_with_monitor(args: argparse.Namespace, speed: float, options: dict[str, Any]) -> int:
    """The replay in a worker thread, the monitor window in this one, on the same broker."""
    from ecg_stream.config import MqttConfig
    from ecg_stream.live.replay import ReplaySummary, run_replay
    from ecg_stream.mqtt.broker import DEFAULT_BROKER_URL
    from ecg_stream.viewer.monitor import run_monitor

    _check_screenshot_arguments(args, needs="")
    # without --broker the replay uses localhost:1883 or starts an embedded broker there;
    # the monitor's subscriber retries until that broker is up
    config = MqttConfig.from_url(args.broker or DEFAULT_BROKER_URL, args.topic_prefix)
    summary, finished = ReplaySummary(), []

    async def replay() -> None:
        await run_replay(args.records, speed=speed, say=_say, summary=summary, **options)
        finished.append(True)

    code = run_monitor(
        config,
        screenshot=args.screenshot,
        duration_s=10.0 if args.duration is None else args.duration,
        background=replay,
    )
    # a --screenshot run ends the replay when the picture is taken: a normal end, not a stop
    summary.interrupted = code == 130 or (not finished and args.screenshot is None)
    _say(summary.format())
    return code


def _monitor(args: argparse.Namespace) -> int:
    from ecg_stream.config import MqttConfig
    from ecg_stream.mqtt.broker import DEFAULT_BROKER_URL
    from ecg_stream.viewer.monitor import run_monitor

    _check_screenshot_arguments(args, needs="")
    config = MqttConfig.from_url(args.broker or DEFAULT_BROKER_URL, args.topic_prefix)
    return run_monitor(
        config,
        stream=args.stream,
        screenshot=args.screenshot,
        duration_s=10.0 if args.duration is None else args.duration,
        window_s=args.window,
        client_id=args.client_id,
    )


def _check_screenshot_arguments(args: argparse.Namespace, needs: str) -> None:
    """Refuse --duration without --screenshot, and --screenshot where it needs ``needs``."""
    if args.duration is not None and args.screenshot is None:
        msg = "--duration sets how long to collect before --screenshot; give --screenshot PNG too"
        raise ConfigError(msg)
    if needs and args.screenshot is not None:
        msg = f"--screenshot is a picture of the monitor; add {needs}"
        raise ConfigError(msg)


def _broker(args: argparse.Namespace) -> int:
    from ecg_stream.mqtt.broker import broker_main

    return broker_main(args.host, args.port, _say, args.password_file)


def _subscribe(args: argparse.Namespace) -> int:
    from ecg_stream.config import MqttConfig
    from ecg_stream.mqtt.broker import DEFAULT_BROKER_URL
    from ecg_stream.mqtt.subscriber import subscribe_main

    config = MqttConfig.from_url(args.broker or DEFAULT_BROKER_URL, args.topic_prefix)
    return subscribe_main(
        config,
        _say,
        stream=args.stream,
        samples=args.samples,
        shared_group=args.share,
        client_id=args.client_id,
    )


def _serve(args: argparse.Namespace) -> int:
    from ecg_stream.live.replay import check_samples_s
    from ecg_stream.live.serve import Shard, serve_main

    samples_s = None if args.samples_ms is None else args.samples_ms / 1e3
    check_samples_s(samples_s)  # a bad value fails before the model loads
    if args.shard is not None:
        Shard.parse(args.shard)  # a bad value fails before the model loads
    if args.broker is not None:
        from ecg_stream.config import MqttConfig

        MqttConfig.from_url(args.broker, args.topic_prefix)
    _check_model_argument(args.model)
    return serve_main(
        say=_say,
        broker_url=args.broker,
        topic_prefix=args.topic_prefix,
        shard=args.shard,
        share_group=args.share,
        idle_timeout_s=args.idle_timeout_s,
        worker_id=args.worker_id,
        samples_s=samples_s,
        model_path=args.model,
        quiet=args.quiet,
    )


def _device(args: argparse.Namespace) -> int:
    from ecg_stream.live.device import check_device_rate, device_main
    from ecg_stream.live.sources import parse_speed

    speed = parse_speed(args.speed)
    if args.fs is not None:
        check_device_rate(args.fs)
    if args.broker is not None:
        from ecg_stream.config import MqttConfig

        MqttConfig.from_url(args.broker, args.topic_prefix)
    return device_main(
        args.records,
        say=_say,
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


def _bench(args: argparse.Namespace) -> int:
    from ecg_stream.bench.latency import BenchOptions, bench_main

    _check_model_argument(args.model)
    if args.broker is not None and args.embedded:
        msg = "--broker and --embedded both name a broker; give one"
        raise ConfigError(msg)
    options = BenchOptions(
        record=args.record,
        data_dir=args.data_dir,
        lead=args.lead,
        quick=args.quick,
        model_path=args.model,
        keras_path=args.keras,
        batch=args.batch,
        rounds=args.rounds,
        broker_url=args.broker,
        embedded=args.embedded,
        streams=args.streams,
        duration_s=args.duration_s,
        workers=args.workers,
        samples_s=None if args.samples_ms is None else args.samples_ms / 1e3,
        **({} if args.ramp_s is None else {"ramp_s": args.ramp_s}),
        json_path=args.json,
        plot_dir=args.plot_dir,
    )
    return bench_main(options, _say)


def _say(line: str) -> None:
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
