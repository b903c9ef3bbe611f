"""Output of the cycle commands: tables and owner-only list files."""

from __future__ import annotations

import datetime as dt
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from certrecon.cli.cycle_view import cycle_heading, parse_day, print_summary, write_rows_csv
from certrecon.cycle import CycleStatus, CycleSummary, OutreachRow
from certrecon.domain import CycleMode
from certrecon.errors import InputError

ROW = OutreachRow(
    "11010519491231002X", "张三", "110105", "basic_pension", CycleStatus.NOT_CERTIFIED, None
)


def test_the_list_file_is_owner_only_even_over_an_open_file(tmp_path: Path) -> None:
    path = tmp_path / "outreach.csv"
    path.write_text("old")
    path.chmod(0o644)
    assert write_rows_csv(path, [ROW, ROW]) == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text(encoding="utf-8").splitlines() == [
        "id_number,name,insured_region,benefit_type,status,last_certified_on",
        "11010519491231002X,张三,110105,basic_pension,not_certified,",
        "11010519491231002X,张三,110105,basic_pension,not_certified,",
    ]


def test_a_failure_while_writing_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "outreach.csv"

    def rows() -> Iterator[OutreachRow]:
        yield ROW
        raise RuntimeError("database gone")

    with pytest.raises(RuntimeError, match="database gone"):
        write_rows_csv(path, rows())
    assert list(tmp_path.iterdir()) == []


def test_a_missing_folder_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        write_rows_csv(tmp_path / "no" / "outreach.csv", [])


def test_dates_are_strict() -> None:
    assert parse_day(" 2024-06-30 ", "--as-of") == dt.date(2024, 6, 30)
    for bad in ("2024-6-30", "20240630", "2024-02-30", ""):
        with pytest.raises(InputError, match="--as-of"):
            parse_day(bad, "--as-of")


def test_the_summary_tables(capsys: pytest.CaptureFixture[str]) -> None:
    summary = CycleSummary(2024)
    summary.add("110105", CycleStatus.CERTIFIED, 3)
    summary.add("", CycleStatus.NOT_CERTIFIED)
    print_summary(summary, cycle_heading(CycleMode.CALENDAR_YEAR, 2024, dt.date(2024, 12, 31)))
    out = capsys.readouterr().out
    assert "Certification cycle 2024 (calendar year; first payment on or before 2023-12-31)" in out
    assert "In scope: 4" in out
    assert "75.0 %" in out
    assert "unknown" in out
    assert "rolling 12 months, as of 2024-06-01" in cycle_heading(
        CycleMode.ROLLING_12_MONTHS, 2024, dt.date(2024, 6, 1)
    )
