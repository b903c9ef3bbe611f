"""The schemas and example messages shipped inside the package, read as package resources."""

from __future__ import annotations

import json
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from certrecon.errors import InputError

__all__ = [
    "SCHEMA_NAMES",
    "UnknownSchemaError",
    "example_bytes",
    "example_names",
    "load_schema",
    "schema_text",
]

SCHEMA_NAMES = (
    "certification",
    "result",
    "dead-letter",
    "sla-alert",
    "comparison-evidence",
    "benefit-action",
)
"""Every message certrecon reads (certification, comparison-evidence) or writes (the others)."""


class UnknownSchemaError(InputError):
    """A schema name that is not one of :data:`SCHEMA_NAMES`."""


def _files() -> Traversable:
    return resources.files(__package__ or "certrecon.contract")


def schema_text(name: str) -> str:
    """The JSON Schema of one message kind, as shipped.

    Raises :class:`UnknownSchemaError` for a name not in :data:`SCHEMA_NAMES`.
    """
    if name not in SCHEMA_NAMES:
        raise UnknownSchemaError(
            f"unknown schema {name!r}; the schemas are {', '.join(SCHEMA_NAMES)}"
        )
    return (_files() / "schemas" / f"{name}.schema.json").read_text(encoding="utf-8")


def load_schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_text(name))
    return loaded


def example_names() -> list[str]:
    """File names of the shipped example messages."""
    return sorted(f.name for f in (_files() / "examples").iterdir() if f.name.endswith(".json"))


def example_bytes(filename: str) -> bytes:
    """One shipped example message, byte for byte."""
    return (_files() / "examples" / filename).read_bytes()
