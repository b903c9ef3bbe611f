"""The replay's report: ``summary.json``, ``items.jsonl``, ``timeliness.csv`` and
``manifest.json`` (the SHA-256 of the other three, so a filed report can be checked).

Items and timeliness lines are written as they are found, so memory does not grow with
the window; the summary and the manifest are written at the end.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from certrecon.errors import InputError
from certrecon.replay.model import TIMELINESS_HEADER, Discrepancy, Tally

SUMMARY = "summary.json"
ITEMS = "items.jsonl"
TIMELINESS = "timeliness.csv"
MANIFEST = "manifest.json"
REPORT_FILES = (SUMMARY, ITEMS, TIMELINESS)
"""The files the manifest names, with their SHA-256."""


def summary_json(tally: Tally, *, window: dict[str, str], rules: str) -> dict[str, Any]:
    return {
        "clean": tally.clean,
        "window": window,
        "rules": rules,
        "discrepancies": tally.discrepancies,
        "by_kind": {str(k): n for k, n in tally.kinds.items()},
        **tally.counts,
    }


def timeliness_lines(rows: Iterable[list[str]]) -> str:
    """``timeliness.csv``'s lines for these rows (:meth:`Timeliness.row`)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def _dump(data: Any) -> bytes:
    return (json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False) + "\n").encode()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class ReportWriter:
    """Streams the report into ``directory`` (created; an existing report is not
    overwritten). Without a directory, it only counts."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._items: IO[str] | None = None
        self._times: IO[str] | None = None

    def __enter__(self) -> ReportWriter:
        d = self.directory
        if d is not None:
            d.mkdir(parents=True, exist_ok=True)
            for name in (*REPORT_FILES, MANIFEST):
                if (d / name).exists():
                    raise InputError(f"{d / name} exists: a filed report is never overwritten")
            self._items = (d / ITEMS).open("x", encoding="utf-8", newline="\n")
            self._times = (d / TIMELINESS).open("x", encoding="utf-8", newline="")
            self._times.write(timeliness_lines([list(TIMELINESS_HEADER)]))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for f in (self._items, self._times):
            if f is not None:
                f.close()

    def item(self, d: Discrepancy) -> None:
        if self._items is not None:
            self._items.write(json.dumps(d.to_json(), ensure_ascii=False) + "\n")

    @property
    def keeps_timeliness(self) -> bool:
        return self.directory is not None

    def timeliness_text(self, lines: str) -> None:
        """Lines made by :func:`timeliness_lines`."""
        if self._times is not None:
            self._times.write(lines)

    def finish(self, summary: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Write ``summary.json`` and, last, ``manifest.json`` with every file's SHA-256;
        returns the manifest (None without a directory)."""
        d = self.directory
        if d is None:
            return None
        for f in (self._items, self._times):
            if f is not None:
                f.flush()
                os.fsync(f.fileno())
                f.close()
        (d / SUMMARY).write_bytes(_dump(summary))
        manifest = {**manifest, "files": {name: sha256_file(d / name) for name in REPORT_FILES}}
        (d / MANIFEST).write_bytes(_dump(manifest))
        return manifest


def check_manifest(directory: Path) -> list[str]:
    """The report files whose SHA-256 no longer matches the manifest (empty: intact)."""
    manifest = json.loads((directory / MANIFEST).read_text("utf-8"))
    return [
        name
        for name, expected in manifest["files"].items()
        if not (directory / name).exists() or sha256_file(directory / name) != expected
    ]
