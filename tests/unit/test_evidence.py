"""Comparison evidence: topic messages and import files (contract 1.1)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certrecon.consumers.models import MESSAGE_NOT_JSON, MESSAGE_NOT_UTF8, MESSAGE_TOMBSTONE
from certrecon.contract import example_bytes
from certrecon.contract.validate import check_bytes
from certrecon.csvfile import MAX_LINE_BYTES, Problems
from certrecon.domain import CST
from certrecon.errors import EvidenceImportError
from certrecon.evidence import (
    Evidence,
    EvidenceInvalid,
    EvidenceKind,
    EvidenceValid,
    decode_evidence,
)
from certrecon.evidence.csvfile import (
    HEADER,
    iter_evidence_file,
    parse_evidence,
    raise_if_rejected,
)

TOPIC = "mohrss.comparison"
RECEIVED = dt.datetime(2026, 8, 5, 2, 13, tzinfo=dt.UTC)  # 10:13 in Beijing
ID = "11010519491231002X"
ID2 = "110105195506010114"
TODAY = dt.date(2026, 8, 5)


def message(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(example_bytes("comparison-death.json"))
    body.update(changes)
    return body


def run(body: dict[str, Any] | bytes | None, received_at: dt.datetime = RECEIVED) -> Any:
    value = json.dumps(body, ensure_ascii=False).encode() if isinstance(body, dict) else body
    return decode_evidence(value, topic=TOPIC, received_at=received_at)


def errors_of(body: dict[str, Any] | bytes | None) -> tuple[str, ...]:
    decoded = run(body)
    assert isinstance(decoded, EvidenceInvalid), decoded
    return decoded.errors


# ------------------------------------------------------------------------------ topic


def test_the_shipped_example_decodes_and_matches_its_schema() -> None:
    raw = example_bytes("comparison-death.json")
    assert check_bytes("comparison-evidence", raw) == []
    decoded = decode_evidence(raw, topic=TOPIC, received_at=RECEIVED)
    assert isinstance(decoded, EvidenceValid)
    assert decoded.raw == raw
    assert decoded.evidence == evidence(
        evidence_id="MZ-2026-000481",
        source="civil_affairs:cremation",
        event_date=dt.date(2026, 8, 2),
        observed_at=dt.datetime(2026, 8, 5, 10, 12, tzinfo=CST),
    )


@pytest.mark.parametrize("kind", list(EvidenceKind))
def test_every_kind_is_accepted(kind: EvidenceKind) -> None:
    decoded = run(message(kind=kind.value))
    assert isinstance(decoded, EvidenceValid)
    assert decoded.evidence.kind is kind


def test_lower_case_check_character_is_normalised_and_id_type_defaults() -> None:
    decoded = run(message(subject={"id_number": ID.lower(), "name": "张三"}))
    assert isinstance(decoded, EvidenceValid)
    assert decoded.evidence.id_number == ID


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"schema_version": 2}, "schema_version: must be the integer 1"),
        ({"evidence_id": "has space"}, "evidence_id: must be a string of 1–64 characters"),
        ({"evidence_id": "x" * 65}, "evidence_id: must be a string of 1–64 characters"),
        ({"kind": "birth"}, "kind: must be one of death, imprisonment, release, proof_of_life"),
        ({"event_date": "2026-8-2"}, "event_date: must be a date of the form YYYY-MM-DD"),
        ({"event_date": "2026-02-30"}, "event_date: must be a date of the form YYYY-MM-DD"),
        ({"event_date": "2026-08-06"}, "event_date: is after the day it was received"),
        ({"event_date": "1899-12-31"}, "event_date: is before 1900-01-01"),
        ({"source": ""}, "source: must be a string of 1–128 characters"),
        ({"source": "  "}, "source: must not be blank"),
        ({"source": "a\u0007b"}, "source: must not contain control characters"),
        ({"observed_at": "2026-08-05 10:12:00"}, "observed_at: must be an RFC 3339 timestamp"),
        ({"observed_at": "2026-08-05T10:12:00"}, "observed_at: must be an RFC 3339 timestamp"),
        ({"observed_at": "2026-08-05T10:30:00+08:00"}, "observed_at: is more than 10 minutes"),
        ({"observed_at": "1999-12-31T00:00:00+08:00"}, "observed_at: is before 2000-01-01"),
        ({"subject": {"id_number": ID, "name": ""}}, "subject.name: must be a string of 1–64"),
        ({"subject": {"id_number": ID[:17] + "1", "name": "张三"}}, "subject.id_number: check"),
        (
            {"subject": {"id_number": ID, "name": "张三", "id_type": "foreign_permanent_resident"}},
            "subject.id_number: is a resident ID number but id_type is foreign",
        ),
    ],
)
def test_each_rule_names_its_field(changes: dict[str, Any], expected: str) -> None:
    errors = errors_of(message(**changes))
    assert any(e.startswith(expected) for e in errors), errors


def test_missing_fields_are_all_listed_and_the_evidence_id_is_kept() -> None:
    body = message()
    del body["source"], body["observed_at"]
    decoded = run(body)
    assert isinstance(decoded, EvidenceInvalid)
    assert decoded.errors == ("source: required", "observed_at: required")
    assert decoded.evidence_id == "MZ-2026-000481"
    assert decoded.reason == "source: required; observed_at: required"


def test_errors_never_contain_the_id_number_or_name() -> None:
    errors = errors_of(message(subject={"id_number": ID[:17] + "1", "name": "张\u0000三"}))
    assert all(ID[:17] not in e and "张" not in e for e in errors)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, MESSAGE_TOMBSTONE),
        (b"\xff\xfe", MESSAGE_NOT_UTF8),
        (b"{not json", MESSAGE_NOT_JSON),
        (b"[1, 2]", "message: not a JSON object"),
    ],
)
def test_undecodable_messages(value: bytes | None, expected: str) -> None:
    decoded = run(value)
    assert isinstance(decoded, EvidenceInvalid)
    assert decoded.errors == (expected,)
    assert decoded.evidence_id is None


def test_duplicate_keys_and_non_finite_numbers_make_a_message_invalid() -> None:
    raw = json.dumps(message(extra=1.5)).replace(
        '"kind": "death"', '"kind": "death", "kind": "release"'
    )
    decoded = run(raw.replace("1.5", "NaN").encode())
    assert isinstance(decoded, EvidenceInvalid)
    assert decoded.errors == (
        "message: duplicate key kind",
        "message: extra: non-finite number NaN",
    )
    assert decoded.evidence_id == "MZ-2026-000481"


def test_unknown_fields_are_accepted() -> None:
    assert isinstance(run(message(extra_field={"a": 1})), EvidenceValid)


def test_caller_mistakes_raise() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decode_evidence(b"{}", topic=TOPIC, received_at=dt.datetime(2026, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="max_skew"):
        decode_evidence(b"{}", topic=TOPIC, received_at=RECEIVED, max_skew=dt.timedelta(seconds=-1))


@given(st.binary(max_size=300))
def test_decode_never_raises_on_arbitrary_bytes(value: bytes) -> None:
    assert isinstance(run(value), EvidenceInvalid | EvidenceValid)


# ------------------------------------------------------------------------------ identity


def evidence(**changes: Any) -> Evidence:
    fields: dict[str, Any] = {
        "evidence_id": "E1",
        "source": "health:death_certificate",
        "kind": EvidenceKind.DEATH,
        "id_number": ID,
        "name": "张三",
        "event_date": dt.date(2026, 3, 1),
    }
    fields.update(changes)
    return Evidence(**fields)


def test_identity_is_per_source_and_transport_does_not_count() -> None:
    a = evidence()
    assert not a.conflicts_with(evidence(observed_at=RECEIVED))  # same record via the topic
    assert a.conflicts_with(evidence(event_date=dt.date(2026, 3, 2)))
    assert a.conflicts_with(evidence(kind=EvidenceKind.PROOF_OF_LIFE))
    assert not a.conflicts_with(evidence(source="civil_affairs:cremation", name="李四"))


# ------------------------------------------------------------------------------ files


def lines(*rows: str, header: str = ",".join(HEADER)) -> list[str]:
    return [row + "\n" for row in (header, *rows)]


def parse(text: list[str], today: dt.date = TODAY) -> tuple[list[tuple[int, Evidence]], Problems]:
    problems = Problems()
    rows = list(parse_evidence(text, today=today, problems=problems))
    return rows, problems


def test_a_good_file() -> None:
    rows, problems = parse(
        lines(
            f"E1,death,{ID.lower()},张三,2026-03-01,civil_affairs:cremation",
            "",
            f" P-9 , proof_of_life ,{ID2}, 李四 ,2026-07-30, transport:rail_travel ",
        )
    )
    assert not problems
    assert rows == [
        (2, evidence(source="civil_affairs:cremation")),
        (
            4,
            Evidence(
                evidence_id="P-9",
                source="transport:rail_travel",
                kind=EvidenceKind.PROOF_OF_LIFE,
                id_number=ID2,
                name="李四",
                event_date=dt.date(2026, 7, 30),
            ),
        ),
    ]


def test_every_bad_row_is_named_by_line_and_nothing_personal_is_echoed() -> None:
    bad_id = ID[:17] + "1"
    rows, problems = parse(
        lines(
            f"E1,death,{ID},张三,2026-03-01,s",  # line 2: fine
            f"bad id!,birth,{bad_id},,2026-13-01,",  # line 3: six problems
            f"E3,release,{ID},张三,2026-08-06,s",  # line 4: future event
            "E4,release",  # line 5: too few cells
            f'E5,release,{ID},"张\u0007三",1899-01-01,{"s" * 129}',  # line 6
        )
    )
    assert [line for line, _ in rows] == [2]
    by_line: dict[int, list[str]] = {}
    for line, text in problems.kept:
        by_line.setdefault(line, []).append(text)
    assert sorted(by_line) == [3, 4, 5, 6]
    assert by_line[3] == [
        "evidence_id must be 1–64 characters from A-Z a-z 0-9 _ : . -",
        "kind 'birth' is not one of death, imprisonment, release, proof_of_life",
        "id_number check character does not match (ISO 7064 MOD 11-2)",
        "name is empty",
        "event_date '2026-13-01' is not a valid calendar date",
        "source is empty",
    ]
    assert by_line[4] == ["event_date is after the day it was received"]
    assert by_line[5] == ["expected 6 cells, found 2"]
    assert by_line[6] == [
        "name must not contain control characters",
        "event_date is before 1900-01-01, not a plausible event date",
        "source is longer than 128 characters",
    ]
    assert all(bad_id not in t and "张" not in t for _, t in problems.kept)
    with pytest.raises(EvidenceImportError, match=r"11 problem.* on 4 line") as caught:
        raise_if_rejected(problems, "f.csv")
    assert caught.value.problems == sorted(problems.kept, key=lambda p: p[0])
    assert caught.value.total == 11


def test_a_wrong_header_is_rejected_at_once() -> None:
    with pytest.raises(EvidenceImportError, match="line 1 must be the header evidence_id,kind"):
        parse(lines(header="evidence_id,kind,id_number,name,event_date"))
    with pytest.raises(EvidenceImportError, match="looks like a data row"):
        parse([f"E1,death,{ID},张三,2026-03-01,s\n"])
    with pytest.raises(EvidenceImportError, match="the file is empty"):
        parse([])


def test_files_stream_with_a_bom_and_crlf_and_report_bad_bytes(tmp_path: Path) -> None:
    path = tmp_path / "evidence.csv"
    path.write_bytes(
        b"\xef\xbb\xbf"
        + ",".join(HEADER).encode()
        + b"\r\n"
        + f"E1,death,{ID},张三,2026-03-01,s\r\n".encode()
        + b"E3,death,\xff,,,\r\n"
        + b"E5,death,\x00,,,\r\n"
        + f"E4,proof_of_life,{ID},张三,2026-03-01,s\r\n".encode()
    )
    problems = Problems()
    seen: list[tuple[int, int]] = []
    rows = list(
        iter_evidence_file(
            path, today=TODAY, problems=problems, progress=lambda d, t: seen.append((d, t))
        )
    )
    assert [(line, e.evidence_id) for line, e in rows] == [(2, "E1"), (5, "E4")]
    assert (3, "not valid UTF-8 (byte 10 of the line)") in problems.kept
    assert (4, "contains a NUL byte; is this a binary file?") in problems.kept
    assert seen[-1] == (path.stat().st_size, path.stat().st_size)


def test_an_over_long_line_stops_the_import_at_once(tmp_path: Path) -> None:
    path = tmp_path / "evidence.csv"
    path.write_bytes(",".join(HEADER).encode() + b"\n" + b"x" * (MAX_LINE_BYTES + 1) + b"\n")
    with pytest.raises(EvidenceImportError, match="line 2 is longer than 65,536 bytes"):
        list(iter_evidence_file(path, today=TODAY, problems=Problems()))


def test_an_unreadable_file_is_an_import_error(tmp_path: Path) -> None:
    with pytest.raises(EvidenceImportError, match="cannot read the file"):
        list(iter_evidence_file(tmp_path / "missing.csv", today=TODAY, problems=Problems()))


def test_kept_problems_are_capped_but_counted() -> None:
    problems = Problems(keep=3)
    rows = list(parse_evidence(lines(*(["E,nope,,,,"] * 5)), today=TODAY, problems=problems))
    assert rows == []
    assert (problems.count, problems.lines, len(problems.kept)) == (25, 5, 3)
    with pytest.raises(EvidenceImportError, match=r"25 problem\(s\) on 5 line\(s\)") as caught:
        raise_if_rejected(problems, "f.csv")
    assert caught.value.total == 25


# ------------------------------------------------------------------------------ batches

_CELLS = {
    "evidence_id": ["E1", " E2 ", "a:b.c-d_9", "", "bad id", "x" * 65, '"E\nF"'],
    "kind": ["death", "proof_of_life", " release ", "birth", ""],
    "id_number": [ID, ID.lower(), ID2, f" {ID2} ", ID[:17] + "1", "", "ABC123456789012"],
    "name": ["张三", " 李四 ", "", "张\u200b三", "n" * 65, '"a,b"'],
    "event_date": ["2026-03-01", " 2026-08-05 ", "2026-08-06", "1899-12-31", "2026-13-01", ""],
    "source": ["health:outpatient", " s ", "", "s" * 129, "s\u0007"],
}


def _reference(text: list[str]) -> tuple[list[tuple[Any, ...]], list[tuple[int, str]]]:
    """The rows and problems of the row-by-row checks alone."""
    from certrecon.csvfile import DateCells, data_rows
    from certrecon.evidence import csvfile

    problems = Problems()
    people = csvfile._PersonCells(TODAY)
    dates = DateCells()
    staged = []
    for line, row in data_rows(text, HEADER, problems, source="f", error=EvidenceImportError):
        found, row_problems = csvfile._check_row(row, dates, people)
        for p in row_problems:
            problems.add(line, p)
        if found is not None:
            staged.append((line, found))
    return staged, problems.kept


_GOOD = [values[0] for values in _CELLS.values()]


@st.composite
def _rows(draw: st.DrawFn) -> str:
    """Mostly good rows: a good one with up to two cells changed, or a malformed line."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(["", "E9,death", "E9,death,x,y,z,w,v"]))
    cells = list(_GOOD)
    columns = list(_CELLS.values())
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(cells) - 1))
        cells[at] = draw(st.sampled_from(columns[at]))
    return ",".join(cells)


@given(st.lists(_rows(), max_size=12), st.integers(min_value=1, max_value=5))
def test_batches_checked_by_column_find_what_rows_checked_one_by_one_find(
    rows: list[str], batch: int
) -> None:
    from certrecon.evidence import csvfile

    text = lines(*rows)
    expected = _reference(text)
    before = csvfile.BATCH_ROWS
    csvfile.BATCH_ROWS = batch
    try:
        problems = Problems()
        found = list(parse_evidence(text, today=TODAY, problems=problems))
    finally:
        csvfile.BATCH_ROWS = before
    assert (found, problems.kept) == expected


def test_known_values_start_over_between_batches_not_within_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from certrecon.evidence import csvfile
    from certrecon.synthetic import make_roster

    monkeypatch.setattr(csvfile._Cells, "LIMIT", 2)
    monkeypatch.setattr(csvfile, "BATCH_ROWS", 4)
    people = make_roster(10, seed=5)
    text = lines(
        *(f"E{i},proof_of_life,{p.id_number},{p.name},2026-03-01,s" for i, p in enumerate(people))
    )
    rows, problems = parse(text)
    assert not problems
    assert [(e.evidence_id, e.id_number, e.name) for _, e in rows] == [
        (f"E{i}", p.id_number, p.name) for i, p in enumerate(people)
    ]


@given(
    st.lists(
        st.sampled_from(
            [
                b"a,b\n",
                b"\xe5\xbc\xa0\n",
                b"\xff\n",
                b"x\x00y\n",
                b"c\r\n",
                b"d\re\n",
                "\u2028".encode() + b"\n",
                b"\n",
                b"zz",
            ]
        ),
        max_size=20,
    ).map(b"".join),
    st.integers(min_value=1, max_value=16),
)
def test_lines_read_in_blocks_are_the_lines_read_one_by_one(raw: bytes, block: int) -> None:
    import io

    from certrecon import csvfile

    one_problems = Problems()
    one = list(
        csvfile._lines_one_by_one(
            io.BytesIO(raw), one_problems, source="f", error=EvidenceImportError, kind="k", first=0
        )
    )
    before = csvfile._BLOCK_BYTES
    csvfile._BLOCK_BYTES = block
    try:
        problems = Problems()
        blocks = list(
            csvfile.decoded_lines(
                io.BytesIO(raw), problems, source="f", error=EvidenceImportError, kind="k"
            )
        )
    finally:
        csvfile._BLOCK_BYTES = before
    assert (blocks, problems.kept) == (one, one_problems.kept)


@pytest.mark.parametrize("one_by_one", [False, True])
def test_a_failing_read_rejects_the_file_naming_the_last_line_read(one_by_one: bool) -> None:
    import io

    from certrecon import csvfile

    class Failing(io.BytesIO):
        def __init__(self) -> None:
            super().__init__(b"a,b\n" * 3)
            self.calls = 0

        def read(self, size: int | None = -1) -> bytes:
            raise OSError(5, "Input/output error")

        def readline(self, size: int | None = -1) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise OSError(5, "Input/output error")
            return super().readline(size)

    lines = (
        csvfile._lines_one_by_one(
            Failing(), Problems(), source="f.csv", error=EvidenceImportError, kind="k", first=0
        )
        if one_by_one
        else csvfile.decoded_lines(
            Failing(), Problems(), source="f.csv", error=EvidenceImportError, kind="k"
        )
    )
    after = 2 if one_by_one else 0
    with pytest.raises(
        EvidenceImportError, match=f"f.csv: reading failed after line {after}: Input/output"
    ):
        list(lines)
