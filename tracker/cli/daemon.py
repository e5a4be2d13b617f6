"""``tracker run`` (the service) and ``tracker demo`` (the service against bundled sample feeds)."""

from __future__ import annotations

import asyncio
import logging
import signal
from enum import StrEnum
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console

from tracker.cli.app import EXIT_RUNTIME, EXIT_USAGE, app
from tracker.cli.ingest import open_app

err = Console(stderr=True, highlight=False, soft_wrap=True)
log = logging.getLogger("tracker.daemon")


class LogFormat(StrEnum):
    text = "text"
    json = "json"


def _env_settings() -> tuple[str, str, str, int]:
    """(log_format, log_level, web_host, web_port) from TRACKER_* (exit 2 if they are invalid)."""
    from tracker.settings import Settings

    try:
        s = Settings()
    except ValidationError as exc:
        err.print(f"invalid TRACKER_* environment: {exc}")
        raise typer.Exit(EXIT_USAGE) from exc
    return s.log_format, s.log_level, s.web_host, s.web_port


@app.command()
def run(
    ctx: typer.Context,
    no_web: bool = typer.Option(False, "--no-web", help="Poll and send digests only; serve no web view."),
    host: str | None = typer.Option(None, "--host", help="Web view address (default: TRACKER_WEB_HOST or 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", help="Web view port (default: TRACKER_WEB_PORT or 8080)."),
    log_format: LogFormat | None = typer.Option(
        None, "--log-format", help="text (readable; colours on a terminal) or json (one object per line)."
    ),
    log_level: str | None = typer.Option(None, "--log-level", help="DEBUG, INFO, WARNING ... (default: INFO)."),
    poll_every: float = typer.Option(
        10.0, "--poll-every", min=0.1, help="Seconds between checks for due feeds (each feed keeps its own interval)."
    ),
    grace: float = typer.Option(20.0, "--grace", min=0.0, help="Seconds feeds in flight get to finish on SIGTERM."),
    batch: int | None = typer.Option(
        None, "--batch", min=1, help="Feeds claimed at a time (default: 4 × concurrency, at least 100)."
    ),
    processes: int | None = typer.Option(
        None, "--processes", min=0, help="Parse processes (default: up to 2; 0 parses in a thread)."
    ),
    watch_every: float = typer.Option(
        5.0, "--watch-every", min=0.0, help="Seconds between checks of feeds.yaml for changes (0: only on SIGHUP)."
    ),
) -> None:
    """Run the service: poll due feeds, send digests, serve the web view; SIGHUP reloads feeds.yaml."""
    signal.signal(signal.SIGTERM, _stop_during_startup)  # the daemon installs its own once it runs
    from tracker.daemon import DaemonOptions
    from tracker.memory import limit_arenas

    limit_arenas()  # before any thread starts: a long-running process should not keep an arena per thread
    from tracker.logsetup import setup_logging

    env_format, env_level, env_host, env_port = _env_settings()
    setup_logging(log_format.value if log_format else env_format, (log_level or env_level).upper())
    a = open_app(ctx)
    options = DaemonOptions(
        web=not no_web,
        host=host or env_host,
        port=port if port is not None else env_port,
        poll_every=poll_every,
        grace=grace,
        batch=batch,
        processes=processes,
        watch_every=watch_every,
    )
    raise typer.Exit(serve(a, options))


def _stop_during_startup(signum: int, _frame: object) -> None:
    # Nothing is claimed before the scheduler runs, so stopping here loses nothing: exit 0 like a clean stop.
    raise SystemExit(0)


def serve(a: object, options: object) -> int:
    """Run a Daemon to completion; start-up refusals become one log record and exit code 1.

    Logged, not printed: with ``--log-format json`` a log shipper must get JSON for these too, and an
    unreachable database is one clear line rather than a driver traceback.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from tracker.app import App
    from tracker.daemon import AlreadyRunning, Daemon, DaemonOptions, WebStartError
    from tracker.store.dbapi import driver_errors

    assert isinstance(a, App) and isinstance(options, DaemonOptions)
    daemon = Daemon(a, options)
    database_errors: tuple[type[Exception], ...] = (SQLAlchemyError, *driver_errors())
    try:
        return asyncio.run(daemon.run())
    except (AlreadyRunning, WebStartError) as exc:
        log.error("tracker run: %s", exc, extra={"event": "refused"})
        return EXIT_RUNTIME
    except database_errors as exc:  # start-up or the final lease release: jobs catch their own
        log.error(
            "tracker run: cannot use the database %s: %s",
            a.engine.url.render_as_string(hide_password=True),
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
            extra={"event": "database_error"},
        )
        return EXIT_RUNTIME
    finally:
        a.engine.dispose()


@app.command()
def demo(
    port: int = typer.Option(8080, "--port", help="Web view port (another free one is used if it is taken)."),
    database: str = typer.Option(
        "sqlite:///data/demo.db", "--database", help="Where the demo keeps its data (separate from tracker.db)."
    ),
    feeds_port: int = typer.Option(0, "--feeds-port", help="Port of the sample feed server (default: any free)."),
    log_format: LogFormat = typer.Option(LogFormat.text, "--log-format"),
) -> None:
    """Serve bundled sample feeds on 127.0.0.1 and run the daemon + web view against them."""
    from tracker import demo as demo_mod
    from tracker.app import build, init
    from tracker.daemon import DaemonOptions
    from tracker.logsetup import setup_logging

    setup_logging(log_format.value, "INFO")
    server = demo_mod.DemoFeedServer(port=feeds_port).start()
    try:
        workdir = (
            Path(database.removeprefix("sqlite:///")).parent if database.startswith("sqlite:///") else Path("data")
        )
        config = demo_mod.write_config(workdir / "demo-feeds.yaml", server)
        a = build(config_path=config, database_url=database)
        init(a)
        web_port = demo_mod.free_port(preferred=port)
        url = f"http://127.0.0.1:{web_port}/"
        err.print(
            f"[bold]tracker demo[/bold]: {len(server.feeds)} sample feeds on {server.base_url}, "
            f"database {database}, config {config}\n"
            f"  open [bold]{url}[/bold]  (the first poll fills it within a few seconds; Ctrl-C stops)",
            markup=True,
        )
        options = DaemonOptions(web=True, host="127.0.0.1", port=web_port, poll_every=5.0, processes=0)
        code = serve(a, options)
    finally:
        server.stop()
    raise typer.Exit(code)
