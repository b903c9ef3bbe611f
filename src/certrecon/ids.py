"""ID numbers: normalisation and validation of the forms the ministry channels carry.

Four forms are recognised:

``resident``
    The 公民身份号码 of GB 11643: 6-digit address code starting with a province-level code,
    8-digit birth date, 3-digit sequence code, ISO 7064 MOD 11-2 check character.
``hmt_permit``
    港澳台居民居住证: the same 18-character structure with address code 810000 (Hong Kong),
    820000 (Macao) or 830000 (Taiwan).
``foreign_2023``
    The 2023 foreign permanent resident card: 18 characters starting with 9 (2-digit
    issuing-place code, 3-digit nationality code, birth date, sequence, MOD 11-2 check).
``foreign_2017``
    The 2017 foreign permanent resident card: 3 letters (nationality) and 12 digits, without
    a check character, so only its shape can be verified.

Decisions:

* Normalisation upper-cases ASCII letters (the check character ``x`` and the letters of the
  2017 form) and does nothing else: surrounding whitespace, full-width digits and other
  look-alikes are rejected, not repaired, because a number that is silently "fixed" may
  no longer be the number the person holds. Callers reading files may strip cells first.
* ``resident_id`` accepts only the resident form; ``hmt_residence_permit`` only the
  81/82/83 form; ``foreign_permanent_resident`` either foreign form. Without an id_type any
  recognised form is accepted (roster rows carry no type).
* Problem texts never contain the number itself, so they can be logged and returned to the
  ministry without leaking personal data.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from types import MappingProxyType

from certrecon.domain import IdType

__all__ = [
    "FORMS_BY_ID_TYPE",
    "PROBLEM_ADDRESS_CODE",
    "PROBLEM_BIRTH_DATE",
    "PROBLEM_BIRTH_DATE_FUTURE",
    "PROBLEM_CHECK_CHARACTER",
    "PROBLEM_PERMIT_ADDRESS_CODE",
    "PROBLEM_SHAPE",
    "IdForm",
    "all_valid_resident_numbers",
    "check_character",
    "id_number_form",
    "id_number_problems",
    "is_valid_id_number",
    "normalise_id_number",
    "type_mismatch_problem",
]


class IdForm(StrEnum):
    """The physical form of an ID number, derived from its characters alone."""

    RESIDENT = "resident"
    HMT_PERMIT = "hmt_permit"
    FOREIGN_2023 = "foreign_2023"
    FOREIGN_2017 = "foreign_2017"


FORMS_BY_ID_TYPE: Mapping[IdType, frozenset[IdForm]] = MappingProxyType(
    {
        IdType.RESIDENT_ID: frozenset({IdForm.RESIDENT}),
        IdType.HMT_RESIDENCE_PERMIT: frozenset({IdForm.HMT_PERMIT}),
        IdType.FOREIGN_PERMANENT_RESIDENT: frozenset({IdForm.FOREIGN_2023, IdForm.FOREIGN_2017}),
    }
)
"""Which number forms each declared id_type admits."""

_FORM_LABELS: Mapping[IdForm, str] = MappingProxyType(
    {
        IdForm.RESIDENT: "a resident ID number",
        IdForm.HMT_PERMIT: "a Hong Kong/Macao/Taiwan residence permit number",
        IdForm.FOREIGN_2023: "a foreign permanent resident card number",
        IdForm.FOREIGN_2017: "a foreign permanent resident card number",
    }
)

PROBLEM_SHAPE = (
    "must be 18 characters (17 digits and a check character 0-9 or X) or 3 letters and 12 digits"
)
PROBLEM_CHECK_CHARACTER = "check character does not match (ISO 7064 MOD 11-2)"
PROBLEM_BIRTH_DATE = "birth date is not a valid date"
PROBLEM_BIRTH_DATE_FUTURE = "birth date is in the future"
PROBLEM_ADDRESS_CODE = "address code does not start with a province-level code"
PROBLEM_PERMIT_ADDRESS_CODE = "residence permit address code must be 810000, 820000 or 830000"

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
# The weighted sum runs over the ASCII codes of the digits: each code is its digit plus
# ord("0"), so subtracting ord("0") times the sum of the weights leaves the digits' sum.
_ASCII_ZERO_WEIGHT = ord("0") * sum(_WEIGHTS)
_CHECK_CHARACTERS = "10X98765432"
_DIGITS17 = re.compile(r"[0-9]{17}")
_EIGHTEEN_COLUMN = re.compile(r"[0-9]{17}[0-9X](?:\n[0-9]{17}[0-9X])*")
_EIGHTEEN = re.compile(r"[0-9]{17}[0-9X]")
_FOREIGN_2017 = re.compile(r"[A-Z]{3}[0-9]{12}")
_HMT_ADDRESS_CODES = frozenset({"810000", "820000", "830000"})
# GB/T 2260 province-level codes; 71 (Taiwan) is listed there too. Codes have only been
# added since the ID system began, so no lifelong number carries a code missing here.
_PROVINCE_CODES = frozenset(
    {
        *(str(n) for n in range(11, 16)),
        *(str(n) for n in range(21, 24)),
        *(str(n) for n in range(31, 38)),
        *(str(n) for n in range(41, 47)),
        *(str(n) for n in range(50, 55)),
        *(str(n) for n in range(61, 66)),
        "71",
    }
)
_EARLIEST_BIRTH_YEAR = 1800
_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def check_character(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character ('0'-'9' or 'X') for 17 ASCII digits.

    Raises ``ValueError`` when ``first17`` is not exactly 17 ASCII digits.
    """
    if not _DIGITS17.fullmatch(first17):
        raise ValueError("check_character needs exactly 17 ASCII digits")
    return _check_character(first17)


def _check_character(digits: str) -> str:
    """``check_character`` of the first 17 characters of ``digits``, known ASCII digits."""
    total = sum(map(operator.mul, digits[:17].encode("ascii"), _WEIGHTS)) - _ASCII_ZERO_WEIGHT
    return _CHECK_CHARACTERS[total % 11]


def normalise_id_number(s: str) -> str:
    """Upper-case the ASCII letters of an ID number (``x`` → ``X``); nothing else changes."""
    # str.upper would also fold non-ASCII letters (ß → SS) and change the length; on ASCII
    # text it is the same mapping, and faster.
    return s.upper() if s.isascii() else s.translate(_UPPER)


def id_number_form(s: str) -> IdForm | None:
    """The form an ID number has by its shape alone, or ``None`` when it has none of them.

    The check character and the birth date are not verified here; see ``id_number_problems``.
    """
    return _form(normalise_id_number(s))


def _form(n: str) -> IdForm | None:
    """``id_number_form`` of an already normalised number."""
    if len(n) == 18 and _EIGHTEEN.fullmatch(n):
        if n[0] == "9":
            return IdForm.FOREIGN_2023
        if n[:2] in ("81", "82", "83"):
            return IdForm.HMT_PERMIT
        return IdForm.RESIDENT
    if len(n) == 15 and _FOREIGN_2017.fullmatch(n):
        return IdForm.FOREIGN_2017
    return None


def type_mismatch_problem(form: IdForm, id_type: IdType) -> str:
    """The problem text for a number whose form the declared id_type does not admit."""
    return f"is {_FORM_LABELS[form]} but id_type is {id_type.value}"


def id_number_problems(
    s: str, id_type: IdType | None = None, *, today: dt.date | None = None
) -> list[str]:
    """Every problem of an ID number (raw or normalised); an empty list means valid.

    ``id_type``, when given, must admit the number's form. ``today``, when given, rejects
    birth dates after it; it is a parameter because this module never reads the clock.
    """
    n = normalise_id_number(s)
    form = _form(n)
    if form is None:
        return [PROBLEM_SHAPE]
    problems: list[str] = []
    if form is not IdForm.FOREIGN_2017:
        if form is IdForm.RESIDENT and n[:2] not in _PROVINCE_CODES:
            problems.append(PROBLEM_ADDRESS_CODE)
        elif form is IdForm.HMT_PERMIT and n[:6] not in _HMT_ADDRESS_CODES:
            problems.append(PROBLEM_PERMIT_ADDRESS_CODE)
        born = _birth_date(n)
        if born is None:
            problems.append(PROBLEM_BIRTH_DATE)
        elif today is not None and born > today:
            problems.append(PROBLEM_BIRTH_DATE_FUTURE)
        # _form matched 17 ASCII digits before the check character.
        if _check_character(n) != n[17]:
            problems.append(PROBLEM_CHECK_CHARACTER)
    if id_type is not None and form not in FORMS_BY_ID_TYPE[id_type]:
        problems.append(type_mismatch_problem(form, id_type))
    return problems


def all_valid_resident_numbers(numbers: Sequence[str], *, today: dt.date) -> bool:
    """``True`` when every one of ``numbers`` is a resident ID number in normal form that
    ``id_number_problems(n, today=today)`` finds nothing wrong with.

    Checked a rule at a time over the whole sequence (a file's batch of people), about five
    times faster than number by number. ``False`` only says that some number is something
    else (another form, lower case, a problem): check those one by one.
    """
    if not numbers:
        return True
    joined = "\n".join(numbers)
    # Every segment the pattern finds is 18 characters; the length then leaves no room for
    # a line break inside a number.
    if len(joined) != 19 * len(numbers) - 1 or not _EIGHTEEN_COLUMN.fullmatch(joined):
        return False
    # A province code also rules out the other 18-character forms (8x permits, 9x foreign).
    if not {n[:2] for n in numbers} <= _PROVINCE_CODES:
        return False
    for n in {n[6:14]: n for n in numbers}.values():
        born = _birth_date(n)
        if born is None or born > today:
            return False
    return all(
        map(operator.eq, map(_check_character, numbers), map(operator.itemgetter(17), numbers))
    )


def is_valid_id_number(
    s: str, id_type: IdType | None = None, *, today: dt.date | None = None
) -> bool:
    """``True`` when ``id_number_problems`` finds nothing."""
    return not id_number_problems(s, id_type, today=today)


def _birth_date(n: str) -> dt.date | None:
    year = int(n[6:10])
    if year < _EARLIEST_BIRTH_YEAR:
        return None
    try:
        return dt.date(year, int(n[10:12]), int(n[12:14]))
    except ValueError:
        return None
