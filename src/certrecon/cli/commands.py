"""Registers every sub-command group on the root command."""

from __future__ import annotations

import click


def register(root: click.Group) -> None:
    from certrecon.cli.audit_cmd import audit
    from certrecon.cli.calendar_cmd import calendar
    from certrecon.cli.certify_cmd import certify
    from certrecon.cli.contract_cmd import contract
    from certrecon.cli.cycle_cmd import cycle
    from certrecon.cli.demo_cmd import demo
    from certrecon.cli.evidence_cmd import evidence
    from certrecon.cli.migrate_cmd import migrate
    from certrecon.cli.replay_cmd import replay_cmd
    from certrecon.cli.review_cmd import review
    from certrecon.cli.roster_cmd import roster
    from certrecon.cli.run_cmd import run
    from certrecon.cli.sla_cmd import sla

    audit.add_command(replay_cmd)
    root.add_command(audit)
    root.add_command(calendar)
    root.add_command(certify)
    root.add_command(contract)
    root.add_command(cycle)
    root.add_command(demo)
    root.add_command(evidence)
    root.add_command(migrate)
    root.add_command(roster)
    root.add_command(review)
    root.add_command(run)
    root.add_command(sla)
