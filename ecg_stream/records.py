"""WFDB records: where to find them, how to load one lead in mV at the chain's rate."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import numpy as np
from scipy import signal

from ecg_stream.config import CHAIN_FS_HZ
from ecg_stream.errors import DataNotFoundError, RecordFormatError
from ecg_stream.types import BeatClass, FloatArray, IntArray

DATA_ENV = "ECG_STREAM_DATA"
PHYSIONET_DB = "mitdb"
SVDB = "svdb"
"""PhysioNet's MIT-BIH Supraventricular Arrhythmia Database: records 800-894."""

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


@dataclass(frozen=True, slots=True)
class Annotations:
    """Reference beats and ventricular flutter episodes of a record, in the record's clock.

    Args:
        beat_indices: Sample index of each reference beat.
        beat_classes: AAMI class of each reference beat.
        flutter_spans: (start, end) sample ranges from each ``[`` to the next ``]``.
    """

    beat_indices: IntArray
    beat_classes: tuple[BeatClass, ...]
    flutter_spans: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Record:
    """One lead of a record, in mV, resampled to the chain's rate.

    Args:
        name: Record name (e.g. "100").
        lead: Name of the lead that was loaded.
        fs_hz: The record's own sampling rate, in Hz.
        samples: The lead at ``CHAIN_FS_HZ``, in mV.
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


def expand_record_names(names: list[str]) -> list[str]:
    """Replace the group names ``all``, ``DS1``, ``DS2`` by their records, keeping order."""
    expanded: list[str] = []
    for name in names:
        for record in RECORD_GROUPS.get(name, (name,)):
            if record not in expanded:
                expanded.append(record)
    return expanded


def physionet_database(name: str) -> str:
    """The PhysioNet database a record name belongs to: ``svdb`` for 800-894, else ``mitdb``.

    Example:
        >>> physionet_database("100"), physionet_database("825")
        ('mitdb', 'svdb')
    """
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


def load_record(name: str, data_dir: DataDirs = None, lead: str | int = 0) -> Record:
    """Load one lead of a WFDB record in mV at ``CHAIN_FS_HZ``, with its annotations.

    Args:
        name: Record name, or a path stem (``dir/name``) of any WFDB record.
        data_dir: Directory or directories to search first.
        lead: Lead name (e.g. "MLII") or index.

    Raises:
        DataNotFoundError: The record cannot be found.
        RecordFormatError: The lead does not exist or the record cannot be read.
    """
    import wfdb

    stem = Path(name) if Path(name).parent != Path() else find_record(name, data_dir)
    try:
        header = wfdb.rdheader(str(stem))
    except (OSError, ValueError) as error:
        msg = f"{stem}: cannot read WFDB header ({error})"
        raise RecordFormatError(msg) from error
    leads = list(header.sig_name or [])
    channel = _lead_index(stem.name, leads, lead)
    try:
        raw = wfdb.rdrecord(str(stem), channels=[channel], physical=True)
    except (OSError, ValueError) as error:
        msg = f"{stem}: cannot read WFDB signal ({error})"
        raise RecordFormatError(msg) from error
    samples = np.nan_to_num(np.asarray(raw.p_signal[:, 0], dtype=np.float64))
    if (raw.units or ["mV"])[0].lower() == "uv":
        samples = samples / 1000.0
    fs_hz = float(raw.fs)
    return Record(
        name=stem.name,
        lead=leads[channel],
        fs_hz=fs_hz,
        samples=resample_to_chain(samples, fs_hz),
        annotations=_load_annotations(stem),
    )


def resample_to_chain(samples: FloatArray, fs_hz: float) -> FloatArray:
    """Resample a whole lead to ``CHAIN_FS_HZ`` (polyphase, anti-aliased); identity at 360 Hz."""
    if fs_hz <= 0:
        msg = f"sampling rate {fs_hz} Hz in the header must be positive"
        raise RecordFormatError(msg)
    if fs_hz == CHAIN_FS_HZ:
        return samples
    ratio = np.round(CHAIN_FS_HZ / fs_hz, 6).as_integer_ratio()
    up, down = ratio if max(ratio) < 10_000 else (round(CHAIN_FS_HZ), round(fs_hz))
    return np.asarray(signal.resample_poly(samples, up, down), dtype=np.float64)


def _lead_index(record: str, leads: list[str], lead: str | int) -> int:
    if isinstance(lead, int) or lead.isdigit():
        index = int(lead)
        if 0 <= index < len(leads):
            return index
    elif lead in leads:
        return leads.index(lead)
    msg = f"record {record} has no lead {lead!r}; its leads are {leads} (by name or index 0..)"
    raise RecordFormatError(msg)


def _load_annotations(stem: Path) -> Annotations | None:
    import wfdb

    if not stem.with_suffix(".atr").is_file():
        return None
    annotation = wfdb.rdann(str(stem), "atr")
    indices: list[int] = []
    classes: list[BeatClass] = []
    spans: list[tuple[int, int]] = []
    flutter_start: int | None = None
    for index, symbol in zip(annotation.sample, annotation.symbol, strict=True):
        if symbol in AAMI_CLASS_OF_SYMBOL:
            indices.append(int(index))
            classes.append(AAMI_CLASS_OF_SYMBOL[symbol])
        elif symbol == "[":
            flutter_start = int(index)
        elif symbol == "]" and flutter_start is not None:
            spans.append((flutter_start, int(index)))
            flutter_start = None
    if flutter_start is not None:
        spans.append((flutter_start, int(annotation.sample[-1]) + 1))
    return Annotations(np.array(indices, dtype=np.int64), tuple(classes), tuple(spans))
