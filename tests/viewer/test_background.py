"""BackgroundJob: a coroutine in a worker thread, cancelled from the GUI thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

from ecg_stream.errors import BrokerError, ConfigError
from ecg_stream.viewer.background import BackgroundJob


def test_job_runs_to_its_end() -> None:
    seen: list[str] = []

    async def work() -> None:
        await asyncio.sleep(0)
        seen.append(threading.current_thread().name)

    job = BackgroundJob(work, name="worker")
    job.start()
    job.join()
    job.stop()  # harmless once finished
    assert seen == ["worker"]
    assert job.done
    assert job.error is None


def test_stop_cancels_and_lets_the_coroutine_clean_up() -> None:
    started, cleaned = threading.Event(), threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.set()

    job = BackgroundJob(forever)
    job.start()
    assert started.wait(10)
    job.stop()
    assert cleaned.is_set()
    assert job.done
    assert job.error is None


def test_error_is_kept_for_the_caller() -> None:
    async def failing() -> None:
        msg = "no broker"
        raise BrokerError(msg)

    job = BackgroundJob(failing)
    job.start()
    job.join()
    assert isinstance(job.error, BrokerError)


def test_started_once() -> None:
    async def nothing() -> None:
        return None

    job = BackgroundJob(nothing)
    job.start()
    with pytest.raises(ConfigError, match="already started"):
        job.start()
    job.stop()
