"""The outbound result message (``schema_version`` 1) returned to the ministry system."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, model_validator

from certrecon.domain import Channel, Outcome

__all__ = ["DECIDED_BY_RULES", "ResultMessage", "result_id"]

DECIDED_BY_RULES = "rules"
"""``decided_by`` of an automatic result; a staff decision uses ``staff:<operator id>``."""

_CERTIFICATION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def result_id(certification_id: str, revision: int) -> str:
    """``<certification_id>:<revision>``; revision 1 is the first result, corrections count up.

    Raises ``ValueError`` for a malformed certification_id or a revision below 1.
    """
    if not _CERTIFICATION_ID.fullmatch(certification_id):
        raise ValueError("certification_id must be 1-64 characters of [A-Za-z0-9_-]")
    if isinstance(revision, bool) or revision < 1:
        raise ValueError("revision must be an integer of at least 1")
    return f"{certification_id}:{revision}"


class ResultMessage(BaseModel):
    """One result, field for field as ``result.schema.json``; fields serialise in that order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Annotated[StrictInt, Field(ge=1, le=1)] = 1
    result_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}:[1-9][0-9]*$")]
    certification_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    channel: Channel
    id_number: str
    outcome: Outcome
    reason: str
    certified_at: str
    """As received (the raw text), not re-formatted."""
    due_date: dt.date
    decided_at: AwareDatetime
    decided_by: Annotated[str, Field(pattern=r"^(rules|staff:.+)$")]

    @model_validator(mode="after")
    def _result_id_names_certification(self) -> Self:
        if self.result_id.rpartition(":")[0] != self.certification_id:
            raise ValueError("result_id must be <certification_id>:<revision>")
        return self

    @classmethod
    def build(
        cls,
        *,
        certification_id: str,
        revision: int,
        channel: Channel,
        id_number: str,
        outcome: Outcome,
        reason: str,
        certified_at: str,
        due_date: dt.date,
        decided_at: dt.datetime,
        decided_by: str,
    ) -> ResultMessage:
        """A result with ``result_id`` derived from ``certification_id`` and ``revision``.

        Raises ``ValueError`` (pydantic's ``ValidationError`` is one) for a field that breaks
        the schema, e.g. a naive ``decided_at``.
        """
        return cls(
            result_id=result_id(certification_id, revision),
            certification_id=certification_id,
            channel=channel,
            id_number=id_number,
            outcome=outcome,
            reason=reason,
            certified_at=certified_at,
            due_date=due_date,
            decided_at=decided_at,
            decided_by=decided_by,
        )

    @property
    def revision(self) -> int:
        """The revision part of ``result_id``."""
        return int(self.result_id.rpartition(":")[2])

    def to_bytes(self) -> bytes:
        """Compact UTF-8 JSON, non-ASCII text unescaped, keys in schema order."""
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> ResultMessage:
        """Parse a result message (e.g. read back from the result topic)."""
        return cls.model_validate_json(data)
