"""The database roles of the contract, with exactly their rights.

``certrecon migrate`` (run as the schema owner) ensures three NOLOGIN roles; a database
administrator grants them to login roles (README, "Auditing"):

- ``certrecon_app``: reads what the worker reads, inserts ledger rows, keeps its operational
  rows (consumer offsets, the monitor's last run, the relay cursor).
- ``certrecon_reviewer``: reads the review queue, the evidence and what a case needs;
  records staff decisions (a result revision, its outbox row and the decision; verdicts on
  evidence and the benefit actions they call for) and assisted certifications.
- ``certrecon_auditor``: reads everything, writes nothing; its sessions are read-only.

None of them may UPDATE, DELETE or TRUNCATE a ledger table or change the schema. Roles are
cluster-wide and rights are per database, so every migrated database re-applies the rights;
creating a role that a concurrent migration just created is not an error.
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

from certrecon.errors import MigrationError

APP = "certrecon_app"
REVIEWER = "certrecon_reviewer"
AUDITOR = "certrecon_auditor"
ROLES = (APP, REVIEWER, AUDITOR)

LEDGER_TABLES = (
    "certification",
    "decision",
    "result",
    "review_item",
    "staff_decision",
    "deadline_revision",
    "outbox",
    "outbox_ack",
    "outbox_failure",
    "sla_alert",
    "roster_version",
    "calendar_override_event",
    "calendar_publication_event",
    "comparison_evidence",
    "evidence_review_item",
    "evidence_verdict",
    "assisted_certification",
    "benefit_action",
)
"""Insert-only and hash-chained."""

CHAIN_TABLES = ("ledger_entry", "ledger_link", "ledger_table")
"""The chain itself: insert-only; only the database's own functions insert into it."""

OPERATIONAL_TABLES = (
    "consumer_offset",
    "monitor_run",
    "relay_cursor",
    "pending_certification",
    "cycle_person",
    "schema_migration",
)
"""Updatable bookkeeping outside the ledger (``pending_certification`` and ``cycle_person``
are projections the database maintains from ledger rows; no role writes them)."""

VIEWS = (
    "certification_deadline",
    "certification_return",
    "outbox_backlog",
    "open_certification",
    "open_certification_with_result",
    "roster",
    "calendar_override",
    "calendar_published_year",
)

_EVERYTHING = LEDGER_TABLES + CHAIN_TABLES + OPERATIONAL_TABLES + VIEWS

RIGHTS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    APP: {
        "SELECT": _EVERYTHING,
        "INSERT": (
            "certification",
            "decision",
            "result",
            "review_item",
            "deadline_revision",
            "outbox",
            "outbox_ack",
            "outbox_failure",
            "sla_alert",
            "roster_version",
            "calendar_override_event",
            "calendar_publication_event",
            "comparison_evidence",
            "evidence_review_item",
            "benefit_action",
            "consumer_offset",
            "monitor_run",
            "ledger_entry",
        ),
        "UPDATE": ("consumer_offset", "monitor_run", "relay_cursor"),
    },
    REVIEWER: {
        "SELECT": (
            "certification",
            "decision",
            "result",
            "review_item",
            "staff_decision",
            "deadline_revision",
            "outbox",
            "outbox_ack",
            "outbox_failure",
            "sla_alert",
            "roster_version",
            "pending_certification",
            "relay_cursor",
            "schema_migration",
            "certification_deadline",
            "certification_return",
            "outbox_backlog",
            "open_certification",
            "open_certification_with_result",
            "roster",
            "ledger_link",
            "comparison_evidence",
            "evidence_review_item",
            "evidence_verdict",
            "assisted_certification",
            "benefit_action",
            "cycle_person",
            # Releasing held certifications re-runs the rules, with the calendar.
            "calendar_override",
            "calendar_published_year",
        ),
        # ledger_entry: the writers record the digests of the rows they insert.
        "INSERT": (
            "result",
            "outbox",
            "staff_decision",
            "evidence_verdict",
            "assisted_certification",
            "benefit_action",
            "ledger_entry",
        ),
    },
    AUDITOR: {"SELECT": _EVERYTHING},
}
"""Table rights per role; everything not listed is revoked."""

SEQUENCE_USERS = (APP, REVIEWER)
"""Roles that insert into ``outbox``, whose id comes from a sequence."""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def ensure_roles(conn: asyncpg.Connection) -> None:
    """Create the roles when missing and set their rights on this database exactly.

    Does nothing on a schema older than the ledger (a partial migration in tests).
    """
    if await conn.fetchval("SELECT to_regclass('ledger_link') IS NULL"):
        return
    schema = await conn.fetchval("SELECT current_schema()")
    database = await conn.fetchval("SELECT current_database()")
    for role in ROLES:
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
        if exists:
            continue
        try:
            await conn.execute(f"CREATE ROLE {_ident(role)} NOLOGIN")
        except asyncpg.DuplicateObjectError:
            pass  # a concurrent migration of another database created it
        except asyncpg.InsufficientPrivilegeError as exc:
            raise MigrationError(
                f"role {role} does not exist and this login may not create it; "
                f"a database administrator runs: CREATE ROLE {role} NOLOGIN"
            ) from exc
    async with conn.transaction():
        everything = ", ".join(_ident(t) for t in _EVERYTHING)
        names = ", ".join(_ident(r) for r in ROLES)
        await conn.execute(f"REVOKE ALL ON {everything} FROM {names}")
        await conn.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {_ident(schema)} FROM {names}")
        await conn.execute(f"GRANT CONNECT ON DATABASE {_ident(database)} TO {names}")
        await conn.execute(f"GRANT USAGE ON SCHEMA {_ident(schema)} TO {names}")
        for role, rights in RIGHTS.items():
            for privilege, tables in rights.items():
                listed = ", ".join(_ident(t) for t in tables)
                await conn.execute(f"GRANT {privilege} ON {listed} TO {_ident(role)}")
        users = ", ".join(_ident(r) for r in SEQUENCE_USERS)
        await conn.execute(f"GRANT USAGE ON SEQUENCE outbox_id_seq TO {users}")
    read_only = await conn.fetchval(
        """
        SELECT 1 FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
        WHERE r.rolname = $1 AND s.setdatabase = 0
          AND 'default_transaction_read_only=on' = ANY (s.setconfig)
        """,
        AUDITOR,
    )
    if not read_only:
        try:
            await conn.execute(
                f"ALTER ROLE {_ident(AUDITOR)} SET default_transaction_read_only = on"
            )
        except asyncpg.InsufficientPrivilegeError as exc:
            raise MigrationError(
                f"a database administrator runs: ALTER ROLE {AUDITOR} "
                "SET default_transaction_read_only = on"
            ) from exc
