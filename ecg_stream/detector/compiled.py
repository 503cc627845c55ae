"""The detector's compiled kernels: numba, set up once for exact float64 results."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

Function = TypeVar("Function", bound=Callable[..., Any])


def compiled(function: Function) -> Function:
    """Compile a kernel with numba, caching the machine code on disk.

    ``fastmath`` stays off, so float operations keep their IEEE order and rounding: a kernel
    that repeats numpy's or scipy's operations in their order gives the same bits. The first
    call of a process loads the cached code (or compiles it, once per install).
    """
    return cast(Function, numba.njit(cache=True)(function))
