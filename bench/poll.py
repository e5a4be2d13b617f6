"""Benchmark `tracker poll --once` against a local feed farm: a cold cycle, then an unchanged one.

    python bench/poll.py [--feeds 1000] [--items 30] [--latency 0.05] [--changed 0.1]

Prints wall seconds, CPU seconds (the tracker process and its parse workers), peak RSS, items/s,
requests and 304s per cycle.  The farm runs in its own process so its CPU is not counted.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from feedfarm import FeedFarm  # noqa: E402


@dataclass
class Cycle:
    name: str
    wall: float
    cpu: float
    rss_mb: float
    requests: int
    not_modified: int
    new_items: int
    output: str

    def row(self) -> str:
        rate = self.new_items / self.wall if self.wall else 0.0
        return (
            f"| {self.name} | {self.wall:.2f} | {self.cpu:.2f} | {self.rss_mb:.0f} | {self.requests} | "
            f"{self.not_modified} | {self.new_items} | {rate:,.0f} |"
        )


def write_config(path: Path, farm: FeedFarm, concurrency: int) -> None:
    lines = [
        "settings:",
        "  user_agent: tracker-bench/1.0",
        f"  concurrency: {concurrency}",
        f"  per_host_concurrency: {concurrency}",
        "feeds:",
    ]
    for i, url in enumerate(farm.urls()):
        lines += [f"  - name: farm {i}", f"    url: {url}"]
    path.write_text("\n".join(lines) + "\n")


def tracker_cmd(*args: str) -> list[str]:
    exe = Path(sys.executable).with_name("tracker")
    return [str(exe), *args]


def run_cycle(name: str, cmd: list[str], env: dict[str, str], farm: FeedFarm, db: Path) -> Cycle:
    before_items = count_items(db)
    farm.reset_stats()
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out = (proc.stdout.read() if proc.stdout else "").strip()
    errtext = proc.stderr.read() if proc.stderr else ""
    if status != 0:
        raise SystemExit(f"{name}: tracker exited {status}\n{errtext[-2000:]}")
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # The parse workers are forked children of tracker, reaped before it exits: wait4's figure
    # for tracker already includes their CPU, as does our RUSAGE_CHILDREN delta.
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    stats = farm.stats()
    return Cycle(
        name=name,
        wall=wall,
        cpu=cpu,
        rss_mb=usage.ru_maxrss / 1024,
        requests=int(stats["requests"]),
        not_modified=int(stats["not_modified"]),
        new_items=count_items(db) - before_items,
        output=out.splitlines()[-1] if out else "",
    )


def count_items(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM item").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--items", type=int, default=30)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--changed", type=float, default=0.1, help="fraction of feeds changed before cycle 3")
    args = ap.parse_args()
    # An installed tracker has its bytecode compiled; an editable checkout may not (PYTHONDONTWRITEBYTECODE).
    compileall.compile_dir(ROOT / "tracker", quiet=1)

    with (
        tempfile.TemporaryDirectory(prefix="tracker-bench-") as tmp,
        FeedFarm(args.feeds, args.items, latency=args.latency, process=True) as farm,
    ):
        cfg = Path(tmp) / "feeds.yaml"
        db = Path(tmp) / "tracker.db"
        write_config(cfg, farm, args.concurrency)
        env = os.environ | {"TRACKER_CONFIG": str(cfg), "TRACKER_DATABASE_URL": f"sqlite:///{db}"}
        subprocess.run(tracker_cmd("init"), env=env, check=True, capture_output=True)
        print(
            f"tracker poll --once --all: {args.feeds} feeds x {args.items} items, {args.latency * 1000:.0f} ms "
            f"latency, concurrency {args.concurrency}; {os.cpu_count()} cores, Python {platform.python_version()}"
        )
        print("| cycle | wall s | CPU s | peak RSS MB | requests | 304s | new items | items/s |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        cycles = []
        for name in ("cold", "unchanged", "changed"):
            if name == "changed":
                farm.change(args.changed, random.Random(7))
            c = run_cycle(name, tracker_cmd("poll", "--once", "--all"), env, farm, db)
            cycles.append(c)
            print(c.row(), flush=True)
        cold, unchanged = cycles[0], cycles[1]
        print(f"summary line (cold): {cold.output}")
        ratio = cold.cpu / unchanged.cpu if unchanged.cpu else float("inf")
        print(
            f"cold CPU / unchanged CPU = {ratio:.1f}x; CPU per stored item (cold) = "
            f"{cold.cpu / max(cold.new_items, 1) * 1000:.3f} ms"
        )


if __name__ == "__main__":
    main()
