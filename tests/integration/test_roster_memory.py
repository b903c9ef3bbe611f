"""``certrecon roster import`` in bounded memory, whatever the file.

Each case runs the real command in a child process and reads its peak resident set size
from ``getrusage(RUSAGE_CHILDREN)`` of a small wrapper process, whose only child it is (the
test process itself has had many children). A resource bound, not a timing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from certrecon.ids import check_character
from certrecon.roster_csv import HEADER

PEAK_RSS_LIMIT_MB = 200

_WRAPPER = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"code": done.returncode, "out": done.stdout, "err": done.stderr,
                  "peak_mb": peak_kib / 1024}))
"""


def _import(dsn: str, tmp_path: Path, file: str) -> dict[str, object]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CERTRECON_")},
        "CERTRECON_DATABASE_URL": dsn,
        "CERTRECON_DATA_DIR": str(tmp_path / "data"),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _WRAPPER,
            sys.executable,
            "-m",
            "certrecon",
            "roster",
            "import",
            file,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _assert_refused(result: dict[str, object], message: str) -> None:
    err = str(result["err"])
    assert result["code"] == 2, err
    assert err.startswith("Error: "), err
    assert message in err
    assert "Traceback" not in err
    assert "MemoryError" not in err
    assert float(str(result["peak_mb"])) < PEAK_RSS_LIMIT_MB, result["peak_mb"]


def test_a_21_mb_line_is_refused_in_bounded_memory(fresh_database: str, tmp_path: Path) -> None:
    path = tmp_path / "one-line.csv"
    with path.open("w", encoding="utf-8") as f:
        f.write(",".join(HEADER) + "\n")
        f.write("11010519491231002X,张三," + "x" * 21_000_000 + ",active,,,,,\n")
    _assert_refused(_import(fresh_database, tmp_path, str(path)), "line 2 is longer than 65,536")


def test_dev_zero_is_refused_in_bounded_memory(fresh_database: str, tmp_path: Path) -> None:
    _assert_refused(_import(fresh_database, tmp_path, "/dev/zero"), "line 1 is longer than")


def test_a_binary_file_is_refused(fresh_database: str, tmp_path: Path) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes(bytes(range(256)) * 40_000)  # 10 MB, newlines every 256 bytes
    _assert_refused(_import(fresh_database, tmp_path, str(path)), "line 1")


def test_a_header_then_binary_is_refused_listing_a_bounded_number_of_problems(
    fresh_database: str, tmp_path: Path
) -> None:
    path = tmp_path / "header-then-binary.csv"
    path.write_bytes((",".join(HEADER) + "\n").encode() + bytes(range(256)) * 40_000)
    result = _import(fresh_database, tmp_path, str(path))
    _assert_refused(result, "nothing was imported")
    err = str(result["err"])
    assert len(err.splitlines()) <= 52  # the summary, 50 problems, the count of the rest
    assert "more problem(s)" in err


def _write_large_roster(path: Path, rows: int) -> None:
    """``rows`` distinct valid people, written fast (no per-person objects)."""
    start = dt.date(1940, 1, 1)
    with path.open("w", encoding="utf-8") as f:
        f.write(",".join(HEADER) + "\n")
        for k in range(rows):
            born = (start + dt.timedelta(days=k // 1000)).strftime("%Y%m%d")
            first17 = f"110105{born}{k % 1000:03d}"
            number = first17 + check_character(first17)
            f.write(f"{number},张秀英{k % 97},basic_pension,active,2010-01-01,,,,110105\n")


@pytest.mark.slow
def test_a_large_valid_file_imports_in_bounded_memory(fresh_database: str, tmp_path: Path) -> None:
    path = tmp_path / "large.csv"
    _write_large_roster(path, 400_000)
    result = _import(fresh_database, tmp_path, str(path))
    assert result["code"] == 0, result["err"]
    assert "400000 rows" in str(result["out"])
    assert "400000 inserted" in str(result["out"])
    assert float(str(result["peak_mb"])) < PEAK_RSS_LIMIT_MB, result["peak_mb"]
