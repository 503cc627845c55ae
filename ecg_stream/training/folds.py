"""Patient-grouped cross-validation folds: whole records, each fold with its share of S and V.

A patient is never on both sides of a fold. Records are dealt out greedily, the richest in
ectopic beats first, each to the fold whose class loads it overlaps least (the fold that keeps
the sum of squared loads smallest), so that every fold holds S- and V-rich records and its share
of N beats (docs/protocol.md: K >= 5 folds of whole records).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ecg_stream.errors import ConfigError
from ecg_stream.types import BEAT_CLASSES, BeatClass

BALANCED_CLASSES = (BeatClass.S, BeatClass.V, BeatClass.N)
"""Classes whose beats are spread evenly over the folds, in order of priority."""


def record_folds(
    class_counts: Mapping[str, Mapping[BeatClass, int]], k: int, seed: int = 0
) -> tuple[tuple[str, ...], ...]:
    """Split records into ``k`` folds of whole records, balancing S, V and N beats.

    Args:
        class_counts: Beats of each class, per record.
        k: Number of folds (at least 2, at most the number of records).
        seed: Breaks ties between equally loaded folds.

    Raises:
        ConfigError: ``k`` is out of range.

    Example:
        >>> counts = {name: {BeatClass.S: s, BeatClass.V: v, BeatClass.N: 100}
        ...           for name, s, v in [("a", 50, 0), ("b", 40, 0), ("c", 0, 30), ("d", 0, 20)]}
        >>> record_folds(counts, 2)
        (('b', 'd'), ('a', 'c'))
    """
    names = sorted(class_counts)
    if not 2 <= k <= len(names):
        msg = f"--cv {k}: give 2 <= K <= {len(names)} (the number of records in the pool)"
        raise ConfigError(msg)
    columns = [beat_class for beat_class in BALANCED_CLASSES if beat_class in BEAT_CLASSES]
    counts = np.array([[class_counts[name].get(c, 0) for c in columns] for name in names], float)
    shares = counts / np.maximum(counts.sum(axis=0), 1.0)  # each record's share of each class
    order = sorted(range(len(names)), key=lambda i: tuple(-shares[i]))
    loads = np.zeros((k, len(columns)))
    members: list[list[str]] = [[] for _ in range(k)]
    tie_breaker = np.random.default_rng(seed).random(k)
    for i in order:
        # Least overlap with the fold's loads, then fewest records, then the seeded tie-breaker.
        overlap = loads @ shares[i]
        best = min(range(k), key=lambda f: (overlap[f], len(members[f]), tie_breaker[f]))
        loads[best] += shares[i]
        members[best].append(names[i])
    return tuple(tuple(sorted(fold)) for fold in members)
