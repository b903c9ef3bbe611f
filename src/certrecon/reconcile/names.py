"""Name normalisation for comparing a certification's name with the roster's.

Real rosters and real input methods disagree on width, spacing, letter case and on which
dot separates the parts of minority and foreign names (阿依古丽·买买提); they do not
disagree on the characters of a name. Normalisation removes the former and keeps the latter.
"""

from __future__ import annotations

import re
import unicodedata

from certrecon.text import without_invisible

MIDDLE_DOT = "\u00b7"
"""The one separator every middle-dot variant becomes (GB 18030 and the ID card use it)."""

# Code points that input methods, fonts and older encodings put where a name has its
# middle dot. Full-width variants are listed even though NFKC already folds some of them,
# so the table stays correct whatever NFKC does to the others.
_DOT_VARIANTS = (
    "\u00b7"  # · MIDDLE DOT
    "\u0387"  # · GREEK ANO TELEIA (NFKC folds it to U+00B7; listed for clarity)
    "\u2022"  # • BULLET
    "\u2024"  # ․ ONE DOT LEADER
    "\u2027"  # ‧ HYPHENATION POINT (Big5 text)
    "\u2219"  # ∙ BULLET OPERATOR
    "\u22c5"  # ⋅ DOT OPERATOR
    "\u2e31"  # ⸱ WORD SEPARATOR MIDDLE DOT
    "\u30fb"  # ・ KATAKANA MIDDLE DOT (Japanese input methods)
    "\uff65"  # ･ HALFWIDTH KATAKANA MIDDLE DOT
    "\uff0e"  # ． FULLWIDTH FULL STOP
    "\ufe52"  # ﹒ SMALL FULL STOP
    "."  # the ASCII full stop, which NFKC makes of the two above
)
_UNIFY_DOTS = str.maketrans(dict.fromkeys(_DOT_VARIANTS, MIDDLE_DOT))

# Names made only of CJK Unified Ideographs (U+4E00-U+9FFF) and the middle dot, nearly
# every name on a roster, are their own normal form: NFKC and case folding leave these
# code points alone, and none is a space, a control or format character or another dot.
# Returning them at once spares the rounds below; a unit test checks every code point.
_ALREADY_NORMAL = re.compile("[\u4e00-\u9fff\u00b7]+")


def normalise_name(name: str) -> str:
    """The comparison form of a person's name.

    NFKC (full-width letters, digits and spaces become their ordinary forms), no whitespace
    at all (including the ideographic space U+3000), no control or format character (Unicode
    categories Cc and Cf: zero-width characters, bidi controls, soft hyphens), one middle
    dot for all of its variants, and case-folded letters (``Smith`` = ``SMITH``).

    Names with control or format characters are refused where they enter (the roster import
    and the wire validation, both by :func:`certrecon.text.name_problem`); dropping them
    here too makes a name stored before that rule compare the way it looks.

    Traditional and simplified characters are deliberately *not* unified: doing so needs a
    conversion dictionary, the mapping is many-to-one (發/髮 → 发, 後/后 → 后), and a few
    characters are distinct surnames in both scripts (于/於, 肖/蕭), so conversion could make
    two different people's names equal. Such a mismatch goes to identity_mismatch, where a
    person looks at it.
    """
    if _ALREADY_NORMAL.fullmatch(name):
        return name
    return _normalise_in_rounds(name)


def _normalise_in_rounds(name: str) -> str:
    """``normalise_name`` for any text, without the shortcut."""
    current = name
    # Each step can expose work for another: NFKC turns some marks into a space plus a
    # combining mark (¨ → " ̈"), removing a space lets NFKC compose a mark with the letter
    # before it, and case folding can leave a string that is no longer NFKC. A few rounds
    # reach the fixed point, which makes the function idempotent.
    for _ in range(4):
        folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", current).casefold())
        kept = "".join(ch for ch in without_invisible(folded) if not ch.isspace())
        step = kept.translate(_UNIFY_DOTS)
        if step == current:
            break
        current = step
    return current


def same_name(a: str, b: str) -> bool:
    """True when the two names are equal after :func:`normalise_name`."""
    return normalise_name(a) == normalise_name(b)
