"""Pictures of a classification report: confusion matrix, sample beats, signal, training.

matplotlib (the ``train`` extra) is imported inside the functions only, with the Agg backend:
files, never a window.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ecg_stream.config import ChainConfig
from ecg_stream.detector.chain import BeatExtractor
from ecg_stream.errors import TRAIN_EXTRA, MissingExtraError
from ecg_stream.evaluation.matching import ClassScore
from ecg_stream.records import Record
from ecg_stream.types import BEAT_CLASSES, Chunk, LabeledBeat

SAMPLE_BEATS_PER_CLASS = 4


def plot_confusion(score: ClassScore, path: Path, title: str) -> None:
    """Draw the confusion matrix (reference rows, predicted columns), counts and row shares."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 4.8))
    rows = score.confusion.sum(axis=1, keepdims=True)
    shares = np.divide(score.confusion, rows, out=np.zeros(score.confusion.shape), where=rows > 0)
    axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    for (r, c), count in np.ndenumerate(score.confusion):
        colour = "white" if shares[r, c] > 0.6 else "black"
        axes.text(
            c,
            r,
            f"{count}\n{100 * shares[r, c]:.1f}%",
            ha="center",
            va="center",
            fontsize=8,
            color=colour,
        )
    names = [c.value for c in BEAT_CLASSES]
    axes.set(
        xticks=range(len(names)),
        yticks=range(len(names)),
        xticklabels=names,
        yticklabels=names,
        xlabel="predicted",
        ylabel="reference",
        title=f"{title}: matched beats",
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_training_history(log_path: Path, path: Path) -> None:
    """Draw loss and accuracy per epoch (training and validation) from a training log CSV."""
    plt = _pyplot()
    with log_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    epochs = [int(row["epoch"]) + 1 for row in rows]
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(9, 3.5))
    for key, axes in (("loss", loss_axes), ("accuracy", accuracy_axes)):
        axes.plot(epochs, [float(row[key]) for row in rows], label="training (weighted)")
        axes.plot(epochs, [float(row[f"val_{key}"]) for row in rows], label="validation")
        axes.set(xlabel="epoch", ylabel=key)
        axes.legend()
    figure.suptitle(f"training history: {log_path.parent.name}")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_sample_beats(beats: Sequence[LabeledBeat], config: ChainConfig, path: Path) -> None:
    """Draw beats grouped by predicted class, each titled with its class and confidence."""
    plt = _pyplot()
    columns = SAMPLE_BEATS_PER_CLASS
    figure, grid = plt.subplots(
        len(BEAT_CLASSES), columns, figsize=(2.4 * columns, 1.6 * len(BEAT_CLASSES)), squeeze=False
    )
    time_ms = (np.arange(config.window_samples) - config.window_before_samples) / config.fs_hz
    for row, beat_class in enumerate(BEAT_CLASSES):
        chosen = [beat for beat in beats if beat.label is beat_class][:columns]
        for column in range(columns):
            axes = grid[row][column]
            axes.set_xticks([])
            axes.set_yticks([])
            if column < len(chosen):
                beat = chosen[column]
                axes.plot(1000 * time_ms, beat.window.samples, linewidth=0.8)
                axes.set_title(f"{beat_class.value} {100 * beat.confidence:.0f}%", fontsize=8)
            elif column == 0:
                axes.set_title(f"no beat predicted {beat_class.value}", fontsize=8)
    figure.suptitle("sample beats: predicted class and confidence (filtered mV, 250 samples)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_raw_vs_filtered(
    record: Record,
    beats: Sequence[LabeledBeat],
    config: ChainConfig,
    path: Path,
    seconds: float = 10.0,
) -> None:
    """Draw the first ``seconds`` after the learning period: raw and filtered, beats labelled."""
    plt = _pyplot()
    start = round(5.0 * config.fs_hz)  # past the detector's learning period
    stop = min(record.samples.size, start + round(seconds * config.fs_hz))
    extractor = BeatExtractor(config)
    filtered = extractor.process(Chunk(0, record.samples[:stop])).filtered.samples
    time_s = np.arange(start, stop) / config.fs_hz
    figure, axes = plt.subplots(figsize=(10, 3.5))
    axes.plot(time_s, record.samples[start:stop], linewidth=0.7, label="raw")
    axes.plot(time_s, filtered[start:stop], linewidth=0.7, label=f"filtered {config.band_hz} Hz")
    for beat in beats:
        index = beat.window.peak.index
        if start <= index < stop:
            axes.annotate(
                beat.label.value,
                (index / config.fs_hz, filtered[index]),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=8,
            )
    axes.set(xlabel="time (s)", ylabel="mV", title=f"record {record.name} ({record.lead})")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def sample_beats(beats: Sequence[LabeledBeat], already: Sequence[LabeledBeat]) -> list[LabeledBeat]:
    """Up to ``SAMPLE_BEATS_PER_CLASS`` more beats of each predicted class not yet shown."""
    counts = {c: sum(1 for b in already if b.label is c) for c in BEAT_CLASSES}
    chosen: list[LabeledBeat] = []
    for beat in beats[:: max(1, len(beats) // 200)]:
        if counts[beat.label] < SAMPLE_BEATS_PER_CLASS:
            counts[beat.label] += 1
            chosen.append(beat)
    return chosen


def _pyplot() -> Any:
    try:
        import matplotlib as mpl
    except ImportError as error:
        raise MissingExtraError(TRAIN_EXTRA, "matplotlib") from error
    mpl.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt
