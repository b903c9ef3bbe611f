"""structlog configuration (once, at the entry point) and masking of personal data."""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import threading
from collections.abc import MutableMapping
from types import TracebackType
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


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities written as strings, which JSON can carry."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # 'nan', 'inf', '-inf'
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json_dumps(value: Any, **kwargs: Any) -> str:
    # allow_nan=False: a value that slipped past _finite fails loudly in tests, not as an
    # invalid line in production; default=repr keeps unknown objects on one line.
    kwargs.setdefault("default", repr)
    return json.dumps(_finite(value), allow_nan=False, **kwargs)


class _StderrFactory:
    """Writes every structlog line to the ``sys.stderr`` of the moment (tests swap it)."""

    def __call__(self, *args: Any) -> structlog.PrintLogger:
        return structlog.PrintLogger(sys.stderr)


# user:password@ in a URL (a DSN an exception or a library put into a message).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*):[^\s@/]+@")


def _mask_url_passwords(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # Passwords come from files and never enter a DSN certrecon builds; this catches the
    # rest (an operator's DSN quoted by a library's error) before it reaches a log.
    for key, value in event_dict.items():
        if isinstance(value, str) and "://" in value:
            event_dict[key] = _URL_PASSWORD.sub(r"\g<head>:****@", value)
    return event_dict


def configure(*, level: str = "INFO", json: bool | None = None) -> None:
    """Configure structlog and route the standard library's logging through it.

    JSON lines when stderr is not a terminal (console format on one). Records of other
    libraries (aiokafka, asyncpg, asyncio, warnings) get the same processors and renderer,
    so every line on stderr is one JSON object off a terminal; a traceback is the
    ``exception`` field of its line, never raw text. Uncaught exceptions in the main thread
    or in other threads are logged the same way.
    """
    as_json = not sys.stderr.isatty() if json is None else json
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_personal_data,
        _mask_url_passwords,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_json_dumps, ensure_ascii=False)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    # Exceptions are formatted in the JSON line, then masked like everything else.
    tail: list[Any] = [structlog.processors.format_exc_info, _mask_url_passwords] if as_json else []
    structlog.configure(
        processors=[*shared, *tail, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_StderrFactory(),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            *shared,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *tail,
            renderer,
        ],
    )
    handler = _StderrHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # Other libraries are chatty at INFO (aiokafka logs every rebalance step).
    root.setLevel(max(numeric, logging.WARNING))
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler on the ``sys.stderr`` of the moment, like the structlog lines."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _log_uncaught(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    structlog.get_logger("certrecon").critical("uncaught exception", exc_info=(exc_type, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None:
        return
    structlog.get_logger("certrecon").critical(
        "uncaught exception in a thread",
        thread=None if args.thread is None else args.thread.name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
