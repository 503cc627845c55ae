"""Display ring buffer: the last few seconds of one stream's samples, pure numpy."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ecg_stream.errors import ConfigError

Float32Array = npt.NDArray[np.float32]


class DisplayRing:
    """The newest ``capacity_samples`` samples of one stream, placed by absolute sample index.

    Storage is mirrored (every sample is written twice, ``capacity_samples`` apart), so the
    newest ``n`` samples are always one contiguous slice: reading them for a redraw never
    allocates or concatenates. Samples that never arrived (a lost QoS 0 message) read as NaN,
    so a trace shows a gap instead of a false straight line; samples older than the newest one
    (late or duplicate messages) are dropped and counted. Memory is fixed at construction.

    Args:
        capacity_samples: How many of the newest samples are kept.

    Attributes:
        end_index: Index one past the newest sample (``0`` before any sample arrived).
        start_index: Index of the oldest sample still held (``end_index`` when empty).
        gap_samples: Samples filled with NaN because the messages holding them never came.
        late_samples: Samples dropped because they arrived after newer ones.

    Example:
        >>> ring = DisplayRing(4)
        >>> ring.append(10, np.array([1.0, 2.0, 3.0]))
        >>> ring.append(14, np.array([5.0, 6.0]))
        >>> ring.start_index, ring.end_index, ring.gap_samples
        (12, 16, 1)
        >>> ring.latest(4).tolist()
        [3.0, nan, 5.0, 6.0]
    """

    def __init__(self, capacity_samples: int) -> None:
        if capacity_samples < 1:
            msg = f"capacity_samples={capacity_samples} must be >= 1 (e.g. 10 s x 360 Hz = 3600)"
            raise ConfigError(msg)
        self.capacity_samples = capacity_samples
        self._values: Float32Array = np.empty(2 * capacity_samples, dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget every sample, as a fresh ring of the same capacity."""
        self._values.fill(np.nan)
        self._first_index: int | None = None  # index of the first sample ever appended
        self.end_index = 0
        self.gap_samples = 0
        self.late_samples = 0

    @property
    def start_index(self) -> int:
        """Index of the oldest sample still held (``end_index`` when empty)."""
        if self._first_index is None:
            return self.end_index
        return max(self._first_index, self.end_index - self.capacity_samples)

    @property
    def size(self) -> int:
        """Number of samples held, NaN-filled gaps included."""
        return self.end_index - self.start_index

    def append(self, start_index: int, values: npt.ArrayLike) -> None:
        """Place ``values`` at ``start_index, start_index + 1, ...``.

        Args:
            start_index: Absolute index of ``values[0]``, in samples from stream start.
            values: Consecutive samples (any float dtype; stored as float32).

        Raises:
            ConfigError: If ``start_index`` is negative or ``values`` is not 1-D.
        """
        data = np.asarray(values, dtype=np.float32)
        if start_index < 0 or data.ndim != 1:
            msg = (
                f"append(start_index={start_index}, values of shape {data.shape}) needs "
                "start_index >= 0 and 1-D values"
            )
            raise ConfigError(msg)
        if data.size == 0:
            return
        if self._first_index is None:
            self._first_index = start_index
            self.end_index = start_index
        if start_index < self.end_index:  # late or repeated samples: the newest ones win
            overlap = min(self.end_index - start_index, data.size)
            self.late_samples += overlap
            data, start_index = data[overlap:], start_index + overlap
            if data.size == 0:
                return
        if start_index > self.end_index:  # samples never came: show a gap, not a line
            missing = start_index - self.end_index
            self.gap_samples += missing
            shown = min(missing, self.capacity_samples)  # older NaNs would be overwritten
            self._write(start_index - shown, None, shown)
            self.end_index = start_index
        if data.size > self.capacity_samples:  # only the newest ones can be kept
            skip = data.size - self.capacity_samples
            data, start_index = data[skip:], start_index + skip
        self._write(start_index, data, data.size)
        self.end_index = start_index + data.size

    def _write(self, start_index: int, data: Float32Array | None, count: int) -> None:
        """Write ``count <= capacity_samples`` samples (NaN if ``data`` is None) in both mirrors."""
        capacity = self.capacity_samples
        position = start_index % capacity
        first = min(count, capacity - position)  # before the wrap
        for offset in (0, capacity):
            lo = position + offset
            if data is None:
                self._values[lo : lo + first] = np.nan
                self._values[offset : offset + count - first] = np.nan
            else:
                self._values[lo : lo + first] = data[:first]
                self._values[offset : offset + count - first] = data[first:count]

    def latest(self, count: int) -> Float32Array:
        """The newest ``min(count, size)`` samples, oldest first, as a read-only view.

        The view is valid until the next :meth:`append`; copy it to keep it.

        Args:
            count: Number of samples wanted.
        """
        count = max(0, min(count, self.size))
        stop = self.end_index % self.capacity_samples + self.capacity_samples
        view = self._values[stop - count : stop]
        view.flags.writeable = False
        return view

    def value_at(self, index: int) -> float:
        """The sample at absolute ``index``, or NaN if it is not held (too old, future, gap)."""
        if not self.start_index <= index < self.end_index:
            return float("nan")
        return float(self._values[index % self.capacity_samples])
