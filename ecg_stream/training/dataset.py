"""Labelled beat windows for training, cut by the same streaming chain that serves live beats.

Each record is fed through :class:`~ecg_stream.detector.chain.BeatExtractor` in chunks, as a
live stream is; every detected beat takes the AAMI class of the reference beat it matches
(docs/protocol.md: 150 ms, one to one, nearest first). Detections that match no reference beat are
left out and counted. Paced records are left out of classification. The result is cached as a
compressed ``.npz`` keyed by a hash of everything it depends on, so a stale cache is rebuilt.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ecg_stream.config import ChainConfig
from ecg_stream.detector import chain as chain_module
from ecg_stream.detector.chain import BeatExtractor
from ecg_stream.detector.segment import (
    FEATURE_NAMES,
    WINDOW_CHANNELS,
    feature_vector,
    unknown_channels,
    unknown_features,
    window_channels,
)
from ecg_stream.documents import atomic_output
from ecg_stream.errors import ConfigError, RecordFormatError
from ecg_stream.evaluation import MATCH_TOLERANCE_S, match_beats
from ecg_stream.progress import progress
from ecg_stream.records import PACED, DataDirs, find_record, load_record
from ecg_stream.types import BEAT_CLASSES, BeatClass, BeatWindow, Chunk, FloatArray, IntArray

logger = logging.getLogger(__name__)

CACHE_ENV = "ECG_STREAM_CACHE"
"""Environment variable that moves the dataset cache (default: the user cache directory)."""
DATASET_CHUNK_SAMPLES = 360
"""Chunk length fed to the chain while building a dataset: one second at 360 Hz."""
DATASET_FORMAT = 5
"""Bumped whenever the stored arrays change meaning; part of the cache key."""
PACKAGE = "ecg-stream"

Float32Array = npt.NDArray[np.float32]
StrArray = npt.NDArray[np.str_]


@dataclass(frozen=True, slots=True)
class BeatDataset:
    """Detected, labelled beats of some records, in stream order within each record.

    Args:
        windows: Normalised beat windows, shape (n, window_samples).
        templates: The normalised template each beat was compared with, shape like ``windows``.
        features: Every per-beat feature, in ``detector.segment.FEATURE_NAMES`` order,
            shape (n, len(FEATURE_NAMES)).
        labels: Index into ``BEAT_CLASSES`` of each beat's reference class, shape (n,).
        records: Record name of each beat, shape (n,).
        peak_indices: Detected R-peak sample index of each beat, shape (n,).
        record_names: The records included, in order.
        unmatched_detections: Per record, detections that matched no reference beat (left out).
        missed_reference_beats: Per record, reference beats that no detection matched.
        excluded_records: Records asked for but left out (paced records).
        cache_key: Hash of everything the dataset depends on.
    """

    windows: Float32Array = field(repr=False)
    templates: Float32Array = field(repr=False)
    features: Float32Array = field(repr=False)
    labels: IntArray = field(repr=False)
    records: StrArray = field(repr=False)
    peak_indices: IntArray = field(repr=False)
    record_names: tuple[str, ...]
    unmatched_detections: tuple[int, ...]
    missed_reference_beats: tuple[int, ...]
    excluded_records: tuple[str, ...]
    cache_key: str

    def __post_init__(self) -> None:
        n = self.labels.shape[0]
        for name in ("windows", "templates", "features", "records", "peak_indices"):
            if getattr(self, name).shape[0] != n:
                msg = f"BeatDataset.{name} has {getattr(self, name).shape[0]} rows, labels {n}"
                raise ValueError(msg)
        if len(self.unmatched_detections) != len(self.record_names) or len(
            self.missed_reference_beats
        ) != len(self.record_names):
            msg = "BeatDataset per-record counts must have one entry per record name"
            raise ValueError(msg)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def class_counts(self) -> dict[BeatClass, int]:
        """Number of beats of each class."""
        counts = np.bincount(self.labels, minlength=len(BEAT_CLASSES))
        return {beat_class: int(counts[beat_class.index]) for beat_class in BEAT_CLASSES}

    def subset(self, mask: npt.NDArray[np.bool_] | IntArray) -> BeatDataset:
        """The beats selected by a boolean mask or index array (per-record counts kept)."""
        return BeatDataset(
            windows=self.windows[mask],
            templates=self.templates[mask],
            features=self.features[mask],
            labels=self.labels[mask],
            records=self.records[mask],
            peak_indices=self.peak_indices[mask],
            record_names=self.record_names,
            unmatched_detections=self.unmatched_detections,
            missed_reference_beats=self.missed_reference_beats,
            excluded_records=self.excluded_records,
            cache_key=self.cache_key,
        )

    def of_records(self, names: Sequence[str]) -> BeatDataset:
        """The beats of the given records only."""
        return self.subset(np.isin(self.records, list(names)))

    def records_with_beats(self) -> tuple[str, ...]:
        """The names of the records that have beats here, sorted."""
        return tuple(str(name) for name in np.unique(self.records))

    def feature_columns(self, names: Sequence[str]) -> Float32Array:
        """The features ``names`` of every beat, in that order, shape (n, len(names)).

        Raises:
            ConfigError: A name is not one of ``FEATURE_NAMES``.
        """
        unknown = unknown_features(names)
        if unknown:
            msg = f"unknown beat features {unknown}; choose from {', '.join(FEATURE_NAMES)}"
            raise ConfigError(msg)
        return self.features[:, [FEATURE_NAMES.index(name) for name in names]]

    def window_channels(self, names: Sequence[str]) -> Float32Array:
        """The window channels ``names`` of every beat, shape (n, window_samples, len(names)).

        Raises:
            ConfigError: A name is not one of ``WINDOW_CHANNELS``.
        """
        unknown = unknown_channels(names)
        if unknown or not names:
            msg = f"window channels {list(names)}: choose from {', '.join(WINDOW_CHANNELS)}"
            raise ConfigError(msg)
        arrays = {"beat": self.windows, "template": self.templates}
        return np.stack([arrays[name] for name in names], axis=2)


def patient_balanced_sample(
    labels: IntArray,
    groups: IntArray,
    max_per_group_class: int,
    max_per_class: int,
    rng: np.random.Generator,
) -> IntArray:
    """Indices of random beats, at most so many per (group, class) pair and per class.

    Sorted (input order). Groups are records: no single patient dominates a class.

    Example:
        >>> labels, groups = np.array([0, 0, 0, 0, 1, 1]), np.array([0, 0, 0, 1, 1, 1])
        >>> patient_balanced_sample(labels, groups, 1, 10, np.random.default_rng(0)).size
        3
    """
    kept: list[IntArray] = []
    for label in np.unique(labels):
        members: list[IntArray] = []
        for group in np.unique(groups[labels == label]):
            pair = np.flatnonzero((labels == label) & (groups == group))
            if pair.size > max_per_group_class:
                pair = rng.choice(pair, size=max_per_group_class, replace=False)
            members.append(pair)
        chosen = np.concatenate(members)
        if chosen.size > max_per_class:
            chosen = rng.choice(chosen, size=max_per_class, replace=False)
        kept.append(chosen.astype(np.int64))
    return np.sort(np.concatenate(kept)) if kept else np.empty(0, dtype=np.int64)


def subsample(dataset: BeatDataset, max_per_record_class: int, seed: int) -> BeatDataset:
    """At most ``max_per_record_class`` random beats of each record and class (a smaller file).

    The draw is :func:`patient_balanced_sample` with records as groups and no cap per class,
    so that no single patient dominates a class; beats keep their order.

    Args:
        dataset: The beats to draw from.
        max_per_record_class: Beats kept per (record, class) pair, at most.
        seed: Seed of the draw.

    Raises:
        ConfigError: ``max_per_record_class`` is below 1.
    """
    if max_per_record_class < 1:
        msg = f"max_per_record_class={max_per_record_class} must be >= 1"
        raise ConfigError(msg)
    _, groups = np.unique(dataset.records, return_inverse=True)
    rng = np.random.default_rng(seed)
    kept = patient_balanced_sample(dataset.labels, groups, max_per_record_class, len(dataset), rng)
    return dataset.subset(kept)


def select_records(dataset: BeatDataset, records: Sequence[str] | None, path: Path) -> BeatDataset:
    """The beats of ``records`` in a dataset read from a file; every beat when None.

    Args:
        dataset: The dataset, as :func:`load_dataset` read it.
        records: Names of the records to keep, or None for all of them.
        path: The dataset's file, named in the error.

    Raises:
        ConfigError: A record of ``records`` is not in the dataset.
    """
    if records is None:
        return dataset
    missing = sorted(set(records) - set(dataset.record_names))
    if missing:
        msg = f"records {missing} are not in {path}; it holds {' '.join(dataset.record_names)}"
        raise ConfigError(msg)
    return dataset.of_records(records)


def default_dataset_cache_dir() -> Path:
    """``$ECG_STREAM_CACHE``, else ``$XDG_CACHE_HOME/ecg-stream/datasets`` (``~/.cache``)."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ecg-stream" / "datasets"


def project_version() -> str:
    """Version of the installed ecg-stream distribution."""
    return importlib.metadata.version(PACKAGE)


def detector_source_hash() -> str:
    """SHA-256 of the detector's source files: a changed detector makes a new dataset."""
    digest = hashlib.sha256()
    for path in sorted(Path(chain_module.__file__).parent.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def dataset_cache_key(
    records: Sequence[str],
    config: ChainConfig,
    chunk_samples: int = DATASET_CHUNK_SAMPLES,
    *,
    record_paths: Sequence[Path] = (),
) -> str:
    """Hash of the records (names and where found), chain settings, versions, detector source."""
    description = {
        "format": DATASET_FORMAT,
        "records": list(records),
        "record_paths": [str(path.resolve()) for path in record_paths],
        "config": asdict(config),
        "chunk_samples": chunk_samples,
        "version": project_version(),
        "detector": detector_source_hash(),
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:20]


def stream_record_windows(
    samples: npt.NDArray[np.float64],
    config: ChainConfig,
    chunk_samples: int = DATASET_CHUNK_SAMPLES,
) -> list[BeatWindow]:
    """Feed a whole lead through a fresh :class:`BeatExtractor` in chunks, as streaming does.

    Args:
        samples: The lead at the chain's rate, in mV.
        config: The chain's configuration.
        chunk_samples: Length of each chunk, in samples.

    Returns:
        Every beat window, in R-peak order, including those released by ``flush()``.
    """
    if chunk_samples < 1:
        msg = f"chunk_samples={chunk_samples} must be >= 1"
        raise ConfigError(msg)
    extractor = BeatExtractor(config)
    windows: list[BeatWindow] = []
    for start in range(0, samples.size, chunk_samples):
        chunk = Chunk(start_index=start, samples=samples[start : start + chunk_samples])
        windows.extend(extractor.process(chunk).windows)
    windows.extend(extractor.flush().windows)
    return windows


def build_dataset(
    records: Sequence[str],
    config: ChainConfig,
    *,
    data_dir: DataDirs = None,
    cache_dir: Path | None = None,
    chunk_samples: int = DATASET_CHUNK_SAMPLES,
) -> BeatDataset:
    """Load the labelled beats of ``records`` from the cache, building them if need be.

    Args:
        records: Record names (paced records are left out and listed in the result).
        config: The chain's configuration.
        data_dir: Directory or directories holding the WFDB records (default:
            ``records.data_dirs``); a record may also be given as a path stem.
        cache_dir: Dataset cache directory (default: :func:`default_dataset_cache_dir`).
        chunk_samples: Chunk length fed to the chain, in samples.

    Raises:
        ConfigError: No record is left once paced records are excluded.
        DataNotFoundError: A record cannot be found.
        RecordFormatError: A record has no reference annotations.
    """
    kept = [name for name in records if name not in PACED]
    excluded = tuple(name for name in records if name in PACED)
    if not kept:
        msg = f"records {list(records)} are all paced; give non-paced records (e.g. DS1)"
        raise ConfigError(msg)
    paths = [
        Path(name) if Path(name).parent != Path() else find_record(name, data_dir) for name in kept
    ]
    key = dataset_cache_key(kept, config, chunk_samples, record_paths=paths)
    path = (cache_dir or default_dataset_cache_dir()) / f"beats-{key}.npz"
    if path.is_file():
        logger.info("dataset: loading cached %s", path)
        return _load(path, key, excluded)
    arrays = _build_arrays(kept, config, data_dir, chunk_samples)
    _write_npz(path, arrays)
    logger.info("dataset: %d beats cached in %s", arrays["labels"].size, path)
    return _load(path, key, excluded)


def _build_arrays(
    records: Sequence[str], config: ChainConfig, data_dir: DataDirs, chunk_samples: int
) -> dict[str, Any]:
    """The arrays stored in the ``.npz`` (Any: numpy's ``savez`` stub types its kwargs loosely)."""
    tolerance = round(MATCH_TOLERANCE_S * config.fs_hz)
    windows: list[npt.NDArray[np.float16]] = []
    templates: list[npt.NDArray[np.float16]] = []
    features: list[FloatArray] = []
    labels: list[int] = []
    beat_records: list[str] = []
    peak_indices: list[int] = []
    unmatched: list[int] = []
    missed: list[int] = []
    for number, name in enumerate(progress(records, len(records), "dataset"), start=1):
        record = load_record(name, data_dir)
        if record.annotations is None:
            msg = f"record {name} has no reference annotations (.atr); training needs them"
            raise RecordFormatError(msg)
        reference = np.array(
            [record.to_chain_index(int(i)) for i in record.annotations.beat_indices],
            dtype=np.int64,
        )
        record_windows = stream_record_windows(record.samples, config, chunk_samples)
        detected = np.array([window.peak.index for window in record_windows], dtype=np.int64)
        matching = match_beats(reference, detected, tolerance)
        for ref_position, det_position in matching.pairs:
            window = record_windows[det_position]
            channels = window_channels(window, WINDOW_CHANNELS).astype(np.float16)
            windows.append(channels[:, 0])
            templates.append(channels[:, 1])
            features.append(feature_vector(window, FEATURE_NAMES))
            labels.append(record.annotations.beat_classes[ref_position].index)
            beat_records.append(name)
            peak_indices.append(window.peak.index)
        unmatched.append(len(matching.unmatched_detection))
        missed.append(len(matching.unmatched_reference))
        logger.info(
            "dataset: record %s (%d/%d): %d beats, %d unmatched detections, %d missed",
            name,
            number,
            len(records),
            len(matching.pairs),
            unmatched[-1],
            missed[-1],
        )
    return {
        "windows": np.stack(windows) if windows else np.empty((0, config.window_samples)),
        "templates": np.stack(templates) if templates else np.empty((0, config.window_samples)),
        "features": np.array(features, dtype=np.float32).reshape(-1, len(FEATURE_NAMES)),
        "labels": np.array(labels, dtype=np.int64),
        "records": np.array(beat_records, dtype=np.str_),
        "peak_indices": np.array(peak_indices, dtype=np.int64),
        "record_names": np.array(list(records), dtype=np.str_),
        "unmatched_detections": np.array(unmatched, dtype=np.int64),
        "missed_reference_beats": np.array(missed, dtype=np.int64),
    }


def save_dataset(dataset: BeatDataset, path: Path) -> None:
    """Write a dataset as a compressed ``.npz`` that :func:`load_dataset` reads back.

    Windows and templates are stored in float16 (3 significant digits: far below the
    signal's own noise), so that a dataset travels to a training machine without its records.
    """
    _write_npz(
        path,
        {
            "windows": dataset.windows.astype(np.float16),
            "templates": dataset.templates.astype(np.float16),
            "features": dataset.features,
            "labels": dataset.labels,
            "records": dataset.records,
            "peak_indices": dataset.peak_indices,
            "record_names": np.array(dataset.record_names, dtype=np.str_),
            "unmatched_detections": np.array(dataset.unmatched_detections, dtype=np.int64),
            "missed_reference_beats": np.array(dataset.missed_reference_beats, dtype=np.int64),
            "cache_key": np.array(dataset.cache_key),
        },
    )


def _write_npz(path: Path, arrays: dict[str, Any]) -> None:
    """Write ``arrays`` as a compressed ``.npz`` atomically.

    Written under a name of its own, then renamed: a crash mid-write never leaves a truncated
    file behind, and processes writing the same file do not collide.
    """
    with atomic_output(path) as handle:
        np.savez_compressed(handle, **arrays)


def load_dataset(path: Path) -> BeatDataset:
    """Read a dataset written by :func:`save_dataset` (or a cache file).

    Raises:
        ConfigError: The file does not exist or is not a dataset of this format.
    """
    if not path.is_file():
        msg = f"dataset {path} does not exist; write one with `ecg-stream dataset {path} RECORD...`"
        raise ConfigError(msg)
    try:
        with np.load(path) as stored:
            key = str(stored["cache_key"]) if "cache_key" in stored else path.stem
        return _load(path, key, ())
    except (KeyError, ValueError, OSError) as error:
        msg = (
            f"{path} is not an ecg-stream dataset of format {DATASET_FORMAT}; write one with "
            f"`ecg-stream dataset {path} RECORD...`"
        )
        raise ConfigError(msg) from error


def _load(path: Path, key: str, excluded: tuple[str, ...]) -> BeatDataset:
    with np.load(path) as stored:
        return BeatDataset(
            windows=stored["windows"].astype(np.float32),
            templates=stored["templates"].astype(np.float32),
            features=stored["features"].astype(np.float32),
            labels=stored["labels"],
            records=stored["records"],
            peak_indices=stored["peak_indices"],
            record_names=tuple(str(name) for name in stored["record_names"]),
            unmatched_detections=tuple(int(n) for n in stored["unmatched_detections"]),
            missed_reference_beats=tuple(int(n) for n in stored["missed_reference_beats"]),
            excluded_records=excluded,
            cache_key=key,
        )
