"""The chain's configuration: the one home of the sampling rate and window geometry."""

from __future__ import annotations

from dataclasses import dataclass

from ecg_stream.errors import ConfigError

CHAIN_FS_HZ = 360.0
"""Every stage after the source runs at this rate; other records are resampled to it."""


@dataclass(frozen=True, slots=True)
class ChainConfig:
    """Settings shared by the filter, detector, segmenter, training and the model contract.

    Args:
        fs_hz: Sampling rate of the chain, in Hz.
        band_hz: Pass band of the display/classification filter, in Hz.
        notch_hz: Mains frequency to notch out (50 or 60), or None for no notch.
        window_before_samples: Samples of the beat window before the R peak.
        window_after_samples: Samples of the beat window from the R peak on.
        rr_mean_beats: Number of past RR intervals in the local mean RR.
    """

    fs_hz: float = CHAIN_FS_HZ
    band_hz: tuple[float, float] = (0.5, 40.0)
    notch_hz: float | None = None
    window_before_samples: int = 90
    window_after_samples: int = 160
    rr_mean_beats: int = 10

    def __post_init__(self) -> None:
        low, high = self.band_hz
        if not 0.0 < low < high < self.fs_hz / 2:
            msg = (
                f"band_hz={self.band_hz} must satisfy 0 < low < high < {self.fs_hz / 2:g} Hz "
                "(fs_hz/2)"
            )
            raise ConfigError(msg)
        if self.notch_hz is not None and not 0.0 < self.notch_hz < self.fs_hz / 2:
            msg = f"notch_hz={self.notch_hz} must lie in (0, {self.fs_hz / 2:g}) Hz, e.g. 50 or 60"
            raise ConfigError(msg)
        if self.window_before_samples < 0 or self.window_after_samples < 1:
            msg = (
                f"window geometry ({self.window_before_samples} before, "
                f"{self.window_after_samples} after) must have before >= 0 and after >= 1"
            )
            raise ConfigError(msg)
        if self.rr_mean_beats < 1:
            msg = f"rr_mean_beats={self.rr_mean_beats} must be >= 1"
            raise ConfigError(msg)

    @property
    def window_samples(self) -> int:
        """Length of a beat window, in samples."""
        return self.window_before_samples + self.window_after_samples
