"""Create or upgrade the schema with Alembic; ``tracker init`` calls this.

Alembic is imported only to migrate: every other command just compares the database's revision
with ``HEAD`` (a test keeps ``HEAD`` equal to the newest migration), which saves start-up time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config

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
    before = current_revision(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return before, current_revision(engine)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None before the first migration)."""
    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except DBAPIError:  # no alembic_version table yet
            conn.rollback()
            return None


def head_revision(engine: Engine | None = None) -> str:
    return HEAD


def migrations_head() -> str | None:
    """The newest revision as Alembic reads it from the migration scripts (slow: tests use it)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()
