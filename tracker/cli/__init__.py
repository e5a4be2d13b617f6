"""``tracker`` command line.  Exit codes: 0 ok, 1 runtime failure, 2 bad usage or config."""

from __future__ import annotations

import sys

from tracker.cli.app import app


def _register() -> None:
    # Importing a command module registers its commands on ``app``.
    from tracker.cli import ingest  # noqa: F401

    for optional in ("tagging", "status", "digest", "daemon", "web"):
        try:
            __import__(f"tracker.cli.{optional}")
        except ModuleNotFoundError as exc:
            if exc.name != f"tracker.cli.{optional}":
                raise


def main(argv: list[str] | None = None) -> None:
    _register()
    try:
        app(args=argv, standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = ["app", "main"]
