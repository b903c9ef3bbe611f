"""Audit of the ledger: the hash chain's rules (pure) and their verification."""
