"""``train``, ``dataset``, ``export`` and ``card``: the offline model work (extra ``train``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecg_stream.cli.common import add_data_dir, check_model_argument, default_model
from ecg_stream.detector.segment import FEATURE_NAMES
from ecg_stream.errors import ConfigError
from ecg_stream.training.run import Architecture

if TYPE_CHECKING:
    from ecg_stream.cli.common import Commands
    from ecg_stream.training.card import CvRun

_LOG_FORMAT = "%(asctime)s %(name)s %(message)s"


def add_train(commands: Commands) -> None:
    """Add ``train``: a single run or a patient-grouped cross-validation."""
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
    train.add_argument(
        "--arch", choices=[arch.value for arch in Architecture], help="network (default: lean)"
    )
    train.add_argument(
        "--whole-pool",
        action="store_true",
        help="with --cv: also train the recipe once on the whole pool (OUT_DIR/whole-pool); "
        "export then ships that one network instead of the fold ensemble",
    )
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
    add_data_dir(train, "the WFDB files, and the noise records bw/em/ma to augment")
    train.set_defaults(handler=_train)


def add_dataset(commands: Commands) -> None:
    """Add ``dataset``: records' labelled beats into one ``.npz``."""
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
    add_data_dir(dataset)
    dataset.set_defaults(handler=_dataset)


def add_export(commands: Commands) -> None:
    """Add ``export``: a training run to ONNX."""
    export = commands.add_parser("export", help="export a training run to ONNX, parity-checked")
    export.add_argument("run_dir", type=Path, help="directory of an `ecg-stream train` run")
    export.add_argument("out_path", type=Path, help="the .onnx file to write")
    export.add_argument("--name", default="beat_lstm", help="model name in the contract")
    add_data_dir(export)
    export.set_defaults(handler=_export)


def add_card(commands: Commands) -> None:
    """Add ``card``: the model card from the runs' outputs."""
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


def _feature_names(text: str) -> tuple[str, ...]:
    """``--features``: comma-separated names (checked by ``TrainSettings``)."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _compared_run(text: str) -> CvRun:
    """``--compare LABEL=RUN_DIR``."""
    from ecg_stream.training.card import CvRun

    label, separator, path = text.partition("=")
    if not separator or not label or not path:
        msg = f"--compare {text!r}: give LABEL=RUN_DIR, e.g. 'no template=runs/lean_notemplate'"
        raise argparse.ArgumentTypeError(msg)
    return CvRun(label, Path(path))


def _train(args: argparse.Namespace) -> int:
    import logging

    from ecg_stream.evaluation.classification import format_score_table
    from ecg_stream.records import expand_record_names
    from ecg_stream.training.dataset import load_dataset, select_records
    from ecg_stream.training.run import Protocol, TrainSettings
    from ecg_stream.training.train import cross_validate, train_model

    logging.basicConfig(level=logging.INFO, format=_LOG_FORMAT)
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
        dataset = select_records(load_dataset(args.dataset), given.get("records"), args.dataset)
        given["records"] = dataset.records_with_beats()
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
            whole_pool=args.whole_pool,
            threads=args.threads,
        )
        print(f"== out-of-fold, {args.cv} folds of whole records ({result.train_seconds:.0f} s) ==")
        print(format_score_table(result.score))
        print("== the same after the rhythm stage's AF gate (S in AF read as N) ==")
        print(format_score_table(result.score_af_gated))
        print(f"wrote {result.result_path}")
        return 0
    if dataset is not None:
        msg = "--dataset trains with --cv only; a single run reads the records"
        raise ConfigError(msg)
    run = train_model(args.out_dir, settings, data_dir=args.data_dir, threads=args.threads)
    print(f"trained {run.epochs_run} epochs: best {run.best_model_path}")
    return 0


def _dataset(args: argparse.Namespace) -> int:
    import logging

    from ecg_stream.config import ChainConfig
    from ecg_stream.records import expand_record_names
    from ecg_stream.training.dataset import build_dataset, save_dataset, subsample

    cap = args.max_per_record_class
    if cap is not None and cap < 1:  # refused before the records are cut, which takes minutes
        msg = f"--max-per-record-class {cap} must be >= 1"
        raise ConfigError(msg)
    logging.basicConfig(level=logging.INFO, format=_LOG_FORMAT)
    dataset = build_dataset(
        expand_record_names(args.records), ChainConfig(), data_dir=args.data_dir
    )
    if cap is not None:
        dataset = subsample(dataset, cap, args.seed)
    save_dataset(dataset, args.out_path)
    counts = " ".join(f"{c.value}={n}" for c, n in dataset.class_counts().items())
    print(f"wrote {args.out_path}: {len(dataset)} beats ({counts})")
    return 0


def _export(args: argparse.Namespace) -> int:
    import logging

    from ecg_stream.training.export import export_model

    logging.basicConfig(level=logging.INFO, format=_LOG_FORMAT)
    result = export_model(args.run_dir, args.out_path, model_name=args.name, data_dir=args.data_dir)
    print(
        f"wrote {result.path} ({result.size_bytes / 1e6:.2f} MB): parity on "
        f"{result.parity_windows} real windows, max |difference| {result.max_abs_difference:.1e}"
    )
    return 0


def _card(args: argparse.Namespace) -> int:
    from ecg_stream.training.card import CardInputs, write_model_card

    check_model_argument(args.model)
    model = args.model or default_model()
    inputs = CardInputs(
        model,
        args.run,
        tuple(args.compare),
        args.ds2_evaluations,
        args.device,
        args.training_data,
        args.intra,
    )
    for path in write_model_card(inputs, args.out_dir or default_model().parent):
        print(f"wrote {path}")
    return 0
