"""Bounded retries at the adapter edges: the one place that builds tenacity policies.

A :class:`RetryPolicy` names what is worth trying again (a predicate on the exception)
and how long to keep trying: exponential waits up to ``max_wait`` seconds, giving up once
``within_seconds`` have passed since the first attempt, then re-raising the last error
itself (never tenacity's ``RetryError``). Every retry in certrecon goes through one, so
no loop can retry for ever and the bounds of each edge are written once, beside its
error classes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

T = TypeVar("T")

Retriable = Callable[[BaseException], bool]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """What to retry and for how long; see the module docstring."""

    retriable: Retriable
    first_wait: float
    """The first wait in seconds; each later one doubles, up to ``max_wait``."""
    max_wait: float
    within_seconds: float
    """Give up (re-raising the last error) once this long has passed since the first try."""

    def __post_init__(self) -> None:
        if not (self.first_wait > 0 and self.max_wait >= self.first_wait):
            raise ValueError("waits must be positive, first_wait <= max_wait")
        if not self.within_seconds >= 0:
            raise ValueError("within_seconds must be >= 0")

    def within(self, seconds: float) -> RetryPolicy:
        """The same policy with another overall bound (e.g. a caller's connect timeout)."""
        return replace(self, within_seconds=seconds)

    def attempts(self) -> AsyncRetrying:
        """For ``async for attempt in policy.attempts(): with attempt: ...``."""
        return AsyncRetrying(
            retry=retry_if_exception(self.retriable),
            wait=wait_exponential(multiplier=self.first_wait, max=self.max_wait),
            stop=stop_after_delay(self.within_seconds),
            reraise=True,
        )

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``await fn()``, tried again while it fails retriably and the bound allows."""
        async for attempt in self.attempts():
            with attempt:
                return await fn()
        raise AssertionError("unreachable")  # pragma: no cover
