"""Supervision of the worker's named background tasks.

Every task is named. If one ends while the worker should be running (it raised, or
returned before a stop was requested), the others are asked to stop and
:class:`WorkerCrashedError` is raised, so a process supervisor restarts the worker. On a
stop request the tasks stop in two phases within one grace period: the ``first`` tasks
(the consumer and the services) end, then the ``then`` tasks (the relay) are told to stop
and drain what the first ones left them. Whatever still runs when the grace period ends
is cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from certrecon.errors import WorkerCrashedError
from certrecon.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class NamedTask:
    """A background task: ``run(stop)`` works until ``stop`` is set, then returns."""

    name: str
    run: Callable[[asyncio.Event], Coroutine[Any, Any, None]]


async def supervise(
    stop: asyncio.Event,
    first: Sequence[NamedTask],
    then: Sequence[NamedTask] = (),
    *,
    grace_seconds: float,
) -> None:
    """Run the tasks until ``stop`` is set or one of them ends; see the module docstring."""
    then_stop = asyncio.Event()
    early = [asyncio.create_task(t.run(stop), name=t.name) for t in first]
    late = [asyncio.create_task(t.run(then_stop), name=t.name) for t in then]
    tasks = [*early, *late]
    stopping = asyncio.create_task(stop.wait(), name="stop-signal")
    done, _ = await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
    # A task that ends cleanly once a stop was requested has simply finished.
    died = [
        t
        for t in done
        if t is not stopping and not (stop.is_set() and not t.cancelled() and t.exception() is None)
    ]
    for t in died:
        exc = None if t.cancelled() else t.exception()
        log.error(
            "background task ended unexpectedly",
            task=t.get_name(),
            error=repr(exc) if exc else "returned",
        )
    stop.set()
    stopping.cancel()
    try:
        async with asyncio.timeout(grace_seconds):
            if early:
                await asyncio.wait(early)
            then_stop.set()
            if late:
                await asyncio.wait(late)
    except TimeoutError:
        log.error("shutdown grace period exceeded; cancelling", grace=grace_seconds)
    for t in tasks:
        if not t.done():
            t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if died:
        names = ", ".join(t.get_name() for t in died)
        first_error = next(
            (t.exception() for t in died if not t.cancelled() and t.exception()), None
        )
        raise WorkerCrashedError(f"background task(s) {names} died: {first_error!r}") from (
            first_error
        )
    for t in tasks:
        if not t.cancelled() and t.exception() is not None:
            raise WorkerCrashedError(
                f"background task {t.get_name()} failed during shutdown: {t.exception()!r}"
            ) from t.exception()
