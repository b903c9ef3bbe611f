"""Text that reaches people: neutralising hostile characters, the rule for names, length limits.

Three concerns that share one definition of a "dangerous" character:

* :func:`printable` makes any string safe to show on a terminal or to write to a file that
  someone will ``cat``: control characters (C0 and C1, ESC and DEL included), Unicode format
  characters (bidirectional overrides and isolates, zero-width characters, …) and line or
  paragraph separators become visible escapes such as ``\\x1b`` or ``\\u202e``. Terminal
  escape sequences (``ESC]0;…BEL`` retitling a window, ``ESC[2J`` clearing it) and
  right-to-left overrides that reorder what a reader sees are shown, never obeyed.
* :func:`name_problem` is the one rule for personal names, on the wire and in the roster:
  a name with a control character or an invisible format character (Unicode category Cf:
  bidi controls, zero-width spaces and joiners, soft hyphen, byte-order mark, …) is refused.
  Two names that look the same must compare the same, and a name cannot hide characters
  from the staff member who checks it.
* :func:`check_free_text` bounds what an operator may type into a stored field.

Pure functions, no I/O.
"""

from __future__ import annotations

import unicodedata

from certrecon.errors import InputError

# Categories neutralised for display: control, format, line and paragraph separators, and
# surrogates (only reachable through a JSON "\ud800" escape). Unassigned (Cn) and private-use
# (Co) code points stay: rare characters of real names are newer than Python's Unicode
# tables, or were mapped to the private-use area by older Chinese encodings.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
# What no name may contain, and what name comparison ignores in names stored before the rule.
_NOT_IN_NAMES = frozenset({"Cc", "Cf"})

MAX_NOTE_LENGTH = 2000
"""Characters in a staff note."""
MAX_SOURCE_LENGTH = 200
"""Characters in the source of a calendar override or publication (a notice number)."""
MAX_STAFF_ID_LENGTH = 64
"""Characters in a declared staff id (``--by``)."""
MAX_ARGUMENT_LENGTH = 200
"""Characters in any other free-text argument (a certification id, an outcome, a date)."""


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def is_hidden(ch: str) -> bool:
    """True for a character :func:`printable` escapes."""
    return unicodedata.category(ch) in _HIDDEN_CATEGORIES


def printable(value: object, *, keep_newlines: bool = False) -> str:
    """``str(value)`` with every control, format and separator character made visible.

    ``keep_newlines`` keeps ``\\n`` (for multi-line text printed line by line); tabs and
    everything else in those categories are always escaped. Ordinary text, Chinese
    included, is returned unchanged (and fast).
    """
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():  # no character of a hidden category is printable
        return text
    return "".join(
        _escape(ch) if is_hidden(ch) and not (keep_newlines and ch == "\n") else ch for ch in text
    )


NAME_CONTROL = "contains control characters"
NAME_INVISIBLE = "contains invisible formatting characters (bidi controls, zero-width characters)"


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a person's name, or None.

    Control characters, line and paragraph separators and lone surrogates are one problem;
    format characters (Unicode category Cf: U+200B–U+200F, U+202A–U+202E, U+2060–U+2069,
    U+061C, U+00AD, U+FEFF, …) the other. The text never repeats the name.
    """
    if name.isprintable():  # no character of those categories is printable
        return None
    categories = {unicodedata.category(ch) for ch in name}
    if categories & {"Cc", "Zl", "Zp", "Cs"}:
        return NAME_CONTROL
    if "Cf" in categories:
        return NAME_INVISIBLE
    return None


def without_invisible(name: str) -> str:
    """``name`` without control and format characters (what :func:`name_problem` refuses).

    For comparing names recorded before the rule was enforced: they compare as they look.
    """
    if name.isprintable():
        return name
    return "".join(ch for ch in name if unicodedata.category(ch) not in _NOT_IN_NAMES)


def check_free_text(
    label: str,
    value: str,
    *,
    max_length: int,
    multiline: bool = False,
) -> str:
    """``value`` if an operator may store it as ``label``, else :class:`InputError`.

    It must fit ``max_length`` characters and hold no NUL (PostgreSQL text cannot) and, unless
    ``multiline``, no line break. The value itself is never repeated in the message: it may
    be huge or hostile.
    """
    if len(value) > max_length:
        raise InputError(
            f"{label} is {len(value):,} characters long; at most {max_length:,} are allowed"
        )
    if "\x00" in value:
        raise InputError(f"{label} contains a NUL character")
    if not multiline and any(unicodedata.category(ch) in {"Zl", "Zp", "Cc"} for ch in value):
        raise InputError(f"{label} contains control characters or a line break")
    return value


def shorten(value: str, limit: int = 80) -> str:
    """``value`` cut to ``limit`` characters with an ellipsis, for quoting input in an error."""
    return value if len(value) <= limit else value[: limit - 1] + "…"
