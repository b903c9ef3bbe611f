"""Registers every sub-command group on the root command."""

from __future__ import annotations

import click


def register(root: click.Group) -> None:
    from certrecon.cli.migrate_cmd import migrate

    root.add_command(migrate)
