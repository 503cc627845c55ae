"""Run a command's coroutine so that Ctrl-C and SIGTERM shut it down cleanly; task-group errors."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from typing import Any

from ecg_stream.errors import EcgStreamError


def run_until_stopped(main: Coroutine[Any, Any, object]) -> bool:
    """Run ``main`` in a fresh event loop; Ctrl-C or SIGTERM cancel it, and it cleans up.

    A cancelled ``main`` still runs its ``finally`` blocks and ``async with`` exits (publishers
    drain and publish ``offline``), as ``asyncio.run`` does for Ctrl-C; SIGTERM, which service
    managers send (``systemctl stop``, ``docker stop``), takes the same path.

    Returns:
        Whether it was stopped by a signal (False: ``main`` returned).
    """

    async def guarded() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if task is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
                loop.add_signal_handler(signal.SIGTERM, task.cancel)
        await main

    try:
        asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        return True
    return False


def first_error(errors: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error to raise for a failed task group, unwrapped from nested groups.

    Its first user error (``EcgStreamError``: a user can fix it, so it becomes one line, not a
    traceback), else its first error.
    """
    chosen: BaseException = errors.subgroup(EcgStreamError) or errors
    while isinstance(chosen, BaseExceptionGroup):
        chosen = chosen.exceptions[0]
    return chosen
