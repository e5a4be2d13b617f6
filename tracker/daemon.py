"""``tracker run``: the long-running service — scheduled polling, digests, config reloads, the web view.

How it stays correct when stopped at any moment:

* **Schedule in the database.**  Each feed's ``next_due_at`` lives in its row; the poll job (every
  ``poll_every`` seconds, one instance at a time) only claims feeds that are due, so a restart carries
  on where the last process stopped and nothing is polled early or twice.
* **One transaction per feed** (``tracker.store.ingest``): a SIGKILL loses at most the feeds in flight,
  which are fetched again in full, and unique keys make the second fetch unable to duplicate items.
* **Leases.**  Claimed feeds carry ``lease_owner = host:pid``.  A clean stop gives them back; after a
  SIGKILL the next start on this host releases leases of dead processes at once instead of waiting
  for them to expire, so "the next cycle picks up" really is the next cycle.
* **One daemon per SQLite file**: an exclusive ``flock`` on ``<db>.lock`` held for the process'
  lifetime; the kernel drops it when the process dies, however it dies.  PostgreSQL needs no lock:
  ``claim_due`` uses ``FOR UPDATE SKIP LOCKED`` and several daemons share the feeds.
* **SIGTERM/SIGINT**: no new feed starts; feeds in flight get ``grace`` seconds to finish and commit;
  leases are released; exit 0.  **SIGHUP** or a changed feeds.yaml: validate, then swap the config
  and re-sync feeds; an invalid file is logged and the running config kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Engine

from tracker import app as app_mod
from tracker import pollconfig
from tracker.app import App
from tracker.config import Config, ConfigError, load_config
from tracker.metrics import LIVENESS, METRICS, Liveness, Metrics
from tracker.store import ingest
from tracker.store.dbapi import Database
from tracker.store.ingest import FeedUpdate, WriteCounts
from tracker.store.tables import FEED, ITEM
from tracker.tag import overrides_key
from tracker.update import CycleSummary, Poller

log = logging.getLogger("tracker.daemon")

FETCH_LOG_KEEP = timedelta(days=30)


class AlreadyRunning(RuntimeError):
    """Another ``tracker run`` holds this SQLite database."""


class WebStartError(RuntimeError):
    """The web view could not listen (port in use, bad host)."""


# --- one daemon per SQLite file ------------------------------------------------------------------


def lock_path(engine: Engine) -> Path | None:
    """``<db file>.lock`` for a SQLite file database; None where no lock is needed (PostgreSQL, memory)."""
    if engine.dialect.name != "sqlite":
        return None
    db = engine.url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db).resolve().with_name(Path(db).name + ".lock")


class InstanceLock:
    """An exclusive, non-blocking ``flock`` kept for the life of the process.

    The lock file holds the owner's pid only to make the refusal message useful; the lock itself is
    the kernel's, so a SIGKILLed owner can never leave a stale lock behind.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            db = self.path.with_name(self.path.name.removesuffix(".lock"))
            raise AlreadyRunning(
                f"another `tracker run` (pid {holder}) is already using {db}; stop it first. "
                "A SQLite database takes one daemon; to run several workers use PostgreSQL "
                "(see docs/operations.md)."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


# --- leases of dead processes --------------------------------------------------------------------


def worker_id() -> str:
    """The lease owner name, the same shape ``Poller`` uses: ``host:pid``."""
    return f"{os.uname().nodename}:{os.getpid()}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited: its leases are as dead as it is
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def release_stale_leases(engine: Engine, db: Database, *, host: str | None = None) -> int:
    """Release leases held by processes of this host that no longer run; returns the feeds freed.

    Leases of other hosts (PostgreSQL) are left alone: they expire on their own after ``update.LEASE``.
    """
    host = host or os.uname().nodename
    feed = FEED
    with engine.connect() as conn:
        rows = conn.execute(
            select(feed.c.lease_owner, func.count()).where(feed.c.lease_owner.is_not(None)).group_by(feed.c.lease_owner)
        ).all()
    freed = 0
    for owner, count in rows:
        owner_host, _, pid = str(owner).rpartition(":")
        if owner_host == host and pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            ingest.release_leases(db, owner)
            freed += int(count)
    return freed


# --- the web view in a thread --------------------------------------------------------------------


class WebServer:
    """uvicorn in a thread of this process, so ``tracker run`` is one process to supervise."""

    def __init__(self, asgi: Any, host: str, port: int) -> None:
        import uvicorn

        self.host, self.port = host, port
        config = uvicorn.Config(
            asgi,
            host=host,
            port=port,
            log_config=None,  # our handlers (logsetup) format uvicorn's records too
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 15.0) -> None:
        self._thread = threading.Thread(target=self.server.run, name="tracker-web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.server.should_exit = True
                raise WebStartError(
                    f"the web view cannot listen on {self.host}:{self.port} (port in use?); "
                    "choose another with --port or run with --no-web"
                )
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


# --- the daemon ----------------------------------------------------------------------------------


@dataclass
class DaemonOptions:
    web: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    poll_every: float = 10.0  # seconds between poll jobs (each claims only the feeds that are due)
    digest_every: float = 60.0
    watch_every: float = 5.0  # how often feeds.yaml's mtime is checked; 0 turns the check off
    grace: float = 20.0  # seconds feeds in flight get to finish on SIGTERM
    batch: int | None = None  # feeds claimed at a time (default 4 × fetch concurrency, at least 100)
    processes: int | None = None  # parse processes (None: Poller's default; 0: a thread)


class Daemon:
    """The service: owns the poller, the scheduler, the optional web thread and the instance lock."""

    def __init__(
        self,
        app: App,
        options: DaemonOptions | None = None,
        *,
        metrics: Metrics = METRICS,
        liveness: Liveness = LIVENESS,
    ) -> None:
        self.app = app
        self.options = options or DaemonOptions()
        self.metrics = metrics
        self.liveness = liveness
        self.worker = worker_id()
        self.ready = threading.Event()  # set once the scheduler runs (tests wait on it)
        self.poller: Poller | None = None
        self.web: WebServer | None = None
        self.lock: InstanceLock | None = None
        self.exit_code = 0
        self.cycles = 0  # poll jobs that claimed at least one feed
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None  # set: no new feed starts (passed to Poller.poll)
        self._stop_requested: asyncio.Event | None = None
        self._force: asyncio.Event | None = None  # a second signal: do not wait for the grace period
        self._reload_lock: asyncio.Lock | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._config_sig: tuple[int, int, int] | None = None
        self._in_flight = 0
        self._fresh_feeds: list[int] = []  # feeds that brought new items in the current batch
        self._scheduler: Any = None

    # -- control (safe from any thread) --

    def request_stop(self, reason: str = "request") -> None:
        self._call_soon(self._on_stop, reason)

    def request_reload(self, reason: str = "request") -> None:
        self._call_soon(self._spawn_reload, reason)

    def _call_soon(self, fn: Callable[[str], None], reason: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn(reason)
        else:
            loop.call_soon_threadsafe(fn, reason)

    def _on_stop(self, reason: str) -> None:
        assert self._stop_requested is not None and self._force is not None
        if self._stop_requested.is_set():
            log.warning("second stop request (%s): not waiting for feeds in flight", reason)
            self._force.set()
            return
        log.info("stopping (%s)", reason, extra={"event": "stop", "reason": reason})
        self._stop_requested.set()

    def _spawn_reload(self, reason: str) -> None:
        self._track(asyncio.ensure_future(self.reload(reason)))

    def _track(self, task: asyncio.Future[Any]) -> None:
        if isinstance(task, asyncio.Task):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- lifecycle --

    @property
    def batch(self) -> int:
        if self.options.batch:
            return self.options.batch
        return max(100, 4 * self.app.fetch_settings.concurrency)

    async def run(self, *, install_signals: bool = True) -> int:
        """Run until stopped; returns the exit code.  Raises AlreadyRunning / WebStartError on start."""
        loop = self._loop = asyncio.get_running_loop()
        self._stop, self._stop_requested, self._force = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self._reload_lock = asyncio.Lock()
        path = lock_path(self.app.engine)
        if path is not None:
            self.lock = InstanceLock(path)
            self.lock.acquire()
        try:
            return await self._run(loop, install_signals)
        finally:
            self.liveness.running = False
            if self.lock is not None:
                self.lock.release()

    async def _run(self, loop: asyncio.AbstractEventLoop, install_signals: bool) -> int:
        assert self._stop_requested is not None
        started = time.perf_counter()
        await asyncio.to_thread(app_mod.ensure_ready, self.app)
        freed = await asyncio.to_thread(release_stale_leases, self.app.engine, self.app.db)
        if freed:
            log.info("released %d feed leases left by a process that died", freed, extra={"feeds": freed})
        self._config_sig = self._config_signature()
        self.poller = Poller(
            self.app.db,
            fetch=self.app.fetch_settings,
            schedule=self.app.schedule_settings,
            worker=self.worker,
            processes=self.options.processes,
            taxonomy=self.app.config.taxonomy,
        )
        self.poller.on_outcome = self._on_outcome
        self.poller.start_workers()  # before the web app and the first cycle grow this process
        self.liveness.stale_after = max(
            120.0, 4 * self.options.poll_every, 2 * self.app.fetch_settings.total_timeout + 10
        )
        self.liveness.started = time.monotonic()
        self.liveness.heartbeat = None
        self.liveness.running = True
        signals: list[signal.Signals] = []
        try:
            if self.options.web:
                from tracker.web import create_app

                self.web = WebServer(create_app(self.app), self.options.host, self.options.port)
                await asyncio.to_thread(self.web.start)
            if install_signals:
                for sig, handler in (
                    (signal.SIGTERM, self.request_stop),
                    (signal.SIGINT, self.request_stop),
                    (signal.SIGHUP, self.request_reload),
                ):
                    loop.add_signal_handler(sig, handler, sig.name)
                    signals.append(sig)
            self._start_scheduler(loop)
            _failing, enabled = await asyncio.to_thread(self._refresh_gauges)
            log.info(
                "tracker run: %d feeds enabled, polling every %g s, %s, database %s, worker %s (ready in %.1f s)",
                enabled,
                self.options.poll_every,
                f"web view on {self.web.url}" if self.web else "no web view",
                self.app.engine.url.render_as_string(hide_password=True),
                self.worker,
                time.perf_counter() - started,
                extra={"event": "start", "worker": self.worker},
            )
            self.ready.set()
            await self._stop_requested.wait()
            await self._shutdown()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            if self._scheduler is not None:
                self._scheduler.shutdown(wait=False)
                self._scheduler = None
            if self.poller is not None:
                await asyncio.to_thread(self.poller.close)
                await asyncio.to_thread(ingest.release_leases, self.app.db, self.worker)
                self.poller = None
            if self.web is not None:
                await asyncio.to_thread(self.web.stop)
                self.web = None
        log.info("stopped", extra={"event": "stopped"})
        return self.exit_code

    def _start_scheduler(self, loop: asyncio.AbstractEventLoop) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        now = datetime.now(UTC)
        sched = AsyncIOScheduler(event_loop=loop, timezone=UTC)
        common: dict[str, Any] = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        sched.add_job(
            self._job(self._poll_job),
            "interval",
            seconds=self.options.poll_every,
            next_run_time=now,
            id="poll",
            **common,
        )
        sched.add_job(
            self._job(self._digest_job),
            "interval",
            seconds=self.options.digest_every,
            next_run_time=now + timedelta(seconds=min(5.0, self.options.digest_every)),
            id="digests",
            **common,
        )
        if self.options.watch_every > 0:
            sched.add_job(
                self._job(self._watch_job), "interval", seconds=self.options.watch_every, id="watch-config", **common
            )
        sched.add_job(
            self._job(self._maintenance_job),
            "interval",
            hours=1,
            next_run_time=now + timedelta(minutes=1),
            id="maintenance",
            **common,
        )
        sched.start()
        self._scheduler = sched

    def _job(self, fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """Wrap a job so shutdown can wait for it, and one failing run never kills the scheduler."""

        async def run() -> None:
            assert self._stop is not None
            if self._stop.is_set():
                return
            task = asyncio.current_task()
            if task is not None:
                self._tasks.add(task)
            try:
                await fn()
            except asyncio.CancelledError:
                if self._stop.is_set():
                    return  # cancelled by _shutdown after the grace period (logged there): not a job error
                raise
            except Exception:
                log.exception("job %s failed; it runs again at its next time", fn.__name__)
            finally:
                if task is not None:
                    self._tasks.discard(task)

        run.__name__ = fn.__name__
        return run

    async def _shutdown(self) -> None:
        assert self._stop is not None and self._force is not None
        self._stop.set()  # Poller.poll starts no new feed from now on
        if self._scheduler is not None:
            # pause, not shutdown: shutting APScheduler's asyncio executor down cancels running jobs
            self._scheduler.pause()
        pending = {t for t in self._tasks if not t.done()}
        if pending:
            log.info(
                "waiting up to %g s for %d feeds in flight",
                self.options.grace,
                self._in_flight,
                extra={"event": "drain", "in_flight": self._in_flight},
            )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.options.grace
            force = asyncio.ensure_future(self._force.wait())
            remaining = pending
            while remaining and not force.done() and (timeout := deadline - loop.time()) > 0:
                await asyncio.wait(remaining | {force}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                remaining = {t for t in remaining if not t.done()}
            force.cancel()
            late = [t for t in pending if not t.done()]
            if late:
                log.warning(
                    "%d feeds still in flight after the grace period: cancelled (they are fetched again "
                    "at the next start)",
                    self._in_flight,
                    extra={"event": "cancelled", "in_flight": self._in_flight},
                )
                for t in late:
                    t.cancel()
                await asyncio.gather(*late, return_exceptions=True)

    # -- jobs --

    async def _poll_job(self) -> None:
        assert self._stop is not None and self.poller is not None
        self.liveness.beat()
        self.metrics.last_poll.set(time.time())
        started = time.perf_counter()
        total = CycleSummary()
        poller = self.poller
        while not self._stop.is_set():
            t0 = poller.clock()
            batch = self.batch
            self._fresh_feeds = []
            summary = await poller.poll(limit=batch, stop=self._stop, progress=self._progress)
            self._in_flight = 0
            _merge(total, summary)
            if self._fresh_feeds:
                relevant = await asyncio.to_thread(count_relevant, self.app.engine, self._fresh_feeds, t0)
                if relevant:
                    self.metrics.items_relevant.inc(relevant)
            if summary.feeds < batch:
                break
        self.liveness.beat()
        self.metrics.last_poll.set(time.time())
        if total.feeds:
            total.seconds = time.perf_counter() - started
            self.cycles += 1
            self.metrics.cycle_seconds.observe(total.seconds)
            await asyncio.to_thread(self._refresh_gauges)
            log.info(
                "cycle: %s",
                total.line(),
                extra={
                    "event": "cycle",
                    "feeds": total.feeds,
                    "ok": total.ok,
                    "not_modified": total.not_modified,
                    "failed": total.failed,
                    "new_items": total.new,
                    "updated_items": total.updated,
                    "seconds": round(total.seconds, 2),
                },
            )

    def _progress(self, done: int, total: int) -> None:
        self._in_flight = total - done
        self.liveness.beat()

    def _on_outcome(self, feed: str, upd: FeedUpdate, counts: WriteCounts) -> None:
        self.metrics.observe(feed, upd, counts)
        if counts.new:
            self._fresh_feeds.append(upd.feed_id)

    def _refresh_gauges(self) -> tuple[int, int]:
        failing, enabled = feed_counts(self.app.engine)
        self.metrics.failing_feeds.set(failing)
        self.metrics.enabled_feeds.set(enabled)
        return failing, enabled

    async def _digest_job(self) -> None:
        if not getattr(self.app.config, "digests", None):
            return
        try:
            from tracker.mailer import run_digests
        except ImportError:
            log.warning("digests are configured but tracker.mailer is not available")
            return
        result = await asyncio.to_thread(run_digests, self.app, datetime.now(UTC))
        if result.sent:
            self.metrics.digests_sent.inc(result.sent)
        if result.failed:
            self.metrics.digests_failed.inc(result.failed)
        if result.queued or result.sent or result.failed:
            level = logging.WARNING if result.failed else logging.INFO
            log.log(
                level,
                result.line(),
                extra={"event": "digests", "queued": result.queued, "sent": result.sent, "failed": result.failed},
            )

    async def _watch_job(self) -> None:
        sig = self._config_signature()
        if sig is not None and sig != self._config_sig:
            await self.reload(f"{self.app.config_path} changed")

    async def _maintenance_job(self) -> None:
        cutoff = datetime.now(UTC) - FETCH_LOG_KEEP
        pruned = await asyncio.to_thread(ingest.prune_fetch_log, self.app.db, older_than=cutoff)
        if pruned:
            log.info("pruned %d fetch log rows older than %s", pruned, cutoff.date(), extra={"event": "prune"})

    # -- config reload --

    def _config_signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.app.config_path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    async def reload(self, reason: str = "request") -> bool:
        """Validate feeds.yaml again and switch to it; an invalid file keeps the running config."""
        assert self._reload_lock is not None
        async with self._reload_lock:
            sig = self._config_signature()
            path = self.app.config_path
            try:
                new: Config = await asyncio.to_thread(load_config, path)
            except ConfigError as exc:
                self._config_sig = sig  # report a broken file once, not every few seconds
                self.metrics.config_reloads.labels("invalid").inc()
                log.error(
                    "config reload (%s) refused, keeping the running config: %s",
                    reason,
                    exc,
                    extra={"event": "reload", "result": "invalid"},
                )
                return False
            self._config_sig = sig
            self.app.replace_config(new)
            if self.poller is not None:
                self.poller.fetch_settings = self.app.fetch_settings
                self.poller.schedule = self.app.schedule_settings
                self.poller.taxonomy = overrides_key(new.taxonomy)
            specs = pollconfig.feed_specs(new)
            added, changed, disabled = await asyncio.to_thread(ingest.sync_feeds, self.app.db, specs)
            await asyncio.to_thread(self._refresh_gauges)
            self.metrics.config_reloads.labels("ok").inc()
            log.info(
                "config reloaded (%s): %d feeds; %d added, %d changed, %d disabled",
                reason,
                len(specs),
                added,
                changed,
                disabled,
                extra={
                    "event": "reload",
                    "result": "ok",
                    "feeds_added": added,
                    "feeds_changed": changed,
                    "feeds_disabled": disabled,
                },
            )
            return True


def _merge(total: CycleSummary, part: CycleSummary) -> None:
    total.feeds += part.feeds
    total.ok += part.ok
    total.not_modified += part.not_modified
    total.failed += part.failed
    total.new += part.new
    total.updated += part.updated
    total.linked += part.linked
    total.errors.update(part.errors)


def count_relevant(engine: Engine, feed_ids: list[int], since: datetime) -> int:
    """New relevant items these feeds brought in since ``since`` (each item counts for its first feed)."""
    item = ITEM
    n = 0
    with engine.connect() as conn:
        for i in range(0, len(feed_ids), ingest.CHUNK):
            chunk = sorted(set(feed_ids[i : i + ingest.CHUNK]))
            n += int(
                conn.execute(
                    select(func.count())
                    .select_from(item)
                    .where(and_(item.c.relevant.is_(True), item.c.ingested_at >= since, item.c.feed_id.in_(chunk)))
                ).scalar_one()
            )
    return n


def feed_counts(engine: Engine) -> tuple[int, int]:
    """(failing, enabled) feeds: failing = enabled and the last fetch failed."""
    feed = FEED
    with engine.connect() as conn:
        row = conn.execute(
            select(
                func.count().filter(feed.c.consecutive_failures > 0),
                func.count(),
            ).where(feed.c.enabled.is_(True))
        ).one()
    return int(row[0] or 0), int(row[1] or 0)
