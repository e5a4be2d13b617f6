"""SIGKILL ``tracker run`` at random moments while it polls changing feeds: nothing lost, nothing twice.

The promise (docs/operations.md): a fetch whose transaction committed is never lost, an item is never
stored twice, and after a restart the next cycle picks up where the killed process stopped — including
the feeds it had leased when it died.  The daemon runs as a real subprocess with its parse pool; each
kill is a SIGKILL of the main process (the pool processes it leaves are then killed with its process
group, as systemd or docker would do).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from feedfarm import FeedFarm
from localproc import TRACKER, db_rows

KILLS = 22
FEEDS = 30


def write_config(path: Path, urls: list[str]) -> None:
    lines = [
        "settings:",
        "  concurrency: 4",  # few at a time, so a cycle lasts and kills land inside it
        "  per_host_concurrency: 4",
        "  default_interval: 1s",
        "  min_interval: 1s",
        "  max_interval: 2s",
        "feeds:",
    ]
    for i, url in enumerate(urls):
        lines += [f"  - name: farm {i}", f"    url: {url}"]
    path.write_text("\n".join(lines) + "\n")


def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*TRACKER, "run", "--no-web", "--poll-every", "0.3", "--log-format", "json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
        start_new_session=True,  # its own process group: the parse pool can be cleaned up after a kill
    )


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def leased_by(db: Path, pid: int) -> int:
    return int(db_rows(db, "SELECT count(*) FROM feed WHERE lease_owner LIKE ?", f"%:{pid}")[0][0])


def stored(db: Path) -> tuple[set[str], int, int, int]:
    """(guids stored, item rows, duplicate links, duplicate (feed, guid) sources)."""
    guids = {str(r[0]).removeprefix("guid:") for r in db_rows(db, "SELECT dedup_key FROM item_source")}
    items = int(db_rows(db, "SELECT count(*) FROM item")[0][0])
    dup_links = int(db_rows(db, "SELECT count(*) FROM (SELECT link FROM item GROUP BY link HAVING count(*) > 1)")[0][0])
    dup_sources = int(
        db_rows(
            db,
            "SELECT count(*) FROM (SELECT feed_id, dedup_key FROM item_source GROUP BY 1, 2 HAVING count(*) > 1)",
        )[0][0]
    )
    return guids, items, dup_links, dup_sources


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CRASH_SEED", "20240611")))
    db = tmp_path / "tracker.db"
    log = tmp_path / "daemon.log"
    began = time.monotonic()
    with FeedFarm(feeds=FEEDS, items=4, latency=0.08) as farm:
        config = tmp_path / "feeds.yaml"
        write_config(config, farm.urls())
        env = dict(os.environ, TRACKER_CONFIG=str(config), TRACKER_DATABASE_URL=f"sqlite:///{db}")
        subprocess.run([*TRACKER, "init"], env=env, check=True, capture_output=True, timeout=60)

        mid_cycle = 0  # kills that left feeds leased: the process died with fetches in flight
        with_items = 0  # kills after which the database held items (the daemon had been writing)
        for k in range(KILLS):
            farm.change(rng.uniform(0.2, 0.6), rng, count=rng.randint(1, 3))
            proc = start(env, log)
            time.sleep(rng.uniform(0.6, 1.6))
            farm.change(rng.uniform(0.1, 0.4), rng, count=1)  # feeds change while it runs, too
            if k % 2:  # every other kill lands while this process holds leases: fetches in flight
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and not leased_by(db, proc.pid):
                    time.sleep(0.01)
                time.sleep(rng.uniform(0.0, 0.15))
            else:  # the others at any moment: start-up, mid-cycle, writing, idle between cycles
                time.sleep(rng.uniform(0.0, 1.2))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kill_group(proc)
            mid_cycle += bool(leased_by(db, proc.pid))
            with_items += bool(db_rows(db, "SELECT 1 FROM item LIMIT 1"))
            guids, _items, dup_links, dup_sources = stored(db)
            assert dup_links == 0 and dup_sources == 0, "an item was stored twice"
            assert guids <= farm.all_items()

        # A final, clean run must pick up everything, including what the last kill left leased.
        proc = start(env, log)
        expected = farm.all_items()
        deadline = time.monotonic() + 45
        try:
            # wait for this process's own first cycle (its start line names it), then for every item
            while time.monotonic() < deadline and f":{proc.pid}" not in log.read_text(errors="replace"):
                time.sleep(0.2)
            while time.monotonic() < deadline:
                if stored(db)[0] >= expected:
                    break
                time.sleep(0.3)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(40)
            kill_group(proc)

    guids, items, dup_links, dup_sources = stored(db)
    refetched = db_rows(db, "SELECT count(*) FROM fetch_log WHERE outcome = 'ok'")[0][0]
    leases_left = db_rows(db, "SELECT count(*) FROM feed WHERE lease_owner IS NOT NULL")[0][0]
    missing = expected - guids
    print(
        f"\ncrash test: {KILLS} SIGKILLs ({mid_cycle} with feeds in flight, {with_items} after items were stored), "
        f"{len(expected)} farm items expected, {len(guids)} found ({items} item rows), "
        f"{len(missing)} missing, {dup_links + dup_sources} duplicates; {refetched} full fetches; "
        f"clean stop exit {code}; {time.monotonic() - began:.0f} s"
    )
    assert code == 0
    assert not missing, f"lost items: {sorted(missing)[:5]}"
    assert guids == expected
    assert items == len(expected)  # one row per article, none twice
    assert dup_links == 0 and dup_sources == 0
    assert leases_left == 0
    assert mid_cycle >= KILLS // 3, "too few kills landed while feeds were in flight to prove anything"
