"""Checking a message against its shipped JSON Schema (draft 2020-12), every problem listed.

Formats are asserted, not merely annotated: ``date-time`` is an RFC 3339 timestamp with an
explicit offset (the parser the decoder uses) and ``date`` is ``YYYY-MM-DD``.

Problem texts name the field and the rule, never the offending value: a message may carry
an ID number or a name, and the texts end up in terminals, tickets and CI logs.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, ValidationError

from certrecon.consumers.models import parse_rfc3339
from certrecon.contract.shipped import load_schema
from certrecon.errors import InputError

__all__ = ["FORMAT_CHECKER", "NotJsonError", "Problem", "check_bytes", "check_document"]

FORMAT_CHECKER = FormatChecker(formats=())
"""The formats the contract uses, checked the way certrecon reads them."""

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FALLBACK_LIMIT = 200


@FORMAT_CHECKER.checks("date-time")
def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or parse_rfc3339(value) is not None


@FORMAT_CHECKER.checks("date")
def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE.fullmatch(value):
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


_FORMAT_TEXTS: Mapping[str, str] = {
    "date-time": "must be an RFC 3339 timestamp with an offset, e.g. 2026-09-30T09:21:05+08:00",
    "date": "must be a date written YYYY-MM-DD",
}


class NotJsonError(InputError):
    """The bytes to check are not one UTF-8 JSON document."""


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One broken rule: where (``$`` is the whole message, ``$.subject.name`` a field)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FORMAT_CHECKER)


def check_document(name: str, document: object) -> list[Problem]:
    """Every problem of a parsed JSON ``document`` against schema ``name``, sorted by path.

    An empty list means valid. Raises ``UnknownSchemaError`` for an unknown ``name``.
    """
    found: set[Problem] = set()
    for error in _validator(name).iter_errors(document):
        found.update(_problems(error))
    return sorted(found)


def check_bytes(name: str, data: bytes) -> list[Problem]:
    """Like :func:`check_document` for a message as it travels: UTF-8 JSON bytes.

    Raises :class:`NotJsonError` when ``data`` is not UTF-8 or not one JSON document.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotJsonError(f"not valid UTF-8 (byte {exc.start})") from None
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise NotJsonError(
            f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except ValueError as exc:
        raise NotJsonError(f"not valid JSON: {exc}") from None
    return check_document(name, document)


def _reject_constant(token: str) -> Any:
    # Python's json module accepts NaN and Infinity; JSON does not.
    raise ValueError(f"{token} is not a JSON value")


def _path(parts: Iterable[str | int]) -> str:
    text = "$"
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            text += f".{part}"
        else:
            text += f"[{json.dumps(part, ensure_ascii=False)}]"
    return text


def _problems(error: ValidationError) -> list[Problem]:
    where = list(error.absolute_path)
    rule = error.validator
    value: Any = error.validator_value
    instance: Any = error.instance
    if rule == "required" and isinstance(instance, dict):
        missing = [key for key in value if key not in instance]
        return [Problem(_path([*where, key]), "is required") for key in missing]
    if rule == "additionalProperties" and isinstance(instance, dict):
        schema = error.schema
        known = schema.get("properties", {}) if isinstance(schema, Mapping) else {}
        return [
            Problem(_path([*where, key]), "is not allowed") for key in instance if key not in known
        ]
    return [Problem(_path(where), _text(str(rule), value, error))]


def _text(rule: str, value: Any, error: ValidationError) -> str:
    if rule == "type":
        names = value if isinstance(value, list) else [value]
        return "must be of type " + " or ".join(names)
    if rule == "const":
        return f"must be {_json(value)}"
    if rule == "enum":
        return "must be one of " + ", ".join(_json(v) for v in value)
    if rule == "pattern":
        return f"must match {value}"
    if rule == "format":
        return _FORMAT_TEXTS.get(value, f"must be a valid {value}")
    if rule == "minLength":
        return f"must be at least {value} character{'s' if value != 1 else ''} long"
    if rule == "maxLength":
        return f"must be at most {value} characters long"
    if rule == "minimum":
        return f"must be at least {value}"
    if rule == "minItems":
        return f"must have at least {value} item{'s' if value != 1 else ''}"
    if rule == "maxItems":
        return f"must have at most {value} item{'s' if value != 1 else ''}"
    if rule == "not" and isinstance(value, dict) and "const" in value:
        return f"must not be {_json(value['const'])}"
    # Not used by the shipped schemas; jsonschema's own text, cut short.
    return error.message[:_FALLBACK_LIMIT]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
