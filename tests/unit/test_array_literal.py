"""Text array literals of ledger entries: every value quoted, escapes only where needed."""

from __future__ import annotations

import pytest

from certrecon.store.ledger import array_literal


@pytest.mark.parametrize(
    ("values", "literal"),
    [
        ([], "{}"),
        (["A1"], '{"A1"}'),
        (["A1", "B2:1", "认证"], '{"A1","B2:1","认证"}'),
        (["", "NULL", "a,b", "{x}"], '{"","NULL","a,b","{x}"}'),
        (["A1", None, "B2"], '{"A1",NULL,"B2"}'),
        ([None, None], "{NULL,NULL}"),
        (['a"b', "c"], '{"a\\"b","c"}'),
        (["a\\b", None], '{"a\\\\b",NULL}'),
    ],
)
def test_literal(values: list[str | None], literal: str) -> None:
    assert array_literal(values) == literal
