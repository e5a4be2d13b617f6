"""``tracker run`` as an operator runs it: a real process, a real SQLite file, real local feeds.

What docs/operations.md promises, one test (or two) each:

* a second ``tracker run`` on the same SQLite file refuses to start and says who holds it;
* SIGTERM while polling: the feeds in flight finish and commit, no lease is left, exit 0 — and a
  feed that hangs cannot hold the stop past ``--grace``;
* SIGHUP reloads feeds.yaml: a valid file is applied (a new feed gets polled), an invalid one is
  refused with file, line and field while the running config carries on;
* ``--log-format json``: every stderr line is a JSON object, one line per feed outcome, and no
  secret from the environment ever appears;
* ``/healthz`` and ``/metrics`` on the daemon's web port report what really happened.

Nothing is mocked: the daemon is the installed ``tracker`` entry point in a subprocess, the feeds
come from tests/feedfarm.py on 127.0.0.1, digests go to an aiosmtpd server on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from feedfarm import FeedFarm
from localproc import TRACKER, clean_env, db_rows, free_port, http_get

JSON = ("--log-format", "json")
FAST = {"default_interval": "1s", "min_interval": "1s", "max_interval": "1s"}  # every feed due again each second
T = TypeVar("T")

# --- helpers -------------------------------------------------------------------------------------


def write_config(
    path: Path, feeds: list[dict[str, Any]], *, settings: dict[str, Any] | None = None, **more: Any
) -> None:
    doc: dict[str, Any] = {"settings": settings or {}, "feeds": feeds, **more}
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")


def farm_feeds(farm: FeedFarm, indices: range | list[int], **extra: Any) -> list[dict[str, Any]]:
    return [{"name": f"farm {i}", "url": farm.url(i), **extra} for i in indices]


def db_value(db: Path, sql: str, *args: object) -> Any:
    return db_rows(db, sql, *args)[0][0]


def stored_guids(db: Path) -> set[str]:
    return {str(r[0]).removeprefix("guid:") for r in db_rows(db, "SELECT dedup_key FROM item_source")}


def children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(stat.parent.name))
    return found


@dataclass
class Daemon:
    """One ``tracker ...`` subprocess in its own process group, stderr to a file."""

    proc: subprocess.Popen[bytes]
    log: Path
    out: Path
    signalled_at: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def records(self) -> list[dict[str, Any]]:
        """Every complete stderr line as JSON (a line that is not JSON fails the test right here)."""
        lines = self.text().split("\n")[:-1]  # the last piece is "" or a line still being written
        recs = []
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                raise AssertionError(f"stderr line is not JSON: {line!r}") from None
            assert isinstance(rec, dict), line
            recs.append(rec)
        return recs

    def outcomes(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["logger"] == "tracker.update" and "outcome" in r]

    def events(self, event: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == event]

    def wait_for(self, cond: Callable[[], T | None], what: str, timeout: float = 20.0) -> T:
        deadline = time.monotonic() + timeout
        while True:
            value = cond()
            if value:
                return value
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode} while waiting for {what}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout:g} s:\n{self.tail()}")
            time.sleep(0.03)

    def wait_started(self) -> dict[str, Any]:
        return self.wait_for(lambda: next(iter(self.events("start")), None), "start line")

    def signal(self, sig: signal.Signals) -> None:
        self.signalled_at = time.monotonic()
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds from the signal to the exit)."""
        self.signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        assert self.signalled_at is not None
        return code, time.monotonic() - self.signalled_at

    def tail(self, n: int = 25) -> str:
        return "\n".join(self.text().splitlines()[-n:])

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


def start(args: list[str], env: dict[str, str], cwd: Path, name: str = "daemon") -> Daemon:
    log, out = cwd / f"{name}.log", cwd / f"{name}.out"
    with log.open("ab") as err_f, out.open("ab") as out_f:
        proc = subprocess.Popen([*TRACKER, *args], env=env, cwd=cwd, stdout=out_f, stderr=err_f, start_new_session=True)
    return Daemon(proc, log, out)


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Started daemons are SIGKILLed (with their parse pools) at teardown if a test left them running."""
    started: list[Daemon] = []
    yield started
    for d in started:
        d.kill()


@pytest.fixture
def farm() -> Iterator[FeedFarm]:
    with FeedFarm(feeds=12, items=3) as f:
        yield f


@pytest.fixture
def sqlite_env(tmp_path: Path) -> tuple[dict[str, str], Path, Path]:
    db, config = tmp_path / "tracker.db", tmp_path / "feeds.yaml"
    return clean_env(TRACKER_CONFIG=str(config), TRACKER_DATABASE_URL=f"sqlite:///{db}"), db, config


# --- one daemon per SQLite file ------------------------------------------------------------------


def test_second_run_on_the_same_sqlite_file_refuses_and_names_the_holder(
    tmp_path: Path, farm: FeedFarm, sqlite_env: tuple[dict[str, str], Path, Path], daemons: list[Daemon]
) -> None:
    env, db, config = sqlite_env
    write_config(config, farm_feeds(farm, range(3)))
    first = start(["run", "--no-web", "--poll-every", "0.2", "--processes", "0", *JSON], env, tmp_path, "first")
    daemons.append(first)
    first.wait_for(lambda: len(first.outcomes()) == 3, "first daemon's 3 feed outcomes")

    second = subprocess.run(
        [*TRACKER, "run", "--no-web", "--processes", "0", *JSON],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1, second.stderr
    lines = second.stderr.splitlines()
    recs = [json.loads(line) for line in lines]  # the refusal, too, is JSON under --log-format json
    assert len(recs) == 1, lines
    refusal = recs[0]
    assert refusal["level"] == "error" and refusal["event"] == "refused"
    assert str(db.resolve()) in refusal["msg"]
    assert f"pid {first.pid}" in refusal["msg"]
    assert "already" in refusal["msg"]

    # The refused process touched nothing: the first one still runs, owns its leases, keeps polling.
    assert first.proc.poll() is None
    assert db_value(db, "SELECT count(*) FROM fetch_log") == 3

    code, _ = first.stop()
    assert code == 0
    # The lock goes with its holder: the next daemon starts at once.
    third = start(["run", "--no-web", "--processes", "0", *JSON], env, tmp_path, "third")
    daemons.append(third)
    third.wait_started()
    assert third.stop()[0] == 0


def test_parse_workers_die_with_a_daemon_killed_outright(
    tmp_path: Path, farm: FeedFarm, sqlite_env: tuple[dict[str, str], Path, Path], daemons: list[Daemon]
) -> None:
    """SIGKILL (or the OOM killer) on the daemon alone must not leave its parse workers running."""
    env, _db, config = sqlite_env
    write_config(config, farm_feeds(farm, range(3)))
    d = start(["run", "--no-web", "--processes", "2", *JSON], env, tmp_path)
    daemons.append(d)
    d.wait_started()
    workers = d.wait_for(lambda: children(d.pid) if len(children(d.pid)) >= 2 else None, "2 parse workers")
    os.kill(d.pid, signal.SIGKILL)  # the daemon only, not its process group
    d.proc.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{w}").exists() and not _zombie(w) for w in workers):
        time.sleep(0.05)
    assert not [w for w in workers if Path(f"/proc/{w}").exists() and not _zombie(w)], "orphaned parse workers"


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    return True


# --- SIGTERM ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_mid_cycle_finishes_feeds_in_flight_commits_releases_leases_exits_0(
    sig: signal.Signals, tmp_path: Path, sqlite_env: tuple[dict[str, str], Path, Path], daemons: list[Daemon]
) -> None:
    """The signal goes to the whole process group, parse workers included, as systemd's default
    KillMode=control-group and a terminal's Ctrl-C send it: it must still count as one stop request."""
    env, db, config = sqlite_env
    grace = 10.0
    with FeedFarm(feeds=12, items=3, latency=0.6) as farm:
        # 4 at a time at 0.6 s each: the cycle lasts ~2 s, so the signal lands while feeds are in flight
        write_config(config, farm_feeds(farm, range(12)), settings={"concurrency": 4, "per_host_concurrency": 4})
        d = start(["run", "--no-web", "--poll-every", "0.2", "--grace", str(grace), *JSON], env, tmp_path)
        daemons.append(d)

        def mid_cycle() -> set[int] | None:
            """The feeds leased once some have committed: those in flight right now."""
            try:
                if not db_value(db, "SELECT count(*) FROM fetch_log"):
                    return None
            except sqlite3.OperationalError:  # no schema yet: the daemon is still starting
                return None
            return {r[0] for r in db_rows(db, "SELECT id FROM feed WHERE lease_owner IS NOT NULL")} or None

        in_flight = d.wait_for(mid_cycle, "a cycle half done")
        committed_before = db_value(db, "SELECT count(*) FROM fetch_log")
        workers = children(d.pid)
        d.signalled_at = time.monotonic()
        os.killpg(d.pid, sig)
        code = d.proc.wait(grace + 20)
        seconds = time.monotonic() - d.signalled_at
        expected = farm.all_items()

    assert code == 0, d.tail()
    assert seconds < grace, f"took {seconds:.1f} s: the feeds in flight should have finished well within the grace"
    assert committed_before < 12 and in_flight
    assert workers, "the parse pool should have been running (the default --processes)"
    assert [r["reason"] for r in d.events("stop")] == [sig.name]
    assert "second stop request" not in d.text()
    # every feed that was leased at the signal finished and committed: one fetch, one log line each
    fetched = {r[0]: r[1] for r in db_rows(db, "SELECT feed_id, count(*) FROM fetch_log GROUP BY feed_id")}
    assert set(fetched) >= in_flight and all(n == 1 for n in fetched.values())
    assert db_value(db, "SELECT count(*) FROM feed WHERE lease_owner IS NOT NULL OR lease_until IS NOT NULL") == 0
    assert stored_guids(db) == expected
    assert db_value(db, "SELECT count(*) FROM item") == len(expected)
    drain = d.events("drain")
    assert drain and drain[0]["in_flight"] >= 1
    assert not d.events("cancelled")
    assert [r["event"] for r in d.records() if r.get("event") in ("stop", "stopped")] == ["stop", "stopped"]
    assert len(d.outcomes()) == len(fetched)
    assert not [r for r in d.records() if r["level"] in ("error", "critical")]


def test_sigterm_does_not_wait_past_grace_for_a_hung_feed(
    tmp_path: Path, farm: FeedFarm, sqlite_env: tuple[dict[str, str], Path, Path], daemons: list[Daemon]
) -> None:
    env, db, config = sqlite_env
    grace = 1.5
    hung = {"name": "hung", "url": farm.url(0, "/slow-headers?delay=120")}  # no answer for 2 minutes
    write_config(
        config,
        [*farm_feeds(farm, range(3)), hung],
        settings={"read_timeout": "5m", "total_timeout": "10m"},  # so only the grace period can end it
    )
    d = start(
        ["run", "--no-web", "--poll-every", "0.2", "--grace", str(grace), "--processes", "0", *JSON], env, tmp_path
    )
    daemons.append(d)
    d.wait_for(lambda: len(d.outcomes()) == 3, "the 3 healthy feeds' outcomes")
    assert db_value(db, "SELECT lease_owner FROM feed WHERE name = 'hung'") == f"{os.uname().nodename}:{d.pid}"

    code, seconds = d.stop(timeout=grace + 20)

    assert code == 0, d.tail()
    assert grace - 0.2 <= seconds <= grace + 5, f"stopped after {seconds:.1f} s with --grace {grace}"
    assert d.events("cancelled"), d.tail()
    # a bounded stop is routine: a warning, not an error with a traceback
    assert not [r for r in d.records() if r["level"] in ("error", "critical")], d.tail()
    assert db_value(db, "SELECT count(*) FROM feed WHERE lease_owner IS NOT NULL OR lease_until IS NOT NULL") == 0
    # the hung feed left no trace, so the next start fetches it at once; the others are all stored
    assert db_rows(db, "SELECT last_fetched_at, next_due_at FROM feed WHERE name = 'hung'") == [(None, None)]
    assert stored_guids(db) == {g for i in range(3) for g in farm.items(i)}


# --- SIGHUP --------------------------------------------------------------------------------------


def test_sighup_applies_a_valid_config_and_keeps_running_on_an_invalid_one(
    tmp_path: Path, farm: FeedFarm, sqlite_env: tuple[dict[str, str], Path, Path], daemons: list[Daemon]
) -> None:
    env, db, config = sqlite_env
    write_config(config, farm_feeds(farm, range(2)), settings=FAST)
    # --watch-every 0: only the signal can trigger a reload here
    d = start(
        ["run", "--no-web", "--poll-every", "0.2", "--watch-every", "0", "--processes", "0", *JSON], env, tmp_path
    )
    daemons.append(d)
    d.wait_for(lambda: {r["feed"] for r in d.outcomes()} == {"farm 0", "farm 1"}, "both feeds polled")
    assert farm.last_headers("/feed/2.xml") == {}

    # 1. a valid file with one more feed
    write_config(config, farm_feeds(farm, range(3)), settings=FAST)
    d.signal(signal.SIGHUP)
    reload = d.wait_for(lambda: next(iter(d.events("reload")), None), "reload line")
    assert reload["result"] == "ok" and reload["feeds_added"] == 1, reload
    assert "SIGHUP" in reload["msg"]
    d.wait_for(lambda: any(r["feed"] == "farm 2" for r in d.outcomes()), "an outcome for the new feed")
    assert farm.last_headers("/feed/2.xml"), "the farm never saw a request for the new feed"
    d.wait_for(lambda: stored_guids(db) >= set(farm.items(2)), "the new feed's items stored")

    # 2. an invalid file (a bad interval on line 8, and it would drop two feeds): refused, old config kept
    config.write_text(
        "settings:\n"
        "  default_interval: 1s\n"
        "  min_interval: 1s\n"
        "  max_interval: 1s\n"
        "feeds:\n"
        "  - name: farm 0\n"
        f"    url: {farm.url(0)}\n"
        "    interval: banana\n",
        encoding="utf-8",
    )
    d.signal(signal.SIGHUP)
    refused = d.wait_for(lambda: next(iter(d.events("reload")[1:]), None), "second reload line")
    assert refused["result"] == "invalid" and refused["level"] == "error", refused
    assert f"{config}:8: feeds[0].interval" in refused["msg"]
    assert "banana" in refused["msg"] and "keeping the running config" in refused["msg"]
    n_before = len(d.outcomes())
    # the running config still polls all three feeds (the invalid file would have disabled two)
    d.wait_for(
        lambda: {r["feed"] for r in d.outcomes()[n_before:]} == {"farm 0", "farm 1", "farm 2"},
        "all three feeds polled again after the refusal",
        timeout=15,
    )
    assert db_value(db, "SELECT count(*) FROM feed WHERE enabled") == 3

    code, _ = d.stop()
    assert code == 0
    assert [r["result"] for r in d.events("reload")] == ["ok", "invalid"]  # the broken file is reported once


# --- JSON logs, secrets, /healthz and /metrics: one daemon with everything switched on -------------

SECRETS = {
    "TRACKER_SMTP_PASSWORD": "s3cr3t-value",
    "TRACKER_ADMIN_TOKEN": "adm1n-t0ken-value",
}
FEED_PASSWORD = "f33d-pa55word"  # in the userinfo of a feed URL


class Smtp:
    """aiosmtpd handler: AUTH LOGIN/PLAIN recorded, ``bounce@`` refused at RCPT, the rest accepted."""

    def __init__(self) -> None:
        self.logins: list[tuple[str, str]] = []
        self.accepted: list[list[str]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("bounce@"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.accepted.append(list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        self.logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=auth_data.password == SECRETS["TRACKER_SMTP_PASSWORD"].encode())


@dataclass
class Observed:
    """What one run of the full daemon left behind, for the tests below to judge."""

    daemon: Daemon
    db: Path
    smtp: Smtp
    exit_code: int
    healthz: tuple[int, dict[str, Any]]
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float] = field(default_factory=dict)
    metrics_text: str = ""
    items_at_scrape: int = 0
    fetches_at_scrape: int = 0


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    from aiosmtpd.controller import Controller
    from prometheus_client.parser import text_string_to_metric_families

    tmp = tmp_path_factory.mktemp("observed")
    db, config = tmp / "tracker.db", tmp / "feeds.yaml"
    smtp = Smtp()
    controller = Controller(
        smtp, hostname="127.0.0.1", port=free_port(), authenticator=smtp.authenticate, auth_require_tls=False
    )
    controller.start()
    web_port = free_port()
    d: Daemon | None = None
    try:
        with FeedFarm(feeds=3, items=3) as farm:
            broken = farm.url(0, "/status/500").replace("http://", f"http://reader:{FEED_PASSWORD}@")
            feeds = [
                *farm_feeds(farm, range(3)),
                {"name": "broken", "url": broken},
                {"name": "retired", "url": farm.url(0, "/gone")},
                # passes feeds.yaml's check but has no host: the fetch error quotes the URL, password and all
                {"name": "misconfigured", "url": f"http://reader:{FEED_PASSWORD}@:{farm.port}/feed/1.xml"},
            ]
            digest = {
                "name": "every-minute",
                "recipients": ["analyst@example.org", "bounce@example.org"],
                "schedule": "* * * * *",
                "send_empty": True,
            }
            write_config(config, feeds, digests=[digest])
            env = clean_env(
                TRACKER_CONFIG=str(config),
                TRACKER_DATABASE_URL=f"sqlite:///{db}",
                TRACKER_SMTP_HOST="127.0.0.1",
                TRACKER_SMTP_PORT=str(controller.port),
                TRACKER_SMTP_USER="tracker",
                TRACKER_MAIL_FROM="tracker@example.org",
                **SECRETS,
            )
            d = start(["run", "--port", str(web_port), "--poll-every", "0.5", "--processes", "0", *JSON], env, tmp)
            d.wait_for(lambda: len(d.outcomes()) == 6, "6 feed outcomes")
            d.wait_for(lambda: d.events("digests"), "the digest job's line", timeout=20)  # it first runs after 5 s
            status, body = http_get(f"http://127.0.0.1:{web_port}/healthz")
            healthz = (status, json.loads(body))
            _, raw = http_get(f"http://127.0.0.1:{web_port}/metrics")
            items = db_value(db, "SELECT count(*) FROM item")
            fetches = db_value(db, "SELECT count(*) FROM fetch_log")
            code, _ = d.stop()
        text = raw.decode()
        metrics = {
            (s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        }
        yield Observed(d, db, smtp, code, healthz, metrics, text, items, fetches)
    finally:
        if d is not None:
            d.kill()
        controller.stop()


def test_json_logs_one_line_per_feed_outcome_and_no_secrets(observed: Observed) -> None:
    d = observed.daemon
    assert observed.exit_code == 0, d.tail()
    recs = d.records()  # fails on the first stderr line that is not JSON
    assert d.text().endswith("\n") and len(recs) == len(d.text().splitlines())
    assert all({"ts", "level", "logger", "msg"} <= r.keys() for r in recs)
    assert d.out.read_text() == ""  # nothing on stdout either

    outcomes = d.outcomes()
    by_feed = {r["feed"]: r for r in outcomes}
    assert len(outcomes) == len(by_feed) == 6, "one line per feed outcome, no more, no less"
    assert len(outcomes) == db_value(observed.db, "SELECT count(*) FROM fetch_log")
    assert {f: (r["outcome"], r["status"]) for f, r in by_feed.items()} == {
        "farm 0": ("ok", 200),
        "farm 1": ("ok", 200),
        "farm 2": ("ok", 200),
        "broken": ("error", 500),
        "retired": ("gone", 410),
        "misconfigured": ("error", None),
    }
    assert all(by_feed[f"farm {i}"]["new_items"] == 3 for i in range(3))
    assert all(isinstance(r["elapsed"], float) and r["level"] in ("info", "warning") for r in outcomes)
    assert by_feed["broken"]["level"] == by_feed["misconfigured"]["level"] == "warning"
    # the URL is quoted in the error, its password masked
    assert "invalid URL: http://reader:***@:" in by_feed["misconfigured"]["msg"]

    digests = d.events("digests")
    assert [(r["queued"], r["sent"], r["failed"]) for r in digests] == [(2, 1, 1)]

    # the secrets were really in use ...
    assert observed.smtp.logins == [("tracker", SECRETS["TRACKER_SMTP_PASSWORD"])]
    assert observed.smtp.accepted == [["analyst@example.org"]]
    # ... and none of them reached the logs, in any field
    everything = d.text() + d.out.read_text()
    for secret in [*SECRETS.values(), FEED_PASSWORD]:
        assert secret not in everything, f"{secret!r} leaked into the logs"


def test_healthz_reports_process_database_and_scheduler(observed: Observed) -> None:
    status, body = observed.healthz
    assert status == 200, body
    assert body["status"] == "ok"
    checks = body["checks"]
    assert set(checks) == {"process", "database", "scheduler"}
    assert all(c["ok"] for c in checks.values()), checks
    assert checks["database"]["detail"].startswith("SELECT 1 in ")
    assert "heartbeat" in checks["scheduler"]["detail"]  # the poll job has run, not just "no poll yet"


def test_metrics_count_polls_items_latency_failures_and_digests(observed: Observed) -> None:
    m = observed.metrics

    def value(name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        assert key in m, f"{name}{labels} not exported:\n{observed.metrics_text}"
        return m[key]

    assert value("tracker_polls_total", outcome="ok") == 3
    assert value("tracker_polls_total", outcome="not_modified") == 0
    assert value("tracker_polls_total", outcome="error") == 2
    assert value("tracker_polls_total", outcome="gone") == 1
    assert value("tracker_items_ingested_total") == 9 == observed.items_at_scrape
    assert 1 <= value("tracker_items_relevant_total") <= 9
    assert value("tracker_items_updated_total") == 0
    # fetch latency histogram: one observation per fetch, cumulative buckets
    assert value("tracker_fetch_seconds_count") == 6 == observed.fetches_at_scrape
    assert value("tracker_fetch_seconds_bucket", le="+Inf") == 6
    assert 0 < value("tracker_fetch_seconds_sum") < 6 * 10
    assert value("tracker_fetch_seconds_bucket", le="0.05") <= value("tracker_fetch_seconds_bucket", le="10.0")
    assert value("tracker_poll_cycle_seconds_count") >= 1
    # the 500 and the host-less feeds are failing; the 410 one was disabled: neither failing nor enabled
    assert value("tracker_failing_feeds") == 2
    assert value("tracker_enabled_feeds") == 5
    assert value("tracker_digests_sent_total") == 1
    assert value("tracker_digests_failed_total") == 1
    assert value("tracker_config_reloads_total", result="ok") == 0
    assert time.time() - 120 < value("tracker_last_poll_timestamp_seconds") <= time.time()
    assert value("process_resident_memory_bytes") > 0


# --- start-up failures ---------------------------------------------------------------------------


def test_unreachable_database_is_one_json_line_without_the_password(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    write_config(config, [{"name": "a", "url": "http://127.0.0.1:9/a.xml"}])
    port = free_port()  # nothing listens there
    url = f"postgresql+psycopg://tracker:db-pa55word@127.0.0.1:{port}/tracker"
    env = clean_env(TRACKER_CONFIG=str(config), TRACKER_DATABASE_URL=url, **SECRETS)
    r = subprocess.run(
        [*TRACKER, "run", "--no-web", *JSON], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 1
    recs = [json.loads(line) for line in r.stderr.splitlines()]
    assert len(recs) == 1, r.stderr  # not a driver traceback
    assert recs[0]["level"] == "error" and recs[0]["event"] == "database_error"
    assert f"postgresql+psycopg://tracker:***@127.0.0.1:{port}/tracker" in recs[0]["msg"]
    assert "db-pa55word" not in r.stderr + r.stdout
