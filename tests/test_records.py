from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecg_stream.errors import DataNotFoundError, RecordFormatError
from ecg_stream.records import (
    DATA_ENV,
    DS1,
    DS2,
    PACED,
    expand_record_names,
    find_record,
    load_record,
    resample_to_chain,
)
from ecg_stream.types import BeatClass


@pytest.fixture
def record_250hz(tmp_path: Path) -> Path:
    """A two-lead WFDB record at 250 Hz with a 5 Hz sine on lead 'II', in mV."""
    t = np.arange(2500) / 250.0
    lead_ii = np.sin(2 * np.pi * 5 * t)
    signals = np.column_stack([lead_ii, 0.5 * lead_ii])
    wfdb.wrsamp(
        "syn",
        fs=250,
        units=["mV", "mV"],
        sig_name=["II", "V1"],
        p_signal=signals,
        fmt=["16", "16"],
        write_dir=str(tmp_path),
    )
    wfdb.wrann("syn", "atr", np.array([250, 500]), np.array(["N", "V"]), write_dir=str(tmp_path))
    return tmp_path / "syn"


def test_other_rates_are_resampled_to_360_hz(record_250hz: Path) -> None:
    record = load_record(str(record_250hz), lead="II")
    assert record.fs_hz == 250.0
    assert record.samples.size == 3600
    t = np.arange(3600) / 360.0
    np.testing.assert_allclose(
        record.samples[200:-200], np.sin(2 * np.pi * 5 * t)[200:-200], atol=0.01
    )
    assert record.to_record_index(720) == 500
    assert record.to_chain_index(500) == 720


def test_lead_by_name_or_index_and_annotations(record_250hz: Path) -> None:
    by_name = load_record(str(record_250hz), lead="V1")
    by_index = load_record(str(record_250hz), lead="1")
    np.testing.assert_array_equal(by_name.samples, by_index.samples)
    assert by_name.lead == "V1"
    assert by_name.annotations is not None
    assert by_name.annotations.beat_classes == (BeatClass.N, BeatClass.V)


@pytest.mark.parametrize("lead", ["MLIII", "7"])
def test_unknown_lead_names_the_available_ones(record_250hz: Path, lead: str) -> None:
    with pytest.raises(RecordFormatError, match=r"no lead .*\['II', 'V1'\]"):
        load_record(str(record_250hz), lead=lead)


def test_mitdb_record_in_mv_with_annotations(data_dir: Path) -> None:
    record = load_record("100", data_dir)
    assert (record.lead, record.fs_hz, record.samples.size) == ("MLII", 360.0, 650_000)
    assert -5 < record.samples.min() < record.samples.max() < 5
    assert record.annotations is not None
    assert record.annotations.beat_indices.size == 2273


def test_flutter_episodes_are_read(data_dir: Path) -> None:
    annotations = load_record("207", data_dir).annotations
    assert annotations is not None
    assert len(annotations.flutter_spans) >= 1


def test_missing_record_names_directories_and_variable(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=DATA_ENV) as caught:
        find_record("100", tmp_path)
    assert caught.value.searched_dirs == (tmp_path,)


def test_environment_variable_is_searched(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_ENV, str(data_dir))
    assert find_record("101") == data_dir / "101"


def test_groups_expand_in_order_without_duplicates() -> None:
    assert expand_record_names(["DS1", "101", "100"]) == [*DS1, "100"]
    assert set(DS1).isdisjoint(DS2)
    assert len(DS1) == len(DS2) == 22
    assert set(PACED).isdisjoint(DS1 + DS2)


def test_resampling_is_identity_at_360_hz() -> None:
    x = np.arange(10.0)
    assert resample_to_chain(x, 360.0) is x
