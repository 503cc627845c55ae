"""WFDB records: where to find them, how to load one lead in mV at the chain's rate."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
from scipy import signal

if TYPE_CHECKING:
    import wfdb

from ecg_stream.config import CHAIN_FS_HZ, SUPPORTED_FS_HZ
from ecg_stream.detector.quality import true_runs
from ecg_stream.errors import DataNotFoundError, RecordFormatError
from ecg_stream.types import BeatClass, FloatArray, IntArray

DATA_ENV = "ECG_STREAM_DATA"
PHYSIONET_DB = "mitdb"
SVDB = "svdb"
"""PhysioNet's MIT-BIH Supraventricular Arrhythmia Database: records 800-894."""
NSTDB = "nstdb"
"""PhysioNet's Noise Stress Test Database, whose noise records augment and stress."""
NSTDB_NOISE_RECORDS = ("bw", "em", "ma")

DataDirs: TypeAlias = Path | Sequence[Path] | None
"""Directories searched first for records, in order (one, several, or None for the default)."""

AAMI_CLASS_OF_SYMBOL: dict[str, BeatClass] = {
    **dict.fromkeys("NLRej", BeatClass.N),
    **dict.fromkeys("AaJS", BeatClass.S),
    **dict.fromkeys("VE", BeatClass.V),
    "F": BeatClass.F,
    **dict.fromkeys("/fQ", BeatClass.Q),
}
"""ANSI/AAMI EC57 grouping of MIT-BIH beat symbols; any other symbol is not a beat."""

_BITS_PER_SAMPLE: dict[str, Fraction] = {
    **dict.fromkeys(("8", "80"), Fraction(8)),
    **dict.fromkeys(("16", "61", "160"), Fraction(16)),
    "24": Fraction(24),
    "32": Fraction(32),
    "212": Fraction(12),
    **dict.fromkeys(("310", "311"), Fraction(32, 3)),  # three samples in four bytes
}
"""Size of a sample in each uncompressed WFDB signal format; others are not size-checked."""

_COMPRESSED_FORMATS = ("508", "516", "524")
"""FLAC-compressed WFDB signal formats: readable, but their size cannot be predicted."""

_KNOWN_FORMATS = {*_BITS_PER_SAMPLE, *_COMPRESSED_FORMATS}

_PADDING_BYTES = 4
"""Bytes a signal file may hold past its last sample (a format's partial last group)."""

_DOWNLOAD_AGAIN = "download the record again (delete the damaged file) or restore it"

_MV_PER_UNIT: dict[str, float] = {"mv": 1.0, "uv": 1e-3, "\u00b5v": 1e-3, "\u03bcv": 1e-3, "v": 1e3}
"""Voltage units a lead may be in (lower case; WFDB's default is mV), and their size in mV."""

MAX_ABS_MV = 1000.0
"""Largest magnitude a lead may reach, in mV: no body-surface potential, electrode offsets
included (a few hundred mV), comes near 1 V; beyond it the header's gain or units are wrong."""


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


MITDB_RECORDS = _names(
    "100 101 102 103 104 105 106 107 108 109 111 112 113 114 115 116 117 118 119 121 122 123 "
    "124 200 201 202 203 205 207 208 209 210 212 213 214 215 217 219 220 221 222 223 228 230 "
    "231 232 233 234"
)
DS1 = _names(
    "101 106 108 109 112 114 115 116 118 119 122 124 201 203 205 207 208 209 215 220 223 230"
)
DS2 = _names(
    "100 103 105 111 113 117 121 123 200 202 210 212 213 214 219 221 222 228 231 232 233 234"
)
"""Inter-patient split (de Chazal et al. 2004): DS1 trains, DS2 only tests."""
PACED: tuple[str, ...] = ("102", "104", "107", "217")
SVDB_TRAIN = _names(
    "802 806 807 811 812 820 822 823 825 829 840 841 844 845 848 851 853 856 857 858 860 862 "
    "864 865 866 868 872 873 874 875 877 881 884 885 888 889 891 893 894"
)
"""The 39 SVDB records that may join DS1 for training; the other 39 are an external test."""
POOL = DS1 + SVDB_TRAIN
"""The training pool: DS1 and the SVDB training records (61 patients)."""
RECORD_GROUPS: dict[str, tuple[str, ...]] = {
    "all": MITDB_RECORDS,
    "DS1": DS1,
    "DS2": DS2,
    "svdb-train": SVDB_TRAIN,
    "pool": POOL,
}


RHYTHM_SYMBOL = "+"
"""The annotation symbol of a rhythm change; its aux note names the rhythm, e.g. ``(AFIB``."""


@dataclass(frozen=True, slots=True)
class RhythmChange:
    """A reference rhythm change: the rhythm ``code`` holds from ``index`` to the next change.

    Args:
        index: Sample index of the ``+`` annotation, in the record's clock.
        code: The rhythm's aux note without trailing NULs and blanks, e.g. ``(AFIB``, ``(N``.
    """

    index: int
    code: str


@dataclass(frozen=True, slots=True)
class Annotations:
    """Reference beats, flutter episodes and rhythm changes of a record, in the record's clock.

    Args:
        beat_indices: Sample index of each reference beat.
        beat_classes: AAMI class of each reference beat.
        flutter_spans: (start, end) sample ranges from each ``[`` to the next ``]``.
        rhythms: Each ``+`` annotation with a rhythm aux note, in time order.
    """

    beat_indices: IntArray
    beat_classes: tuple[BeatClass, ...]
    flutter_spans: tuple[tuple[int, int], ...] = ()
    rhythms: tuple[RhythmChange, ...] = ()


@dataclass(frozen=True, slots=True)
class Record:
    """One lead of a record, in mV, resampled to the chain's rate.

    Args:
        name: Record name (e.g. "100").
        lead: Name of the lead that was loaded.
        fs_hz: The record's own sampling rate, in Hz.
        samples: The lead at ``CHAIN_FS_HZ``, in mV; NaN where the record has missing samples
            (WFDB's invalid-sample code), which the chain treats as a gap.
        annotations: Reference beats, if the record has an ``atr`` file.
    """

    name: str
    lead: str
    fs_hz: float
    samples: FloatArray = field(repr=False)
    annotations: Annotations | None = field(default=None, repr=False)

    def to_record_index(self, chain_index: int) -> int:
        """Convert a chain sample index to the record's own clock."""
        return round(chain_index * self.fs_hz / CHAIN_FS_HZ)

    def to_chain_index(self, record_index: int) -> int:
        """Convert a sample index in the record's clock to the chain's."""
        return round(record_index * CHAIN_FS_HZ / self.fs_hz)

    def missing_stretches(self) -> list[tuple[int, int]]:
        """The stretches of missing samples, ``(first, end)`` in the record's own clock.

        Example:
            >>> Record("r", "MLII", 360.0, np.array([0.1, np.nan, np.nan, 0.2])).missing_stretches()
            [(1, 3)]
        """
        return [
            (self.to_record_index(first), self.to_record_index(end))
            for first, end in true_runs(np.isnan(self.samples))
        ]


def expand_record_names(names: list[str]) -> list[str]:
    """Replace the group names ``all``, ``DS1``, ``DS2`` by their records, keeping order."""
    expanded: list[str] = []
    for name in names:
        for record in RECORD_GROUPS.get(name, (name,)):
            if record not in expanded:
                expanded.append(record)
    return expanded


def physionet_database(name: str) -> str:
    """The PhysioNet database of a record: ``svdb``, ``nstdb`` (noise) or ``mitdb``.

    Example:
        >>> physionet_database("100"), physionet_database("825"), physionet_database("em")
        ('mitdb', 'svdb', 'nstdb')
    """
    if name in NSTDB_NOISE_RECORDS:
        return NSTDB
    return SVDB if name.isdigit() and 800 <= int(name) <= 894 else PHYSIONET_DB


def default_cache_dir(database: str = PHYSIONET_DB) -> Path:
    """The per-user directory where downloaded records of ``database`` are kept."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ecg-stream" / database


def data_dirs(data_dir: DataDirs) -> tuple[Path, ...]:
    """Directories searched for records: ``data_dir``, then $ECG_STREAM_DATA, then the cache.

    ``$ECG_STREAM_DATA`` may list several directories separated by ``os.pathsep``.
    """
    if isinstance(data_dir, Path):
        return (data_dir,)
    if data_dir:
        return tuple(data_dir)
    from_env = os.environ.get(DATA_ENV)
    if from_env:
        return tuple(Path(part) for part in from_env.split(os.pathsep) if part)
    return (default_cache_dir(PHYSIONET_DB), default_cache_dir(SVDB))


def find_record(name: str, data_dir: DataDirs = None) -> Path:
    """Return the path stem of a record (``dir/name``), downloading it if need be.

    Raises:
        DataNotFoundError: The record is in none of the directories and the download failed.
    """
    searched = data_dirs(data_dir)
    for directory in searched:
        if (directory / f"{name}.hea").is_file():
            return directory / name
    database = physionet_database(name)
    cache = default_cache_dir(database)
    if not data_dir and not os.environ.get(DATA_ENV):
        try:
            import wfdb

            wfdb.dl_database(database, dl_dir=str(cache), records=[name])
        except Exception as error:
            reason = f"download from PhysioNet failed ({type(error).__name__})"
        else:
            if (cache / f"{name}.hea").is_file():
                return cache / name
            reason = f"PhysioNet has no record {name!r} in {database}"
    else:
        reason = "no download when a data directory is given"
    where = ", ".join(str(directory) for directory in searched)
    msg = (
        f"record {name!r} not found in {where} ({reason}); point {DATA_ENV} or --data-dir "
        "at a directory holding the WFDB files (NAME.hea, NAME.dat, NAME.atr)"
    )
    raise DataNotFoundError(msg, record=name, searched_dirs=searched)


def load_record(
    name: str, data_dir: DataDirs = None, lead: str | int = 0, *, annotations: bool = True
) -> Record:
    """Load one lead of a WFDB record in mV at ``CHAIN_FS_HZ``, with its annotations.

    The files are checked before use: a damaged header, signal or annotation file is a
    ``RecordFormatError`` naming the file and the problem, never a traceback from wfdb.

    Args:
        name: Record name, or a path stem (``dir/name``) of any WFDB record.
        data_dir: Directory or directories to search first.
        lead: Lead name (e.g. "MLII") or index.
        annotations: Also read the reference annotations (``NAME.atr``, if present). Commands
            that only stream or detect pass False: a damaged ``.atr`` does not stop them.

    Raises:
        DataNotFoundError: The record cannot be found.
        RecordFormatError: The lead does not exist, or a file of the record is damaged or
            inconsistent: rate outside 50-10000 Hz, a length or size that does not match, a
            checksum that does not match, units that are no voltage, only missing samples,
            magnitudes beyond 1 V, annotations past the end or out of order.
    """
    import wfdb

    stem = Path(name) if Path(name).parent != Path() else find_record(name, data_dir)
    if not _sibling(stem, ".hea").exists():
        msg = f"record {stem}: there is no {stem.name}.hea in {stem.parent}; check the path"
        raise DataNotFoundError(msg, record=name, searched_dirs=(stem.parent,))
    header = _read_header(stem)
    leads = list(header.sig_name)
    channel = _lead_index(stem.name, leads, lead)
    _check_signal_files(stem, header)
    signal_path = stem.parent / header.file_name[channel]
    try:
        raw = wfdb.rdrecord(str(stem), channels=[channel], physical=False)
        counts = np.asarray(raw.d_signal[:, 0], dtype=np.int64)
        samples = np.asarray(raw.dac(return_res=64)[:, 0], dtype=np.float64)
    except Exception as error:  # wfdb reports damaged files as ValueError, IndexError, KeyError..
        msg = f"{signal_path}: cannot read the WFDB signal ({_reason(error)}); {_DOWNLOAD_AGAIN}"
        raise RecordFormatError(msg) from error
    if samples.size == 0:
        msg = f"{signal_path}: the signal holds no samples; {_DOWNLOAD_AGAIN}"
        raise RecordFormatError(msg)
    checksums = header.checksum or []
    if channel < len(checksums) and checksums[channel] is not None:
        _check_checksum(signal_path, stem, leads[channel], counts, int(checksums[channel]))
    samples = samples * _MV_PER_UNIT[_unit_of(stem, header, channel)]
    fs_hz = float(raw.fs)
    _check_samples(signal_path, leads[channel], samples, fs_hz)
    return Record(
        name=stem.name,
        lead=leads[channel],
        fs_hz=fs_hz,
        samples=resample_to_chain(samples, fs_hz),
        annotations=_load_annotations(stem, samples.size) if annotations else None,
    )


MISSING_REACH_SAMPLES = 10
"""Input samples either side of a missing stretch whose resampled neighbourhood is missing too:
the half-length of ``resample_poly``'s default filter, over which the gap's fill would leak."""


def resample_to_chain(samples: FloatArray, fs_hz: float) -> FloatArray:
    """Resample a whole lead to ``CHAIN_FS_HZ`` (polyphase, anti-aliased); identity at 360 Hz."""
    if fs_hz <= 0:
        msg = f"sampling rate {fs_hz} Hz in the header must be positive"
        raise RecordFormatError(msg)
    if fs_hz == CHAIN_FS_HZ:
        return samples
    ratio = np.round(CHAIN_FS_HZ / fs_hz, 6).as_integer_ratio()
    up, down = ratio if max(ratio) < 10_000 else (round(CHAIN_FS_HZ), round(fs_hz))
    missing = np.isnan(samples)
    resampled = np.asarray(signal.resample_poly(np.where(missing, 0.0, samples), up, down))
    scale = CHAIN_FS_HZ / fs_hz
    for first, end in true_runs(missing):  # missing stays missing, and what the filter took
        start = max(math.floor((first - MISSING_REACH_SAMPLES) * scale), 0)
        resampled[start : math.ceil((end + MISSING_REACH_SAMPLES) * scale)] = np.nan
    return resampled.astype(np.float64)


def _lead_index(record: str, leads: list[str], lead: str | int) -> int:
    if isinstance(lead, int) or lead.isdigit():
        index = int(lead)
        if 0 <= index < len(leads):
            return index
    elif lead in leads:
        return leads.index(lead)
    msg = f"record {record} has no lead {lead!r}; its leads are {leads} (by name or index 0..)"
    raise RecordFormatError(msg)


def _sibling(stem: Path, suffix: str) -> Path:
    """``dir/name.suffix`` (``with_suffix`` would cut a dotted record name)."""
    return stem.parent / f"{stem.name}{suffix}"


def _reason(error: Exception, limit: int = 160) -> str:
    """What a reader raised, on one line."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_header(stem: Path) -> wfdb.Record:
    """Read and check the header: readable, one line per signal, a rate within 50-10000 Hz."""
    import wfdb

    path = _sibling(stem, ".hea")
    try:
        empty = path.stat().st_size == 0
        header = None if empty else wfdb.rdheader(str(stem))
    except Exception as error:  # wfdb reports a garbled header as IndexError, ValueError..
        msg = f"{path}: cannot read the WFDB header ({_reason(error)}); {_DOWNLOAD_AGAIN}"
        raise RecordFormatError(msg) from error
    if header is None:
        msg = f"{path}: the header file is empty; {_DOWNLOAD_AGAIN}"
        raise RecordFormatError(msg)
    _check_record_line(path, stem)
    if isinstance(header, wfdb.MultiRecord):
        msg = f"{path}: a multi-segment record; ecg-stream reads single-segment records only"
        raise RecordFormatError(msg)
    declared = header.n_sig or 0
    described = len(header.sig_name or [])
    if declared < 1 or described != declared or len(header.file_name or []) != declared:
        msg = (
            f"{path}: the record line declares {declared} signal(s) but {described} signal "
            f"line(s) follow; {_DOWNLOAD_AGAIN}"
        )
        raise RecordFormatError(msg)
    unknown = sorted({str(fmt) for fmt in header.fmt or []} - _KNOWN_FORMATS)
    if unknown:
        msg = (
            f"{path}: signal format {', '.join(unknown)} is not a WFDB format (known: "
            f"{', '.join(sorted(_KNOWN_FORMATS, key=int))}); {_DOWNLOAD_AGAIN}"
        )
        raise RecordFormatError(msg)
    gains = [float(gain) for gain in header.adc_gain or []]
    bad_gain = next((gain for gain in gains if not 0 < gain < math.inf), None)
    if bad_gain is not None:
        msg = (
            f"{path}: ADC gain {bad_gain:g} is not a positive number; fix the third field of "
            "the signal line (GAIN/UNITS, in counts per unit)"
        )
        raise RecordFormatError(msg)
    low, high = SUPPORTED_FS_HZ
    fs_hz = header.fs
    if not isinstance(fs_hz, int | float) or not low <= fs_hz <= high:
        msg = (
            f"{path}: sampling rate {fs_hz} Hz is outside {low:g}-{high:g} Hz; fix the third "
            "field of the header's first line (NAME NSIG FS LENGTH)"
        )
        raise RecordFormatError(msg)
    return header


def _check_record_line(path: Path, stem: Path) -> None:
    """Check the fields of the header's record line that wfdb would silently replace.

    wfdb takes 250 Hz for a rate it cannot parse (``-360``, ``nan``, ``abc``) and reads the whole
    signal file for a length it cannot parse (``-5``): both would stream a wrong signal.
    """
    lines = path.read_text(encoding="ascii", errors="replace").splitlines()
    record_line = next((line for line in lines if line.strip() and line[0] != "#"), "")
    fields = record_line.split()
    where = "of the header's first line (NAME NSIG FS LENGTH)"
    name = fields[0].split("/")[0] if fields else ""
    if name != stem.name:
        msg = (
            f"{path}: the header describes record {name!r}, not {stem.name!r}; the file belongs "
            f"to another record or is damaged: {_DOWNLOAD_AGAIN}"
        )
        raise RecordFormatError(msg)
    if len(fields) < 3:
        return  # no rate given: WFDB's documented default, 250 Hz
    rate_text = fields[2].split("/")[0].split("(")[0]
    try:
        rate = float(rate_text)
    except ValueError:
        msg = f"{path}: sampling rate {rate_text!r} is not a number; fix the third field {where}"
        raise RecordFormatError(msg) from None
    low, high = SUPPORTED_FS_HZ
    if not low <= rate <= high:  # also NaN
        msg = (
            f"{path}: sampling rate {rate_text} Hz is outside {low:g}-{high:g} Hz; fix the "
            f"third field {where}"
        )
        raise RecordFormatError(msg)
    if len(fields) >= 4 and not fields[3].isdigit():
        msg = (
            f"{path}: signal length {fields[3]!r} is not a whole number of samples; fix the "
            f"fourth field {where}"
        )
        raise RecordFormatError(msg)


def _unit_of(stem: Path, header: wfdb.Record, channel: int) -> str:
    """The lead's voltage unit (lower case), refusing units that are no voltage."""
    units = header.units or []
    unit = str(units[channel] or "mV") if channel < len(units) else "mV"  # WFDB's default
    if unit.lower() not in _MV_PER_UNIT:
        msg = (
            f"{_sibling(stem, '.hea')}: lead {header.sig_name[channel]!r} is in {unit!r}, not a "
            "voltage (mV, uV, V); it is no ECG lead: pick another with --lead, or fix the "
            "signal line's GAIN/UNITS field"
        )
        raise RecordFormatError(msg)
    return unit.lower()


def _check_checksum(
    signal_path: Path, stem: Path, lead: str, counts: IntArray, expected: int
) -> None:
    """Compare the lead's 16-bit sum with the header's checksum: the file holds other data."""
    got = int(counts.sum()) % 65536
    if got != expected % 65536:
        msg = (
            f"{signal_path}: lead {lead!r} does not match its checksum in {stem.name}.hea "
            f"(sum {got}, header {expected % 65536} mod 65536): the signal file is damaged or "
            f"belongs to another record; {_DOWNLOAD_AGAIN}"
        )
        raise RecordFormatError(msg)


def _check_samples(signal_path: Path, lead: str, samples: FloatArray, fs_hz: float) -> None:
    """Refuse a lead that is all missing, and magnitudes no body-surface signal reaches.

    Missing samples (WFDB's invalid-sample code, NaN here) are kept: the chain treats them as
    a gap, as it does live (the windows that touch one are labelled Q, issue ``missing``, and
    a fresh chain starts after it); ``Record.missing_stretches`` reports them.
    """
    if np.isnan(samples).all():
        msg = (
            f"{signal_path}: lead {lead!r} holds only missing samples (WFDB's invalid-sample "
            "code); pick another lead (--lead)"
        )
        raise RecordFormatError(msg)
    peak = float(np.nanmax(np.abs(samples)))
    if peak > MAX_ABS_MV:
        where = int(np.nanargmax(np.abs(samples)))
        msg = (
            f"{signal_path}: lead {lead!r} reaches {peak:.4g} mV at sample {where}, beyond the "
            f"{MAX_ABS_MV:g} mV no body-surface signal reaches: the header's gain or units "
            "(signal line field GAIN/UNITS) are wrong"
        )
        raise RecordFormatError(msg)


def _check_signal_files(stem: Path, header: wfdb.Record) -> None:
    """Check that each signal file holds what the header says: no more, no fewer samples."""
    length = header.sig_len
    if length is None:  # no length in the header: wfdb reads the whole file
        return
    offsets = header.byte_offset or [None] * header.n_sig
    signals: dict[str, list[tuple[str, int]]] = {}
    for file_name, fmt, offset in zip(header.file_name, header.fmt, offsets, strict=True):
        signals.setdefault(file_name, []).append((str(fmt), offset or 0))
    for file_name, formats in signals.items():
        bits = [_BITS_PER_SAMPLE[fmt] for fmt, _ in formats if fmt in _BITS_PER_SAMPLE]
        if len(bits) != len(formats):
            continue  # compressed or unknown format: its size cannot be predicted
        expected = formats[0][1] + math.ceil(length * sum(bits, Fraction(0)) / 8)
        path = stem.parent / file_name
        try:
            size = path.stat().st_size
        except OSError as error:
            msg = f"{path}: cannot read the signal file ({_reason(error)}); {_DOWNLOAD_AGAIN}"
            raise RecordFormatError(msg) from error
        if not expected <= size <= expected + _PADDING_BYTES:
            shown = ", ".join(sorted({fmt for fmt, _ in formats}))
            fault = "the file is truncated" if size < expected else "the file is longer"
            msg = (
                f"{path}: holds {size} bytes, but {stem.name}.hea says {length} samples of "
                f"{len(formats)} signal(s) in format {shown}, {expected} bytes; {fault} or "
                f"the header's length is wrong: {_DOWNLOAD_AGAIN}"
            )
            raise RecordFormatError(msg)


def _load_annotations(stem: Path, signal_length: int) -> Annotations | None:
    """Read ``NAME.atr`` (None if there is none), refusing annotations past the signal's end.

    One sample past the end is tolerated and dropped: SVDB record 860 ends so.
    """
    import wfdb

    path = _sibling(stem, ".atr")
    if not path.is_file():
        return None
    try:
        if path.stat().st_size == 0:
            msg = "the file is empty"
            raise ValueError(msg)
        annotation = wfdb.rdann(str(stem), "atr")
        sample = np.asarray(annotation.sample, dtype=np.int64)
        symbols = list(annotation.symbol)
        notes = [str(note or "") for note in (annotation.aux_note or [""] * len(symbols))]
        if not sample.size == len(symbols) == len(notes):
            msg = f"{sample.size} sample indices for {len(symbols)} symbols, {len(notes)} notes"
            raise ValueError(msg)
    except Exception as error:  # wfdb reports damaged files as IndexError, ValueError..
        msg = (
            f"{path}: cannot read the WFDB annotations ({_reason(error)}); {_DOWNLOAD_AGAIN}, "
            "or use a command that needs no annotations (replay, analyze)"
        )
        raise RecordFormatError(msg) from error
    outside = (sample < 0) | (sample > signal_length)
    if outside.any():
        msg = (
            f"{path}: annotation at sample {int(sample[outside][0])} lies outside the signal "
            f"(0..{signal_length - 1}); the annotations belong to another record or are damaged: "
            f"{_DOWNLOAD_AGAIN}"
        )
        raise RecordFormatError(msg)
    backwards = np.flatnonzero(np.diff(sample) < 0)
    if backwards.size:
        at = int(backwards[0])
        msg = (
            f"{path}: annotations are not in time order (sample {int(sample[at + 1])} follows "
            f"{int(sample[at])}); the file is damaged: {_DOWNLOAD_AGAIN}"
        )
        raise RecordFormatError(msg)
    kept = [
        (int(index), symbol, note)
        for index, symbol, note in zip(sample, symbols, notes, strict=True)
        if index < signal_length
    ]
    indices: list[int] = []
    classes: list[BeatClass] = []
    spans: list[tuple[int, int]] = []
    rhythms: list[RhythmChange] = []
    flutter_start: int | None = None
    for index, symbol, note in kept:
        code = note.rstrip("\x00 ")
        if symbol == RHYTHM_SYMBOL and code.startswith("("):
            rhythms.append(RhythmChange(index, code))
        elif symbol in AAMI_CLASS_OF_SYMBOL:
            indices.append(int(index))
            classes.append(AAMI_CLASS_OF_SYMBOL[symbol])
        elif symbol == "[":
            flutter_start = int(index)
        elif symbol == "]" and flutter_start is not None:
            spans.append((flutter_start, int(index)))
            flutter_start = None
    if flutter_start is not None:
        spans.append((flutter_start, kept[-1][0] + 1))
    return Annotations(
        np.array(indices, dtype=np.int64), tuple(classes), tuple(spans), tuple(rhythms)
    )
