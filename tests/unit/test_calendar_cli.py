"""``certrecon calendar due`` and ``year`` without a database, through the root command."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner, Result

from certrecon.cli import cli
from certrecon.cli.calendar_cmd import calendar, parse_certified_at, parse_day
from certrecon.domain import CST
from certrecon.errors import InputError

# No database: the answer must come from the package and the shipped data alone.
NO_DATABASE: dict[str, str | None] = {
    "CERTRECON_DATABASE_URL": None,
    "CERTRECON_DEADLINE_WORKING_DAYS": None,
}


@pytest.fixture(scope="module")
def root() -> click.Group:
    cli.add_command(calendar)
    return cli


def invoke(root: click.Group, *args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(root, ["calendar", *args], env={**NO_DATABASE, **(env or {})})


def test_due_prints_the_due_date_deadline_and_flag(root: click.Group) -> None:
    result = invoke(root, "due", "2023-09-27T10:00:00+08:00")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "2023-10-10" in lines[1]
    assert "2023-10-11T00:00:00+08:00" in lines[2]
    assert lines[3].split() == ["provisional", "no"]


def test_due_accepts_a_plain_date_and_other_offsets(root: click.Group) -> None:
    assert "2023-10-10" in invoke(root, "due", "2023-09-27").stdout.splitlines()[1]
    late_utc = invoke(root, "due", "2023-09-27T20:00:00Z").stdout.splitlines()
    assert "2023-09-28" in late_utc[0]
    assert "2023-10-11" in late_utc[1]


def test_due_with_other_working_days(root: click.Group) -> None:
    assert "2023-10-07" in invoke(root, "due", "2023-09-27", "-n", "2").stdout.splitlines()[1]
    from_env = invoke(root, "due", "2023-09-27", env={"CERTRECON_DEADLINE_WORKING_DAYS": "1"})
    assert "2023-09-28" in from_env.stdout.splitlines()[1]


def test_due_flags_a_provisional_deadline(root: click.Group) -> None:
    result = invoke(root, "due", "2026-12-28T09:00:00+08:00")
    assert result.exit_code == 0
    assert "provisional         yes" in result.stdout
    assert "2027" in result.stdout


def test_year_2027_is_provisional(root: click.Group) -> None:
    result = invoke(root, "year", "2027")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("2027: provisional")
    assert "none known" in result.stdout


def test_year_2023_lists_holidays_and_make_up_days(root: click.Group) -> None:
    result = invoke(root, "year", "2023")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("2023: official")
    holidays, makeup = result.stdout.split("make-up working days")
    assert "2023-10-06" in holidays
    assert "2023-10-07 Sat" in makeup
    assert "2023-10-08 Sun" in makeup


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["due", "2023-09-27T10:00:00"], "has no UTC offset"),
        (["due", "yesterday"], "neither a date"),
        (["due", "2023-02-30"], "not a valid date"),
        (["due", "2023-09-27", "-n", "0"], "at least 1"),
        (["due", "2023-09-27", "--working-days", "-3"], "at least 1"),
        (["override", "add", "2027-1-5", "--working", "--source", "x"], "YYYY-MM-DD"),
        (["override", "add", "2027-02-29", "--working", "--source", "x"], "not a valid date"),
        (["override", "remove", "tomorrow"], "YYYY-MM-DD"),
    ],
)
def test_bad_input_is_a_one_line_usage_error(
    root: click.Group, args: list[str], message: str
) -> None:
    result = invoke(root, *args)
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert message in errors[0]
    assert "Traceback" not in result.output


def test_dates_outside_the_range_are_an_error_not_a_traceback(root: click.Group) -> None:
    for args in (["due", "2003-06-01"], ["year", "2100"]):
        result = invoke(root, *args)
        assert result.exit_code == 1
        assert result.stderr.startswith("Error: ")
        assert "outside the supported calendar range" in result.stderr
        assert isinstance(result.exception, SystemExit)


def test_parsers() -> None:
    assert parse_certified_at("2023-09-27").tzinfo is CST
    assert parse_certified_at("2023-09-27T02:00:00Z").utcoffset() is not None
    assert parse_day(" 2023-09-27 ").isoformat() == "2023-09-27"
    with pytest.raises(InputError):
        parse_day("20230927")
