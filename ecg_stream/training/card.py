"""The model card (markdown + JSON) of the shipped model, assembled from re-runnable outputs.

Every figure comes from files that commands write: ``cv.json`` and ``calibration.json`` of
cross-validation runs (``ecg-stream train --cv``, ``ecg-stream export``) and
``classification.json`` of the one DS2 evaluation (``ecg-stream evaluate --classifier``, into
``<shipped run>/eval_ds2/``). The card lists the commands that re-make them. The JSON form is
:class:`ModelCard`; the command line is ``ecg-stream card``:

    ecg-stream card --run runs/lean --compare "no template=runs/lean_notemplate"
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np

from ecg_stream.classify.classifier import ModelContract, default_model_path, keras_path_of
from ecg_stream.documents import make_output_dir, read_json, write_atomically, write_json
from ecg_stream.errors import ConfigError
from ecg_stream.evaluation.figures import (
    CLASSIFICATION_FILE,
    ClassificationDocument,
    Ec57Figures,
    ScoreFigures,
    SpanFigures,
)
from ecg_stream.records import DS1
from ecg_stream.training.calibration import MAX_F_CALLS_PER_F_BEAT, score_of
from ecg_stream.training.run import (
    Architecture,
    CalibrationSummary,
    CvSummary,
    IntraTest,
    RunDir,
    TrainSettings,
)
from ecg_stream.types import BEAT_CLASSES, BeatClass

TARGETS: tuple[tuple[str, str, str, float], ...] = (
    ("V", "se", "V Se", 0.95),
    ("V", "pp", "V +P", 0.92),
    ("S", "se", "S Se", 0.80),
    ("S", "pp", "S +P", 0.60),
    ("N", "se", "N Se", 0.97),
)
"""Issue 21's targets on DS2 (inter-patient, whole record): (class, figure, label, minimum)."""
MAX_N_CALLED_Q = 0.005
"""Issue 21: at most this share of the N beats may be called Q (the quality gate included)."""
CARD_MARKDOWN = "MODEL_CARD.md"
CARD_JSON = "model_card.json"


class ModelFacts(msgspec.Struct):
    """The shipped file: its name, size and contract (``metadata_props`` but the version)."""

    name: str
    path: str
    size_bytes: int
    contract: dict[str, str]


class CvEntry(msgspec.Struct, omit_defaults=True):
    """A cross-validation run on the card: settings, cost, pooled out-of-fold figures.

    Args:
        label: What sets the run apart (``shipped`` for the shipped model's run).
        run_dir: Its run directory.
        model: ``stacked LSTM`` or the tree baseline.
        settings: Its training settings.
        k: Number of folds.
        folds_scored: Folds with a model.
        train_seconds: Wall time of every fold's epochs, in s.
        out_of_fold: Pooled out-of-fold figures.
        out_of_fold_af_gated: The same after the rhythm stage's AF gate (None: not measured).
        whole_pool: Whether the run trained its recipe once more on the whole pool (the one
            network ``export`` ships).
        records: Per record, its out-of-fold figures (the shipped run only).
    """

    label: str
    run_dir: str
    model: str
    settings: TrainSettings
    k: int
    folds_scored: list[int]
    train_seconds: float
    out_of_fold: ScoreFigures
    out_of_fold_af_gated: ScoreFigures | None = None
    whole_pool: bool = False
    records: dict[str, ScoreFigures] | None = None

    @classmethod
    def of(cls, label: str, run: RunDir, cv: CvSummary) -> CvEntry:
        """The entry of a run whose ``cv.json`` is ``cv``."""
        return cls(
            label=label,
            run_dir=str(run),
            model=cv.model,
            settings=cv.settings,
            k=cv.k,
            folds_scored=cv.scored_folds,
            train_seconds=cv.train_seconds,
            out_of_fold=cv.out_of_fold,
            out_of_fold_af_gated=cv.out_of_fold_af_gated,
            whole_pool=run.whole_pool.final_model.is_file(),
        )


class Ds2Figures(msgspec.Struct):
    """The one DS2 evaluation of the shipped model, both spans (``classification.json``)."""

    whole_record: SpanFigures
    ec57: SpanFigures


class IntraFigures(msgspec.Struct):
    """The secondary intra-patient run: settings, cost and held-out accuracy."""

    settings: TrainSettings
    epochs_run: int
    train_seconds: float
    test: IntraTest | None


class Target(msgspec.Struct):
    """One of the targets on DS2: the minimum, what the model got, whether it is met."""

    label: str
    minimum: float
    got: float | None
    met: bool


class ModelCard(msgspec.Struct):
    """``model_card.json``: every figure of the card, and the commands that re-make them.

    Args:
        model: The shipped file.
        training_device: Where the fold models were trained, in words.
        training_data: What they were trained from, in words.
        cross_validation: The shipped model's run, with per-record figures.
        calibration: The calibration variants and the one shipped.
        compared: The other runs (ablations, the tree baseline).
        ds2: The DS2 evaluation.
        ds2_evaluations: How many times any model was evaluated on DS2.
        intra_patient_secondary: The intra-patient figure, or None.
        targets_ds2_whole_record: The targets and whether the model meets them.
        commands: Shell lines that re-make every figure.
    """

    model: ModelFacts
    training_device: str
    training_data: str
    cross_validation: CvEntry
    calibration: CalibrationSummary
    compared: list[CvEntry]
    ds2: Ds2Figures
    ds2_evaluations: int
    intra_patient_secondary: IntraFigures | None
    targets_ds2_whole_record: list[Target]
    commands: list[str]


@dataclass(frozen=True, slots=True)
class CvRun:
    """A cross-validation run the card compares with the shipped one.

    Args:
        label: What sets it apart, e.g. ``no template channel``.
        run_dir: Its run directory (``cv.json``, ``oof.npz``).
    """

    label: str
    run_dir: Path


@dataclass(frozen=True, slots=True)
class CardInputs:
    """Where the card's figures come from.

    Args:
        model_path: The shipped ``.onnx`` file.
        run_dir: Cross-validation run of the shipped model, with ``calibration.json`` and
            ``eval_ds2/``.
        compared: Other cross-validation runs (ablations, the tree baseline).
        ds2_evaluations: How many times any model of this issue was evaluated on DS2.
        training_device: Where the fold models were trained, in words.
        training_data: What the fold models were trained from, in words.
        intra_dir: A single intra-patient run (``training.json`` with its test figures), the
            secondary figure; None to leave it out.
    """

    model_path: Path
    run_dir: Path
    compared: tuple[CvRun, ...]
    ds2_evaluations: int
    training_device: str
    training_data: str = "every beat of the pool"
    intra_dir: Path | None = None


def write_model_card(inputs: CardInputs, out_dir: Path) -> tuple[Path, Path]:
    """Write ``MODEL_CARD.md`` and ``model_card.json`` into ``out_dir``; return both paths.

    Raises:
        ConfigError: A file the card needs does not exist or is unreadable.
    """
    import onnx

    if not inputs.model_path.is_file():
        msg = f"{inputs.model_path} does not exist; export it first (ecg-stream export)"
        raise ConfigError(msg)
    model = onnx.load(str(inputs.model_path))
    contract = ModelContract.from_metadata(
        {prop.key: prop.value for prop in model.metadata_props}, inputs.model_path.name
    )
    run = RunDir(inputs.run_dir)
    shipped_cv = run.read_cv()
    shipped = msgspec.structs.replace(
        CvEntry.of("shipped", run, shipped_cv), records=shipped_cv.records
    )
    evaluation = read_json(
        run.ds2_evaluation / CLASSIFICATION_FILE,
        ClassificationDocument,
        made_by=f"ecg-stream evaluate --classifier DS2 --out-dir {run.ds2_evaluation}",
    )
    card = ModelCard(
        model=ModelFacts(
            name=contract.model_name,
            path=inputs.model_path.name,
            size_bytes=inputs.model_path.stat().st_size,
            contract={
                key: value
                for key, value in contract.to_metadata().items()
                if key != "contract_version"
            },
        ),
        training_device=inputs.training_device,
        training_data=inputs.training_data,
        cross_validation=shipped,
        calibration=run.read_calibration(),
        compared=[
            CvEntry.of(entry.label, RunDir(entry.run_dir), RunDir(entry.run_dir).read_cv())
            for entry in inputs.compared
        ],
        ds2=Ds2Figures(whole_record=evaluation.whole_record, ec57=evaluation.ec57),
        ds2_evaluations=inputs.ds2_evaluations,
        intra_patient_secondary=None if inputs.intra_dir is None else _intra(inputs.intra_dir),
        targets_ds2_whole_record=_targets(evaluation.whole_record.gross),
        commands=_commands(inputs),
    )
    make_output_dir(out_dir)
    markdown, card_json = out_dir / CARD_MARKDOWN, out_dir / CARD_JSON
    write_json(card, card_json)
    write_atomically(markdown, _markdown(card))
    return markdown, card_json


def _intra(run_dir: Path) -> IntraFigures:
    training = RunDir(run_dir).read_summary()
    return IntraFigures(
        settings=training.settings,
        epochs_run=training.epochs_run,
        train_seconds=training.train_seconds,
        test=training.test,
    )


def _restricted(
    run_dir: Path, *, folds: Sequence[int] | None = None, records: Sequence[str] | None = None
) -> ScoreFigures:
    """Pooled out-of-fold figures of a run restricted to some of its folds or records."""
    with np.load(RunDir(run_dir).oof_file) as oof:
        kept = oof["folds"] >= 0
        if folds is not None:
            kept &= np.isin(oof["folds"], list(folds))
        if records is not None:
            kept &= np.isin(oof["records"], list(records))
        return ScoreFigures.of(score_of(oof["labels"][kept], oof["probabilities"][kept]))


def _markdown(card: ModelCard) -> str:
    model, cv = card.model, card.cross_validation
    contract, settings = model.contract, cv.settings
    calibration = card.calibration
    chosen = calibration.variants[calibration.chosen]
    lines = [
        f"# Model card: {model.name}",
        "",
        "Beat classifier of ecg-stream: "
        + (
            f"one network, the recipe chosen by patient-grouped {cv.k}-fold cross-validation "
            "trained once more on the whole pool, then calibrated. It is"
            if cv.whole_pool
            else f"the ensemble of the {cv.k} fold models of a patient-grouped {cv.k}-fold "
            "cross-validation, their probabilities averaged inside one ONNX graph, then "
            "calibrated. Each member is"
        )
        + f" the `{settings.arch.value}` stacked LSTM ({ARCHITECTURE_TEXT[settings.arch]}). "
        "Inputs: the "
        f"window channels `{contract['window_channels']}` "
        f"({contract['window_before_samples']} samples before and "
        f"{contract['window_after_samples']} from the R peak at {contract['fs_hz']} Hz, band "
        f"{contract['band_hz']} Hz, {contract['normalisation']}; the template is the median of "
        "the stream's recent non-premature beats) and the causal per-beat features "
        f"`{contract['rr_features']}`. Output: probabilities of the AAMI classes "
        f"{contract['class_names']}. ONNX opset 17, {model.size_bytes / 1e6:.2f} MB, "
        f"ecg-stream {contract['project_version']}.",
        "",
        "Figures follow the project's evaluation protocol (docs/protocol.md): 150 ms one-to-one "
        "matching, paced records 102 104 107 217 excluded, e and j counted as N. "
        f"**DS2 was evaluated {card.ds2_evaluations} time(s) in this model's development**, "
        "each time the model shipped here, after every choice was made on cross-validation.",
        "",
        "## Training pool and cross-validation",
        "",
        f"- Pool: {len(settings.records)} patients, DS1 (22 MIT-BIH records) and 39 records "
        "of the MIT-BIH Supraventricular Arrhythmia Database (resampled from 128 to 360 Hz). "
        "The other 39 SVDB records are an external test nobody tunes on; DS2 is test-only.",
        f"- {cv.k} folds of whole records, balanced so that each holds its share of S, V "
        "and N beats (`folds.json` in the run directory). Each fold model trained "
        f"{settings.epochs} epochs on a cosine learning-rate schedule, without early "
        "stopping, so held-out records steer nothing; every choice below rests on the pooled "
        "out-of-fold predictions.",
        f"- Per epoch, at most {settings.max_per_record_class} beats per record and class "
        "(patient-balanced sampling, drawn anew each epoch), square-root balanced class "
        "weights; augmentation "
        + (
            "on: real noise (NSTDB bw, em, ma) at 6-24 dB SNR on half the beats, R-peak "
            "jitter of +-3 samples, time stretch of +-8 %."
            if settings.augment
            else "off."
        ),
        f"- Training cost: {cv.train_seconds / 60:.1f} min for the {cv.k} folds "
        f"({card.training_device}), from {card.training_data}; the out-of-fold "
        "figures are on every matched beat of the held-out records.",
        "",
        "### Pooled out-of-fold figures (matched beats of the pool, whole records)",
        "",
        "| model | N Se/+P % | S Se/+P % | V Se/+P % | F Se/+P % | beats called F (F beats) "
        "| accuracy % | macro F1 | training min |",
        "|---|---|---|---|---|---|---|---|---|",
        _cv_row("**shipped** (before calibration)", cv, cv.out_of_fold),
        *(
            [_cv_row("shipped, after the rhythm stage's AF gate", cv, cv.out_of_fold_af_gated)]
            if cv.out_of_fold_af_gated is not None
            else []
        ),
        *(_cv_row(entry.label, entry, entry.out_of_fold) for entry in card.compared),
        "",
        "The AF gate is the rhythm stage's (`RhythmSettings.af_gate`, on by default): a beat "
        "called S while atrial fibrillation is open is published as N. Its row replays the "
        "stage's AF detector on each held-out record's beats with their out-of-fold labels.",
        "",
    ]
    full = [
        entry
        for entry in [cv, *card.compared]
        if len(entry.folds_scored) == entry.k
        and len(entry.settings.records) == len(settings.records)
    ]
    for entry in card.compared:
        folds, records = entry.folds_scored, entry.settings.records
        if len(folds) < entry.k:
            kept_folds, kept_records = folds, None
            title = (
                f"{entry.label} finished folds {', '.join(str(f + 1) for f in folds)} of "
                f"{entry.k} only; every complete run on those folds' records:"
            )
        elif len(records) < len(settings.records):
            kept_folds, kept_records = None, records
            title = (
                f"{entry.label} holds {len(records)} of the pool's records; out-of-fold "
                "figures on those records alone (each model tested on records it never saw):"
            )
        else:
            continue
        lines += [
            title,
            "",
            "| model | N Se/+P % | S Se/+P % | V Se/+P % | F Se/+P % | beats called F (F beats) "
            "| accuracy % | macro F1 | training min |",
            "|---|---|---|---|---|---|---|---|---|",
            *(
                _cv_row(
                    "shipped" if other is cv else other.label,
                    other,
                    _restricted(Path(other.run_dir), folds=kept_folds, records=kept_records),
                )
                for other in full
            ),
            _cv_row(entry.label, entry, entry.out_of_fold),
            "",
        ]
    lines += [
        "### Calibration (chosen on the same out-of-fold predictions)",
        "",
        "Calibrated probabilities are `softmax((log p + bias) / T)`. The decision bias is "
        "scored cross-fitted (fitted on the other folds), the others in one fit; ECE is the "
        "expected calibration error over 10 confidence bins.",
        "",
        "| variant | T | bias S, V, F, Q | macro F1 | N Se % | S Se/+P % | V Se/+P % | NLL "
        "| ECE % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, figures in calibration.variants.items():
        bias = ", ".join(f"{figures[f'bias_{c}']:+.2f}" for c in ("S", "V", "F", "Q"))
        marker = " (**shipped**)" if name == calibration.chosen else ""
        lines.append(
            f"| {name}{marker} | {figures['temperature']:.2f} | {bias} | "
            f"{figures['macro_f1']:.3f} | {_pct(figures['se_N'])} | "
            f"{_pct(figures['se_S'])}/{_pct(figures['pp_S'])} | "
            f"{_pct(figures['se_V'])}/{_pct(figures['pp_V'])} | {figures['nll']:.3f} | "
            f"{_pct(figures['ece'])} |"
        )
    lines += [
        "",
        f"Shipped: `{calibration.chosen}` (the best out-of-fold macro F1, "
        f"{chosen['macro_f1']:.3f}, of the variants that call at most "
        f"{MAX_F_CALLS_PER_F_BEAT:g} beats F per F beat).",
        "",
    ]
    for span in (card.ds2.whole_record, card.ds2.ec57):
        lines += _class_table(f"DS2 (inter-patient), {span.title}", span)
    lines += _record_table(card.ds2.whole_record.records)
    gross = card.ds2.whole_record.gross
    f_calls = int(np.array(gross.confusion)[:, BeatClass.F.index].sum())
    f_beats = gross.classes["F"].reference_beats
    n_beats = gross.classes["N"].reference_beats
    n_called_q = int(np.array(gross.confusion)[BeatClass.N.index, BeatClass.Q.index])
    lines += [
        "## Targets (DS2, whole record)",
        "",
        "| target | minimum | got | met |",
        "|---|---|---|---|",
    ]
    for target in card.targets_ds2_whole_record:
        got = "n/a" if target.got is None else f"{100 * target.got:.1f} %"
        lines.append(
            f"| {target.label} | {100 * target.minimum:.0f} % | {got} | "
            f"{'yes' if target.met else 'no'} |"
        )
    lines += [
        f"| beats called F | <= {MAX_F_CALLS_PER_F_BEAT:g} x {f_beats} F beats | {f_calls} | "
        f"{'yes' if f_calls <= MAX_F_CALLS_PER_F_BEAT * f_beats else 'no'} |",
        f"| N beats called Q | <= {100 * MAX_N_CALLED_Q:g} % | "
        f"{100 * n_called_q / max(n_beats, 1):.2f} % | "
        f"{'yes' if n_called_q <= MAX_N_CALLED_Q * n_beats else 'no'} |",
        "",
        *_intra_lines(card.intra_patient_secondary),
        "## Commands that re-make every figure",
        "",
        "From the repository root, with `D` a directory holding the MIT-BIH (`mitdb/`), SVDB "
        "(`svdb/`) and NSTDB noise (`nstdb-noise/`) records:",
        "",
        "```sh",
        *card.commands,
        "```",
        "",
    ]
    return "\n".join(lines)


def _intra_lines(intra: IntraFigures | None) -> list[str]:
    if intra is None or intra.test is None:
        return []
    settings = intra.settings
    return [
        "## Intra-patient figure (secondary, not comparable with the above)",
        "",
        f"Random beat split of DS1 + DS2 (beats of one patient on both sides: only to compare "
        f"with published claims that use it). One `{settings.arch.value}` model with the shipped "
        f"inputs, early stopping on a random 10 % of beats, {intra.epochs_run} epochs: "
        f"accuracy **{100 * intra.test.accuracy:.2f} %** on {intra.test.beats} "
        "test beats.",
        "",
    ]


def _cv_row(label: str, entry: CvEntry, figures: ScoreFigures) -> str:
    classes = figures.classes
    f_calls = int(np.array(figures.confusion)[:, BeatClass.F.index].sum())
    cells = [
        label,
        *(f"{_pct(classes[c].se)}/{_pct(classes[c].pp)}" for c in ("N", "S", "V", "F")),
        f"{f_calls} ({classes['F'].reference_beats})",
        _pct(figures.accuracy),
        f"{figures.macro_f1:.3f}",
        f"{entry.train_seconds / 60:.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


def _relative(path: Path) -> Path:
    """``path`` relative to the working directory when inside it: no machine paths in a card."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return Path(path.name)


def _commands(inputs: CardInputs) -> list[str]:
    data = "--data-dir $D/mitdb --data-dir $D/svdb"
    run = _relative(inputs.run_dir)
    shipped = inputs.model_path.resolve() == default_model_path().resolve()
    model = "" if shipped else f" --model {_relative(inputs.model_path)}"
    commands = [
        f"ecg-stream dataset runs/pool.npz pool {data}",
        f"ecg-stream dataset runs/pool-cap600.npz pool {data} --max-per-record-class 600",
        "# per run: fix the folds on every beat of the pool (scores nothing yet), train the",
        "# folds on the capped file (on a GPU, KERAS_BACKEND=jax; the capped file and",
        "# folds.json travel), score them on every beat",
    ]
    for run_dir in (inputs.run_dir, *(entry.run_dir for entry in inputs.compared)):
        cv = RunDir(run_dir).read_cv()
        flags = f"--cv {cv.k} --data-dir $D/nstdb-noise{_flags(cv)}"
        name = _relative(run_dir)
        if cv.is_baseline:
            commands.append(f"ecg-stream train {name} {flags} --dataset runs/pool.npz")
            continue
        commands += [
            f"ecg-stream train {name} {flags} --dataset runs/pool.npz --score-only",
            f"ecg-stream train {name} {flags} --dataset runs/pool-cap600.npz",
            f"ecg-stream train {name} {flags} --dataset runs/pool.npz"
            + (" --score-only" if len(cv.scored_folds) < cv.k else ""),
        ]
        if RunDir(run_dir).whole_pool.final_model.is_file():
            commands.insert(
                len(commands) - 1,
                f"ecg-stream train {name} {flags} --dataset runs/pool-cap600.npz --whole-pool",
            )
    commands += [
        *([] if inputs.intra_dir is None else [_intra_command(inputs.intra_dir)]),
        f"ecg-stream export {run} {_relative(inputs.model_path)} --data-dir $D/mitdb",
        f"ecg-stream evaluate --classifier DS2{model} --data-dir $D/mitdb "
        f"--out-dir {_relative(RunDir(inputs.run_dir).ds2_evaluation)}",
        "ecg-stream card --run "
        + str(run)
        + "".join(f' --compare "{e.label}={_relative(e.run_dir)}"' for e in inputs.compared)
        + f' --device "{inputs.training_device}" --training-data "{inputs.training_data}"'
        + ("" if inputs.intra_dir is None else f" --intra {_relative(inputs.intra_dir)}")
        + ("" if inputs.ds2_evaluations == 1 else f" --ds2-evaluations {inputs.ds2_evaluations}"),
        "python benchmarks/classifier_cost.py --dataset runs/pool.npz --models "
        f"{_relative(inputs.model_path)} --keras {_relative(keras_path_of(inputs.model_path))}",
    ]
    return commands


def _intra_command(run_dir: Path) -> str:
    settings = RunDir(run_dir).read_summary().settings
    augment = "" if settings.augment else " --no-augment"
    return (
        f"ecg-stream train {_relative(run_dir)} --protocol intra-patient --arch "
        f"{settings.arch.value}{augment} --epochs {settings.epochs} --data-dir $D/mitdb"
    )


ARCHITECTURE_TEXT = {
    Architecture.REFERENCE: "LSTM 128 -> LSTM 64 -> LSTM 32 over all 250 samples, the per-beat "
    "features joined, Dense 64 -> 32 -> 5 softmax",
    Architecture.LEAN: "two strided 1-D convolutions shorten the 250-sample window to 63 steps, "
    "then LSTM 64 -> LSTM 32, the per-beat features joined, Dense 64 -> 32 -> 5 softmax",
    Architecture.COMPACT: "three strided 1-D convolutions shorten the 250-sample window to 32 "
    "steps, then LSTM 32, the per-beat features joined, Dense 32 -> 5 softmax",
}
"""What each network is, in the card's words."""


def _flags(cv: CvSummary) -> str:
    settings, flags = cv.settings, []
    if cv.is_baseline:
        flags.append("--baseline")
    if settings.arch is not Architecture.LEAN:
        flags.append(f"--arch {settings.arch.value}")
    if settings.channels == ("beat",):
        flags.append("--no-template")
    if not settings.augment:
        flags.append("--no-augment")
    if set(settings.records) == set(DS1):
        flags.append("--records DS1")
    return "".join(f" {flag}" for flag in flags)


def _class_table(title: str, span: SpanFigures) -> list[str]:
    gross, average = span.gross, span.average
    lines = [
        f"## {title}",
        "",
        "| class | reference beats | Se % | +P % |",
        "|---|---|---|---|",
    ]
    for beat_class in BEAT_CLASSES:
        figures = gross.classes[beat_class.value]
        lines.append(
            f"| {beat_class.value} | {figures.reference_beats} | {_pct(figures.se)} | "
            f"{_pct(figures.pp)} |"
        )
    lines += [
        "",
        f"Accuracy {_pct(gross.accuracy)} %, macro F1 {gross.macro_f1:.3f} "
        f"({gross.matched_beats} matched beats, {gross.missed_reference_beats} reference "
        f"beats missed by the detector, {gross.unmatched_detections} unmatched detections).",
        "",
        "| EC57 | Se % | +P % | FPR % |",
        "|---|---|---|---|",
    ]
    for name, key in (("VEB", "veb"), ("SVEB", "sveb")):
        for kind, figures_of in (("gross", gross), ("average", average)):
            ec57: Ec57Figures = getattr(figures_of, key)
            lines.append(
                f"| {name} {kind} | {_pct(ec57.se)} | {_pct(ec57.pp)} | {_pct(ec57.fpr)} |"
            )
    confusion = gross.confusion
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


def _record_table(records: list[ScoreFigures]) -> list[str]:
    lines = [
        "## DS2 per record (whole record)",
        "",
        "| record | matched beats | accuracy % | V beats | VEB Se % | VEB +P % | S beats "
        "| SVEB Se % | SVEB +P % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for record in records:
        classes = record.classes
        lines.append(
            f"| {record.record} | {record.matched_beats} | {_pct(record.accuracy)} | "
            f"{classes['V'].reference_beats} | {_pct(record.veb.se)} | "
            f"{_pct(record.veb.pp)} | {classes['S'].reference_beats} | "
            f"{_pct(record.sveb.se)} | {_pct(record.sveb.pp)} |"
        )
    return [*lines, ""]


def _targets(gross: ScoreFigures) -> list[Target]:
    targets = []
    for beat_class, figure, label, minimum in TARGETS:
        got: float | None = getattr(gross.classes[beat_class], figure)
        targets.append(Target(label, minimum, got, got is not None and got >= minimum))
    return targets


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"
