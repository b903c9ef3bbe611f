"""docs/contract.md stays in step with what is shipped: its examples match the schemas,
and every command and setting it should describe is there."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from certrecon.cli import cli
from certrecon.cli.commands import register
from certrecon.contract import SCHEMA_NAMES
from certrecon.contract.validate import check_document

_EXAMPLE = re.compile(r"<!-- schema: ([a-z-]+) -->\n```json\n(.*?)\n```", re.DOTALL)


@pytest.fixture
def doc(repo_root: Path) -> str:
    return (repo_root / "docs" / "contract.md").read_text(encoding="utf-8")


def test_every_example_matches_its_schema(doc: str) -> None:
    examples = _EXAMPLE.findall(doc)
    assert sorted({name for name, _ in examples}) == sorted(SCHEMA_NAMES)
    for name, text in examples:
        assert check_document(name, json.loads(text)) == [], name


def test_every_command_is_described(doc: str) -> None:
    register(cli)
    for name in cli.commands:
        assert f"`certrecon {name}" in doc, name


def test_every_setting_is_described(doc: str, repo_root: Path) -> None:
    source = (repo_root / "src" / "certrecon" / "settings.py").read_text(encoding="utf-8")
    names = sorted(set(re.findall(r'"(CERTRECON_[A-Z0-9_]+)"', source)))
    assert "CERTRECON_DATA_DIR" in names
    for name in names:
        parts = name.split("_")
        # Tables abbreviate families: `CERTRECON_TOPIC_RESULT`, `_DEAD_LETTER`, ...
        spelled = [f"`{name}`", *(f"`_{'_'.join(parts[i:])}`" for i in range(1, len(parts)))]
        assert any(s in doc for s in spelled), f"docs/contract.md does not describe {name}"
