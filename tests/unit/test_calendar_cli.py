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
        (["due", "2023-09-27", "-n", "0"], "from 1 to 60"),
        (["due", "2023-09-27", "--working-days", "-3"], "from 1 to 60"),
        (["due", "2023-09-27", "--working-days", "1" + "0" * 30], "from 1 to 60"),
        (["due", "9999-12-31T23:59:59Z"], "outside the supported calendar range"),
        (["due", "0001-01-01T00:00:00+14:00"], "outside the supported calendar range"),
        (["due", "9999-12-31"], "outside the supported calendar range"),
        (["due", "2003-06-01"], "outside the supported calendar range"),
        (["due", "2099-12-31"], "beyond the supported calendar range"),
        (["due", "2023-09-27T10:00:00+08:00" + " " * 300], "at most 200"),
        (["year", "2100"], "outside the supported calendar range"),
        (["year", "--", "-5"], "outside the supported calendar range"),
        (["year", "9" * 40], "outside the supported calendar range"),
        (["publish", "9" * 40, "--source", "x"], "outside the supported calendar range"),
        (["unpublish", "1999"], "outside the supported calendar range"),
        (["override", "add", "1999-01-01", "--working", "--source", "x"], "supported calendar"),
        (["override", "add", "2027-01-04", "--working", "--source", "x" * 201], "at most 200"),
        (["override", "add", "2027-01-04", "--working", "--source", "a\nb"], "line break"),
        (["publish", "2027", "--source", "x" * 201], "at most 200"),
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


def test_hostile_input_is_refused_or_shown_neutralised(root: click.Group) -> None:
    result = invoke(root, "due", "\x1b]0;owned\x07\x1b[2J2023")
    assert result.exit_code == 2
    assert result.stderr == "Error: the time contains control characters or a line break\n"
    result = invoke(root, "due", "\u202e2023-01-01\u2066")
    assert result.exit_code == 2
    assert "\\u202e2023-01-01\\u2066" in result.stderr
    assert "\u202e" not in result.stderr
    assert "\u2066" not in result.stderr


def test_parsers() -> None:
    assert parse_certified_at("2023-09-27").tzinfo is CST
    assert parse_certified_at("2023-09-27T02:00:00Z").utcoffset() is not None
    assert parse_day(" 2023-09-27 ").isoformat() == "2023-09-27"
    with pytest.raises(InputError):
        parse_day("20230927")
