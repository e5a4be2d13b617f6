"""Logging for the long-running commands: readable on a terminal, one JSON object per line for machines.

Why a module of its own: ``tracker run`` is read by people (a TTY, ``journalctl``) and by log shippers
(``--log-format json``), and both must see the same records with the same extra fields
(``feed``, ``outcome``, ``new_items`` ... passed by ``tracker.update`` via ``extra=``).

Secrets never reach a handler: ``Redact`` masks passwords in URLs (``postgresql://u:PASSWORD@h``) and
the values of extra fields whose name says they are secret, in every record, whatever the format.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged too.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime", "taskName"})
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]+:)(?P<pw>[^@\s]+)(?P<at>@)")
_SECRET_KEY = re.compile(r"pass(word)?|secret|token|api[_-]?key|authorization|cookie", re.IGNORECASE)
MASK = "***"


def redact(text: str) -> str:
    """Mask the password of any ``scheme://user:password@host`` in ``text``."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['at']}", text)


class Redact(logging.Filter):
    """Scrub credentials from the message, its arguments and the extra fields of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            try:
                record.msg = record.getMessage()
            except (TypeError, ValueError):
                record.msg = f"{record.msg} {record.args!r}"
            record.args = None
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        for key, value in list(vars(record).items()):
            if key in _STANDARD:
                continue
            if _SECRET_KEY.search(key):
                setattr(record, key, MASK)
            elif isinstance(value, str):
                setattr(record, key, redact(value))
        return True


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller passed with ``extra=``."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extras}`` on one line; ``exc`` holds a traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in extras(record).items():
            if key not in doc:
                doc[key] = _jsonable(value)
        if record.exc_info:
            doc["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            doc["exc"] = redact(record.exc_text)
        return json.dumps(doc, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """``2025-01-01T12:00:00Z INFO tracker.update: message`` — for files, pipes and journald."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def formatException(self, ei: Any) -> str:
        return redact(super().formatException(ei))


def _handler(fmt: str, stream: IO[str]) -> logging.Handler:
    if fmt == "json":
        handler: logging.Handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
    elif fmt == "rich":
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(
            console=Console(file=stream, soft_wrap=True),
            show_path=False,
            rich_tracebacks=False,
            log_time_format="%H:%M:%S",
            markup=False,
        )
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(PlainFormatter())
    handler.addFilter(Redact())
    return handler


def setup_logging(fmt: str = "text", level: str | int = "INFO", stream: IO[str] | None = None) -> logging.Handler:
    """Install one handler on the root logger (replacing earlier ones); returns it.

    ``fmt``: ``json``; ``text`` (rich on a terminal, plain lines otherwise); ``rich`` or ``plain`` to force.
    """
    out = stream if stream is not None else sys.stderr
    if fmt not in ("json", "text", "rich", "plain"):
        raise ValueError(f"unknown log format {fmt!r} (use text or json)")
    if fmt == "text":
        isatty = getattr(out, "isatty", None)
        fmt = "rich" if isatty is not None and isatty() else "plain"
    handler = _handler(fmt, out)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_tracker", False):
            root.removeHandler(old)
    handler._tracker = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # Libraries that are chatty at INFO: one line per HTTP request would drown the feed outcomes.
    for name in ("httpx", "httpcore", "apscheduler", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    sched = logging.getLogger("apscheduler.scheduler")
    if not any(isinstance(f, _SkippedRun) for f in sched.filters):
        sched.addFilter(_SkippedRun())
    return handler


class _SkippedRun(logging.Filter):
    """A poll job still running when the next one is due is normal (max_instances=1): say so at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "maximum number of running instances reached" in str(record.msg):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True
