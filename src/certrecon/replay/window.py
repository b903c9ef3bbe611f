"""The replay window: ``--from`` and ``--to`` as the contract spells them."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from certrecon.domain import CST
from certrecon.errors import InputError

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def parse_instant(text: str, *, option: str) -> dt.datetime:
    """RFC 3339 with an offset, or ``YYYY-MM-DD`` meaning 00:00 China Standard Time."""
    text = text.strip()
    try:
        if _DATE.fullmatch(text):
            return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), tzinfo=CST)
        moment = dt.datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        moment = None
    if moment is None or moment.utcoffset() is None or "T" not in text.upper():
        raise InputError(
            f"{option} {text!r}: give an RFC 3339 time with an offset "
            "(2026-03-01T00:00:00+08:00) or a date (2026-03-01, 00:00 China Standard Time)"
        )
    return moment


def to_ms(moment: dt.datetime) -> int:
    return (moment - _EPOCH) // dt.timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Window:
    """Broker timestamps ``start <= ts < end``."""

    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise InputError("--to must be later than --from")

    @classmethod
    def parse(cls, start: str, end: str) -> Window:
        return cls(parse_instant(start, option="--from"), parse_instant(end, option="--to"))

    @property
    def start_ms(self) -> int:
        return to_ms(self.start)

    @property
    def end_ms(self) -> int:
        return to_ms(self.end)

    def holds(self, timestamp_ms: int) -> bool:
        return self.start_ms <= timestamp_ms < self.end_ms

    def to_json(self) -> dict[str, str]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat()}
