"""Neutralised human output, the one rule for names, and free-text limits."""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import click
import pytest
from click.testing import CliRunner

from certrecon.cli import _Group
from certrecon.cli.output import cell, json_text
from certrecon.consumers import Invalid, Valid, decode
from certrecon.domain import Channel
from certrecon.errors import InputError, RosterImportError
from certrecon.reconcile.names import normalise_name, same_name
from certrecon.roster_csv import HEADER, parse_roster
from certrecon.text import (
    NAME_CONTROL,
    NAME_INVISIBLE,
    check_free_text,
    name_problem,
    printable,
)

HOSTILE = "\x1b]0;owned\x07\x1b[2J\x9b31m\x7f\u202eevil\u2066x\u2069\u200e\u200f\u061c\u2028"

# Every bidi control and the invisible characters copy-and-paste leaves in names.
BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"]
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u061c", "\u2060", "\ufeff", "\xad"]
CONTROL = ["\x00", "\x07", "\t", "\n", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u2029"]


def test_printable_leaves_ordinary_text_alone() -> None:
    for text in ("张秀英", "阿依古丽·买买提", "John Smith", "Müller", "𠀀𪚥", "a\\x1b"):
        assert printable(text) == text


def test_printable_escapes_every_control_format_and_separator_character() -> None:
    shown = printable(HOSTILE)
    assert shown == (
        "\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\x7f\\u202eevil\\u2066x\\u2069"
        "\\u200e\\u200f\\u061c\\u2028"
    )
    assert shown.isprintable()
    assert printable("a\nb", keep_newlines=True) == "a\nb"
    assert printable("a\nb\tc") == "a\\x0ab\\x09c"
    assert printable("\U000e0001") == "\\U000e0001"
    assert printable(None) == "None"


def test_rich_cells_are_literal_not_markup() -> None:
    from rich.console import Console

    console = Console(width=100, no_color=True, record=True, file=io.StringIO())
    console.print(cell("[bold]x[/bold] [link=http://e.invalid]y[/link] " + HOSTILE))
    text = console.export_text()
    assert "[bold]x[/bold]" in text
    assert "[link=http://e.invalid]y[/link]" in text
    assert "\x1b" not in text
    assert "\u202e" not in text
    assert "\\x1b]0;owned" in text


def test_json_output_keeps_the_data_and_escapes_hidden_characters() -> None:
    value: dict[str, Any] = {"note": HOSTILE + "张三", "astral": "\U000e0001", "n": [1, None]}
    text = json_text(value)
    assert json.loads(text) == value
    assert text.isascii() is False  # Chinese stays readable
    assert all(ch == "\n" or ch.isprintable() for ch in text)
    assert "\\u001b]0;owned" in text
    assert "\\u202e" in text
    assert "\\u009b" in text


def test_error_lines_are_neutralised() -> None:
    @click.group(cls=_Group)
    def root() -> None:
        pass

    @root.command()
    def boom() -> None:
        raise InputError(f"bad value {HOSTILE}")

    result = CliRunner().invoke(root, ["boom"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: bad value \\x1b]0;owned")
    assert all(ch == "\n" or ch.isprintable() for ch in result.stderr)


# --- the name rule ------------------------------------------------------------------------


@pytest.mark.parametrize("ch", BIDI + INVISIBLE)
def test_format_characters_are_refused_in_names(ch: str) -> None:
    assert name_problem(f"张{ch}三") == NAME_INVISIBLE


@pytest.mark.parametrize("ch", CONTROL)
def test_control_characters_are_refused_in_names(ch: str) -> None:
    assert name_problem(f"张{ch}三") == NAME_CONTROL


@pytest.mark.parametrize(
    "name", ["张三", "阿依古丽·买买提", "John Smith", "Ｊｏｈｎ", "𠀀", "张\u3000三", "\ue000"]
)
def test_ordinary_names_pass(name: str) -> None:
    assert name_problem(name) is None


def _wire(name: str) -> bytes:
    body = {
        "schema_version": 1,
        "certification_id": "RZ1",
        "channel": "12333",
        "subject": {"id_type": "resident_id", "id_number": "11010519491231002X", "name": name},
        "certified_at": "2026-09-30T09:21:05+08:00",
        "method": "face",
        "face_match": "pass",
        "on_behalf": {"id_number": "110108198001011237", "name": "李四"},
        "insured_region": "110105",
    }
    return json.dumps(body, ensure_ascii=True).encode()


def _decode(value: bytes) -> Valid | Invalid:
    return decode(
        value,
        topic="mohrss.certification.12333",
        channel=Channel.APP_12333,
        received_at=dt.datetime(2026, 9, 30, 3, 0, tzinfo=dt.UTC),
        max_skew=dt.timedelta(minutes=10),
    )


@pytest.mark.parametrize("ch", ["\u200b", "\u2066", "\u202e", "\ufeff", "\xad", "\u200d"])
def test_the_wire_refuses_the_same_names_as_the_roster(ch: str) -> None:
    name = f"张{ch}三"
    decoded = _decode(_wire(name))
    assert isinstance(decoded, Invalid)
    assert decoded.errors == (
        "subject.name: must not contain invisible formatting characters "
        "(bidi controls, zero-width characters)",
    )
    assert decoded.certification_id == "RZ1"

    row = f"11010519491231002X,{name},basic_pension,active,,,,,"
    with pytest.raises(RosterImportError) as caught:
        parse_roster([",".join(HEADER) + "\n", row + "\n"])
    assert caught.value.problems == [(2, f"name {NAME_INVISIBLE}")]


def test_on_behalf_names_follow_the_rule_too() -> None:
    body = json.loads(_wire("张三"))
    body["on_behalf"]["name"] = "李\u2067四\u2069"
    decoded = _decode(json.dumps(body).encode())
    assert isinstance(decoded, Invalid)
    assert decoded.errors[0].startswith("on_behalf.name: must not contain invisible")


def test_a_clean_name_passes_both_paths() -> None:
    assert isinstance(_decode(_wire("阿依古丽·买买提")), Valid)
    [record] = parse_roster(
        [",".join(HEADER) + "\n", "11010519491231002X,阿依古丽·买买提,basic_pension,active,,,,,\n"]
    )
    assert record.name == "阿依古丽·买买提"


@pytest.mark.parametrize("ch", BIDI + INVISIBLE)
def test_names_stored_before_the_rule_compare_as_they_look(ch: str) -> None:
    # Such names can no longer enter, but a roster loaded earlier may hold them: zero-width
    # and bidi characters are treated alike, none of them makes a mismatch.
    assert same_name(f"{ch}张三{ch}", "张三")
    assert normalise_name(f"张{ch}三") == "张三"


# --- free-text limits -----------------------------------------------------------------------


def test_free_text_limits() -> None:
    assert check_free_text("--note", "a\nb", max_length=10, multiline=True) == "a\nb"
    with pytest.raises(InputError, match="131,000 characters long; at most 2,000"):
        check_free_text("--note", "x" * 131_000, max_length=2000, multiline=True)
    with pytest.raises(InputError, match="NUL"):
        check_free_text("--note", "a\x00b", max_length=10, multiline=True)
    with pytest.raises(InputError, match="line break"):
        check_free_text("--by", "a\nb", max_length=10)
    with pytest.raises(InputError, match="control characters"):
        check_free_text("--source", "a\x1bb", max_length=10)
