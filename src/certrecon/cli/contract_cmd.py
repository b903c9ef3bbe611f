"""``certrecon contract``: the shipped JSON Schemas, and checking a message against one."""

from __future__ import annotations

import sys
from typing import BinaryIO

import click

from certrecon.contract import SCHEMA_NAMES


@click.group()
def contract() -> None:
    """The JSON Schemas of every message certrecon reads or writes."""


@contract.command("schema")
@click.argument("name", type=click.Choice(SCHEMA_NAMES), metavar="NAME")
def schema_cmd(name: str) -> None:
    """Print the JSON Schema (draft 2020-12) of message NAME.

    NAME is certification, result, dead-letter or sla-alert.
    """
    from certrecon.contract import schema_text

    # The shipped schema as it is, for machines: no character in it needs neutralising.
    click.echo(schema_text(name), nl=False)


@contract.command("validate")
@click.argument("name", type=click.Choice(SCHEMA_NAMES), metavar="NAME")
@click.argument("file", type=click.File("rb"))
def validate_cmd(name: str, file: BinaryIO) -> None:
    """Check the JSON message in FILE ('-' for standard input) against schema NAME
    (certification, result, dead-letter or sla-alert).

    Exit status 0 when it is valid; 1 when it is not, with every problem listed as
    "<path>: <rule>" ($ is the whole message); 2 when FILE cannot be read or is not JSON.
    Formats are checked too: date-time is RFC 3339 with an offset, date is YYYY-MM-DD.
    """
    from certrecon.cli.output import echo
    from certrecon.contract.validate import check_bytes
    from certrecon.errors import InputError

    name_of_file = getattr(file, "name", None)
    label = name_of_file if isinstance(name_of_file, str) else "-"
    try:
        data = file.read()
    except OSError as exc:
        raise InputError(f"{label}: cannot be read: {exc.strerror or exc}") from None
    try:
        problems = check_bytes(name, data)
    except InputError as exc:
        raise InputError(f"{label}: {exc}") from None
    # echo neutralises: file names and property names come from outside.
    if not problems:
        echo(f"{label}: valid {name} message")
        return
    count = len(problems)
    echo(f"{label}: {count} problem{'s' if count != 1 else ''} against the {name} schema")
    for problem in problems:
        echo(f"  {problem}")
    sys.exit(1)
