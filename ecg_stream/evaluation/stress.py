"""Noise stress test after PhysioNet's ``nst``: real noise added to clean records at set SNRs.

Noise from the Noise Stress Test Database (``bw``, ``em``, ``ma``, channel 0, from a random
offset) is added to a record's lead: clean for the first 5 minutes, then on for 2 minutes and
off for 2, alternately, to the end. The SNR is ``10 log10(S / N)``, ``S`` the median squared
peak-to-peak amplitude of the clean record's QRS complexes over 8 (as for a sinusoid), ``N`` the
variance of the scaled noise. Records go through the streaming path and are scored over the
whole record and over the noisy segments alone (docs/protocol.md). The report's JSON form is
:class:`StressReport` itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from enum import Enum
from pathlib import Path

import msgspec
import numpy as np
import numpy.typing as npt

from ecg_stream.classify.classifier import OnnxBeatClassifier
from ecg_stream.config import CHAIN_FS_HZ, ChainConfig
from ecg_stream.documents import encode_json
from ecg_stream.errors import ConfigError
from ecg_stream.evaluation.classification import (
    RecordPredictions,
    classify_record,
    record_predictions,
    score_records,
)
from ecg_stream.evaluation.matching import Span
from ecg_stream.progress import progress
from ecg_stream.records import Annotations, DataDirs, Record, load_record
from ecg_stream.types import BEAT_CLASSES, BeatClass, FloatArray

BoolArray = npt.NDArray[np.bool_]

CLEAN_S = 300.0
"""The first 5 minutes stay clean (the detector's and the EC57 learning period)."""
SEGMENT_S = 120.0
"""Noise is on for 2 minutes, then off for 2, alternately."""
QRS_HALF_WIDTH_S = 0.05
"""A QRS complex's peak-to-peak amplitude is measured within 50 ms of its annotation."""
SNR_LEVELS_DB = (24.0, 18.0, 12.0, 6.0, 0.0, -6.0)
NOISE_NAMES = ("bw", "em", "ma")


class StressSpan(Enum):
    """What a row of the stress test scores; the value is written."""

    WHOLE_RECORD = "whole"
    """The whole records (as :attr:`Span.WHOLE_RECORD`)."""
    NOISY = "noisy"
    """The segments where the noise is on, alone."""


class StressFigures(msgspec.Struct, frozen=True):
    """Detection and V/S figures of the records at one noise level, in one span.

    NaN (no beat of a class) is written as null.

    Args:
        snr_db: The noise level, in dB (None: the clean records).
        span: Whole records or the noisy segments alone.
        beats: Reference beats scored.
        detection_se: QRS sensitivity.
        detection_pp: QRS positive predictivity.
        v_se: V sensitivity.
        v_pp: V positive predictivity.
        s_se: S sensitivity.
        s_pp: S positive predictivity.
        v_se_gated: V sensitivity when beats flagged by the signal-quality index are Q.
        v_pp_gated: V positive predictivity over the beats not flagged.
        flagged: Share of the detected beats flagged unusable.
        flagged_clean: Share of the detected beats in noise-free stretches flagged unusable.
    """

    snr_db: float | None
    span: StressSpan
    beats: int
    detection_se: float
    detection_pp: float
    v_se: float
    v_pp: float
    s_se: float
    s_pp: float
    v_se_gated: float = float("nan")
    v_pp_gated: float = float("nan")
    flagged: float = float("nan")
    flagged_clean: float = float("nan")


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
) -> StressReport:
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
            level = "clean" if snr_db is None else f"{snr_db:g} dB"
            both = [
                _ungated_and_gated(record, classifier, config)
                for record in progress(noisy, len(noisy), f"stress {noise_name} {level}")
            ]
            for span in StressSpan:
                row = _figures(snr_db, span, noisy, [ungated for ungated, _, _ in both])
                gated = _figures(snr_db, span, noisy, [gated for _, gated, _ in both])
                rows.append(
                    msgspec.structs.replace(
                        row,
                        v_se_gated=gated.v_se,
                        v_pp_gated=gated.v_pp,
                        **_flagged_shares(span, noisy, both),
                    )
                )
    return StressReport(noise_name, rows)


def _ungated_and_gated(
    record: Record, classifier: OnnxBeatClassifier, config: ChainConfig
) -> tuple[RecordPredictions, RecordPredictions, BoolArray]:
    """A record's labels ungated and gated (unusable beats Q), and which beats are usable."""
    beats = classify_record(record, classifier, config)  # gated, as live beats are
    windows = [beat.window for beat in beats]
    usable = np.array([window.usable for window in windows], dtype=bool)
    probabilities = classifier.predict_proba([replace(w, quality=None) for w in windows])
    labels = tuple(BEAT_CLASSES[int(k)] for k in np.argmax(probabilities, axis=1))
    gated = record_predictions(record, beats)
    ungated = RecordPredictions(gated.record, gated.fs_hz, gated.samples, labels)
    assert all(g is BeatClass.Q for g, ok in zip(gated.labels, usable, strict=True) if not ok)
    return ungated, gated, usable


def _flagged_shares(
    span: StressSpan,
    records: Sequence[Record],
    predictions: Sequence[tuple[RecordPredictions, RecordPredictions, BoolArray]],
) -> dict[str, float]:
    """Shares of detected beats flagged: in the span, and in its noise-free stretches."""
    flagged = in_span = flagged_clean = clean = 0
    for record, (_, prediction, usable) in zip(records, predictions, strict=True):
        on = noisy_mask(round(record.samples.size * record.fs_hz / CHAIN_FS_HZ), record.fs_hz)
        noisy = on[np.minimum(prediction.samples, on.size - 1)]
        keep = noisy if span is StressSpan.NOISY else np.ones_like(noisy)
        unusable = ~usable
        flagged += int(np.count_nonzero(unusable & keep))
        in_span += int(np.count_nonzero(keep))
        flagged_clean += int(np.count_nonzero(unusable & ~noisy))
        clean += int(np.count_nonzero(~noisy))
    return {
        "flagged": flagged / max(in_span, 1),
        "flagged_clean": flagged_clean / clean
        if span is StressSpan.WHOLE_RECORD and clean
        else float("nan"),
    }


def _figures(
    snr_db: float | None,
    span: StressSpan,
    records: Sequence[Record],
    predictions: Sequence[RecordPredictions],
) -> StressFigures:
    annotations: dict[str, Annotations] = {}
    kept: list[RecordPredictions] = []
    for record, prediction in zip(records, predictions, strict=True):
        assert record.annotations is not None  # add_noise and load_record checked
        reference = record.annotations
        if span is StressSpan.NOISY:
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
    gross = score_records(kept, annotations).gross(Span.WHOLE_RECORD)
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


class StressReport(msgspec.Struct):
    """The figures of a stress test: one row per noise level and span.

    Args:
        noise: The noise record, ``bw``, ``em`` or ``ma``.
        rows: Clean figures first, then each level's, whole records and noisy segments.
    """

    noise: str
    rows: list[StressFigures]

    def to_json(self) -> str:
        """The report as JSON text (NaN as null)."""
        return encode_json(self)

    def format_table(self) -> str:
        """Markdown table: one row per level and span."""
        lines = [
            "| noise | SNR dB | span | beats | QRS Se % | QRS +P % | V Se % | V +P % | S Se % "
            "| S +P % | gated V Se % | gated V +P % | flagged % | flagged in clean % |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in self.rows:
            level = "clean" if row.snr_db is None else f"{row.snr_db:g}"
            cells = [row.detection_se, row.detection_pp, row.v_se, row.v_pp, row.s_se, row.s_pp]
            cells += [row.v_se_gated, row.v_pp_gated, row.flagged, row.flagged_clean]
            lines.append(
                f"| {self.noise} | {level} | {row.span.value} | {row.beats} | "
                + " | ".join("n/a" if np.isnan(c) else f"{100 * c:.1f}" for c in cells)
                + " |"
            )
        return "\n".join(lines)
