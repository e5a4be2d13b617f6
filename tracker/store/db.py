"""The SQLAlchemy engine, for SQLite and PostgreSQL.

SQLite connections get the same set-up as the poller's plain ones (``tracker.store.dbapi``): WAL, so
readers never block the writer, and a busy timeout, so a web request reading while the daemon writes
waits instead of failing with "database is locked".
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url

from tracker.store.dbapi import (
    DEFAULT_DATABASE_URL,
    SQLITE_BUSY_TIMEOUT_MS,
    SQLITE_CACHED_STATEMENTS,
    fast_sqlite_adapters,
    sqlite_setup,
)


def normalise_url(url: str | None) -> URL:
    """Accept plain ``postgresql://`` URLs and make them use psycopg 3."""
    u = make_url(url or DEFAULT_DATABASE_URL)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u


def make_engine(url: str | None = None, *, create_dirs: bool = True, **kwargs: Any) -> Engine:
    u = normalise_url(url)
    if u.get_backend_name() == "sqlite":
        fast_sqlite_adapters()
        db = u.database
        if create_dirs and db and db != ":memory:" and not db.startswith("file:"):
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            u,
            connect_args={
                "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                "check_same_thread": False,
                "cached_statements": SQLITE_CACHED_STATEMENTS,
            },
            **kwargs,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(u, **kwargs)


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
    sqlite_setup(dbapi_conn)  # SQLAlchemy then drives transactions itself (_sqlite_begin)


def _sqlite_begin(conn: Any) -> None:
    # Writers take the write lock up front (BEGIN IMMEDIATE) so the busy timeout applies; a deferred
    # transaction that upgrades to a write can fail at once with "database is locked".  Readers stay
    # deferred: with WAL they never block and are never blocked.
    immediate = conn.get_execution_options().get("sqlite_immediate", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
