"""The pydantic reading of the certification schema that decoding had before its field
rules were written out (``certrecon.consumers.fields``): kept here as the reference the
decoder must agree with, outcome for outcome and error text for error text."""

from __future__ import annotations

import datetime as dt
from types import MappingProxyType
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from certrecon.consumers.decode import (
    DEFAULT_MAX_SKEW,
    MESSAGE_LEVEL,
    MessageScan,
    _partial,
    error_texts,
)
from certrecon.consumers.models import (
    CERTIFICATION_ID_PATTERN,
    MESSAGE_NOT_JSON,
    MESSAGE_TOMBSTONE,
    TEXT_CERTIFIED_AT_FORMAT,
    TEXT_COUNTRY_CN,
    TEXT_COUNTRY_REQUIRED,
    DecodeContext,
    Decoded,
    Invalid,
    Name,
    SubjectWire,
    Timestamp,
    Valid,
    _check_id_number,
    certified_at_problems,
    parse_rfc3339,
    rule_failure,
)
from certrecon.domain import Certification, Channel, FaceMatch, Method, Person


def _context(info: ValidationInfo) -> DecodeContext:
    ctx = info.context
    if not isinstance(ctx, DecodeContext):
        raise TypeError("validate with context=DecodeContext(...)")
    return ctx


def _parse_certified_at(value: object, info: ValidationInfo) -> Timestamp:
    ctx = _context(info)
    parsed = parse_rfc3339(value) if isinstance(value, str) else None
    if parsed is None or not isinstance(value, str):
        raise rule_failure(TEXT_CERTIFIED_AT_FORMAT)
    problems = certified_at_problems(parsed, ctx)
    if problems:
        raise rule_failure(*problems)
    return Timestamp(value, parsed)


class OnBehalfWire(BaseModel):
    """``on_behalf``: the person who certified for the subject (代他人认证)."""

    model_config = ConfigDict(strict=True, frozen=True)

    id_number: StrictStr
    name: Name

    @field_validator("id_number")
    @classmethod
    def _id_number(cls, value: str, info: ValidationInfo) -> str:
        return _check_id_number(value, None, info)


class ResidenceWire(BaseModel):
    """``residence``: where the subject lives."""

    model_config = ConfigDict(strict=True, frozen=True)

    country: Annotated[StrictStr, Field(pattern=r"^[A-Z]{2}$")] | None = None
    region_code: StrictStr | None = None


class CertificationWire(BaseModel):
    """An inbound certification, ``schema_version`` 1; unknown top-level fields are kept."""

    model_config = ConfigDict(strict=True, frozen=True, extra="allow")

    schema_version: Annotated[StrictInt, Field(ge=1, le=1)]
    certification_id: Annotated[StrictStr, Field(pattern=CERTIFICATION_ID_PATTERN)]
    channel: Channel
    subject: SubjectWire
    certified_at: Annotated[Timestamp, PlainValidator(_parse_certified_at)]
    method: Method
    face_match: FaceMatch
    on_behalf: OnBehalfWire | None = None
    # validate_default: the consular rule must also fire when residence is left out.
    residence: ResidenceWire | None = Field(default=None, validate_default=True)
    insured_region: Annotated[StrictStr, Field(pattern=r"^[0-9]{6}$")]

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: Channel, info: ValidationInfo) -> Channel:
        ctx = _context(info)
        if value is not ctx.channel:
            raise rule_failure(
                f"{value.value} does not match topic {ctx.topic} (channel {ctx.channel.value})"
            )
        return value

    @field_validator("residence")
    @classmethod
    def _residence(cls, value: ResidenceWire | None, info: ValidationInfo) -> ResidenceWire | None:
        # The topic decides the channel: a message claiming another one is rejected anyway.
        if _context(info).channel is Channel.CONSULAR:
            country = value.country if value is not None else None
            if country is None:
                raise rule_failure(TEXT_COUNTRY_REQUIRED, sub="country")
            if country == "CN":
                raise rule_failure(TEXT_COUNTRY_CN, sub="country")
        return value

    def to_certification(self) -> Certification:
        """The domain object for this (valid) message."""
        on_behalf = self.on_behalf
        return Certification(
            certification_id=self.certification_id,
            channel=self.channel,
            id_type=self.subject.id_type,
            id_number=self.subject.id_number,
            name=self.subject.name,
            certified_at=self.certified_at.value,
            certified_at_raw=self.certified_at.raw,
            method=self.method,
            face_match=self.face_match,
            insured_region=self.insured_region,
            on_behalf=None if on_behalf is None else _person(on_behalf),
            residence_country=None if self.residence is None else self.residence.country,
        )


def _person(wire: OnBehalfWire) -> Person:
    return Person(id_number=wire.id_number, name=wire.name)


def reference_decode(
    value: bytes | None,
    *,
    topic: str,
    channel: Channel,
    received_at: dt.datetime,
    max_skew: dt.timedelta = DEFAULT_MAX_SKEW,
    supported: tuple[dt.datetime, dt.datetime] | None = None,
) -> Decoded:
    """Decode and validate one message value that arrived on ``topic`` (of ``channel``).

    ``received_at`` is the receiving clock (timezone-aware); ``certified_at`` may not be
    more than ``max_skew`` ahead of it. ``supported`` is the span of instants the
    working-day calendar covers (default: the shipped calendar's); ``certified_at`` must
    lie inside it.
    """
    if received_at.utcoffset() is None:
        raise ValueError("received_at must be timezone-aware")
    if max_skew < dt.timedelta(0):
        raise ValueError("max_skew must not be negative")
    if value is None:
        return Invalid(channel=channel, errors=(MESSAGE_TOMBSTONE,), raw=None)
    context = DecodeContext(topic, channel, received_at, max_skew)
    if supported is not None:
        context = context._replace(supported=supported)
    scan = MessageScan.of(value)
    try:
        wire = CertificationWire.model_validate_json(value, context=context)
    except ValidationError as exc:
        return _invalid(value, exc, context, scan)
    if scan.document is None:
        # pydantic's parser accepted what the standard one refuses (e.g. an integer of
        # thousands of digits): stricter is safer.
        return Invalid(channel=channel, errors=(MESSAGE_NOT_JSON,), raw=value)
    if scan.problems:
        return _partial(scan.document, tuple(scan.problems), value, context)
    extra = wire.__pydantic_extra__
    return Valid(
        certification=wire.to_certification(),
        raw=value,
        extra=MappingProxyType(dict(extra)) if extra else MappingProxyType({}),
    )


def _invalid(
    value: bytes, exc: ValidationError, context: DecodeContext, scan: MessageScan
) -> Invalid:
    errors = error_texts(value, exc)
    if errors[0] in MESSAGE_LEVEL:
        return Invalid(channel=context.channel, errors=tuple(errors), raw=value)
    if scan.document is None:
        return Invalid(channel=context.channel, errors=(MESSAGE_NOT_JSON,), raw=value)
    problems = [p for p in scan.problems if p not in errors]
    return _partial(scan.document, (*problems, *errors), value, context)
