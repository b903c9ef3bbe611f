"""Reconciliation: the contract's outcome table and cycle scope as pure functions.

The policy and its order are documented in :mod:`certrecon.reconcile.rules`.
"""

from __future__ import annotations

from certrecon.reconcile.names import MIDDLE_DOT, normalise_name, same_name
from certrecon.reconcile.rules import RULE_VERSION, decide, is_imprisoned_on

__all__ = [
    "MIDDLE_DOT",
    "RULE_VERSION",
    "decide",
    "is_imprisoned_on",
    "normalise_name",
    "same_name",
]
