"""Audit replay: re-check a window of the inbound topics against the ledger, read-only.

The pure part (:mod:`.window`, :mod:`.model`, :mod:`.check`, :mod:`.report`) re-derives
each record with the worker's own functions and classifies what differs; the I/O part
(:mod:`.broker`, :mod:`certrecon.store.replay`, :mod:`.run`) reads the topics and the
ledger and never writes to either.
"""
