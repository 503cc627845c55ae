from __future__ import annotations

import struct
from collections.abc import Callable
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


# Damaged or inconsistent files (issue 13): one RecordFormatError naming the file, no traceback.

SIGNAL_LINES = (
    "100.dat 212 200 11 1024 995 -22131 0 MLII\n100.dat 212 200 11 1024 1011 20052 0 V5\n"
)


@pytest.fixture
def record_copy(data_dir: Path, tmp_path: Path) -> Path:
    """A writable copy of record 100 (header, signal, annotations) in tmp_path."""
    for suffix in (".hea", ".dat", ".atr"):
        target = tmp_path / f"100{suffix}"
        target.write_bytes((data_dir / f"100{suffix}").read_bytes())
    return tmp_path / "100"


def write_header(stem: Path, record_line: str, signal_lines: str = SIGNAL_LINES) -> None:
    stem.with_suffix(".hea").write_text(f"{record_line}\n{signal_lines}")


def cut(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


def annotate(stem: Path, samples: list[int]) -> None:
    symbols = np.array(["N"] * len(samples))
    wfdb.wrann(stem.name, "atr", np.array(samples), symbols, write_dir=str(stem.parent))


def randomize(path: Path) -> None:
    path.write_bytes(np.random.default_rng(2).bytes(path.stat().st_size))


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def annotate_backwards(stem: Path) -> None:
    """Annotations at 100, then 10: wfdb writes none out of order, so patch its SKIP word."""
    annotate(stem, [100, 5000])  # 4900 samples on: a SKIP (type 59) with a 32-bit interval
    data = bytearray(stem.with_suffix(".atr").read_bytes())
    skip = data.find(b"\x00\xec")
    interval = -90 & 0xFFFF_FFFF  # PDP-11 order: high 16-bit word first, each little-endian
    data[skip + 2 : skip + 6] = struct.pack("<HH", interval >> 16, interval & 0xFFFF)
    stem.with_suffix(".atr").write_bytes(bytes(data))


DAMAGES: list[tuple[str, Callable[[Path], object], str, str]] = [
    ("empty-hea", lambda s: s.with_suffix(".hea").write_bytes(b""), ".hea", "file is empty"),
    ("blank-hea", lambda s: write_header(s, "", ""), ".hea", "cannot read the WFDB header"),
    (
        "binary-hea",
        lambda s: s.with_suffix(".hea").write_bytes(b"\x00\xff\x13 garbage\n!!\n"),
        ".hea",
        "cannot read the WFDB header",
    ),
    ("rate-text", lambda s: write_header(s, "100 2 abc 650000"), ".hea", "'abc' is not a number"),
    ("rate-10hz", lambda s: write_header(s, "100 2 10 650000"), ".hea", "10 Hz is outside 50-"),
    (
        "rate-20khz",
        lambda s: write_header(s, "100 2 20000 650000"),
        ".hea",
        "sampling rate 20000 Hz is outside 50-10000 Hz",
    ),
    (
        "signal-line-missing",
        lambda s: write_header(s, "100 2 360 650000", SIGNAL_LINES.split("\n")[0] + "\n"),
        ".hea",
        "declares 2 signal\\(s\\) but 1 signal line\\(s\\) follow",
    ),
    (
        "unknown-format",
        lambda s: write_header(s, "100 2 360 650000", SIGNAL_LINES.replace("212", "999", 1)),
        ".hea",
        "signal format 999 is not a WFDB format",
    ),
    (
        "truncated-dat",
        lambda s: cut(s.with_suffix(".dat"), 1000),
        ".dat",
        "holds 1000 bytes, .* 1950000 bytes; the file is truncated",
    ),
    ("empty-dat", lambda s: cut(s.with_suffix(".dat"), 0), ".dat", "holds 0 bytes"),
    ("missing-dat", lambda s: s.with_suffix(".dat").unlink(), ".dat", "cannot read the signal"),
    (
        "length-too-long",
        lambda s: write_header(s, "100 2 360 650001"),
        ".dat",
        "says 650001 samples of 2 signal\\(s\\) in format 212, 1950003 bytes; the file is trunc",
    ),
    (
        "length-too-short",
        lambda s: write_header(s, "100 2 360 65000"),
        ".dat",
        "195000 bytes; the file is longer or the header's length is wrong",
    ),
    (
        "random-atr",
        lambda s: s.with_suffix(".atr").write_bytes(np.random.default_rng(1).bytes(4000)),
        ".atr",
        "cannot read the WFDB annotations \\(IndexError",
    ),
    (
        "truncated-atr",
        lambda s: cut(s.with_suffix(".atr"), 1001),
        ".atr",
        "cannot read the WFDB annotations \\(ValueError",
    ),
    ("empty-atr", lambda s: cut(s.with_suffix(".atr"), 0), ".atr", "the file is empty"),
    (
        "annotation-past-end",
        lambda s: annotate(s, [10, 650_000, 650_001]),
        ".atr",
        "annotation at sample 650001 lies outside the signal \\(0..649999\\)",
    ),
    # Headers that lie: wfdb would silently stream another rate, length or scale.
    ("rate-1hz", lambda s: write_header(s, "100 2 1 650000"), ".hea", "rate 1 Hz is outside 50-"),
    ("rate-negative", lambda s: write_header(s, "100 2 -360 650000"), ".hea", "-360 Hz is out"),
    ("rate-nan", lambda s: write_header(s, "100 2 nan 650000"), ".hea", "rate nan Hz is outside"),
    ("rate-inf", lambda s: write_header(s, "100 2 inf 650000"), ".hea", "rate inf Hz is outside"),
    (
        "length-negative",
        lambda s: write_header(s, "100 2 360 -5"),
        ".hea",
        "signal length '-5' is not a whole number of samples",
    ),
    ("length-text", lambda s: write_header(s, "100 2 360 many"), ".hea", "length 'many' is not"),
    (
        "other-record",
        lambda s: write_header(s, "101 2 360 650000"),
        ".hea",
        "the header describes record '101', not '100'",
    ),
    (
        "gain-negative",
        lambda s: write_header(s, "100 2 360 650000", SIGNAL_LINES.replace(" 200 ", " -200 ")),
        ".hea",
        "ADC gain -200 is not a positive number",
    ),
    (
        "units-mmhg",
        lambda s: write_header(s, "100 2 360 650000", SIGNAL_LINES.replace(" 200 ", " 200/mmHg ")),
        ".hea",
        "lead 'MLII' is in 'mmHg', not a voltage",
    ),
    (
        "units-volt",
        lambda s: write_header(s, "100 2 360 650000", SIGNAL_LINES.replace(" 200 ", " 200/V ")),
        ".dat",
        "lead 'MLII' reaches 2715 mV at sample 546792, beyond the 1000 mV",
    ),
    (
        "gain-tiny",
        lambda s: write_header(s, "100 2 360 650000", SIGNAL_LINES.replace(" 200 ", " 1e-300 ")),
        ".dat",
        "reaches 5.43e\\+302 mV",
    ),
    # Signal files that hold other data than the header describes, at the right size.
    ("random-dat", lambda s: randomize(s.with_suffix(".dat")), ".dat", "does not match its checks"),
    ("one-byte-dat", lambda s: flip_byte(s.with_suffix(".dat"), 300_000), ".dat", "checksum"),
    (
        "atr-out-of-order",
        lambda s: annotate_backwards(s),
        ".atr",
        "annotations are not in time order \\(sample 10 follows 100\\)",
    ),
]


@pytest.mark.parametrize(
    ("damage", "suffix", "match"),
    [pytest.param(damage, suffix, match, id=name) for name, damage, suffix, match in DAMAGES],
)
def test_damaged_files_are_one_line_errors_naming_the_file(
    record_copy: Path, damage: Callable[[Path], object], suffix: str, match: str
) -> None:
    damage(record_copy)
    with pytest.raises(RecordFormatError, match=match) as caught:
        load_record(str(record_copy))
    message = str(caught.value)
    assert message.startswith(f"{record_copy}{suffix}: ")
    assert "\n" not in message


def test_annotations_are_read_only_when_asked(record_copy: Path) -> None:
    record_copy.with_suffix(".atr").write_bytes(np.random.default_rng(1).bytes(4000))
    record = load_record(str(record_copy), annotations=False)
    assert record.annotations is None
    assert record.samples.size == 650_000


def test_annotation_one_sample_past_the_end_is_dropped(record_copy: Path) -> None:
    annotate(record_copy, [10, 649_999, 650_000])
    annotations = load_record(str(record_copy)).annotations
    assert annotations is not None
    assert annotations.beat_indices.tolist() == [10, 649_999]


def test_svdb_860_ends_one_sample_after_its_last_annotation(data_dir: Path) -> None:
    """Real data: SVDB 860's last annotation is one sample past its signal; it loads."""
    stem = data_dir.parent / "svdb" / "860"
    if not stem.with_suffix(".hea").is_file():
        pytest.skip(f"SVDB is not next to the MIT-BIH data ({stem.parent})")
    record = load_record(str(stem))
    assert record.annotations is not None
    assert record.to_chain_index(int(record.annotations.beat_indices[-1])) < record.samples.size


def test_a_header_without_length_reads_the_whole_signal(record_copy: Path) -> None:
    write_header(record_copy, "100 2 360")
    assert load_record(str(record_copy)).samples.size == 650_000


def write_lead_with_gap(stem: Path, fs_hz: int = 360) -> None:
    """Two leads in format 16; lead 'V1' misses samples 100-109 (NaN when written)."""
    lead_ii = np.sin(2 * np.pi * np.arange(10 * fs_hz) / fs_hz)
    lead_v1 = lead_ii.copy()
    lead_v1[100:110] = np.nan
    wfdb.wrsamp(
        stem.name,
        fs=fs_hz,
        units=["mV", "mV"],
        sig_name=["II", "V1"],
        p_signal=np.column_stack([lead_ii, lead_v1]),
        fmt=["16", "16"],
        write_dir=str(stem.parent),
    )


@pytest.mark.parametrize("fs_hz", [360, 128])
def test_missing_samples_stay_missing_and_are_reported(tmp_path: Path, fs_hz: int) -> None:
    """A NaN (WFDB's invalid-sample code) is kept as a gap, never zeroed or interpolated."""
    stem = tmp_path / "gap"
    write_lead_with_gap(stem, fs_hz)
    record = load_record(str(stem), lead="V1")
    (first, end), *others = record.missing_stretches()
    assert others == []
    assert first <= 100
    assert 110 <= end <= 122  # resampled: the filter's reach is missing too
    assert np.isfinite(record.samples).mean() > 0.95
    assert np.isfinite(load_record(str(stem), lead="II").samples).all()


def test_a_missing_path_stem_is_data_not_found(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"there is no nothing\.hea in"):
        load_record(str(tmp_path / "nothing"))


def test_every_real_record_passes_the_checks(data_dir: Path) -> None:
    """The checks refuse no record of the databases: checksums, units and ranges all hold."""
    for name in ("100", "207", "232"):
        assert load_record(name, data_dir, annotations=False).samples.size == 650_000
