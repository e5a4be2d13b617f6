"""``tracker`` command line.  Exit codes: 0 ok, 1 runtime failure, 2 bad usage or config."""

from __future__ import annotations

import gc
import sys

_collecting = gc.isenabled()
gc.disable()  # typer's import too is start-up (see tracker.cli.app.startup); main() freezes it all
try:
    from tracker.cli.app import app, startup
finally:
    if _collecting:
        gc.enable()

# Which module defines each command: `tracker poll` imports the ingest commands only, not the web
# view, the mailer or the daemon (start-up time counts for a cron-driven `poll --once`).
COMMANDS = {
    "init": "ingest",
    "check": "ingest",
    "feeds": "ingest",
    "poll": "ingest",
    "export": "ingest",
    "retag": "ingest",
    "tag": "tagging",
    "eval": "tagging",
    "status": "status",
    "timeline": "status",
    "serve": "status",
    "digest": "digest",
    "run": "daemon",
    "demo": "daemon",
}
MODULES = ("ingest", "tagging", "status", "digest", "daemon")


def _command_of(argv: list[str]) -> str | None:
    """The command word in ``argv`` (global options come first; only --config/--db take a value)."""
    args = iter(argv)
    for arg in args:
        if arg in ("--config", "--db"):
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def _register(argv: list[str] | None = None) -> None:
    # Importing a command module registers its commands on ``app``.
    command = _command_of(sys.argv[1:] if argv is None else argv)
    needed = [COMMANDS[command]] if command in COMMANDS else list(MODULES)
    for name in needed:
        __import__(f"tracker.cli.{name}")


def main(argv: list[str] | None = None) -> None:
    with startup():
        _register(argv)
    try:
        app(args=argv, standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = ["app", "main"]
