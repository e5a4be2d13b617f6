"""Engine creation and schema set-up (Alembic), for SQLite and PostgreSQL.

SQLite gets WAL (readers never block the writer), ``synchronous=NORMAL`` (durable at each
checkpoint, crash-safe in WAL mode) and a busy timeout so a web request reading while the daemon
writes waits instead of failing with "database is locked".
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url

DEFAULT_DATABASE_URL = "sqlite:///data/tracker.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_CACHE_KIB = 16 * 1024
# Prepared statements kept per connection (Python's default is 128): the write path alone uses up to
# ninety statement texts (tracker.store.ingest), and recompiling a long VALUES list costs about as
# much as running it; the web's queries share the cache.
SQLITE_CACHED_STATEMENTS = 256


def normalise_url(url: str | None) -> URL:
    """Accept plain ``postgresql://`` URLs and make them use psycopg 3."""
    u = make_url(url or DEFAULT_DATABASE_URL)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u


def make_engine(url: str | None = None, *, create_dirs: bool = True, **kwargs: Any) -> Engine:
    u = normalise_url(url)
    if u.get_backend_name() == "sqlite":
        _fast_sqlite_adapters()
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


def _fast_sqlite_adapters() -> None:
    """Bind None and bool as sqlite3 always does (NULL, 1/0), minus its slow path.

    sqlite3 binds only exact int, float, str and bytes directly; anything else, None and bool
    included, first goes through the adapter protocol, whose failed ``__adapt__`` lookup formats and
    discards an AttributeError: ~0.6 µs per parameter, 1-2 µs per stored item (its NULL columns and
    a flag).  A registered adapter is found by a dict lookup instead.  Process-wide, stores the same.
    """
    sqlite3.register_adapter(type(None), _NULLS.get)  # a C method returning None
    sqlite3.register_adapter(bool, int)


_NULLS: dict[None, None] = {}


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
    # Let SQLAlchemy drive transactions itself (pysqlite's implicit BEGIN is deferred and buggy).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    # 16 MB of page cache per pooled connection: a daemon holds several, the OS caches the file too.
    cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # Writers take the write lock up front (BEGIN IMMEDIATE) so the busy timeout applies; a deferred
    # transaction that upgrades to a write can fail at once with "database is locked".  Readers stay
    # deferred: with WAL they never block and are never blocked.
    immediate = conn.get_execution_options().get("sqlite_immediate", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
