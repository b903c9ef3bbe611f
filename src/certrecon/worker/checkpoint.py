"""The worker's periodic ledger checkpoint on ``certrecon.audit-checkpoint``.

Every ``audit_checkpoint_seconds`` each replica looks at the chain's head; when the ledger
moved since the last checkpoint (links that record only checkpoint messages and their
acknowledgements do not count), it queues the head as a message through the outbox, so
it is itself a ledger fact. The message_id names the seq, so replicas that see the same
head queue it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any, Protocol

import asyncpg

from certrecon.audit.chain import Checkpoint
from certrecon.domain import CST
from certrecon.errors import DatabaseUnavailableError
from certrecon.logs import get_logger
from certrecon.store import audit, db
from certrecon.store.results import OutboxMessage, enqueue

if TYPE_CHECKING:
    from certrecon.settings import Settings
    from certrecon.worker.runtime import Clock

log = get_logger(__name__)

CHECKPOINT_SCHEMA_VERSION = 1

_ERRORS: tuple[type[BaseException], ...] = (
    *db.RETRIABLE_DB_ERRORS,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    DatabaseUnavailableError,
)


def checkpoint_payload(checkpoint: Checkpoint) -> bytes:
    body = {"schema_version": CHECKPOINT_SCHEMA_VERSION, **checkpoint.to_json()}
    body["at"] = checkpoint.at.astimezone(CST).isoformat()
    return json.dumps(body, separators=(",", ":")).encode()


class CheckpointHost(Protocol):
    """What the checkpointer needs of the worker it runs in."""

    @property
    def settings(self) -> Settings: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def pool(self) -> asyncpg.Pool[Any]: ...
    def wake_relay(self) -> None: ...


class AuditCheckpointer:
    """A worker service: ``AuditCheckpointer(interval)(host, stop)``."""

    def __init__(self, interval_seconds: float) -> None:
        self.interval = interval_seconds
        self.last_seq: int | None = None
        """The seq of the last checkpoint this process queued."""

    async def __call__(self, host: CheckpointHost, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await stop.wait()
            if stop.is_set():
                return
            try:
                await self.tick(host)
            except _ERRORS as exc:
                log.warning("audit checkpoint failed; retrying next period", error=repr(exc))

    async def tick(self, host: CheckpointHost) -> Checkpoint | None:
        """Queue a checkpoint when the ledger moved; return it, or None."""
        async with host.pool.acquire() as conn, conn.transaction():
            moved = await audit.latest_content_seq(conn)
            if moved is None or (self.last_seq is not None and moved <= self.last_seq):
                return None
            head = await audit.head(conn, host.clock())
            await enqueue(
                conn,
                [
                    OutboxMessage(
                        f"{audit.CHECKPOINT_PREFIX}{head.seq}",
                        "audit_checkpoint",
                        host.settings.audit_checkpoint_topic,
                        b"ledger",
                        checkpoint_payload(head),
                    )
                ],
            )
        self.last_seq = head.seq
        log.info("audit checkpoint queued", seq=head.seq, head_sha256=head.head_sha256)
        host.wake_relay()
        return head
