"""The row digest's encoding, without a database (the integration tests compare it with
PostgreSQL's own ``record_send``)."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from certrecon.audit.digest import TABLES, column_digests, encode_row, row_digest

CST = dt.timezone(dt.timedelta(hours=8))


def test_the_encoding_is_record_send() -> None:
    spec = TABLES["outbox_ack"]
    at = dt.datetime(2000, 1, 1, 8, 0, 0, 1, tzinfo=CST)  # 1 µs after the PostgreSQL epoch
    encoded = encode_row(spec, ["m", at])
    assert encoded == (
        b"\x00\x00\x00\x02"
        + b"\x00\x00\x00\x19\x00\x00\x00\x01m"
        + b"\x00\x00\x04\xa0\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x01"
    )
    assert (
        row_digest(spec, ["m", at])
        == hashlib.sha256(b"certrecon-row/2 outbox_ack\n" + encoded).digest()
    )


def test_column_wise_and_row_wise_agree() -> None:
    at = dt.datetime(2024, 6, 3, 10, 0, 0, 123456, tzinfo=CST)
    rows = [
        ("C1", 1, "C1:1", "qualified", "认证通过", at, "rules", None, None),
        ("C2", 2, "C2:2", "eligibility_lost", "", at, "staff:s1", "note\n", '{"a": 1}'),
    ]
    columns = [list(c) for c in zip(*rows, strict=True)]
    assert column_digests("result", columns) == [row_digest("result", r) for r in rows]


def test_every_value_counts() -> None:
    at = dt.datetime(2024, 6, 3, 10, tzinfo=CST)
    base: list[object] = ["A", "qualified", None, "r", "rules", "v", "{}", at, 1]
    digest = row_digest("decision", base)
    later = at + dt.timedelta(microseconds=1)
    for i, other in enumerate(["B", "not_in_scope", "x", "s", "x", "w", "[]", later, 2]):
        changed = list(base)
        changed[i] = other
        assert row_digest("decision", changed) != digest, i
    # The same instant in another zone is the same stored value.
    same = list(base)
    same[7] = at.astimezone(dt.UTC)
    assert row_digest("decision", same) == digest
    # NULL and the empty string differ.
    empty = list(base)
    empty[2] = ""
    assert row_digest("decision", empty) != digest
    # So does the table the row is in, for the same values and types.
    assert row_digest("review_item", ["A", "r", at]) != row_digest("outbox_failure", ["A", "r", at])


def test_wrong_values_are_refused() -> None:
    at = dt.datetime(2024, 6, 3, 10, tzinfo=CST).replace(tzinfo=None)  # naive on purpose
    with pytest.raises(ValueError, match="timezone-aware"):
        row_digest("outbox_ack", ["m", at])
    with pytest.raises(ValueError, match="values for"):
        row_digest("outbox_ack", ["m"])
    with pytest.raises(ValueError, match="canonical text"):
        row_digest("decision", ["A", None, "x", "r", "r", "v", {"a": 1}, at, None])
    with pytest.raises(ValueError, match="lengths"):
        column_digests("outbox_ack", [["a", "b"], [dt.datetime.now(dt.UTC)]])
