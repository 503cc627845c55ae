from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from ecg_stream.config import ChainConfig
from ecg_stream.detector.segment import FEATURE_NAMES, feature_vector, normalise_window
from ecg_stream.errors import ConfigError
from ecg_stream.records import Record
from ecg_stream.training.dataset import (
    BeatDataset,
    build_dataset,
    dataset_cache_key,
    default_dataset_cache_dir,
    select_records,
    stream_record_windows,
    subsample,
)
from ecg_stream.types import BeatClass
from tests.helpers import record_stretch

CONFIG = ChainConfig()


def test_record_100_beats_are_labelled_from_matching_reference_beats(
    data_dir: Path, dataset_cache: Path, record_100: Record
) -> None:
    dataset = build_dataset(["100"], CONFIG, data_dir=data_dir, cache_dir=dataset_cache)
    counts = dataset.class_counts()
    assert record_100.annotations is not None
    reference = record_100.annotations.beat_classes
    # Every reference beat is matched or counted as missed, per class.
    assert len(dataset) + dataset.missed_reference_beats[0] == len(reference)
    assert counts[BeatClass.V] <= reference.count(BeatClass.V)
    assert counts[BeatClass.S] >= 30  # record 100 holds 33 A beats
    assert dataset.windows.shape == (len(dataset), CONFIG.window_samples)
    assert dataset.features.shape == (len(dataset), len(FEATURE_NAMES))
    assert set(dataset.records.tolist()) == {"100"}
    assert np.all(np.diff(dataset.peak_indices) > 0)  # stream order


def test_windows_and_features_are_the_streaming_chains(
    data_dir: Path, dataset_cache: Path, record_100: Record
) -> None:
    dataset = build_dataset(["100"], CONFIG, data_dir=data_dir, cache_dir=dataset_cache)
    streamed = stream_record_windows(record_100.samples, CONFIG)
    by_peak = {window.peak.index: window for window in streamed}
    for row in (0, len(dataset) // 2, len(dataset) - 1):
        window = by_peak[int(dataset.peak_indices[row])]
        # Stored in float16: 3 significant digits of a unit-variance window.
        np.testing.assert_allclose(
            dataset.windows[row], normalise_window(window.samples), rtol=0, atol=5e-3
        )
        template = window.morphology.template
        assert template is not None
        np.testing.assert_allclose(dataset.templates[row], template, rtol=0, atol=5e-3)
        np.testing.assert_allclose(
            dataset.features[row], feature_vector(window, FEATURE_NAMES), rtol=1e-6
        )
    chosen = ("amplitude_ratio", "rr_s")
    np.testing.assert_array_equal(dataset.feature_columns(chosen), dataset.features[:, [5, 0]])
    with pytest.raises(ConfigError, match="unknown beat features \\['qrs_ms'\\]"):
        dataset.feature_columns(("rr_s", "qrs_ms"))


def test_cache_is_reused_and_keyed_by_everything_it_depends_on(
    data_dir: Path, dataset_cache: Path
) -> None:
    first = build_dataset(["100"], CONFIG, data_dir=data_dir, cache_dir=dataset_cache)
    files = sorted(dataset_cache.glob("*.npz"))
    again = build_dataset(["100"], CONFIG, data_dir=data_dir, cache_dir=dataset_cache)
    assert sorted(dataset_cache.glob("*.npz")) == files
    np.testing.assert_array_equal(first.labels, again.labels)
    key = dataset_cache_key(["100"], CONFIG)
    assert dataset_cache_key(["100", "101"], CONFIG) != key
    assert dataset_cache_key(["100"], ChainConfig(window_after_samples=150)) != key
    assert dataset_cache_key(["100"], CONFIG, chunk_samples=36) != key


def test_paced_records_are_left_out(data_dir: Path, dataset_cache: Path) -> None:
    dataset = build_dataset(["102", "100"], CONFIG, data_dir=data_dir, cache_dir=dataset_cache)
    assert dataset.record_names == ("100",)
    assert dataset.excluded_records == ("102",)
    with pytest.raises(ConfigError, match="all paced"):
        build_dataset(["102", "104"], CONFIG, data_dir=data_dir, cache_dir=dataset_cache)


def test_cache_directory_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ECG_STREAM_CACHE", str(tmp_path))
    assert default_dataset_cache_dir() == tmp_path
    monkeypatch.delenv("ECG_STREAM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_dataset_cache_dir() == tmp_path / "ecg-stream" / "datasets"


def test_concurrent_builds_of_one_dataset_do_not_collide(data_dir: Path, tmp_path: Path) -> None:
    # 3 minutes of record 100: each build takes a good tenth of a second, so both overlap
    stem = str(record_stretch(data_dir / "100", tmp_path, "stretch", 3 * 60 * 360))
    cache = tmp_path / "cache"
    with ThreadPoolExecutor(max_workers=2) as pool:
        builds = [
            pool.submit(build_dataset, [stem], CONFIG, data_dir=data_dir, cache_dir=cache)
            for _ in range(2)
        ]
        first, second = (build.result() for build in builds)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert len(first) > 200
    assert [path.name for path in cache.iterdir()] == [f"beats-{first.cache_key}.npz"]


def labelled_beats() -> BeatDataset:
    """Eight beats of records 100 (N N N N V V) and 101 (N N); 102 is included with no beat."""
    labels = np.array([0, 0, 0, 0, 2, 2, 0, 0], dtype=np.int64)
    n = labels.size
    return BeatDataset(
        windows=np.zeros((n, 4), dtype=np.float32),
        templates=np.zeros((n, 4), dtype=np.float32),
        features=np.zeros((n, len(FEATURE_NAMES)), dtype=np.float32),
        labels=labels,
        records=np.array(["100"] * 6 + ["101"] * 2),
        peak_indices=np.arange(n, dtype=np.int64) * 100,
        record_names=("100", "101", "102"),
        unmatched_detections=(0, 0, 0),
        missed_reference_beats=(0, 0, 0),
        excluded_records=(),
        cache_key="test",
    )


def test_subsample_keeps_at_most_the_cap_per_record_and_class_in_order() -> None:
    dataset = labelled_beats()
    kept = subsample(dataset, 1, seed=0)
    pairs = list(zip(kept.records.tolist(), kept.labels.tolist(), strict=True))
    assert sorted(pairs) == [("100", 0), ("100", 2), ("101", 0)]
    assert np.all(np.diff(kept.peak_indices) > 0)
    np.testing.assert_array_equal(subsample(dataset, 1, seed=0).peak_indices, kept.peak_indices)
    assert len(subsample(dataset, 10, seed=0)) == len(dataset)
    with pytest.raises(ConfigError, match="max_per_record_class=0 must be >= 1"):
        subsample(dataset, 0, seed=0)


def test_select_records_keeps_the_records_asked_for_and_names_the_missing() -> None:
    dataset, path = labelled_beats(), Path("beats.npz")
    assert select_records(dataset, None, path) is dataset
    chosen = select_records(dataset, ["101"], path)
    assert chosen.records.tolist() == ["101", "101"]
    assert dataset.records_with_beats() == ("100", "101")
    assert chosen.records_with_beats() == ("101",)
    with pytest.raises(ConfigError, match=r"records \['999'\] are not in beats.npz; it holds 100"):
        select_records(dataset, ["999", "100"], path)
