"""Noise stress test after PhysioNet's ``nst``: real noise added to clean records at set SNRs.

Noise from the Noise Stress Test Database (``bw``, ``em``, ``ma``, channel 0, from a random
offset) is added to a record's lead: clean for the first 5 minutes, then on for 2 minutes and
off for 2, alternately, to the end. The SNR is ``10 log10(S / N)``, ``S`` the median squared
peak-to-peak amplitude of the clean record's QRS complexes over 8 (as for a sinusoid), ``N`` the
variance of the scaled noise. Records go through the streaming path and are scored over the
whole record and over the noisy segments alone (docs/protocol.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ecg_stream.config import CHAIN_FS_HZ, ChainConfig
from ecg_stream.errors import ConfigError
from ecg_stream.model.classifier import OnnxBeatClassifier
from ecg_stream.model.report import (
    RecordPredictions,
    classify_record,
    record_predictions,
    score_records,
)
from ecg_stream.records import Annotations, DataDirs, Record, load_record
from ecg_stream.types import BeatClass, FloatArray

BoolArray = npt.NDArray[np.bool_]

CLEAN_S = 300.0
"""The first 5 minutes stay clean (the detector's and the EC57 learning period)."""
SEGMENT_S = 120.0
"""Noise is on for 2 minutes, then off for 2, alternately."""
QRS_HALF_WIDTH_S = 0.05
"""A QRS complex's peak-to-peak amplitude is measured within 50 ms of its annotation."""
SNR_LEVELS_DB = (24.0, 18.0, 12.0, 6.0, 0.0, -6.0)
NOISE_NAMES = ("bw", "em", "ma")


@dataclass(frozen=True, slots=True)
class StressFigures:
    """Detection and V/S figures of the records at one noise level, in one span.

    Args:
        snr_db: The noise level, in dB (None: the clean records).
        span: ``whole`` (whole records) or ``noisy`` (the noisy segments alone).
        beats: Reference beats scored.
        detection_se: QRS sensitivity.
        detection_pp: QRS positive predictivity.
        v_se: V sensitivity.
        v_pp: V positive predictivity.
        s_se: S sensitivity.
        s_pp: S positive predictivity.
    """

    snr_db: float | None
    span: str
    beats: int
    detection_se: float
    detection_pp: float
    v_se: float
    v_pp: float
    s_se: float
    s_pp: float


def noisy_mask(n_samples: int, fs_hz: float) -> BoolArray:
    """Where the noise is on: from ``CLEAN_S``, ``SEGMENT_S`` on, ``SEGMENT_S`` off, ...

    Example:
        >>> mask = noisy_mask(round(600 * 10.0), 10.0)
        >>> bool(mask[2999]), bool(mask[3000]), bool(mask[4199]), bool(mask[4200])
        (False, True, True, False)
    """
    seconds = np.arange(n_samples) / fs_hz - CLEAN_S
    return np.asarray((seconds >= 0) & (np.floor(seconds / SEGMENT_S) % 2 == 0))


def qrs_power(samples: FloatArray, beat_indices: Sequence[int], fs_hz: float) -> float:
    """``S``: median squared peak-to-peak QRS amplitude over 8 (``nst``'s signal power)."""
    half = round(QRS_HALF_WIDTH_S * fs_hz)
    amplitudes = [
        float(np.ptp(samples[max(i - half, 0) : i + half + 1]))
        for i in beat_indices
        if 0 <= i < samples.size
    ]
    if not amplitudes:
        msg = "no reference beats to measure the signal power with; give an annotated record"
        raise ConfigError(msg)
    return float(np.median(np.square(amplitudes))) / 8.0


def add_noise(record: Record, noise: FloatArray, snr_db: float, rng: np.random.Generator) -> Record:
    """A copy of ``record`` with ``noise`` (at the chain's rate) added at ``snr_db``.

    Raises:
        ConfigError: The record has no annotations to measure its QRS power with.
    """
    if record.annotations is None:
        msg = f"record {record.name} has no annotations; the SNR is set from its QRS complexes"
        raise ConfigError(msg)
    beats = [record.to_chain_index(int(i)) for i in record.annotations.beat_indices]
    power = qrs_power(record.samples, beats, CHAIN_FS_HZ)
    start = int(rng.integers(noise.size))
    stretch = np.resize(np.roll(noise, -start), record.samples.size)
    scale = np.sqrt(power / 10.0 ** (snr_db / 10.0) / max(float(stretch.var()), 1e-12))
    mask = noisy_mask(record.samples.size, CHAIN_FS_HZ)
    return replace(record, samples=record.samples + scale * stretch * mask)


def stress_test(
    records: Sequence[str],
    model_path: Path,
    noise_name: str,
    snr_levels: Sequence[float] = SNR_LEVELS_DB,
    *,
    data_dir: DataDirs = None,
    seed: int = 0,
) -> list[StressFigures]:
    """Clean figures, then each noise level's, whole record and noisy segments alone.

    Raises:
        ConfigError: An unknown noise name or no records.
        DataNotFoundError: A record or the noise record cannot be found.
    """
    if noise_name not in NOISE_NAMES:
        msg = f"--noise {noise_name!r}: choose one of {', '.join(NOISE_NAMES)}"
        raise ConfigError(msg)
    if not records:
        msg = "no records to stress; give record names, e.g. DS2"
        raise ConfigError(msg)
    config = ChainConfig()
    noise = load_record(noise_name, data_dir, annotations=False).samples
    clean = [load_record(name, data_dir) for name in records]
    rows: list[StressFigures] = []
    with OnnxBeatClassifier(model_path, config) as classifier:
        for snr_db in (None, *snr_levels):
            rng = np.random.default_rng(seed)
            noisy = [r if snr_db is None else add_noise(r, noise, snr_db, rng) for r in clean]
            predictions = [
                record_predictions(record, classify_record(record, classifier, config))
                for record in noisy
            ]
            rows.extend(_figures(snr_db, span, noisy, predictions) for span in ("whole", "noisy"))
    return rows


def _figures(
    snr_db: float | None,
    span: str,
    records: Sequence[Record],
    predictions: Sequence[RecordPredictions],
) -> StressFigures:
    annotations: dict[str, Annotations] = {}
    kept: list[RecordPredictions] = []
    for record, prediction in zip(records, predictions, strict=True):
        assert record.annotations is not None  # add_noise and load_record checked
        reference = record.annotations
        if span == "noisy":
            on = noisy_mask(round(record.samples.size * record.fs_hz / CHAIN_FS_HZ), record.fs_hz)
            ref_in = on[np.minimum(reference.beat_indices, on.size - 1)]
            det_in = on[np.minimum(prediction.samples, on.size - 1)]
            reference = Annotations(
                reference.beat_indices[ref_in],
                tuple(c for c, k in zip(reference.beat_classes, ref_in, strict=True) if k),
                reference.flutter_spans,
            )
            prediction = RecordPredictions(
                prediction.record,
                prediction.fs_hz,
                prediction.samples[det_in],
                tuple(c for c, k in zip(prediction.labels, det_in, strict=True) if k),
            )
        annotations[record.name] = reference
        kept.append(prediction)
    gross = score_records(kept, annotations).gross("whole_record")
    score = gross.score
    matched, missed = int(score.confusion.sum()), int(score.missed.sum())
    return StressFigures(
        snr_db=snr_db,
        span=span,
        beats=matched + missed,
        detection_se=matched / max(matched + missed, 1),
        detection_pp=matched / max(matched + gross.unmatched_detections, 1),
        v_se=score.sensitivity(BeatClass.V),
        v_pp=score.positive_predictivity(BeatClass.V),
        s_se=score.sensitivity(BeatClass.S),
        s_pp=score.positive_predictivity(BeatClass.S),
    )


def format_stress_table(noise_name: str, rows: Sequence[StressFigures]) -> str:
    """Markdown table: one row per level and span."""
    lines = [
        "| noise | SNR dB | span | beats | QRS Se % | QRS +P % | V Se % | V +P % | S Se % "
        "| S +P % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        level = "clean" if row.snr_db is None else f"{row.snr_db:g}"
        cells = [row.detection_se, row.detection_pp, row.v_se, row.v_pp, row.s_se, row.s_pp]
        lines.append(
            f"| {noise_name} | {level} | {row.span} | {row.beats} | "
            + " | ".join("n/a" if np.isnan(c) else f"{100 * c:.1f}" for c in cells)
            + " |"
        )
    return "\n".join(lines)


def stress_json(noise_name: str, rows: Sequence[StressFigures]) -> dict[str, Any]:
    """The figures as JSON (NaN as null)."""

    def clean(value: Any) -> Any:
        return None if isinstance(value, float) and np.isnan(value) else value

    return {
        "noise": noise_name,
        "rows": [{key: clean(value) for key, value in asdict(row).items()} for row in rows],
    }
