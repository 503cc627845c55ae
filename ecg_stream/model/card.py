"""The model card (markdown + JSON) of a shipped model, assembled from re-runnable outputs.

Every figure comes from files that commands write: ``training.json`` of each training run
(``ecg-stream train``) and ``classification.json`` of each evaluation
(``ecg-stream evaluate --classifier``). The card lists the commands that re-make them.

Each compared run directory follows one layout: ``model.onnx`` (``ecg-stream export``),
``eval_validation/`` (its DS1 validation records) and, for a model evaluated on DS2,
``eval_ds2/``. The shipped model's own file lives in the package.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecg_stream.detector.segment import FEATURE_NAMES
from ecg_stream.errors import ConfigError
from ecg_stream.model.classifier import ModelContract, default_model_path
from ecg_stream.types import BEAT_CLASSES

TARGETS: tuple[tuple[str, str, str, float], ...] = (
    ("V", "se", "V Se", 0.95),
    ("V", "pp", "V +P", 0.95),
    ("S", "se", "S Se", 0.80),
    ("S", "pp", "S +P", 0.60),
    ("N", "se", "N Se", 0.95),
)
"""Issue 3's targets on DS2 (inter-patient, whole record): (class, figure, label, minimum)."""


VALIDATION_EVALUATION = "eval_validation"
DS2_EVALUATION = "eval_ds2"
RUN_MODEL = "model.onnx"


@dataclass(frozen=True, slots=True)
class Variant:
    """Another inter-patient model the card compares with the shipped one.

    Args:
        label: What sets it apart, e.g. ``window only``.
        run_dir: Its training run, laid out as the module docstring says.
    """

    label: str
    run_dir: Path


@dataclass(frozen=True, slots=True)
class CardInputs:
    """Where the card's figures come from.

    Args:
        model_path: The shipped ``.onnx`` file.
        train_dir: Training run of the shipped model, with ``eval_validation/`` and
            ``eval_ds2/`` evaluations of ``model_path``.
        variants: Other inter-patient models (ablations, designs not chosen).
        intra_dir: Training run of the intra-patient model (its test split is scored there).
        notes: Facts about how the runs were made that the files do not hold.
    """

    model_path: Path
    train_dir: Path
    variants: tuple[Variant, ...]
    intra_dir: Path
    notes: tuple[str, ...] = ()


def write_model_card(inputs: CardInputs, out_dir: Path) -> tuple[Path, Path]:
    """Write ``MODEL_CARD.md`` and ``model_card.json`` into ``out_dir``.

    Returns:
        The markdown and JSON paths.

    Raises:
        ConfigError: An input file is missing.
    """
    import onnx

    contract = ModelContract.from_metadata(
        {p.key: p.value for p in onnx.load(inputs.model_path).metadata_props},
        inputs.model_path.name,
    )
    training = _read(inputs.train_dir / "training.json")
    evaluation = _read(inputs.train_dir / DS2_EVALUATION / "classification.json")
    runs = [("shipped", inputs.train_dir, training, inputs.model_path)] + [
        (
            variant.label,
            variant.run_dir,
            _read(variant.run_dir / "training.json"),
            variant.run_dir / RUN_MODEL,
        )
        for variant in inputs.variants
    ]
    compared = [_compared(label, run_dir, run) for label, run_dir, run, _ in runs]
    intra = _read(inputs.intra_dir / "training.json")
    commands = [
        *(
            command
            for _, run_dir, run, model_path in runs
            for command in _run_commands(run_dir, run, model_path)
        ),
        _train_command(inputs.intra_dir, intra),
        "python -m ecg_stream.model.card  # this card, from the files above",
    ]
    card = {
        "model": {
            "name": contract.model_name,
            "file": inputs.model_path.name,
            "size_bytes": inputs.model_path.stat().st_size,
            "contract": contract.to_metadata(),
        },
        "training": _training_json(training),
        "ds2_inter_patient": {
            span: {key: evaluation[span][key] for key in ("title", "gross", "average")}
            for span in ("whole_record", "ec57")
        },
        "targets_ds2_whole_record": _targets(evaluation["whole_record"]["gross"]),
        "compared_models": compared,
        "intra_patient_secondary": {
            "note": "random beat split over DS1+DS2: beats of one patient on both sides; "
            "only to compare with published intra-patient claims",
            "training": _training_json(intra),
            "test": intra["test"],
        },
        "commands": commands,
        "notes": list(inputs.notes),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = out_dir / "model_card.json", out_dir / "MODEL_CARD.md"
    json_path.write_text(json.dumps(card, indent=2) + "\n")
    markdown_path.write_text(_markdown(card, evaluation))
    return markdown_path, json_path


def _compared(label: str, run_dir: Path, training: dict[str, Any]) -> dict[str, Any]:
    """One compared model: its training, validation and (if made) DS2 figures."""
    validation = _read(run_dir / VALIDATION_EVALUATION / "classification.json")
    ds2_path = run_dir / DS2_EVALUATION / "classification.json"
    ds2 = _read(ds2_path) if ds2_path.is_file() else None
    return {
        "label": label,
        "training": _training_json(training),
        "ds1_validation_whole_record_gross": validation["whole_record"]["gross"],
        "ds2_whole_record_gross": None if ds2 is None else ds2["whole_record"]["gross"],
    }


def _run_commands(run_dir: Path, training: dict[str, Any], model_path: Path) -> list[str]:
    """The commands that re-make a compared run: train, export, evaluate (DS2 if made)."""
    validation_dir, ds2_dir = run_dir / VALIDATION_EVALUATION, run_dir / DS2_EVALUATION
    shipped = model_path.resolve() == default_model_path().resolve()
    model = "" if shipped else f" --model {model_path}"
    commands = [
        _train_command(run_dir, training),
        f"ecg-stream export {run_dir} {model_path}",
        f"ecg-stream evaluate --classifier {' '.join(training['validation_records'])}{model}"
        f" --out-dir {validation_dir}",
    ]
    if (ds2_dir / "classification.json").is_file():
        commands.append(
            f"ecg-stream evaluate --classifier DS2{model} --out-dir {ds2_dir}"
            f" --training-log {run_dir / 'training_log.csv'}"
        )
    return commands


def _markdown(card: dict[str, Any], evaluation: dict[str, Any]) -> str:
    model, training, intra = card["model"], card["training"], card["intra_patient_secondary"]
    contract = model["contract"]
    lines = [
        f"# Model card: {model['name']}",
        "",
        "Stacked-LSTM beat classifier of ecg-stream: input one 250-sample beat window "
        f"({contract['window_before_samples']} before + {contract['window_after_samples']} "
        f"from the R peak at {contract['fs_hz']} Hz, band {contract['band_hz']} Hz, "
        f"{contract['normalisation']}) and causal per-beat features ({contract['rr_features']}); "
        "output the probabilities of the AAMI classes "
        f"{contract['class_names']}. LSTM(128) -> LSTM(64) -> LSTM(32), each followed by "
        "dropout and batch normalisation, the features joined, Dense(64) -> Dense(32) -> "
        f"Dense(5) softmax. ONNX opset 17, {model['size_bytes'] / 1e6:.2f} MB, "
        f"ecg-stream {contract['project_version']}.",
        "",
        "Every figure below comes from the commands at the end (PROTOCOL.md: 150 ms "
        "one-to-one matching, paced records 102 104 107 217 excluded, e and j counted as N).",
        "",
        "## Training (inter-patient, DS1 only)",
        "",
        f"- Training records: {contract['training_records']}",
        f"- Validation records (whole records, early stopping and learning-rate reduction): "
        f"{contract['validation_records']}. DS2 was never used for training, early stopping "
        "or checkpoints; the notes tell where it informed a design.",
        f"- Beats after class subsampling: {_counts(training['train_counts'])}; "
        f"class weights {_weights(training['class_weights'])}.",
        f"- {training['epochs_run']} epochs (best {training['best_epoch']}), "
        f"{training['train_seconds'] / 60:.1f} min of training on 2 shared CPU cores "
        f"(settings: {training['settings']}).",
        "",
    ]
    for span in ("whole_record", "ec57"):
        lines += _class_table(f"DS2 (inter-patient), {evaluation[span]['title']}", evaluation[span])
    lines += _record_table(evaluation["whole_record"]["records"])
    lines += [
        "## Targets (DS2, whole record)",
        "",
        "| target | minimum | got | met |",
        "|---|---|---|---|",
    ]
    for target in card["targets_ds2_whole_record"]:
        got = "n/a" if target["got"] is None else f"{100 * target['got']:.1f} %"
        lines.append(
            f"| {target['label']} | {100 * target['minimum']:.0f} % | {got} | "
            f"{'yes' if target['met'] else 'no'} |"
        )
    lines += [
        "",
        "## Compared models: the choice on DS1 validation, and ablations",
        "",
        "The same architecture and DS1 split, with other second inputs. DS1 validation "
        "figures are what a choice may rest on; DS2 figures are test figures (n/a: never "
        "evaluated on DS2). The notes say how the shipped model was chosen.",
        "",
        "| model | second input | data | accuracy % | macro F1 | N Se % | S Se % | S +P % "
        "| V Se % | V +P % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in card["compared_models"]:
        settings = entry["training"]["settings"]
        inputs = ", ".join(settings["features"]) or "none (window only)"
        name = f"{entry['label']} ({entry['training']['epochs_run']} epochs)"
        for data, key in (("DS1 validation", "ds1_validation"), ("DS2", "ds2")):
            lines.append(_compared_row(name, inputs, data, entry[f"{key}_whole_record_gross"]))
    lines += [
        "",
        "## Intra-patient figure (secondary, not comparable with the above)",
        "",
        f"{intra['note']}. Test beats: {intra['test']['beats']}, accuracy "
        f"**{100 * intra['test']['accuracy']:.2f} %** (settings: "
        f"{intra['training']['settings']}; {intra['training']['epochs_run']} epochs, "
        f"{intra['training']['train_seconds'] / 60:.1f} min).",
        "",
        "## Notes",
        "",
        *(f"- {note}" for note in card["notes"]),
        "",
        "## Commands that re-make every figure",
        "",
        "With `ECG_STREAM_DATA` pointing at the MIT-BIH files, from the repository root:",
        "",
        "```sh",
        *card["commands"],
        "```",
        "",
    ]
    return "\n".join(lines)


def _class_table(title: str, span: dict[str, Any]) -> list[str]:
    gross, average = span["gross"], span["average"]
    lines = [
        f"## {title}",
        "",
        "| class | reference beats | Se % | +P % |",
        "|---|---|---|---|",
    ]
    for beat_class in BEAT_CLASSES:
        figures = gross["classes"][beat_class.value]
        lines.append(
            f"| {beat_class.value} | {figures['reference_beats']} | {_pct(figures['se'])} | "
            f"{_pct(figures['pp'])} |"
        )
    lines += [
        "",
        f"Accuracy {_pct(gross['accuracy'])} %, macro F1 {gross['macro_f1']:.3f} "
        f"({gross['matched_beats']} matched beats, {gross['missed_reference_beats']} reference "
        f"beats missed by the detector, {gross['unmatched_detections']} unmatched detections).",
        "",
        "| EC57 | Se % | +P % | FPR % |",
        "|---|---|---|---|",
    ]
    for name, key in (("VEB", "veb"), ("SVEB", "sveb")):
        lines.append(
            f"| {name} gross | {_pct(gross[key]['se'])} | {_pct(gross[key]['pp'])} | "
            f"{_pct(gross[key]['fpr'])} |"
        )
        lines.append(
            f"| {name} average | {_pct(average[key]['se'])} | {_pct(average[key]['pp'])} | "
            f"{_pct(average[key]['fpr'])} |"
        )
    confusion = gross["confusion"]
    names = [c.value for c in BEAT_CLASSES]
    lines += [
        "",
        "Confusion matrix (reference rows, predicted columns):",
        "",
        "| | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
        *(
            f"| {n} | " + " | ".join(map(str, row)) + " |"
            for n, row in zip(names, confusion, strict=True)
        ),
        "",
    ]
    return lines


def _record_table(records: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## DS2 per record (whole record)",
        "",
        "| record | matched beats | accuracy % | V beats | VEB Se % | VEB +P % | S beats "
        "| SVEB Se % | SVEB +P % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for record in records:
        classes = record["classes"]
        lines.append(
            f"| {record['record']} | {record['matched_beats']} | {_pct(record['accuracy'])} | "
            f"{classes['V']['reference_beats']} | {_pct(record['veb']['se'])} | "
            f"{_pct(record['veb']['pp'])} | {classes['S']['reference_beats']} | "
            f"{_pct(record['sveb']['se'])} | {_pct(record['sveb']['pp'])} |"
        )
    return [*lines, ""]


def _compared_row(name: str, inputs: str, data: str, gross: dict[str, Any] | None) -> str:
    if gross is None:
        return f"| {name} | {inputs} | {data} | " + " | ".join(["n/a"] * 7) + " |"
    classes = gross["classes"]
    cells = [
        name,
        inputs,
        data,
        _pct(gross["accuracy"]),
        f"{gross['macro_f1']:.3f}",
        _pct(classes["N"]["se"]),
        _pct(classes["S"]["se"]),
        _pct(classes["S"]["pp"]),
        _pct(classes["V"]["se"]),
        _pct(classes["V"]["pp"]),
    ]
    return "| " + " | ".join(cells) + " |"


def _targets(gross: dict[str, Any]) -> list[dict[str, Any]]:
    targets = []
    for beat_class, figure, label, minimum in TARGETS:
        got = gross["classes"][beat_class][figure]
        targets.append(
            {
                "label": label,
                "minimum": minimum,
                "got": got,
                "met": got is not None and got >= minimum,
            }
        )
    return targets


def _training_json(training: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "settings",
        "train_records",
        "validation_records",
        "train_counts",
        "validation_counts",
        "class_weights",
        "epochs_run",
        "best_epoch",
        "train_seconds",
        "best_validation_loss",
        "dataset_cache_key",
    )
    return {key: training[key] for key in keys}


def _train_command(run_dir: Path, training: dict[str, Any]) -> str:
    settings = training["settings"]
    features = tuple(settings["features"])
    inputs = {(): " --no-rr", FEATURE_NAMES: ""}.get(features, f" --features {','.join(features)}")
    return (
        f"ecg-stream train {run_dir} --protocol {settings['protocol']}"
        + inputs
        + f" --max-per-class {settings['max_per_class']} --epochs {settings['epochs']}"
        f" --patience {settings['patience']} --seed {settings['seed']}"
    )


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        msg = f"{path} does not exist; run the command that writes it (see this module's docstring)"
        raise ConfigError(msg)
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items())


def _weights(weights: dict[str, float]) -> str:
    return ", ".join(f"{name} {w:.2f}" for name, w in weights.items())


DEFAULT_VARIANTS = (
    Variant("RR features only", Path("runs/inter_rr")),
    Variant("window only", Path("runs/inter_no_rr")),
)


def _variant(text: str) -> Variant:
    label, separator, run_dir = text.partition("=")
    if not separator or not label or not run_dir:
        msg = f"--variant {text!r}: give LABEL=RUN_DIR, e.g. 'window only=runs/inter_no_rr'"
        raise argparse.ArgumentTypeError(msg)
    return Variant(label, Path(run_dir))


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m ecg_stream.model.card``: write the shipped model's card from run outputs."""
    parser = argparse.ArgumentParser(prog="python -m ecg_stream.model.card", description=__doc__)
    runs = Path("runs")
    parser.add_argument(
        "--model", type=Path, default=Path("ecg_stream/model/assets/beat_lstm.onnx")
    )
    parser.add_argument("--train-dir", type=Path, default=runs / "inter_dominant")
    parser.add_argument(
        "--variant",
        type=_variant,
        action="append",
        help="LABEL=RUN_DIR of another model to compare (repeatable; default: the "
        "RR-only and window-only runs)",
    )
    parser.add_argument("--intra-dir", type=Path, default=runs / "intra_dominant")
    parser.add_argument("--out-dir", type=Path, default=Path("ecg_stream/model/assets"))
    parser.add_argument("--note", action="append", default=[], help="a fact for the card")
    args = parser.parse_args(argv)
    inputs = CardInputs(
        model_path=args.model,
        train_dir=args.train_dir,
        variants=tuple(args.variant or DEFAULT_VARIANTS),
        intra_dir=args.intra_dir,
        notes=tuple(args.note),
    )
    for path in write_model_card(inputs, args.out_dir):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
