"""The rhythm stage's AF gate replayed on a dataset's predictions, for cross-validation.

Live, the rhythm stage reads a beat called S while atrial fibrillation is open as a conducted AF
beat (``RhythmSettings.af_gate``). Its effect on a model's labels is measured here on the
pooled out-of-fold predictions: each record's matched beats, in R-peak order, go through the
same :class:`~ecg_stream.detector.rhythm.af.AfDetector` with their RR intervals and predicted
labels, and the S beats it finds in AF are read as conducted. The dataset holds matched beats
only, so the detector sees no false detection: the live figure can differ slightly.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ecg_stream.detector.rhythm.af import AfDetector, conducted_in_af
from ecg_stream.detector.segment import FEATURE_NAMES
from ecg_stream.training.dataset import BeatDataset
from ecg_stream.types import (
    BeatClass,
    BeatWindow,
    LabeledBeat,
    MorphologyFeatures,
    RPeak,
    RRFeatures,
)

_NO_SAMPLES = np.empty(0)
_TYPICAL = MorphologyFeatures(template_correlation=1.0, amplitude_ratio=1.0)


def af_gated(
    dataset: BeatDataset, probabilities: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """``probabilities`` (one row per beat of ``dataset``) after the AF gate, record by record."""
    gated = probabilities.copy()
    rr_s = dataset.features[:, FEATURE_NAMES.index("rr_s")]
    for name in np.unique(dataset.records):
        rows = np.flatnonzero(dataset.records == name)
        rows = rows[np.argsort(dataset.peak_indices[rows], kind="stable")]
        detector = AfDetector()
        for row in rows:
            index = int(dataset.peak_indices[row])
            window = BeatWindow(
                peak=RPeak(index, index),
                samples=_NO_SAMPLES,
                rr=RRFeatures(float(rr_s[row]) * 1000.0, np.nan, np.nan),
                morphology=_TYPICAL,
                ready_index=index,
            )
            n, s, v, f, q = (float(value) for value in probabilities[row])
            beat = LabeledBeat(window, (n, s, v, f, q))
            detector.process(beat)
            if detector.in_af and beat.label is BeatClass.S:
                gated[row] = conducted_in_af(beat).probabilities
    return gated
