"""The message contract as shipped with the package: JSON Schemas and example messages.

They live inside the package so that an installed certrecon (and its tests) need nothing
outside it.
"""

from __future__ import annotations

import json
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

SCHEMA_NAMES = ("certification", "result")


def _files() -> Traversable:
    return resources.files(__name__)


def schema_text(name: str) -> str:
    """The JSON Schema of one message kind, as shipped."""
    return (_files() / "schemas" / f"{name}.schema.json").read_text(encoding="utf-8")


def load_schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_text(name))
    return loaded


def example_bytes(filename: str) -> bytes:
    """One shipped example message, byte for byte."""
    return (_files() / "examples" / filename).read_bytes()
