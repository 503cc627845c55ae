"""On-the-fly training augmentation of beat windows: real noise, R-peak jitter, time stretch.

Pure numpy, offline only (imported by training). Windows are z-scored, so amplitude scaling
would change nothing the model sees; real noise from the Noise Stress Test Database's ``bw``
(baseline wander), ``em`` (electrode motion) and ``ma`` (muscle) records, passed through the
chain's own band-pass, is added at a random SNR defined as PhysioNet's ``nst`` defines it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ecg_stream.config import ChainConfig
from ecg_stream.detector.filter import CausalBandpass
from ecg_stream.detector.segment import QRS_HALF_WIDTH_S, normalise_window
from ecg_stream.errors import ConfigError, DataNotFoundError
from ecg_stream.records import DataDirs, load_record
from ecg_stream.types import FloatArray

NOISE_RECORDS = ("bw", "em", "ma")
"""Noise Stress Test Database records: baseline wander, electrode motion, muscle artefact."""


class NoiseBank:
    """Band-passed real noise, each record scaled to unit variance, cut at random offsets.

    Args:
        noises: Noise signals at the chain's rate, by name; each at least one window long.

    Example:
        >>> bank = NoiseBank({"white": np.random.default_rng(0).normal(size=1000)})
        >>> bank.segments(np.random.default_rng(1), count=3, length=250).shape
        (3, 250)
    """

    def __init__(self, noises: Mapping[str, FloatArray]) -> None:
        if not noises:
            msg = "NoiseBank needs at least one noise signal"
            raise ConfigError(msg)
        self.names = tuple(noises)
        self._signals = [
            (signal - signal.mean()) / max(float(signal.std()), 1e-12) for signal in noises.values()
        ]

    @classmethod
    def from_records(cls, data_dir: DataDirs, config: ChainConfig) -> NoiseBank:
        """Load ``bw``, ``em`` and ``ma`` (lead 0) and pass them through the chain's band-pass.

        Raises:
            ConfigError: A noise record cannot be found (says where to get them).
        """
        try:
            records = {name: load_record(name, data_dir) for name in NOISE_RECORDS}
        except DataNotFoundError as error:
            msg = (
                f"augmentation needs the noise records {', '.join(NOISE_RECORDS)} of the MIT-BIH "
                f"Noise Stress Test Database (PhysioNet nstdb), and {error.record!r} is not in "
                "the data directories: pass --data-dir DIR holding them, or train with "
                "--no-augment"
            )
            raise ConfigError(msg) from None
        bandpass = CausalBandpass.from_config(config)
        return cls({name: bandpass.process(record.samples) for name, record in records.items()})

    def segments(self, rng: np.random.Generator, count: int, length: int) -> FloatArray:
        """``count`` unit-variance noise segments of ``length`` samples, shape (count, length)."""
        out = np.empty((count, length))
        choices = rng.integers(len(self._signals), size=count)
        for row, choice in enumerate(choices):
            signal = self._signals[choice]
            start = int(rng.integers(signal.size - length + 1))
            out[row] = signal[start : start + length]
        return out


@dataclass(frozen=True, slots=True)
class BeatAugmenter:
    """Random, label-preserving distortions of z-scored beat windows.

    Args:
        config: Window geometry (the R peak sits at ``window_before_samples``).
        noise: Real noise to add, or None for none.
        noise_probability: Fraction of windows that get noise.
        snr_db: Range of the SNR of the added noise, in dB.
        jitter_samples: R-peak misplacement, uniform in +-this many samples.
        stretch: Time stretch about the R peak, uniform in 1 +- this fraction.

    Example:
        >>> augmenter = BeatAugmenter(ChainConfig(), noise=None)
        >>> beats = np.tile(np.hanning(250), (4, 1))
        >>> augmenter.augment(beats, np.random.default_rng(0)).shape
        (4, 250)
    """

    config: ChainConfig
    noise: NoiseBank | None
    noise_probability: float = 0.5
    snr_db: tuple[float, float] = (6.0, 24.0)
    jitter_samples: int = 3
    stretch: float = 0.08

    def augment(self, beats: npt.NDArray[np.floating[Any]], rng: np.random.Generator) -> FloatArray:
        """Distorted, re-normalised copies of ``beats`` (n, samples); the input is not changed."""
        count, length = beats.shape
        peak = self.config.window_before_samples
        factors = 1.0 + rng.uniform(-self.stretch, self.stretch, size=(count, 1))
        shifts = rng.integers(-self.jitter_samples, self.jitter_samples + 1, size=(count, 1))
        positions = np.clip(peak + (np.arange(length) - peak) / factors + shifts, 0, length - 1)
        below = np.floor(positions).astype(np.int64)
        above = np.minimum(below + 1, length - 1)
        fraction = positions - below
        rows = np.arange(count)[:, np.newaxis]
        out = (1 - fraction) * beats[rows, below] + fraction * beats[rows, above]
        if self.noise is not None:
            noisy = rng.random(count) < self.noise_probability
            out[noisy] += self._scaled_noise(out[noisy], rng)
        return np.stack([normalise_window(row) for row in out])

    def _scaled_noise(self, beats: FloatArray, rng: np.random.Generator) -> FloatArray:
        """Noise at a random SNR: S = (QRS peak-to-peak)^2 / 8, as PhysioNet's ``nst``."""
        assert self.noise is not None
        half = round(QRS_HALF_WIDTH_S * self.config.fs_hz)
        peak = self.config.window_before_samples
        qrs = beats[:, max(peak - half, 0) : peak + half]
        signal_power = (qrs.max(axis=1) - qrs.min(axis=1)) ** 2 / 8.0
        snr_db = rng.uniform(*self.snr_db, size=beats.shape[0])
        noise_std = np.sqrt(signal_power / 10.0 ** (snr_db / 10.0))
        segments = self.noise.segments(rng, beats.shape[0], beats.shape[1])
        return np.asarray(segments * noise_std[:, np.newaxis], dtype=np.float64)
