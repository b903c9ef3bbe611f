"""The ``certrecon`` command line: a thin layer over the library.

Every deliberate error (``CertreconError``) becomes one line on stderr and a non-zero exit
status: 2 for bad input or a malformed setting, 1 for everything else. No tracebacks for
operators, and no raw control characters: the line is neutralised like all human output.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from certrecon import __version__
from certrecon.cli.output import error
from certrecon.errors import CertreconError, ConfigurationError, InputError


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (InputError, ConfigurationError) as exc:
            error(exc)
            sys.exit(2)
        except CertreconError as exc:
            error(exc)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="certrecon")
def cli() -> None:
    """Reconcile ministry-channel benefit certifications against the local roster."""


def _register() -> None:
    # Sub-command modules import heavy libraries; they register themselves here.
    from certrecon.cli import commands

    commands.register(cli)


def main() -> None:
    _register()
    cli()
