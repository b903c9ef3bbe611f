from __future__ import annotations

import codecs
import datetime as dt
from pathlib import Path

import pytest

from certrecon.domain import RosterRecord, RosterStatus
from certrecon.errors import RosterImportError
from certrecon.ids import id_number_problems
from certrecon.roster_csv import (
    HEADER,
    MAX_LINE_BYTES,
    MAX_PROBLEMS_KEPT,
    RosterFile,
    parse_roster,
    read_roster_file,
)
from certrecon.synthetic import make_id_number, make_roster, write_roster_csv

HEAD = ",".join(HEADER)
ID1 = make_id_number("110105", dt.date(1949, 12, 31), 2)
ID2 = make_id_number("110105", dt.date(1955, 6, 1), 11)
ID_X = "11010519491231002X"  # a real-shaped number whose check character is X


def csv_text(*rows: str, header: str = HEAD) -> list[str]:
    return [line + "\n" for line in (header, *rows)]


def problems_of(lines: list[str]) -> list[tuple[int, str]]:
    with pytest.raises(RosterImportError) as caught:
        parse_roster(lines)
    return caught.value.problems


def test_id_helper_agrees_with_the_id_module() -> None:
    assert id_number_problems(ID1) == []
    assert id_number_problems(ID2) == []
    assert id_number_problems(ID_X) == []


def test_a_good_file_parses_with_nulls_for_empty_cells() -> None:
    records = parse_roster(
        csv_text(
            f"{ID1},张三,basic_pension,active,2010-01-01,,,,110105",
            f"{ID2},阿依古丽·买买提,survivor,suspended,,2024-02-29,2020-01-01,2021-01-01,",
        )
    )
    assert records == [
        RosterRecord(
            id_number=ID1,
            name="张三",
            benefit_type="basic_pension",
            status=RosterStatus.ACTIVE,
            insured_region="110105",
            first_paid_on=dt.date(2010, 1, 1),
        ),
        RosterRecord(
            id_number=ID2,
            name="阿依古丽·买买提",
            benefit_type="survivor",
            status=RosterStatus.SUSPENDED,
            insured_region="",
            deceased_on=dt.date(2024, 2, 29),
            imprisoned_from=dt.date(2020, 1, 1),
            imprisoned_until=dt.date(2021, 1, 1),
        ),
    ]


def test_lower_case_x_is_normalised_and_cells_are_stripped() -> None:
    [record] = parse_roster(
        csv_text(f" {ID_X.lower()} , 张三 ,basic_pension, active ,2010-01-01,,,,110105")
    )
    assert record.id_number == ID_X
    assert record.name == "张三"
    assert record.status is RosterStatus.ACTIVE


def test_quoted_cells_and_crlf_line_ends() -> None:
    lines = [HEAD + "\r\n", f'{ID1},"Smith, John",work_injury,active,2010-01-01,,,,\r\n']
    [record] = parse_roster(lines)
    assert record.name == "Smith, John"


def test_blank_lines_are_ignored_and_header_only_is_empty() -> None:
    assert parse_roster(csv_text()) == []
    assert len(parse_roster(csv_text(f"{ID1},张三,basic_pension,active,,,,,", "", ""))) == 1


def test_every_bad_row_is_named_by_file_line() -> None:
    bad_check = ID1[:17] + ("0" if ID1[17] != "0" else "1")
    problems = problems_of(
        csv_text(
            f"{ID1},张三,basic_pension,active,2010-01-01,,,,110105",  # line 2: fine
            f"{bad_check},李四,basic_pension,active,,,,,",  # line 3
            f"{ID2},,basic_pension,retired,2010-1-1,,,,1101",  # line 4: four problems
            f"{ID1},张三,basic_pension,active,,,,,",  # line 5: duplicate of line 2
        )
    )
    by_line: dict[int, list[str]] = {}
    for number, text in problems:
        by_line.setdefault(number, []).append(text)
    assert sorted(by_line) == [3, 4, 5]
    assert by_line[3] == ["id_number check character does not match (ISO 7064 MOD 11-2)"]
    assert any("name is empty" in p for p in by_line[4])
    assert any("status 'retired'" in p for p in by_line[4])
    assert any("first_paid_on '2010-1-1'" in p for p in by_line[4])
    assert any("insured_region '1101'" in p for p in by_line[4])
    assert by_line[5] == ["duplicate id_number (first on line 2)"]


def test_the_message_says_which_numbering_it_uses() -> None:
    with pytest.raises(RosterImportError, match="file line numbers; line 1 is the header"):
        parse_roster(csv_text(f"{ID1},张三,basic_pension,nope,,,,,"))


def test_problems_never_repeat_the_id_number_or_name() -> None:
    bad = ID1[:17] + ("0" if ID1[17] != "0" else "1")
    problems = problems_of(csv_text(f"{bad},张三,basic_pension,active,,,,,"))
    assert all(bad not in p and "张三" not in p for _, p in problems)


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        (f"{ID1},张三,basic_pension,active,2023-02-29,,,,", "not a valid calendar date"),
        (f"{ID1},张三,basic_pension,active,20230101,,,,", "YYYY-MM-DD"),
        (f"{ID1},张三,basic_pension,active,2023-W01-1,,,,", "YYYY-MM-DD"),
        (f"{ID1},张三,basic_pension,active,,,2021-01-02,2021-01-01,", "before imprisoned_from"),
        (f"{ID1},张三,basic_pension,active,,,,2021-01-01,", "imprisoned_from is empty"),
        (f"{ID1},{'名' * 65},basic_pension,active,,,,,", "longer than 64"),
        (f"{ID1},张三,,active,,,,,", "benefit_type is empty"),
        (f"{ID1},张三,basic_pension,Active,,,,,", "status 'Active'"),
        (f"{ID1},张三,basic_pension,active,,,,,11010a", "6-digit"),
        (f"{ID1},张三,basic_pension,active,,,,", "expected 9 cells, found 8"),
        (f"{ID1},张三,basic_pension,active,,,,,,", "expected 9 cells, found 10"),
        (",张三,basic_pension,active,,,,,", "id_number is empty"),
        (f"{ID1[:17]},张三,basic_pension,active,,,,,", "must be 18 characters"),
        (f"{ID1[:6]}19490231{ID1[14:]},张三,basic_pension,active,,,,,", "birth date"),
        (f'{ID1},"张\x07三",basic_pension,active,,,,,', "control characters"),
    ],
)
def test_row_rules(cells: str, expected: str) -> None:
    problems = problems_of(csv_text(cells))
    assert {n for n, _ in problems} == {2}
    assert any(expected in p for _, p in problems), problems


def test_an_imprisonment_ending_the_day_it_starts_is_fine() -> None:
    [r] = parse_roster(csv_text(f"{ID1},张三,basic_pension,active,,,2021-01-01,2021-01-01,"))
    assert r.imprisoned_from == r.imprisoned_until == dt.date(2021, 1, 1)


def test_foreign_2017_card_is_accepted() -> None:
    [r] = parse_roster(csv_text("usa110019490101,John Smith,basic_pension,active,,,,,"))
    assert r.id_number == "USA110019490101"


@pytest.mark.parametrize(
    "header",
    [
        "id_number,name,benefit_type,status,first_paid_on,deceased_on,imprisoned_from,imprisoned_until",
        "name,id_number,benefit_type,status,first_paid_on,deceased_on,imprisoned_from,imprisoned_until,insured_region",
        f"{ID1},张三,basic_pension,active,,,,,",
    ],
)
def test_a_wrong_header_is_a_clear_error(header: str) -> None:
    with pytest.raises(RosterImportError, match="line 1 must be the header id_number,name,"):
        parse_roster(csv_text(header=header))


def test_a_missing_header_does_not_echo_the_data_row() -> None:
    with pytest.raises(RosterImportError, match="looks like a data row") as caught:
        parse_roster(csv_text(header=f"{ID1},张三,basic_pension,active,,,,,"))
    assert ID1 not in str(caught.value)
    assert "张三" not in str(caught.value)


def test_a_duplicate_of_a_bad_row_is_reported_too() -> None:
    problems = problems_of(
        csv_text(
            f"{ID1},,basic_pension,active,,,,,",  # line 2: no name
            f"{ID1.lower()},张三,basic_pension,active,,,,,",  # line 3: same number
        )
    )
    assert problems == [(2, "name is empty"), (3, "duplicate id_number (first on line 2)")]


def test_an_empty_file_is_an_error() -> None:
    with pytest.raises(RosterImportError, match="the file is empty"):
        parse_roster([])


def test_a_quoted_newline_keeps_line_numbers_right() -> None:
    text = (
        HEAD + "\n"
        f'{ID1},"张\n三",basic_pension,active,,,,,\n'  # lines 2-3, a control character
        f"{ID2},李四,basic_pension,bad,,,,,\n"  # line 4
    )
    problems = problems_of(text.splitlines(keepends=True))
    assert [n for n, _ in problems] == [2, 4]


def test_read_file_with_and_without_bom(tmp_path: Path) -> None:
    body = HEAD + f"\n{ID1},张三,basic_pension,active,2010-01-01,,,,110105\n"
    plain = tmp_path / "plain.csv"
    plain.write_text(body, "utf-8")
    bom = tmp_path / "bom.csv"
    bom.write_bytes(codecs.BOM_UTF8 + body.encode())
    assert read_roster_file(plain) == read_roster_file(bom)
    assert read_roster_file(bom)[0].id_number == ID1


def test_invalid_utf8_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "gbk.csv"
    good = f"{ID1},张三,basic_pension,active,,,,,\n".encode()
    gbk = f"{ID2},李四,basic_pension,active,,,,,\n".encode("gbk")
    path.write_bytes((HEAD + "\n").encode() + good + gbk)
    with pytest.raises(RosterImportError) as caught:
        read_roster_file(path)
    assert (3, "not valid UTF-8 (byte 20 of the line)") in caught.value.problems


def test_an_unreadable_file_is_a_roster_error(tmp_path: Path) -> None:
    with pytest.raises(RosterImportError, match="cannot read the file"):
        read_roster_file(tmp_path / "missing.csv")


def test_progress_reports_bytes(tmp_path: Path) -> None:
    path = tmp_path / "roster.csv"
    write_roster_csv(path, make_roster(20_000, seed=3))
    seen: list[tuple[int, int]] = []
    read_roster_file(path, progress=lambda done, total: seen.append((done, total)))
    size = path.stat().st_size
    assert seen[-1] == (size, size)
    assert len(seen) >= 2
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


# --- the synthetic roster ---------------------------------------------------------------


def test_synthetic_roster_round_trips_through_the_checks(tmp_path: Path) -> None:
    people = make_roster(5_000, seed=42)
    path = tmp_path / "roster.csv"
    write_roster_csv(path, people)
    assert read_roster_file(path) == people


def test_synthetic_roster_is_reproducible_and_varied() -> None:
    people = make_roster(5_000, seed=7, region="320102")
    assert people == make_roster(5_000, seed=7, region="320102")
    assert people != make_roster(5_000, seed=8, region="320102")
    assert len({p.id_number for p in people}) == len(people)
    assert all(id_number_problems(p.id_number) == [] for p in people)
    assert {p.insured_region for p in people} == {"320102"}
    assert {p.status for p in people} == set(RosterStatus)
    assert any(p.deceased_on for p in people)
    assert any(p.imprisoned_from and p.imprisoned_until is None for p in people)
    assert any(p.imprisoned_until for p in people)
    assert any("·" in p.name for p in people)
    assert any(p.first_paid_on is None for p in people)
    assert any(p.first_paid_on and p.first_paid_on > dt.date(2025, 12, 31) for p in people)


def test_make_id_number_encodes_sex_and_birth() -> None:
    number = make_id_number("110105", dt.date(1949, 12, 31), 2)
    assert number.startswith("11010519491231002")
    assert id_number_problems(number) == []


# --- streaming, bounded reading ------------------------------------------------------------


def test_an_overlong_line_stops_reading_at_once(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_bytes((HEAD + "\n").encode() + b"x" * (MAX_LINE_BYTES + 1) + b"\n" + b"y" * 10)
    with pytest.raises(RosterImportError, match="line 2 is longer than 65,536 bytes") as caught:
        read_roster_file(path)
    assert caught.value.problems == [(2, "line longer than 65,536 bytes")]


def test_a_line_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "limit.csv"
    row = f"{ID1},张三,basic_pension,active,,,,,"
    padding = MAX_LINE_BYTES - len(row.encode()) - 1
    path.write_text(HEAD + "\n" + row + " " * padding + "\n", "utf-8")
    [record] = read_roster_file(path)
    assert record.id_number == ID1


def test_nul_bytes_are_a_problem_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "nul.csv"
    path.write_bytes(
        (HEAD + "\n").encode() + f"{ID1},张\x00三,basic_pension,active,,,,,\n".encode()
    )
    with pytest.raises(RosterImportError) as caught:
        read_roster_file(path)
    assert (2, "contains a NUL byte; is this a binary file?") in caught.value.problems


def test_problems_are_counted_beyond_those_kept(tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    rows = "".join(f"{ID1},张三,basic_pension,nope,,,,,\n" for _ in range(MAX_PROBLEMS_KEPT + 500))
    path.write_text(HEAD + "\n" + rows, "utf-8")
    with pytest.raises(RosterImportError) as caught:
        read_roster_file(path)
    assert len(caught.value.problems) == MAX_PROBLEMS_KEPT
    # Each row after the first: a bad status and a repeated number.
    assert caught.value.total == 2 * (MAX_PROBLEMS_KEPT + 500) - 1
    assert f"on {MAX_PROBLEMS_KEPT + 500} line(s)" in str(caught.value)


def test_quoted_problem_values_are_shortened() -> None:
    problems = problems_of(csv_text(f"{ID1},张三,basic_pension,{'s' * 5000},,,,,"))
    assert all(len(p) < 200 for _, p in problems)


def test_the_header_is_checked_on_opening(tmp_path: Path) -> None:
    path = tmp_path / "wrong.csv"
    path.write_text("a,b\n" + f"{ID1},张三,basic_pension,active,,,,,\n" * 10, "utf-8")
    with pytest.raises(RosterImportError, match="line 1 must be the header"):
        RosterFile(path).__enter__()


def test_the_optional_suspended_on_column() -> None:
    wide = csv_text(
        f"{ID1},张三,basic_pension,suspended,2010-01-01,,,,110105,2024-03-01",
        f"{ID2},李四,basic_pension,active,2010-01-01,,,,110105,",
        header=HEAD + ",suspended_on",
    )
    first, second = parse_roster(wide)
    assert first.suspended_on == dt.date(2024, 3, 1)
    assert second.suspended_on is None
    # A file without the column stays valid; its people have no suspension date.
    (narrow,) = parse_roster(csv_text(f"{ID1},张三,basic_pension,suspended,2010-01-01,,,,110105"))
    assert narrow.suspended_on is None


def test_suspended_on_rules_and_cell_counts_follow_the_files_own_header() -> None:
    wide = HEAD + ",suspended_on"
    assert problems_of(
        csv_text(f"{ID1},张三,basic_pension,suspended,2010-01-01,,,,110105,2024-13-01", header=wide)
    ) == [(2, "suspended_on '2024-13-01' is not a valid calendar date")]
    assert problems_of(
        csv_text(f"{ID1},张三,basic_pension,suspended,2010-01-01,,,,110105", header=wide)
    ) == [(2, "expected 10 cells, found 9")]
    assert problems_of(csv_text(f"{ID1},张三,basic_pension,active,2010-01-01,,,,110105,")) == [
        (2, "expected 9 cells, found 10")
    ]
