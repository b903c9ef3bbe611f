"""Human output of the commands: every value is neutralised before it reaches a terminal.

Data shown to people comes from outside (ministry messages, roster files, staff notes,
operator arguments); a value must never be able to drive the terminal (escape sequences),
reorder what is read (bidi overrides) or style the output (rich markup such as ``[bold]``).
Everything printed goes through :func:`echo` or, for rich tables, :func:`cell` — rich
``Text`` objects, which rich never parses as markup. ``--json`` output is not touched: it
keeps the data, escaped the way JSON escapes it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from certrecon.text import is_hidden, printable

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text


def console() -> Console:
    """A rich console; wide when the output is not a terminal, so nothing wraps in files."""
    from rich.console import Console

    found = Console()
    return found if found.is_terminal else Console(width=200, no_color=True)


def cell(value: object, style: str = "", *, keep_newlines: bool = False) -> Text:
    """A table cell (or a line for ``Console.print``) showing ``value`` literally."""
    from rich.text import Text

    shown = "" if value is None else printable(value, keep_newlines=keep_newlines)
    return Text(shown, style=style)


def echo(line: object, *, err: bool = False) -> None:
    """Print one line of human output, neutralised."""
    click.echo(printable(line), err=err)


def error(message: object) -> None:
    """The ``Error: …`` line on stderr."""
    echo(f"Error: {message}", err=True)


def _json_escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def json_text(value: Any) -> str:
    """Machine output: the data as it is, every hidden character written as a JSON escape.

    ``json.dumps`` escapes C0 controls but writes DEL, C1 controls and bidirectional or
    zero-width characters raw; those are escaped here too (``\\u202e``), so the JSON means
    exactly the same and still cannot drive or reorder a terminal it is shown on. Other
    characters (Chinese names) stay readable.
    """
    text = json.dumps(value, ensure_ascii=False, indent=2, allow_nan=False)
    if text.isprintable() or all(ch == "\n" or not is_hidden(ch) for ch in text):
        return text
    # Outside string literals json.dumps writes only ASCII punctuation, spaces and line
    # breaks, so every hidden character left is inside a string, where an escape is valid.
    return "".join(_json_escape(ch) if ch != "\n" and is_hidden(ch) else ch for ch in text)
