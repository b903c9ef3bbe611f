"""The hash chain's rules, with no I/O: link bytes, checkpoints, and the verifier.

A link covers one committed transaction: the SHA-256 of the sorted SHA-256 digests of the
ledger rows it inserted. Its ``body`` is exactly the bytes hashed::

    b"certrecon-ledger-link/1 " + kind + b"\\n"
    + seq (8 bytes, big-endian) + previous link's sha256 (32 bytes; zeros for the first)
    + number of rows (8 bytes) + sha256 of their sorted digests (32 bytes)
    + commit instant in microseconds since 1970 UTC (8 bytes)

and its ``sha256`` is the SHA-256 of ``body``. The database builds links at commit
(``ledger_seal`` in ``sql/0004_ledger.sql``); :class:`ChainVerifier` checks them one by one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from certrecon.errors import InputError

GENESIS_PREV = bytes(32)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def link_body(
    *,
    kind: str,
    seq: int,
    prev_sha256: bytes,
    entries: int,
    entries_sha256: bytes,
    committed_at: dt.datetime,
) -> bytes:
    micros = (committed_at - _EPOCH) // dt.timedelta(microseconds=1)
    return (
        f"certrecon-ledger-link/1 {kind}\n".encode()
        + seq.to_bytes(8, "big", signed=True)
        + prev_sha256
        + entries.to_bytes(8, "big", signed=True)
        + entries_sha256
        + micros.to_bytes(8, "big", signed=True)
    )


def entries_digest(sorted_digests: Iterable[bytes]) -> bytes:
    """SHA-256 over row digests given in ascending byte order."""
    h = hashlib.sha256()
    for d in sorted_digests:
        h.update(d)
    return h.digest()


@dataclass(frozen=True, slots=True)
class Link:
    """One stored link, with what the database recomputed from its entries."""

    seq: int
    kind: str
    committed_at: dt.datetime
    entries: int
    prev_sha256: bytes
    entries_sha256: bytes
    body: bytes
    sha256: bytes
    recomputed_entries: int
    """Rows the link's transaction recorded, counted again from ``ledger_entry``."""
    recomputed_entries_sha256: bytes
    """The digest of those rows' digests, computed again from ``ledger_entry``."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The head of the chain at an instant, kept outside the database."""

    seq: int
    head_sha256: str
    entries: int
    at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "head_sha256": self.head_sha256,
            "entries": self.entries,
            "at": self.at.isoformat(),
        }

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        """Parse a checkpoint; :class:`InputError` when it is not one."""
        try:
            data = json.loads(text)
            seq, head, entries = data["seq"], data["head_sha256"], data["entries"]
            at = dt.datetime.fromisoformat(data["at"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"not a certrecon checkpoint: {exc}") from None
        if not (
            isinstance(seq, int)
            and isinstance(entries, int)
            and isinstance(head, str)
            and len(head) == 64
            and all(c in "0123456789abcdef" for c in head)
            and at.utcoffset() is not None
        ):
            raise InputError("not a certrecon checkpoint: seq, head_sha256, entries or at")
        return cls(seq, head, entries, at)


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing found wrong, or one of them."""

    seq: int | None
    """The link it concerns; None for a row no link covers."""
    table: str | None
    certification_id: str | None
    key: str | None
    what: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "table": self.table,
            "certification_id": self.certification_id,
            "key": self.key,
            "what": self.what,
        }


class ChainVerifier:
    """Feed links in ``seq`` order; it keeps only the previous link, so memory is constant."""

    def __init__(self) -> None:
        self.links = 0
        self.entries = 0
        self.baseline_entries = 0
        self.head: Link | None = None
        self.problems: list[Problem] = []
        self._cumulative: dict[int, tuple[bytes, int]] = {}

    def feed(self, link: Link, *, remember: int | None = None) -> None:
        """Check one link against the one before; ``remember`` keeps this seq's hash and
        running entry count (for a checkpoint)."""
        expected_seq = 1 if self.head is None else self.head.seq + 1
        expected_prev = GENESIS_PREV if self.head is None else self.head.sha256

        def fail(what: str) -> None:
            self.problems.append(Problem(link.seq, None, None, None, what))

        if link.seq != expected_seq:
            fail(f"link {expected_seq} is missing (the next stored link is {link.seq})")
        if link.prev_sha256 != expected_prev:
            fail("does not name the previous link's hash")
        if (link.recomputed_entries, link.recomputed_entries_sha256) != (
            link.entries,
            link.entries_sha256,
        ):
            fail(
                f"its rows' digests changed: recorded {link.entries} rows, "
                f"{link.recomputed_entries} found in ledger_entry"
            )
        body = link_body(
            kind=link.kind,
            seq=link.seq,
            prev_sha256=link.prev_sha256,
            entries=link.entries,
            entries_sha256=link.entries_sha256,
            committed_at=link.committed_at,
        )
        if body != link.body:
            fail("its stored bytes do not match its fields")
        if hashlib.sha256(link.body).digest() != link.sha256:
            fail("its hash does not match its bytes")
        self.links += 1
        self.entries += link.entries
        if link.kind == "baseline":
            self.baseline_entries += link.entries
        self.head = link
        if remember is not None and link.seq == remember:
            self._cumulative[link.seq] = (link.sha256, self.entries)

    def check_checkpoint(self, checkpoint: Checkpoint) -> None:
        """After the last link: the chain must still reach the checkpoint, unchanged."""
        head_seq = self.head.seq if self.head is not None else 0
        if head_seq < checkpoint.seq:
            self.problems.append(
                Problem(
                    head_seq + 1,
                    None,
                    None,
                    None,
                    f"the ledger ends at link {head_seq}, but the checkpoint of "
                    f"{checkpoint.at.isoformat()} names link {checkpoint.seq}: links "
                    f"{head_seq + 1} to {checkpoint.seq} were cut",
                )
            )
            return
        found = self._cumulative.get(checkpoint.seq)
        if found is None:
            return  # reported as a missing link already
        sha, entries = found
        if sha.hex() != checkpoint.head_sha256 or entries != checkpoint.entries:
            self.problems.append(
                Problem(
                    checkpoint.seq,
                    None,
                    None,
                    None,
                    "differs from the checkpoint "
                    f"({sha.hex()}, {entries} entries; checkpoint {checkpoint.head_sha256}, "
                    f"{checkpoint.entries})",
                )
            )


def first_problem(problems: Iterable[Problem]) -> Problem | None:
    """The problem of the lowest link; rows that no link covers come after every link."""
    ordered = sorted(problems, key=lambda p: (p.seq is None, p.seq or 0))
    return ordered[0] if ordered else None
