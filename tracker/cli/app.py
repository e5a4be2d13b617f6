"""The Typer application object and the options every command shares.

Command modules in this package register themselves on ``app``; ``tracker.cli.main``
imports them all.  Keeping the object here avoids circular imports between them.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import typer

app = typer.Typer(
    name="tracker",
    help="Follow the Ukraine-Russia peace process in the news: poll feeds, tag, keep a status log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2


@contextmanager
def startup() -> Iterator[None]:
    """Start-up work (imports, reading feeds.yaml, opening the database) without the cyclic GC.

    What start-up builds (modules, classes, SQLAlchemy and pydantic structures, the config) lives until
    the process exits, yet the collector would walk it again and again while it grows: about 0.1 s CPU
    of a ``tracker poll --once`` that is otherwise done in well under a second.  At the end it is frozen
    (``gc.freeze``: never walked again) and the collector resumes for the work itself.  Nested uses
    and a collector someone else disabled are left alone.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


@contextmanager
def collector_paused() -> Iterator[None]:
    """A one-shot command's work (``tracker poll --once``) without the cyclic GC.

    A poll cycle's objects (documents, parsed entries on their way to the writer) are freed by
    reference counting; those in flight survive young collections and keep triggering full ones,
    which walked the heap eight times in a cold cycle of 1,000 feeds: ~10 % of the CPU of the process
    that paces the cycle, and the process ends right after it.  The daemon keeps the collector: over
    days its memory matters more (pausing it during cycles cost ~17 MB of RSS at 10,000 feeds).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class Globals:
    """Options given before the command name (``tracker --config X --db Y COMMAND``)."""

    config_path: Path | None = None
    database_url: str | None = None


def globals_of(ctx: typer.Context) -> Globals:
    """The shared options, wherever the command sits in the tree."""
    root = ctx.find_root()
    obj = root.obj
    if not isinstance(obj, Globals):
        obj = Globals()
        root.obj = obj
    return obj


@app.callback()
def _root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", envvar="TRACKER_CONFIG", help="feeds.yaml to use (default ./feeds.yaml)."
    ),
    db: str | None = typer.Option(
        None,
        "--db",
        envvar="TRACKER_DATABASE_URL",
        help="Database URL (default sqlite:///data/tracker.db); postgresql+psycopg://user:pw@host/db scales out.",
    ),
) -> None:
    ctx.obj = Globals(config_path=config, database_url=db)
