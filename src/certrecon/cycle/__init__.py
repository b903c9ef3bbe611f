"""The certification cycle: scope, per-person status, outreach lists and benefit actions.

The modes and the status precedence are documented in :mod:`certrecon.cycle.status`.
Everything exported here is pure (no I/O, no clock reads).
"""

from __future__ import annotations

from certrecon.cycle.actions import (
    ActionKind,
    BenefitAction,
    BenefitActionMessage,
    action_id,
    resume_action,
    stop_actions,
)
from certrecon.cycle.lists import (
    OUTREACH_HEADER,
    CycleSummary,
    OutreachRow,
    outreach,
    summarise,
    suspend_candidates,
)
from certrecon.cycle.status import (
    STATUS_ORDER,
    CertificationFact,
    CycleMode,
    CycleStatus,
    Period,
    PersonFacts,
    PersonStatus,
    add_months,
    in_scope,
    person_status,
    valid_until,
)

__all__ = [
    "OUTREACH_HEADER",
    "STATUS_ORDER",
    "ActionKind",
    "BenefitAction",
    "BenefitActionMessage",
    "CertificationFact",
    "CycleMode",
    "CycleStatus",
    "CycleSummary",
    "OutreachRow",
    "Period",
    "PersonFacts",
    "PersonStatus",
    "action_id",
    "add_months",
    "in_scope",
    "outreach",
    "person_status",
    "resume_action",
    "stop_actions",
    "summarise",
    "suspend_candidates",
    "valid_until",
]
