"""The message contract as shipped with the package: JSON Schemas, example messages and the
validator that checks a message against its schema (``certrecon.contract.validate``).

They live inside the package so that an installed certrecon (and its tests) need nothing
outside it. Everything here is pure: nothing is read but the package's own resources.
"""

from __future__ import annotations

from certrecon.contract.shipped import (
    SCHEMA_NAMES,
    UnknownSchemaError,
    example_bytes,
    example_names,
    load_schema,
    schema_text,
)

__all__ = [
    "SCHEMA_NAMES",
    "UnknownSchemaError",
    "example_bytes",
    "example_names",
    "load_schema",
    "schema_text",
]
