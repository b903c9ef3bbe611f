"""Big-data comparison evidence: the model, the topic's messages and the import files.

Everything exported here is pure (no I/O, no clock reads).
"""

from __future__ import annotations

from certrecon.evidence.model import ADVERSE_KINDS, Evidence, EvidenceKind
from certrecon.evidence.wire import (
    EvidenceDecoded,
    EvidenceInvalid,
    EvidenceValid,
    decode_evidence,
)

__all__ = [
    "ADVERSE_KINDS",
    "Evidence",
    "EvidenceDecoded",
    "EvidenceInvalid",
    "EvidenceKind",
    "EvidenceValid",
    "decode_evidence",
]
