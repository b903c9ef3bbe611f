"""``certrecon contract schema`` and ``contract validate``, through the root command."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from certrecon.cli import cli
from certrecon.cli.contract_cmd import contract
from certrecon.contract import SCHEMA_NAMES, example_bytes, schema_text


@pytest.fixture(scope="module")
def root() -> click.Group:
    cli.add_command(contract)
    return cli


def invoke(root: click.Group, *args: str, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(root, ["contract", *args], input=stdin)


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_prints_the_shipped_schema(root: click.Group, name: str) -> None:
    result = invoke(root, "schema", name)
    assert result.exit_code == 0, result.output
    assert result.stdout == schema_text(name)
    assert json.loads(result.stdout)["$schema"].endswith("/2020-12/schema")


def test_schema_of_an_unknown_message(root: click.Group) -> None:
    result = invoke(root, "schema", "results")
    assert result.exit_code == 2
    assert "'results' is not one of" in result.stderr
    assert result.stdout == ""


def test_validate_a_valid_message(root: click.Group, tmp_path: Path) -> None:
    path = write(tmp_path, "r.json", example_bytes("result-qualified.json"))
    result = invoke(root, "validate", "result", path)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}: valid result message\n"


def test_validate_from_standard_input(root: click.Group) -> None:
    result = invoke(
        root, "validate", "certification", "-", stdin=example_bytes("12333-qualified.json")
    )
    assert result.exit_code == 0, result.output
    assert "valid certification message" in result.stdout


def test_validate_lists_every_problem(root: click.Group, tmp_path: Path) -> None:
    body = json.loads(example_bytes("result-qualified.json"))
    body.update(outcome="passed", due_date="2026-10-32", decided_by="robot")
    del body["reason"]
    path = write(tmp_path, "bad.json", json.dumps(body).encode())
    result = invoke(root, "validate", "result", path)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{path}: 4 problems against the result schema",
        "  $.decided_by: must match ^(?:rules|staff:[A-Za-z0-9._@-]{1,64})$",
        "  $.due_date: must be a date written YYYY-MM-DD",
        '  $.outcome: must be one of "qualified", "not_in_scope", "identity_mismatch", '
        '"face_not_verified", "eligibility_lost", "invalid_record"',
        "  $.reason: is required",
    ]


def test_validate_neutralises_control_characters(root: click.Group, tmp_path: Path) -> None:
    body = json.loads(example_bytes("result-qualified.json"))
    body["\x1b[2J\u202e"] = 1
    path = write(tmp_path, "evil\x1b.json", json.dumps(body, ensure_ascii=False).encode())
    result = invoke(root, "validate", "result", path)
    assert result.exit_code == 1
    assert "\x1b" not in result.stdout
    assert "\u202e" not in result.stdout
    assert "evil\\x1b.json: 1 problem against the result schema" in result.stdout
    assert '$["\\u001b[2J\\u202e"]: is not allowed' in result.stdout


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not valid UTF-8"),
        (b"", "not valid JSON"),
        (b'{"x": NaN}', "NaN is not a JSON value"),
    ],
)
def test_validate_something_that_is_not_json(
    root: click.Group, tmp_path: Path, data: bytes, reason: str
) -> None:
    path = write(tmp_path, "x.json", data)
    result = invoke(root, "validate", "result", path)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {path}: ")
    assert reason in result.stderr
    assert result.stdout == ""


def test_validate_usage_errors(root: click.Group, tmp_path: Path) -> None:
    path = write(tmp_path, "r.json", example_bytes("result-qualified.json"))
    unknown = invoke(root, "validate", "results", path)
    assert unknown.exit_code == 2
    assert "is not one of" in unknown.stderr
    missing = invoke(root, "validate", "result", str(tmp_path / "absent.json"))
    assert missing.exit_code == 2
    assert "No such file" in missing.stderr
    folder = invoke(root, "validate", "result", str(tmp_path))
    assert folder.exit_code == 2
    no_file = invoke(root, "validate", "result")
    assert no_file.exit_code == 2
    assert "Missing argument" in no_file.stderr
