"""ID number normalisation and validation (GB 11643, residence permits, foreign PR cards)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certrecon.domain import IdType
from certrecon.ids import (
    FORMS_BY_ID_TYPE,
    PROBLEM_ADDRESS_CODE,
    PROBLEM_BIRTH_DATE,
    PROBLEM_BIRTH_DATE_FUTURE,
    PROBLEM_CHECK_CHARACTER,
    PROBLEM_PERMIT_ADDRESS_CODE,
    PROBLEM_SHAPE,
    IdForm,
    all_valid_resident_numbers,
    check_character,
    id_number_form,
    id_number_problems,
    is_valid_id_number,
    normalise_id_number,
    type_mismatch_problem,
)


def make(address: str, birth: str = "19560704", sequence: str = "123") -> str:
    """A number with a correct check character."""
    first17 = address + birth + sequence
    return first17 + check_character(first17)


RESIDENT = make("110105")
HMT = make("810000")
FOREIGN_2023 = make("911156")  # issued in Beijing (11), nationality 156
FOREIGN_2017 = "USA110056070412"


class TestCheckCharacter:
    @pytest.mark.parametrize(
        ("number", "expected"),
        [
            # The specimen numbers of GB 11643 and the contract's examples.
            ("11010519491231002X", "X"),
            ("110108195203154515", "5"),
            ("110108198001011237", "7"),
            ("440524188001010014", "4"),
        ],
    )
    def test_known_numbers(self, number: str, expected: str) -> None:
        assert check_character(number[:17]) == expected

    @pytest.mark.parametrize(
        "bad", ["", "1234567890123456", "123456789012345678", "1101051949123100X", "１" * 17]
    )
    def test_rejects_anything_but_17_ascii_digits(self, bad: str) -> None:
        with pytest.raises(ValueError, match="17 ASCII digits"):
            check_character(bad)

    @given(st.from_regex(r"[0-9]{17}", fullmatch=True))
    def test_result_is_a_digit_or_x(self, first17: str) -> None:
        assert check_character(first17) in "0123456789X"

    @given(
        st.from_regex(r"[0-9]{17}", fullmatch=True),
        st.integers(0, 16),
        st.integers(1, 9),
    )
    def test_detects_every_single_digit_substitution(
        self, first17: str, position: int, delta: int
    ) -> None:
        changed = str((int(first17[position]) + delta) % 10)
        altered = first17[:position] + changed + first17[position + 1 :]
        assert check_character(altered) != check_character(first17)


class TestNormalise:
    def test_lower_case_x_becomes_upper_case(self) -> None:
        assert normalise_id_number("11010519491231002x") == "11010519491231002X"

    def test_letters_of_the_2017_form_are_upper_cased(self) -> None:
        assert normalise_id_number("usa110056070412") == "USA110056070412"

    def test_whitespace_and_full_width_characters_are_left_alone(self) -> None:
        assert normalise_id_number(" 11010519491231002x ") == " 11010519491231002X "
        assert normalise_id_number("１１０") == "１１０"

    @given(st.text())
    def test_idempotent_and_length_preserving(self, s: str) -> None:
        once = normalise_id_number(s)
        assert normalise_id_number(once) == once
        assert len(once) == len(s)


class TestForms:
    @pytest.mark.parametrize(
        ("number", "form"),
        [
            (RESIDENT, IdForm.RESIDENT),
            (HMT, IdForm.HMT_PERMIT),
            (make("820000"), IdForm.HMT_PERMIT),
            (make("830000"), IdForm.HMT_PERMIT),
            (FOREIGN_2023, IdForm.FOREIGN_2023),
            (FOREIGN_2017, IdForm.FOREIGN_2017),
            (FOREIGN_2017.lower(), IdForm.FOREIGN_2017),
            ("11010519491231002x", IdForm.RESIDENT),
        ],
    )
    def test_form_by_shape(self, number: str, form: IdForm) -> None:
        assert id_number_form(number) is form

    @pytest.mark.parametrize(
        "number",
        [
            "",
            "110105194912310",  # first-generation 15-digit numbers are out of use
            "11010519491231002",
            "1101051949123100211",
            "11010519491231002Y",
            "1101051949123100X2",
            " 11010519491231002X",
            "１１０１０５１９４９１２３１００２Ｘ",
            "US110056070412",
            "USA11005607041",
            "US1A10056070412",
        ],
    )
    def test_no_form(self, number: str) -> None:
        assert id_number_form(number) is None
        assert id_number_problems(number) == [PROBLEM_SHAPE]


class TestProblems:
    @pytest.mark.parametrize(
        "number",
        [
            "11010519491231002X",
            "11010519491231002x",
            "110108195203154515",
            RESIDENT,
            make("650102", "20000229"),
            make("710000"),
            HMT,
            FOREIGN_2023,
            FOREIGN_2017,
        ],
    )
    def test_valid_without_id_type(self, number: str) -> None:
        assert id_number_problems(number) == []
        assert is_valid_id_number(number)

    def test_wrong_check_character(self) -> None:
        wrong = RESIDENT[:17] + ("0" if RESIDENT[17] != "0" else "1")
        assert id_number_problems(wrong) == [PROBLEM_CHECK_CHARACTER]

    @pytest.mark.parametrize("birth", ["19490231", "19491301", "19490000", "17991231", "00000000"])
    def test_invalid_birth_date(self, birth: str) -> None:
        assert id_number_problems(make("110105", birth)) == [PROBLEM_BIRTH_DATE]

    def test_birth_date_in_the_future_only_when_today_is_given(self) -> None:
        number = make("110105", "20300101")
        assert id_number_problems(number) == []
        assert id_number_problems(number, today=dt.date(2029, 12, 31)) == [
            PROBLEM_BIRTH_DATE_FUTURE
        ]
        assert id_number_problems(number, today=dt.date(2030, 1, 1)) == []

    @pytest.mark.parametrize("address", ["000000", "100000", "160000", "470000", "720000"])
    def test_resident_address_code_must_be_a_province(self, address: str) -> None:
        assert id_number_problems(make(address)) == [PROBLEM_ADDRESS_CODE]

    @pytest.mark.parametrize("address", ["810100", "821234", "839999"])
    def test_permit_address_code_is_exact(self, address: str) -> None:
        assert id_number_problems(make(address)) == [PROBLEM_PERMIT_ADDRESS_CODE]

    def test_foreign_2023_checks_birth_date_and_check_character(self) -> None:
        assert id_number_problems(make("911156", "19561332")) == [PROBLEM_BIRTH_DATE]
        broken = FOREIGN_2023[:17] + ("0" if FOREIGN_2023[17] != "0" else "1")
        assert id_number_problems(broken) == [PROBLEM_CHECK_CHARACTER]

    def test_several_problems_are_all_listed(self) -> None:
        first17 = "16" + "0000" + "19490231" + "123"
        wrong = "0" if check_character(first17) != "0" else "1"
        assert id_number_problems(first17 + wrong, IdType.HMT_RESIDENCE_PERMIT) == [
            PROBLEM_ADDRESS_CODE,
            PROBLEM_BIRTH_DATE,
            PROBLEM_CHECK_CHARACTER,
            type_mismatch_problem(IdForm.RESIDENT, IdType.HMT_RESIDENCE_PERMIT),
        ]

    @given(st.text(max_size=40))
    def test_never_raises(self, s: str) -> None:
        for id_type in (None, *IdType):
            assert isinstance(id_number_problems(s, id_type), list)

    @given(st.from_regex(r"[0-9]{17}[0-9Xx]", fullmatch=True))
    def test_never_raises_on_18_character_shapes(self, s: str) -> None:
        problems = id_number_problems(s, today=dt.date(2026, 1, 1))
        assert (PROBLEM_CHECK_CHARACTER in problems) == (
            check_character(s[:17]) != normalise_id_number(s)[17]
        )

    def test_problem_texts_do_not_contain_the_number(self) -> None:
        first17 = "16" + "0000" + "19490231" + "123"
        for problem in id_number_problems(first17 + "0", IdType.FOREIGN_PERMANENT_RESIDENT):
            assert first17[:6] not in problem
            assert "19490231" not in problem


class TestIdTypeCrossCheck:
    @pytest.mark.parametrize(
        ("number", "form"),
        [
            (RESIDENT, IdForm.RESIDENT),
            (HMT, IdForm.HMT_PERMIT),
            (FOREIGN_2023, IdForm.FOREIGN_2023),
            (FOREIGN_2017, IdForm.FOREIGN_2017),
        ],
    )
    @pytest.mark.parametrize("id_type", list(IdType))
    def test_matrix(self, number: str, form: IdForm, id_type: IdType) -> None:
        problems = id_number_problems(number, id_type)
        if form in FORMS_BY_ID_TYPE[id_type]:
            assert problems == []
        else:
            assert problems == [type_mismatch_problem(form, id_type)]

    def test_every_form_is_admitted_by_exactly_one_id_type(self) -> None:
        for form in IdForm:
            assert sum(form in forms for forms in FORMS_BY_ID_TYPE.values()) == 1

    def test_mismatch_text(self) -> None:
        assert id_number_problems(HMT, IdType.RESIDENT_ID) == [
            "is a Hong Kong/Macao/Taiwan residence permit number but id_type is resident_id"
        ]
        assert id_number_problems(FOREIGN_2023, IdType.RESIDENT_ID) == [
            "is a foreign permanent resident card number but id_type is resident_id"
        ]
        assert id_number_problems(RESIDENT, IdType.FOREIGN_PERMANENT_RESIDENT) == [
            "is a resident ID number but id_type is foreign_permanent_resident"
        ]

    def test_shape_problem_hides_the_cross_check(self) -> None:
        # Without a recognisable form there is nothing to compare the id_type with.
        assert id_number_problems("nonsense", IdType.RESIDENT_ID) == [PROBLEM_SHAPE]


def _check_character_by_the_definition(first17: str) -> str:
    """ISO 7064 MOD 11-2 written out digit by digit, as GB 11643 states it."""
    weights = [2 ** (17 - i) % 11 for i in range(17)]
    total = sum(int(c) * w for c, w in zip(first17, weights, strict=True))
    return "10X98765432"[total % 11]


@given(st.from_regex(r"[0-9]{17}", fullmatch=True))
def test_check_character_follows_the_definition(first17: str) -> None:
    assert check_character(first17) == _check_character_by_the_definition(first17)


@given(st.from_regex(r"[0-9]{17}", fullmatch=True), st.sampled_from("0123456789Xx"))
def test_a_check_character_problem_exactly_when_it_differs(first17: str, last: str) -> None:
    problems = id_number_problems("110105" + first17[6:] + last)
    wrong = _check_character_by_the_definition("110105" + first17[6:]) != last.upper()
    assert (PROBLEM_CHECK_CHARACTER in problems) == wrong


def _one_by_one(n: str, today: dt.date) -> bool:
    return (
        n == normalise_id_number(n)
        and id_number_form(n) is IdForm.RESIDENT
        and not id_number_problems(n, today=today)
    )


_ADDRESSES = st.sampled_from(["110105", "310101", "710000", "810000", "910000", "990105"])
_BIRTHS = st.sampled_from(["19560704", "18000101", "17991231", "19500231", "20261201"])
_NUMBERS = st.one_of(
    st.builds(make, _ADDRESSES, _BIRTHS, st.from_regex(r"[0-9]{3}", fullmatch=True)),
    st.builds(lambda n: n.lower(), st.just(make("110105", sequence="12" + "3"))),
    st.builds(lambda n, c: n[:17] + c, st.just(RESIDENT), st.sampled_from("0123456789Xx")),
    st.sampled_from([FOREIGN_2017, " " + RESIDENT, RESIDENT + "\n" + RESIDENT, "", "X" * 18]),
    st.from_regex(r"[0-9X\n]{18}", fullmatch=True),
)


@given(
    st.lists(_NUMBERS, max_size=6), st.sampled_from([dt.date(2026, 11, 30), dt.date(1956, 7, 3)])
)
def test_bulk_resident_check_agrees_with_the_one_by_one_checks(
    numbers: list[str], today: dt.date
) -> None:
    expected = all(_one_by_one(n, today) for n in numbers)
    assert all_valid_resident_numbers(numbers, today=today) == expected


def test_bulk_resident_check_of_valid_numbers() -> None:
    numbers = [make("110105", sequence=f"{k:03d}") for k in range(1000)]
    assert all_valid_resident_numbers(numbers, today=dt.date(2026, 11, 30))
    assert not all_valid_resident_numbers(
        [*numbers, numbers[0].lower()[:17] + "x"], today=dt.date(2026, 11, 30)
    )
