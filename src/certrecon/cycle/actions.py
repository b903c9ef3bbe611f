"""Benefit actions: what the payment system must do (contract 1.1, "Benefit actions").

``resume``
    A person whose roster status is ``suspended`` became ``certified`` or
    ``confirmed_by_evidence``: payments resume and the held months are paid (恢复发放并
    补发), with ``suspended_on`` from the roster when known.
``stop``
    Staff confirmed a loss of eligibility, with its ``effective_date``.

Each action exists once per person and year: ``action_id`` is
``<id_number>:<year>:<action>``, so the outbox (unique message id) publishes it exactly once
however often it is derived, e.g. after a person certifies through two channels.

Decisions (the contract leaves them open):

* ``year`` of a ``resume`` is the cycle year (calendar mode) or the year of the
  certification or proof of life that made the person valid (rolling mode); of a ``stop``,
  the local year of the staff confirmation.
* A ``resume`` names its ``basis`` (the channel, ``assisted:<how>`` or ``proof_of_life``)
  and ``basis_date``; ``decided_by`` is who made that basis count (``rules`` for a channel
  result and for proof of life).

Pure: no I/O, no clock reads (``raised_at`` is a parameter).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt

from certrecon.cycle.status import (
    CertificationFact,
    CycleMode,
    CycleStatus,
    Period,
    PersonFacts,
    in_scope,
    person_status,
)
from certrecon.domain import RosterStatus
from certrecon.reconcile.evidence import AdverseFinding, FindingState

__all__ = [
    "ActionKind",
    "BenefitAction",
    "BenefitActionMessage",
    "action_id",
    "resume_action",
    "stop_actions",
]

PROOF_OF_LIFE = "proof_of_life"


class ActionKind(StrEnum):
    RESUME = "resume"
    STOP = "stop"


def action_id(id_number: str, year: int, action: ActionKind) -> str:
    """``<id_number>:<year>:<action>``."""
    return f"{id_number}:{year:04d}:{action.value}"


@dataclass(frozen=True, slots=True)
class BenefitAction:
    action: ActionKind
    id_number: str
    year: int
    reason: str
    decided_by: str
    suspended_on: dt.date | None = None
    effective_date: dt.date | None = None
    basis: str | None = None
    basis_date: dt.date | None = None

    @property
    def action_id(self) -> str:
        return action_id(self.id_number, self.year, self.action)

    def message(self, raised_at: dt.datetime) -> BenefitActionMessage:
        return BenefitActionMessage(
            action_id=self.action_id,
            action=self.action,
            id_number=self.id_number,
            year=self.year,
            reason=self.reason,
            decided_by=self.decided_by,
            raised_at=raised_at,
            suspended_on=self.suspended_on,
            effective_date=self.effective_date,
            basis=self.basis,
            basis_date=self.basis_date,
        )


class BenefitActionMessage(BaseModel):
    """One ``certrecon.benefit-action`` message, as ``benefit-action.schema.json``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Annotated[StrictInt, Field(ge=1, le=1)] = 1
    action_id: Annotated[str, Field(pattern=r"^[0-9A-Z]{15,18}:[0-9]{4}:(resume|stop)$")]
    action: ActionKind
    id_number: str
    year: StrictInt
    reason: Annotated[str, Field(min_length=1)]
    decided_by: Annotated[str, Field(pattern=r"^(rules|staff:.+)$")]
    raised_at: AwareDatetime
    suspended_on: dt.date | None = None
    effective_date: dt.date | None = None
    basis: str | None = None
    basis_date: dt.date | None = None

    def to_bytes(self) -> bytes:
        """Compact UTF-8 JSON; fields a kind does not use are left out (``suspended_on`` of
        a ``resume`` is kept, null when unknown)."""
        keep_null = {"suspended_on"} if self.action is ActionKind.RESUME else set()
        data = self.model_dump(mode="json")
        document = {k: v for k, v in data.items() if v is not None or k in keep_null}
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def resume_action(facts: PersonFacts, period: Period) -> BenefitAction | None:
    """The ``resume`` this person's cycle status calls for, if any."""
    roster = facts.roster
    if roster.status is not RosterStatus.SUSPENDED or not in_scope(facts, period):
        return None
    status = person_status(facts, period)
    basis = status.basis
    if status.status is CycleStatus.CERTIFIED and isinstance(basis, CertificationFact):
        how, day, by = basis.how, basis.on, basis.decided_by
        reason = f"恢复发放并补发: certified on {day.isoformat()} ({how})"
    elif status.status is CycleStatus.CONFIRMED_BY_EVIDENCE and isinstance(basis, dt.date):
        how, day, by = PROOF_OF_LIFE, basis, "rules"
        reason = f"恢复发放并补发: proof of life dated {day.isoformat()}"
    else:
        return None
    year = period.year if period.mode is CycleMode.CALENDAR_YEAR else day.year
    return BenefitAction(
        action=ActionKind.RESUME,
        id_number=roster.id_number,
        year=year,
        reason=reason,
        decided_by=by,
        suspended_on=roster.suspended_on,
        basis=how,
        basis_date=day,
    )


def _decided_on(finding: AdverseFinding) -> dt.date:
    return dt.date.min if finding.verdict is None else finding.verdict.decided_on


def stop_actions(facts: PersonFacts) -> list[BenefitAction]:
    """One ``stop`` per year in which staff confirmed a loss of eligibility (the first)."""
    actions: dict[str, BenefitAction] = {}
    confirmed = [f for f in facts.evidence.findings if f.state is FindingState.CONFIRMED]
    for finding in sorted(confirmed, key=_decided_on):
        verdict = finding.verdict
        if verdict is None or verdict.effective_date is None:  # pragma: no cover - CONFIRMED
            continue
        action = BenefitAction(
            action=ActionKind.STOP,
            id_number=facts.roster.id_number,
            year=verdict.decided_on.year,
            reason=f"丧失待遇领取资格: staff confirmed {finding.evidence.kind.value} "
            f"({finding.evidence.source})",
            decided_by=f"staff:{verdict.decided_by}",
            effective_date=verdict.effective_date,
        )
        actions.setdefault(action.action_id, action)
    return list(actions.values())
