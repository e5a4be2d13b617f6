"""Create or upgrade the schema with Alembic; ``tracker init`` calls this.

Alembic (and SQLAlchemy) are imported only to migrate: every other command just compares the
database's revision with ``HEAD`` (a test keeps ``HEAD`` equal to the newest migration), which saves
start-up time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tracker.store.dbapi import Database

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
HEAD = "0001"  # the newest revision under tracker/migrations/versions


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def upgrade(engine: Engine) -> tuple[str | None, str | None]:
    """Bring the schema to head; returns (revision before, revision after)."""
    from alembic import command

    cfg = alembic_config(engine)
    db = Database.of(engine)
    before = current_revision(db)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    after = current_revision(db)
    db.close()
    return before, after


def current_revision(db: Database) -> str | None:
    """The revision the database is at (None before the first migration)."""
    try:
        with db.transaction(write=False) as conn:
            cur = conn.cursor()
            cur.execute("SELECT version_num FROM alembic_version")
            row = cur.fetchone()
    except Exception as exc:  # no alembic_version table yet (sqlite3 / psycopg say it their way)
        if "alembic_version" not in str(exc):
            raise
        return None
    return row[0] if row else None


def migrations_head() -> str | None:
    """The newest revision as Alembic reads it from the migration scripts (slow: tests use it)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()
