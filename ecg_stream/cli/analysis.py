"""``analyze``, ``evaluate`` and ``stress``: records through the chain, offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ecg_stream.cli.common import (
    add_data_dir,
    add_record_arguments,
    add_rhythm_arguments,
    check_model_argument,
    default_model,
    rhythm_settings,
)
from ecg_stream.documents import check_output_file, write_atomically
from ecg_stream.errors import ConfigError

if TYPE_CHECKING:
    from ecg_stream.cli.common import Commands


def add_analyze(commands: Commands) -> None:
    """Add ``analyze``: one CSV of detections (and labels) per record."""
    analyze = commands.add_parser(
        "analyze", help="run records through the streaming chain, write one CSV per record"
    )
    add_record_arguments(analyze)
    add_rhythm_arguments(analyze)
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


def add_evaluate(commands: Commands) -> None:
    """Add ``evaluate``: detection or classification scored against the annotations."""
    evaluate = commands.add_parser(
        "evaluate", help="score detection or classification against the annotations"
    )
    what = evaluate.add_mutually_exclusive_group(required=True)
    what.add_argument("--detector", action="store_true", help="score R-peak detection")
    what.add_argument(
        "--classifier", action="store_true", help="score beat classes (JSON + pictures)"
    )
    what.add_argument(
        "--rhythm",
        action="store_true",
        help="score rhythm episodes (AF, VT, SVT, bigeminy, trigeminy, VFL) against the "
        "reference rhythm annotations",
    )
    add_record_arguments(evaluate)
    evaluate.add_argument(
        "--xqrs", action="store_true", help="--detector: also score wfdb's xqrs_detect"
    )
    evaluate.add_argument(
        "--json", type=Path, help="write the figures to this file (any of the three)"
    )
    evaluate.add_argument(
        "--jobs", type=int, default=1, help="--detector, --rhythm: records in parallel"
    )
    evaluate.add_argument(
        "--model",
        type=Path,
        help="--classifier, --rhythm: ONNX model (default: the shipped one)",
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


def add_stress(commands: Commands) -> None:
    """Add ``stress``: the noise stress test."""
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
    add_data_dir(stress, "the records and the noise records bw/em/ma")
    stress.set_defaults(handler=_stress)


def _analyze(args: argparse.Namespace) -> int:
    from ecg_stream.live.analysis import RecordFailure, analyze_or_fail, map_records
    from ecg_stream.records import expand_record_names

    names = expand_record_names(args.records)
    if not 0 < args.chunk_s <= 60:
        msg = f"--chunk-s {args.chunk_s} must lie in (0, 60] s"
        raise ConfigError(msg)
    check_model_argument(args.model)
    model = None if args.no_classify else args.model or default_model()
    rhythm = rhythm_settings(args)
    tasks = [
        (name, args.data_dir, args.lead, args.out_dir, args.chunk_s, model, rhythm)
        for name in names
    ]
    signal_s = chain_s = inference_s = 0.0
    failures: list[RecordFailure] = []
    for done in map_records(analyze_or_fail, tasks, args.jobs, "analyze"):
        if isinstance(done, RecordFailure):
            failures.append(done)
            print(f"{done.record}: skipped, cannot be read (see the end)")
            continue
        signal_s += done.signal_s
        chain_s += done.chain_s
        inference_s += done.inference_s
        speed = done.signal_s / done.chain_s
        gaps = ""
        if done.missing:
            count = sum(end - first for first, end in done.missing)
            gaps = (
                f"; {count} missing samples in {len(done.missing)} stretch(es), the first at "
                f"sample {done.missing[0][0]}: gaps, beats there labelled Q (missing)"
            )
        print(
            f"{done.record}: {done.beats} beats -> {done.path}  (chain {speed:.0f}x real "
            f"time){gaps}"
        )
    analyzed = len(names) - len(failures)
    print(
        f"analyzed {analyzed} record(s), {signal_s / 60:.1f} min of signal: chain "
        f"(filter + detector + windows) {chain_s:.2f} s = {signal_s / max(chain_s, 1e-9):.0f}x "
        f"real time on one core" + (f"; classification {inference_s:.2f} s" if model else "")
    )
    for failure in failures:
        print(f"ecg-stream analyze: error: {failure.record}: {failure.reason}", file=sys.stderr)
    return 2 if failures else 0


def _evaluate(args: argparse.Namespace) -> int:
    if args.detector:
        return _evaluate_detector(args)
    if args.rhythm:
        return _evaluate_rhythm(args)
    check_model_argument(args.model)
    from ecg_stream.evaluation import Span
    from ecg_stream.evaluation.classification import evaluate_classifier
    from ecg_stream.records import expand_record_names

    if args.json is not None:
        check_output_file(args.json)  # before minutes of evaluation
    names = expand_record_names(args.records)
    model = args.model or default_model()
    report = evaluate_classifier(
        names, model, args.out_dir, data_dir=args.data_dir, training_log=args.training_log
    )
    if seen := trained_on(model, names):
        print(
            f"note: the model was trained on {', '.join(seen)}: their figures are not a test "
            "of patients it never saw (DS2 is)"
        )
    for span in Span:
        print(f"== {span.title} ==\n{report.format_table(span)}")
    print(f"wrote {args.out_dir}/classification.json and pictures")
    if args.json is not None:
        write_atomically(args.json, report.to_json())
        print(f"wrote {args.json}")
    return 0


def trained_on(model: Path, records: list[str]) -> list[str]:
    """Which of ``records`` the model's contract names among its training records."""
    from ecg_stream.classify.classifier import OnnxBeatClassifier
    from ecg_stream.config import ChainConfig

    with OnnxBeatClassifier(model, ChainConfig()) as classifier:
        training = set(classifier.contract.training_records.split())
    return [name for name in records if Path(name).name in training]


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
        write_atomically(args.json, report.to_json())
        print(f"\nwrote {args.json}")
    return 0


def _evaluate_rhythm(args: argparse.Namespace) -> int:
    check_model_argument(args.model)
    from ecg_stream.evaluation.rhythm import evaluate_rhythm
    from ecg_stream.records import expand_record_names

    report = evaluate_rhythm(
        expand_record_names(args.records),
        args.model or default_model(),
        data_dir=args.data_dir,
        lead=args.lead,
        jobs=args.jobs,
    )
    for family in report.families:
        print(f"\n== {family.value}: {', '.join(family.codes)}, whole record, gross sums ==")
        print(report.format_table(family))
    if args.json:
        write_atomically(args.json, report.to_json())
        print(f"\nwrote {args.json}")
    return 0


def _stress(args: argparse.Namespace) -> int:
    from ecg_stream.evaluation.stress import stress_test
    from ecg_stream.records import expand_record_names

    report = stress_test(
        expand_record_names(args.records),
        args.model or default_model(),
        args.noise,
        args.snr,
        data_dir=args.data_dir,
        seed=args.seed,
    )
    print(report.format_table())
    if args.json is not None:
        write_atomically(args.json, report.to_json())
        print(f"wrote {args.json}")
    return 0
