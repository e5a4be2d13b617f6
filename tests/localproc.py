"""Helpers for tests that run tracker as a real process against servers on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import sqlite3
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

_EXE = Path(sys.executable).with_name("tracker")
TRACKER = [str(_EXE)] if _EXE.exists() else [sys.executable, "-m", "tracker"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without TRACKER_* or proxy settings of the host, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_") and "proxy" not in k.lower()}
    env.update(extra)
    return env


def http_get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    """(status, body) without following a proxy; HTTP errors are answers, not exceptions."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as r:
            return int(r.status), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def db_rows(db: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    """Rows from a SQLite file a tracker process may be writing (its own short connection)."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()
