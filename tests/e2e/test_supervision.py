"""Every background task is supervised: one dying stops the worker, loudly."""

from __future__ import annotations

import asyncio

import pytest

from certrecon.errors import WorkerCrashedError
from certrecon.worker.runtime import Runtime
from certrecon.worker.service import Worker
from tests.support import create_topics, isolated_settings


async def test_a_dying_background_task_stops_the_worker(
    fresh_database: str, kafka_bootstrap: str
) -> None:
    settings = isolated_settings()
    await create_topics(settings, kafka_bootstrap)
    ran = asyncio.Event()

    async def boom(runtime: Runtime, stop: asyncio.Event) -> None:
        ran.set()
        await asyncio.sleep(0.2)
        raise RuntimeError("disk on fire")

    worker = Worker(
        settings, dsn=fresh_database, bootstrap=kafka_bootstrap, services=[("boom", boom)]
    )
    stop = asyncio.Event()
    with pytest.raises(WorkerCrashedError, match=r"boom.*disk on fire"):
        await asyncio.wait_for(worker.run(stop), 60)
    assert ran.is_set()
    assert stop.is_set(), "the other tasks were asked to stop"


async def test_a_stop_request_ends_the_worker_cleanly(
    fresh_database: str, kafka_bootstrap: str
) -> None:
    settings = isolated_settings()
    await create_topics(settings, kafka_bootstrap)

    async def quiet(runtime: Runtime, stop: asyncio.Event) -> None:
        await stop.wait()

    worker = Worker(
        settings, dsn=fresh_database, bootstrap=kafka_bootstrap, services=[("quiet", quiet)]
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    while not worker.state.started:
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 30)
