"""What ``pip install`` users get: the wheel carries the contract and the migrations."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

from certrecon.contract import SCHEMA_NAMES, example_names


def test_the_wheel_carries_schemas_examples_and_migrations(repo_root: Path, tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=repo_root,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = tmp_path.glob("certrecon-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in SCHEMA_NAMES:
        assert f"certrecon/contract/schemas/{name}.schema.json" in names
    for name in example_names():
        assert f"certrecon/contract/examples/{name}" in names
    migrations = sorted(p.name for p in (repo_root / "sql").glob("*.sql"))
    assert migrations
    for name in migrations:
        assert f"certrecon/sql/{name}" in names
    assert "certrecon/cli/contract_cmd.py" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "certrecon = certrecon.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_schemas_resolve_as_package_resources() -> None:
    folder = resources.files("certrecon.contract") / "schemas"
    for name in SCHEMA_NAMES:
        assert (folder / f"{name}.schema.json").is_file()
