"""Progress bars on long work (records analysed, evaluated, stressed, cut into datasets).

A bar goes to stderr, and only when stderr is a terminal: piped or captured output (scripts,
CI, the tests) stays exactly the lines the commands print.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], total: int, description: str) -> Iterator[T]:
    """Yield ``items``, drawing a bar of ``total`` steps on a terminal's stderr."""
    with tqdm(
        items,
        total=total,
        desc=description,
        unit="record",
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
        leave=False,
    ) as bar:
        yield from bar
