"""The field rules of an inbound certification (``schema_version`` 1), checked in one pass
over a parsed JSON object.

The order of the checks is the schema's field order (``subject``'s fields inside it), and
each failed rule is one ``"<field path>: <text>"`` with the texts of
:mod:`certrecon.consumers.models`. A field whose type or shape is wrong gets the text of
``FIELD_TEXTS``; a missing required field ``required``; a field that has the right type
but breaks a rule one line per problem. Unknown top-level fields are kept, unknown fields
inside ``subject``, ``on_behalf`` and ``residence`` ignored.

Decisions are documented in :mod:`certrecon.consumers.models`. Pure: no I/O, no clock.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from certrecon.consumers.models import (
    FIELD_TEXTS,
    NAME_MAX_LENGTH,
    TEXT_CERTIFIED_AT_FORMAT,
    TEXT_COUNTRY_CN,
    TEXT_COUNTRY_REQUIRED,
    TEXT_REQUIRED,
    DecodeContext,
    certified_at_problems,
    name_problems,
    parse_rfc3339,
)
from certrecon.domain import CST, Certification, Channel, FaceMatch, IdType, Method, Person
from certrecon.ids import id_number_problems, normalise_id_number

__all__ = ["FIELDS", "check_certification"]

FIELDS = frozenset(
    {
        "schema_version",
        "certification_id",
        "channel",
        "subject",
        "certified_at",
        "method",
        "face_match",
        "on_behalf",
        "residence",
        "insured_region",
    }
)
"""The top-level fields of the schema; any other top-level key is an extra field."""

_MISSING: Any = object()
_CERTIFICATION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_REGION = re.compile(r"[0-9]{6}")
# The enums by their wire values (a JSON string is the only form the schema admits).
_CHANNELS: dict[str, Channel] = {c.value: c for c in Channel}
_ID_TYPES: dict[str, IdType] = {t.value: t for t in IdType}
_METHODS: dict[str, Method] = {m.value: m for m in Method}
_FACE_MATCHES: dict[str, FaceMatch] = {f.value: f for f in FaceMatch}


def _wrong(path: str) -> str:
    return f"{path}: {FIELD_TEXTS[path]}"


def _lookup(value: object, table: dict[str, Any]) -> Any:
    """The enum member ``value`` names, or None (hashing a dict or list would raise)."""
    return table.get(value) if type(value) is str else None


def _id_number(
    value: object, path: str, id_type: IdType | None, today: dt.date, errors: list[str]
) -> str | None:
    if value is _MISSING:
        errors.append(f"{path}: {TEXT_REQUIRED}")
        return None
    if type(value) is not str:
        errors.append(_wrong(path))
        return None
    problems = id_number_problems(value, id_type, today=today)
    if problems:
        errors.extend(f"{path}: {p}" for p in problems)
        return None
    return normalise_id_number(value)


def _name(value: object, path: str, errors: list[str]) -> str | None:
    if value is _MISSING:
        errors.append(f"{path}: {TEXT_REQUIRED}")
        return None
    if type(value) is not str or not 1 <= len(value) <= NAME_MAX_LENGTH:
        errors.append(_wrong(path))
        return None
    problems = name_problems(value)
    if problems:
        errors.extend(f"{path}: {p}" for p in problems)
        return None
    return value


def _enum(document: dict[str, Any], name: str, table: dict[str, Any], errors: list[str]) -> Any:
    value = document.get(name, _MISSING)
    if value is _MISSING:
        errors.append(f"{name}: {TEXT_REQUIRED}")
        return None
    member = _lookup(value, table)
    if member is None:
        errors.append(_wrong(name))
    return member


def _pattern(
    document: dict[str, Any], name: str, pattern: re.Pattern[str], errors: list[str]
) -> str | None:
    value = document.get(name, _MISSING)
    if value is _MISSING:
        errors.append(f"{name}: {TEXT_REQUIRED}")
        return None
    if type(value) is not str or pattern.fullmatch(value) is None:
        errors.append(_wrong(name))
        return None
    return value


def check_certification(
    document: dict[str, Any], context: DecodeContext
) -> tuple[list[str], Certification | None]:
    """Every failed rule of a parsed message, in field order; and, when none failed, the
    certification it carries."""
    errors: list[str] = []
    today = context.received_at.astimezone(CST).date()
    get = document.get

    version = get("schema_version", _MISSING)
    if version is _MISSING:
        errors.append(f"schema_version: {TEXT_REQUIRED}")
    elif type(version) is not int or version != 1:
        errors.append(_wrong("schema_version"))

    certification_id = _pattern(document, "certification_id", _CERTIFICATION_ID, errors)

    channel: Channel | None = _enum(document, "channel", _CHANNELS, errors)
    if channel is not None and channel is not context.channel:
        errors.append(
            f"channel: {channel.value} does not match topic {context.topic} "
            f"(channel {context.channel.value})"
        )

    id_type = id_number = name = None
    subject = get("subject", _MISSING)
    if subject is _MISSING:
        errors.append(f"subject: {TEXT_REQUIRED}")
    elif type(subject) is not dict:
        errors.append(_wrong("subject"))
    else:
        raw_type = subject.get("id_type")
        id_type = IdType.RESIDENT_ID if raw_type is None else _lookup(raw_type, _ID_TYPES)
        if id_type is None:
            errors.append(_wrong("subject.id_type"))
        id_number = _id_number(
            subject.get("id_number", _MISSING), "subject.id_number", id_type, today, errors
        )
        name = _name(subject.get("name", _MISSING), "subject.name", errors)

    certified_at = None
    raw_time = get("certified_at", _MISSING)
    if raw_time is _MISSING:
        errors.append(f"certified_at: {TEXT_REQUIRED}")
    else:
        parsed = parse_rfc3339(raw_time) if type(raw_time) is str else None
        if parsed is None:
            errors.append(f"certified_at: {TEXT_CERTIFIED_AT_FORMAT}")
        else:
            problems = certified_at_problems(parsed, context)
            if problems:
                errors.extend(f"certified_at: {p}" for p in problems)
            else:
                certified_at = parsed

    method: Method | None = _enum(document, "method", _METHODS, errors)
    face_match: FaceMatch | None = _enum(document, "face_match", _FACE_MATCHES, errors)

    on_behalf = None
    raw_behalf = get("on_behalf")
    if raw_behalf is not None:
        if type(raw_behalf) is not dict:
            errors.append(_wrong("on_behalf"))
        else:
            behalf_number = _id_number(
                raw_behalf.get("id_number", _MISSING), "on_behalf.id_number", None, today, errors
            )
            behalf_name = _name(raw_behalf.get("name", _MISSING), "on_behalf.name", errors)
            if behalf_number is not None and behalf_name is not None:
                on_behalf = Person(id_number=behalf_number, name=behalf_name)

    country = _residence(get("residence"), context, errors)

    insured_region = _pattern(document, "insured_region", _REGION, errors)

    if errors:
        return errors, None
    # No error means every field was read: these only narrow the types.
    assert certification_id is not None
    assert channel is not None
    assert id_type is not None
    assert id_number is not None
    assert name is not None
    assert certified_at is not None
    assert method is not None
    assert face_match is not None
    assert insured_region is not None
    return errors, Certification(
        certification_id=certification_id,
        channel=channel,
        id_type=id_type,
        id_number=id_number,
        name=name,
        certified_at=certified_at,
        certified_at_raw=raw_time,
        method=method,
        face_match=face_match,
        insured_region=insured_region,
        on_behalf=on_behalf,
        residence_country=country,
    )


def _residence(value: object, context: DecodeContext, errors: list[str]) -> str | None:
    """``residence``'s own rules, then the consular channel's rule on it (checked only when
    the object itself is well formed); returns its country."""
    country = None
    if value is not None:
        if type(value) is not dict:
            errors.append(_wrong("residence"))
            return None
        ok = True
        country = value.get("country")
        if country is not None and (type(country) is not str or not _COUNTRY.fullmatch(country)):
            errors.append(_wrong("residence.country"))
            ok = False
        region_code = value.get("region_code")
        if region_code is not None and type(region_code) is not str:
            errors.append(_wrong("residence.region_code"))
            ok = False
        if not ok:
            return None
    # The topic decides the channel: a message claiming another one is rejected anyway.
    if context.channel is Channel.CONSULAR:
        if country is None:
            errors.append(f"residence.country: {TEXT_COUNTRY_REQUIRED}")
        elif country == "CN":
            errors.append(f"residence.country: {TEXT_COUNTRY_CN}")
    return country
