"""Synthetic, reproducible roster data for the demo, the tests and the benchmarks.

Every person is invented: ID numbers have valid birth dates and MOD 11-2 check characters
but are drawn at random, and names are random combinations of common characters. The same
``seed`` always gives the same roster; nothing reads the clock.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from certrecon.domain import Channel, RosterRecord, RosterStatus
from certrecon.ids import check_character
from certrecon.roster_csv import HEADER

# Common surnames, most frequent first, with rough weights so that 王, 李 and 张 dominate
# as they do in real rosters.
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚"
)
_SURNAME_WEIGHTS = tuple(max(1.0, 60.0 / (rank + 1)) for rank in range(len(_SURNAMES)))
_DOUBLE_SURNAMES = ("欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "令狐", "慕容")
_GIVEN_MALE = "伟强磊军勇杰涛明超刚平辉鹏华飞斌宇浩凯健俊帆帅旭宁龙林建国志峰海波成东亮新文"
_GIVEN_FEMALE = "芳娜敏静丽艳娟霞秀英燕玲桂兰萍红梅琳雪晶倩颖慧莉婷佳玉珍凤云淑琴春华洁"
_MINORITY_NAMES = (
    "阿依古丽·买买提",
    "热依拉·艾买提",
    "艾力·阿不都",
    "古丽娜尔·吐尔逊",
    "买买提·吐尔洪",
    "迪丽娜尔·阿布都",
    "努尔兰·哈力克",
    "巴特尔·朝鲁",
)
# Places of household registration other than the insured region: people move.
_OTHER_ID_REGIONS = ("130102", "370102", "410105", "510104", "230103", "120101")
_BENEFITS = ("basic_pension", "work_injury", "survivor")
_BENEFIT_WEIGHTS = (80, 10, 10)
_STATUSES = (RosterStatus.ACTIVE, RosterStatus.SUSPENDED, RosterStatus.TERMINATED)
_STATUS_WEIGHTS = (92, 5, 3)
_LATEST_FIRST_PAYMENT = dt.date(2026, 6, 1)


def make_id_number(region: str, birth: dt.date, sequence: int) -> str:
    """A GB 11643 ID number; ``sequence`` 0-999, odd for men and even for women."""
    first17 = f"{region}{birth:%Y%m%d}{sequence:03d}"
    return first17 + check_character(first17)


def _name(rng: random.Random, male: bool) -> str:
    roll = rng.random()
    if roll < 0.01:
        return rng.choice(_MINORITY_NAMES)
    surname = (
        rng.choice(_DOUBLE_SURNAMES)
        if roll < 0.015
        else rng.choices(_SURNAMES, _SURNAME_WEIGHTS)[0]
    )
    pool = _GIVEN_MALE if male else _GIVEN_FEMALE
    given = rng.choice(pool) if rng.random() < 0.35 else rng.choice(pool) + rng.choice(pool)
    return surname + given


def _add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def _first_of_next_month(day: dt.date) -> dt.date:
    return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _random_day(rng: random.Random, start: dt.date, end: dt.date) -> dt.date:
    return start + dt.timedelta(days=rng.randrange((end - start).days + 1))


def make_roster(n: int, *, seed: int, region: str = "110105") -> list[RosterRecord]:
    """``n`` invented people insured in ``region``, with distinct, valid ID numbers.

    Mostly active pensioners whose first payment came at retirement age (a few after the
    current cycle's cut-off), with some suspended and terminated benefits and about 1 % with
    a death record and 0.5 % with a prison term, so every reconciliation rule has cases.
    """
    if n < 0:
        raise ValueError("n must not be negative")
    if len(region) != 6 or not region.isdigit():
        raise ValueError("region must be a 6-digit administrative division code")
    rng = random.Random(seed)
    seen: set[str] = set()
    people: list[RosterRecord] = []
    while len(people) < n:
        male = rng.random() < 0.5
        benefit = rng.choices(_BENEFITS, _BENEFIT_WEIGHTS)[0]
        if benefit == "basic_pension":
            birth = _random_day(rng, dt.date(1930, 1, 1), dt.date(1970, 12, 31))
            retirement_age = 60 if male else rng.choice((50, 55))
            first_paid: dt.date | None = _first_of_next_month(_add_years(birth, retirement_age))
        else:
            birth = _random_day(rng, dt.date(1940, 1, 1), dt.date(1995, 12, 31))
            first_paid = _random_day(rng, dt.date(2000, 1, 1), dt.date(2025, 12, 31))
        if first_paid is not None and first_paid > _LATEST_FIRST_PAYMENT:
            first_paid = None  # not retired yet: on the roster, never paid
        id_region = region if rng.random() < 0.8 else rng.choice(_OTHER_ID_REGIONS)
        sequence = rng.randrange(500) * 2 + (1 if male else 0)
        id_number = make_id_number(id_region, birth, sequence)
        if id_number in seen:
            continue
        seen.add(id_number)

        deceased_on = None
        imprisoned_from = imprisoned_until = None
        roll = rng.random()
        if roll < 0.01:
            deceased_on = _random_day(rng, dt.date(2020, 1, 1), dt.date(2026, 12, 31))
        elif roll < 0.015:
            imprisoned_from = _random_day(rng, dt.date(2018, 1, 1), dt.date(2025, 12, 31))
            if rng.random() < 0.7:
                imprisoned_until = imprisoned_from + dt.timedelta(days=rng.randrange(90, 3000))

        people.append(
            RosterRecord(
                id_number=id_number,
                name=_name(rng, male),
                benefit_type=benefit,
                status=rng.choices(_STATUSES, _STATUS_WEIGHTS)[0],
                insured_region=region,
                first_paid_on=first_paid,
                deceased_on=deceased_on,
                imprisoned_from=imprisoned_from,
                imprisoned_until=imprisoned_until,
            )
        )
    return people


def _cell(day: dt.date | None) -> str:
    return "" if day is None else day.isoformat()


def write_roster_csv(path: Path, records: Iterable[RosterRecord]) -> None:
    """Write ``records`` as a contract roster CSV (UTF-8 without BOM, empty cell = null)."""
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(
            (
                r.id_number,
                r.name,
                r.benefit_type,
                r.status.value,
                _cell(r.first_paid_on),
                _cell(r.deceased_on),
                _cell(r.imprisoned_from),
                _cell(r.imprisoned_until),
                r.insured_region,
            )
            for r in records
        )


def certification_message(
    certification_id: str,
    channel: Channel,
    person: RosterRecord,
    certified_at: dt.datetime,
    **changes: Any,
) -> dict[str, Any]:
    """A valid inbound certification (schema_version 1) of ``person``; ``changes``
    replace top-level fields. Consular ones come from abroad by face video."""
    body: dict[str, Any] = {
        "schema_version": 1,
        "certification_id": certification_id,
        "channel": channel.value,
        "subject": {"id_type": "resident_id", "id_number": person.id_number, "name": person.name},
        "certified_at": certified_at.isoformat(timespec="seconds"),
        "method": "face",
        "face_match": "pass",
        "on_behalf": None,
        "residence": {"country": "CN"},
        "insured_region": person.insured_region or "110105",
    }
    if channel is Channel.CONSULAR:
        country = _ABROAD[zlib.crc32(certification_id.encode()) % len(_ABROAD)]
        body["residence"] = {"country": country}
        body["method"] = "face_video"
    body.update(changes)
    return body


_ABROAD = ("JP", "US", "AU", "DE", "CA")
