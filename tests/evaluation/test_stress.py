from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecg_stream.cli import main
from ecg_stream.evaluation.stress import add_noise, noisy_mask, qrs_power
from ecg_stream.records import Record, load_record


def test_noise_follows_the_nst_schedule_at_the_asked_snr(
    data_dir: Path, record_100: Record
) -> None:
    noise_dir = data_dir.parent / "nstdb-noise"
    if not (noise_dir / "em.hea").is_file():
        pytest.skip(f"noise record em not in {noise_dir}")
    noise = load_record("em", noise_dir, annotations=False).samples
    noisy = add_noise(record_100, noise, 6.0, np.random.default_rng(0))
    added = noisy.samples - record_100.samples
    on = noisy_mask(record_100.samples.size, 360.0)
    assert not added[~on].any()  # clean first 5 minutes and off segments
    assert record_100.annotations is not None
    power = qrs_power(record_100.samples, record_100.annotations.beat_indices.tolist(), 360.0)
    assert 10 * np.log10(power / added[on].var()) == pytest.approx(6.0, abs=0.5)


def test_unknown_noise_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stress", "100", "--noise", "pink"]) == 2
    err = capsys.readouterr().err
    assert "choose one of bw, em, ma" in err
    assert err.count("\n") == 1
