"""Plain driver connections (sqlite3, psycopg) for the poller, without importing SQLAlchemy.

A ``tracker poll --once`` whose feeds all answer 304 is mostly start-up and bookkeeping, and
importing SQLAlchemy and SQLModel cost more CPU (~0.25 s) than recording a thousand outcomes.  The
poller's statements are fixed SQL (``tracker.store.ingest``), so it talks to the driver directly;
the web, the CLI's queries and the migrations use the SQLAlchemy engine (``tracker.store.db``),
which opens its connections with the same settings from the same URL.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

DEFAULT_DATABASE_URL = "sqlite:///data/tracker.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_CACHE_KIB = 16 * 1024
# Prepared statements kept per connection (Python's default is 128): the write path alone uses up to
# ninety statement texts (tracker.store.ingest), and recompiling a long VALUES list costs about as
# much as running it; the web's queries share the cache.
SQLITE_CACHED_STATEMENTS = 256
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",  # readers never block the writer
    "PRAGMA synchronous=NORMAL",  # durable at each checkpoint, crash-safe in WAL mode
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",  # wait for the write lock instead of failing
    "PRAGMA foreign_keys=ON",
    # 16 MB of page cache per connection: a daemon holds several, the OS caches the file too.
    f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}",
    "PRAGMA temp_store=MEMORY",
)
IDLE_CONNECTIONS = 4  # kept open per Database for the next transaction

# SQLAlchemy's SQLite DATETIME storage format: what UTCDateTime columns hold on SQLite.
SQLITE_DATETIME = "%04d-%02d-%02d %02d:%02d:%02d.%06d"


@dataclass(frozen=True, slots=True)
class Target:
    """Where a database URL points, as the driver wants it."""

    backend: str  # "sqlite" or "postgresql"
    database: str  # SQLite: a file name (or a file: URI); PostgreSQL: a libpq connection URI
    uri: bool = False  # SQLite: ``database`` is a file: URI


def parse_url(url: str | None) -> Target:
    """The SQLAlchemy URLs tracker accepts, read as SQLAlchemy reads them (``sqlite:///rel.db``,
    ``sqlite:////abs.db``, ``...?uri=true``, ``postgresql[+psycopg]://user:pw@host:port/db?opts``)."""
    url = url or DEFAULT_DATABASE_URL
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a database URL: {url!r}")
    if scheme == "sqlite":
        path, _, query = rest.partition("?")
        name = unquote(path[1:]) if path.startswith("/") else ""
        if name in ("", ":memory:"):
            raise ValueError("an in-memory SQLite database exists in one connection only: give a file")
        params = dict(parse_qsl(query))
        if params.pop("uri", "").lower() in ("true", "1"):
            return Target("sqlite", f"{name}?{urlencode(params)}" if params else name, uri=True)
        return Target("sqlite", name)
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return Target("postgresql", f"postgresql://{rest}")
    raise ValueError(f"the poller speaks SQLite and PostgreSQL (psycopg 3), not {scheme!r}")


def sqlite_utc_text(value: datetime | None) -> str | None:
    """``value`` exactly as a UTCDateTime column stores it on SQLite (naive UTC text, microseconds).

    The text must be byte-identical to what SQLAlchemy writes, or ordering and equality against
    rows written through the engine would break.
    """
    if value is None:
        return None
    if value.tzinfo is not None and value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return SQLITE_DATETIME % (
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


def pg_utc(value: datetime | None) -> datetime | None:
    """``value`` for a ``timestamptz`` parameter: naive means UTC, as in UTCDateTime, never the session zone."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def fast_sqlite_adapters() -> None:
    """Bind None and bool as sqlite3 always does (NULL, 1/0), minus its slow path.

    sqlite3 binds only exact int, float, str and bytes directly; anything else, None and bool
    included, first goes through the adapter protocol, whose failed ``__adapt__`` lookup formats and
    discards an AttributeError: ~0.6 µs per parameter, 1-2 µs per stored item (its NULL columns and
    a flag).  A registered adapter is found by a dict lookup instead.  Process-wide, stores the same.
    """
    sqlite3.register_adapter(type(None), _NULLS.get)  # a C method returning None
    sqlite3.register_adapter(bool, int)


_NULLS: dict[None, None] = {}


def sqlite_setup(conn: sqlite3.Connection) -> None:
    """Every SQLite connection, raw or SQLAlchemy's: no implicit BEGIN (pysqlite's is deferred and
    buggy; transactions are begun explicitly), WAL and the rest of ``SQLITE_PRAGMAS``."""
    conn.isolation_level = None
    for pragma in SQLITE_PRAGMAS:
        conn.execute(pragma)


def driver_errors() -> tuple[type[Exception], ...]:
    """What the drivers raise for database failures (sqlite3's and, when installed, psycopg's)."""
    try:
        import psycopg
    except ImportError:
        return (sqlite3.Error,)
    return (sqlite3.Error, psycopg.Error)


class Database:
    """One database for the write path: a few reusable driver connections and write transactions."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or DEFAULT_DATABASE_URL
        self.target = parse_url(self.url)
        self.pg = self.target.backend == "postgresql"
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._borrow: Callable[[], Any] | None = None
        if not self.pg:
            fast_sqlite_adapters()

    @classmethod
    def of(cls, engine: Any) -> Database:
        """The same database as a SQLAlchemy engine's."""
        return cls(engine.url.render_as_string(hide_password=False))

    def share_pool(self, engine: Any) -> None:
        """Take connections from ``engine``'s pool from now on.

        A process that has the engine anyway (the daemon with its web view, ``tracker init``)
        then keeps one set of connections, each with its page cache (up to ``SQLITE_CACHE_KIB``),
        instead of two: the daemon's memory after a cycle of 10,000 feeds was ~30 MB higher with
        two.  The engine sets its connections up as ``connect`` does; they go back to its pool when
        closed.
        """
        self.close()
        self._borrow = engine.raw_connection

    def connect(self) -> Any:
        """A new driver connection, set up as the engine's are."""
        t = self.target
        if self.pg:
            import psycopg

            return psycopg.connect(t.database)
        if not t.uri:
            Path(t.database).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            t.database,
            timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
            check_same_thread=False,
            cached_statements=SQLITE_CACHED_STATEMENTS,
            uri=t.uri,
        )
        sqlite_setup(conn)
        return conn

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Any]:
        """A transaction on a pooled connection: committed at the end, rolled back on error.

        SQLite writers take the write lock up front (``BEGIN IMMEDIATE``) so the busy timeout
        applies; a deferred transaction that upgrades to a write can fail at once with "database is
        locked".  Readers stay deferred: with WAL they never block and are never blocked.
        """
        if self._borrow is not None:
            conn = self._borrow()
        else:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self.connect()
        try:
            if not self.pg:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield conn
            conn.commit()
        except BaseException:
            try:
                conn.rollback()
            except Exception:
                conn.close()
                raise
            if getattr(conn, "broken", False):  # psycopg: the server went away
                getattr(conn, "invalidate", conn.close)()  # a borrowed one leaves the engine's pool
            else:
                self._give_back(conn)
            raise
        self._give_back(conn)

    def _give_back(self, conn: Any) -> None:
        if self._borrow is not None:
            conn.close()  # back to the engine's pool
            return
        with self._lock:
            if len(self._idle) < IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __repr__(self) -> str:
        return f"Database({self.target.backend})"
