"""Inbound side: decoding and validation of channel messages, and dead letters.

Everything exported here is pure (no I/O, no clock reads).
"""

from __future__ import annotations

from certrecon.consumers.dead_letter import (
    dead_letter_id,
    dead_letter_message,
    dead_letter_payload,
)
from certrecon.consumers.decode import DEFAULT_MAX_SKEW, decode, usable_certification_id
from certrecon.consumers.models import Decoded, Invalid, Valid

__all__ = [
    "DEFAULT_MAX_SKEW",
    "Decoded",
    "Invalid",
    "Valid",
    "dead_letter_id",
    "dead_letter_message",
    "dead_letter_payload",
    "decode",
    "usable_certification_id",
]
