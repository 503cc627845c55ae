"""The one interface of every streaming stage: ``process``, ``flush``, ``reset``."""

from __future__ import annotations

from typing import Protocol, TypeVar

In_contra = TypeVar("In_contra", contravariant=True)
Out_co = TypeVar("Out_co", covariant=True)


class Stage(Protocol[In_contra, Out_co]):
    """A streaming stage: one chunk of input in, one batch of output out, explicit state.

    ``Out`` is the stage's batch, the same type from ``process`` and ``flush``: a list of
    events for an event stage (``RPeakDetector``: ``list[RPeak]``), a new array for an array
    stage (``CausalBandpass``), or a frozen record of both for a chain (``Extracted``: the
    filtered chunk and the beat windows it completed). The stages: ``CausalBandpass``,
    ``RPeakDetector``, ``BeatSegmenter`` and ``BeatExtractor``; each is
    checked by ``tests/test_conformance.py``:

    - Chunking never changes the joined output, ``flush()`` included.
    - ``flush()`` ends the stream: it returns what is held back and keeps the state (a second
      ``flush()`` returns an empty batch); ``process()`` then raises until ``reset()``.
    - ``reset()`` makes the stage equal to a fresh one built from the same arguments.
    - State is bounded over a long stream; input is never mutated.
    """

    def process(self, chunk: In_contra, /) -> Out_co:
        """Take the next chunk of the stream; return the output it completed."""

    def flush(self) -> Out_co:
        """The stream has ended: return what is still held back, keeping the state."""

    def reset(self) -> None:
        """Forget all past input: the stage is as freshly built."""


def ended_error(stage: object) -> RuntimeError:
    """The error of ``process()`` called on a stage whose stream ``flush()`` ended."""
    name = type(stage).__name__
    return RuntimeError(
        f"{name}.process() after flush(): the stream has ended; call reset() to start a new one"
    )
