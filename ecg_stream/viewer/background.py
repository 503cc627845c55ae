"""A coroutine run in a worker thread beside the monitor (``ecg-stream replay --monitor``)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from ecg_stream.errors import ConfigError

CoroutineFactory = Callable[[], Coroutine[Any, Any, object]]


class BackgroundJob:
    """Run one coroutine to its end in a thread with its own event loop; cancel it from any thread.

    The monitor's GUI thread only draws, so work that produces what it shows (a replay) runs
    here, and so does the monitor's MQTT subscriber, in a job of its own.

    Args:
        factory: Makes the coroutine; called in the worker thread.
        name: Name of the worker thread.
        keep_error: Keep what the coroutine raises in ``error`` for the caller; if False, it
            ends the thread with its traceback (``threading.excepthook``).

    Attributes:
        error: What the coroutine raised (None if it finished, was cancelled or still runs).
    """

    def __init__(
        self, factory: CoroutineFactory, name: str = "ecg-background", *, keep_error: bool = True
    ) -> None:
        self.factory, self.name, self.keep_error = factory, name, keep_error
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[object] | None = None
        self._stop_requested = False
        self._thread: threading.Thread | None = None

    @property
    def done(self) -> bool:
        """Whether the coroutine has ended (finished, failed or cancelled)."""
        return self._thread is not None and not self._thread.is_alive()

    def start(self) -> None:
        """Start the worker thread (once).

        Raises:
            ConfigError: The job was already started.
        """
        if self._thread is not None:
            msg = f"background job {self.name!r} was already started; start() runs it once"
            raise ConfigError(msg)
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Cancel the coroutine (it may clean up, e.g. publish offline) and wait for the thread."""
        with self._lock:
            self._stop_requested = True
            loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed by itself
                loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(timeout_s)

    def join(self, timeout_s: float | None = None) -> None:
        """Wait for the coroutine to end by itself."""
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            asyncio.run(self._main())

    async def _main(self) -> None:
        with self._lock:
            if self._stop_requested:  # stop() came before the loop existed
                return
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
        try:
            await self.factory()
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # handed to the GUI thread, re-raised there
            if not self.keep_error:
                raise
            self.error = error
