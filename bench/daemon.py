"""Memory of a long-running `tracker run` with many feeds: RSS after each full polling cycle.

    python bench/daemon.py [--feeds 10000] [--items 10] [--cycles 3] [--latency 0.02]

A local feed farm (its own process, so its memory is not counted) serves ``--feeds`` feeds; every
feed is due every cycle and 10 % of them publish new items between cycles.  ``tracker run --no-web``
polls them; after each cycle (every feed polled once more) the script reads the resident memory of
the daemon's main process and, summed, of its parse workers (PSS, so shared pages count once).
Target (issue 5): the daemon stays at or under 150 MB RSS after 3 cycles.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from feedfarm import FeedFarm  # noqa: E402

TARGET_MB = 150.0


def write_config(path: Path, farm: FeedFarm, interval: int) -> None:
    lines = [
        "settings:",
        "  user_agent: tracker-bench/1.0",
        "  concurrency: 50",
        "  per_host_concurrency: 50",
        f"  default_interval: {interval}s",
        f"  min_interval: {interval}s",
        f"  max_interval: {interval}s",
        "feeds:",
    ]
    for i, url in enumerate(farm.urls()):
        lines += [f"  - name: farm {i}", f"    url: {url}"]
    path.write_text("\n".join(lines) + "\n")


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def polls(db: Path) -> int:
    """Fetches done so far (each fetch outcome is one fetch_log row)."""
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return int(conn.execute("SELECT count(*) FROM fetch_log").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def count_items(db: Path) -> int:
    with sqlite3.connect(db, timeout=30) as conn:
        return int(conn.execute("SELECT count(*) FROM item").fetchone()[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feeds", type=int, default=10_000)
    ap.add_argument("--items", type=int, default=10)
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--interval", type=int, default=60, help="each feed's polling interval, seconds")
    ap.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds")
    args = ap.parse_args()

    exe = Path(sys.executable).with_name("tracker")
    with (
        tempfile.TemporaryDirectory(prefix="tracker-bench-daemon-") as tmp,
        FeedFarm(args.feeds, args.items, latency=args.latency, process=True, cache_feeds=args.feeds) as farm,
    ):
        cfg, db = Path(tmp) / "feeds.yaml", Path(tmp) / "tracker.db"
        write_config(cfg, farm, args.interval)
        env = os.environ | {"TRACKER_CONFIG": str(cfg), "TRACKER_DATABASE_URL": f"sqlite:///{db}"}
        subprocess.run([str(exe), "init"], env=env, check=True, capture_output=True)
        print(
            f"tracker run --no-web: {args.feeds} feeds x {args.items} items, {args.latency * 1000:.0f} ms latency, "
            f"every feed due every {args.interval} s; {os.cpu_count()} cores, Python {platform.python_version()}"
        )
        print("| after cycle | seconds | fetches | items stored | main RSS MB | main peak MB | workers PSS MB |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        log = open(Path(tmp) / "daemon.log", "wb")  # noqa: SIM115 - lives as long as the daemon
        proc = subprocess.Popen(
            [str(exe), "run", "--no-web", "--poll-every", "1", "--watch-every", "0", "--log-level", "WARNING"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        began = time.monotonic()
        worst = 0.0
        try:
            for cycle in range(1, args.cycles + 1):
                while polls(db) < cycle * args.feeds:
                    if proc.poll() is not None:
                        raise SystemExit(f"tracker run exited {proc.returncode}; see its log")
                    if time.monotonic() - began > args.timeout:
                        raise SystemExit("timed out")
                    time.sleep(0.5)
                rss = status_kb(proc.pid, "VmRSS") / 1024
                peak = status_kb(proc.pid, "VmHWM") / 1024
                workers = sum(pss_kb(c) for c in children(proc.pid)) / 1024
                worst = max(worst, rss)
                print(
                    f"| {cycle} | {time.monotonic() - began:.0f} | {polls(db)} | {count_items(db)} | "
                    f"{rss:.0f} | {peak:.0f} | {workers:.0f} |",
                    flush=True,
                )
                farm.change(0.1, random.Random(cycle))
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(120)
            log.close()
        verdict = "met" if worst <= TARGET_MB else "NOT met"
        print(f"clean stop exit {code}; main-process RSS max {worst:.0f} MB: target <= {TARGET_MB:.0f} MB {verdict}")


if __name__ == "__main__":
    main()
