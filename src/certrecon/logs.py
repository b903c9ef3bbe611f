"""structlog configuration (once, at the entry point) and masking of personal data."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog


def mask_id(id_number: str | None) -> str:
    """Keep the region (6) and the last 4 characters: 110105********002X."""
    if not id_number:
        return ""
    if len(id_number) <= 8:
        return "*" * len(id_number)
    return id_number[:6] + "*" * (len(id_number) - 10) + id_number[-4:]


def mask_name(name: str | None) -> str:
    """Keep the first character only: 张** (a one-character name becomes *)."""
    if not name:
        return ""
    if len(name) == 1:
        return "*"
    return name[0] + "*" * (len(name) - 1)


_ID_KEYS = frozenset({"id_number", "on_behalf_id_number", "subject_id"})
_NAME_KEYS = frozenset({"name", "subject_name", "on_behalf_name"})


def _mask_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # A last line of defence: call sites should already pass masked values.
    for key in _ID_KEYS & event_dict.keys():
        value = event_dict[key]
        event_dict[key] = mask_id(value) if isinstance(value, str) else value
    for key in _NAME_KEYS & event_dict.keys():
        value = event_dict[key]
        event_dict[key] = mask_name(value) if isinstance(value, str) else value
    return event_dict


def configure(*, level: str = "INFO", json: bool | None = None) -> None:
    """Configure structlog and the standard library's logging; JSON when not on a terminal."""
    as_json = not sys.stderr.isatty() if json is None else json
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_personal_data,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer]
        if as_json
        else [*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, force=True)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
