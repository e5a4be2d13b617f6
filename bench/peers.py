"""Side by side: tracker against the feed readers people would otherwise use, on one local feed farm.

    python bench/peers.py [--feeds 500,1000] [--items 30] [--latency 0.05] [--changed 0.1]
                          [--peers feedparser,httpx,reader,reader-32,rss2email,tracker]
                          [--keep-venvs DIR] [--timeout 300] [--write-docs] [--json FILE]

Every peer gets its own throw-away venv (``python -m venv`` + ``pip install``; with ``--keep-venvs``
they are kept in DIR and reused), and runs in its own process, one process per cycle, against the
same farm (tests/feedfarm.py in its own process: N feeds × M items over 127.0.0.1..50, 50 ms per
response, ETag / Last-Modified / gzip).  The farm is restarted for each peer with the same epoch and
the same random seed, so every peer sees byte-identical feeds and the same 10 % of feeds change.

Per peer: setup (not timed: register the feeds), then three timed cycles — cold, unchanged, and
after ``--changed`` of the feeds got a new item.  Per cycle: wall s, CPU s (user+sys of the process
tree, from ``os.wait4``), peak RSS, requests and 304s (farm counters, reset per cycle), and items
in the peer's own storage vs items the farm publishes.  Peers run strictly one after another and
every process is killed after ``--timeout`` seconds, so a run always ends by itself.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import platform
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent / "peer_scripts"
DOCS = ROOT / "docs" / "benchmarks.md"
sys.path.insert(0, str(ROOT / "tests"))

from feedfarm import FeedFarm  # noqa: E402

CYCLES = ("cold", "unchanged", "changed")
SECTION = "## Peers"
BASE_PYTHON = Path(getattr(sys, "_base_executable", sys.executable))


# --- peers ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """One contender: which venv it needs, how to set it up, how to run one cycle, how to count."""

    name: str
    label: str  # for the tables
    venv: str  # "" = tracker's own /work/main/.venv
    packages: tuple[str, ...]
    group: str  # variants of one program share a group ("reader" at 1 and 32 workers)


PEERS: dict[str, Peer] = {
    p.name: p
    for p in (
        Peer("feedparser", "feedparser loop (sequential)", "feedparser", ("feedparser",), "feedparser"),
        Peer("httpx", "httpx + feedparser (async, 50)", "httpx", ("httpx", "feedparser"), "httpx"),
        # reader 3.26's vendored feedparser imports sgmllib, which feedparser 6.0.14 no longer pulls in
        Peer("reader", "reader (workers=1)", "reader", ("reader", "sgmllib3k"), "reader"),
        Peer("reader-32", "reader (workers=32)", "reader", ("reader", "sgmllib3k"), "reader"),
        Peer("rss2email", "rss2email (r2e run --no-send)", "rss2email", ("rss2email",), "rss2email"),
        Peer("tracker", "tracker poll --once --all", "", (), "tracker"),
    )
}
VERSION_OF = {  # distributions whose versions the report names, per venv
    "feedparser": ("feedparser",),
    "httpx": ("httpx", "feedparser"),
    "reader": ("reader", "requests", "sgmllib3k"),
    "rss2email": ("rss2email", "feedparser", "html2text"),
    "": ("tracker", "feedparser", "httpx", "sqlalchemy"),
}


class Venvs:
    """Creates (or reuses, with a keep dir) one venv per peer package set."""

    def __init__(self, keep: Path | None, tmp: Path, timeout: float) -> None:
        self.root = keep if keep is not None else tmp / "venvs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self.versions: dict[str, dict[str, str]] = {}

    def python(self, peer: Peer) -> Path:
        if not peer.venv:
            return ROOT / ".venv" / "bin" / "python"
        venv = self.root / peer.venv
        marker = venv / ".bench-packages"
        wanted = " ".join(peer.packages)
        if not (marker.exists() and marker.read_text() == wanted and (venv / "bin" / "python").exists()):
            print(f"# creating venv {venv} ({wanted})", flush=True)
            subprocess.run([str(BASE_PYTHON), "-m", "venv", str(venv)], check=True, timeout=self.timeout)
            subprocess.run(
                [
                    str(venv / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    *peer.packages,
                ],
                check=True,
                timeout=self.timeout,
            )
            marker.write_text(wanted)
        return venv / "bin" / "python"

    def record_versions(self, peer: Peer, python: Path) -> None:
        if peer.venv in self.versions:
            return
        code = (
            "import importlib.metadata as m, json, platform, sys\n"
            "out = {'python': platform.python_version()}\n"
            "for d in sys.argv[1:]:\n"
            "    try: out[d] = m.version(d)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))"
        )
        out = subprocess.run(
            [str(python), "-c", code, *VERSION_OF[peer.venv]], capture_output=True, text=True, timeout=60, check=True
        )
        self.versions[peer.venv] = json.loads(out.stdout)


@dataclass
class Cycle:
    feeds: int
    peer: str
    cycle: str
    wall: float
    cpu: float
    rss_mb: float
    requests: int
    not_modified: int
    stored: int
    published: int
    status: str = "ok"  # ok | exit N | timeout
    note: str = ""

    @property
    def cpu_ms_per_item(self) -> float | None:
        return self.cpu / self.stored * 1000 if self.stored else None


@dataclass
class Workspace:
    """Where one peer keeps its state for one farm size, and the commands that use it."""

    peer: Peer
    python: Path
    dir: Path
    urls_file: Path
    farm: FeedFarm
    setup: list[list[str]] = field(default_factory=list)

    def cycle_cmd(self) -> list[str]:
        p, d = self.peer.name, self.dir
        py = str(self.python)
        if p == "feedparser":
            return [py, str(SCRIPTS / "feedparser_loop.py"), str(self.urls_file), str(d / "items.db")]
        if p == "httpx":
            return [py, str(SCRIPTS / "httpx_loop.py"), str(self.urls_file), str(d / "state.db"), "50"]
        if p in ("reader", "reader-32"):
            workers = "32" if p == "reader-32" else "1"
            return [py, str(SCRIPTS / "reader_run.py"), str(d / "reader.db"), "update", workers]
        if p == "rss2email":
            return [
                str(self.python.with_name("r2e")),
                "-c",
                str(d / "r2e.cfg"),
                "-d",
                str(d / "r2e.json"),
                "run",
                "--no-send",
            ]
        if p == "tracker":
            return [*self.tracker(), "poll", "--once", "--all"]
        raise ValueError(p)

    def tracker(self) -> list[str]:
        return [str(self.python.with_name("tracker")), "--config", str(self.dir / "feeds.yaml"), "--db", self.db_url()]

    def db_url(self) -> str:
        return f"sqlite:///{self.dir / 'tracker.db'}"

    def prepare(self) -> list[list[str]]:
        """Write the peer's inputs and return its (untimed) setup commands."""
        p, d, py = self.peer.name, self.dir, str(self.python)
        if p in ("reader", "reader-32"):
            return [[py, str(SCRIPTS / "reader_run.py"), str(d / "reader.db"), "add", str(self.urls_file)]]
        if p == "rss2email":
            # `r2e opmlimport` is rss2email's own bulk `r2e add`: one process instead of N.
            outlines = "".join(
                f'<outline type="rss" text="farm-{i}" xmlUrl="{url}"/>\n' for i, url in enumerate(self.farm.urls())
            )
            (d / "feeds.opml").write_text(
                f'<?xml version="1.0"?>\n<opml version="1.0"><body>\n{outlines}</body></opml>\n'
            )
            r2e = [str(self.python.with_name("r2e")), "-c", str(d / "r2e.cfg"), "-d", str(d / "r2e.json")]
            return [[*r2e, "new", "bench@example.invalid"], [*r2e, "opmlimport", str(d / "feeds.opml")]]
        if p == "tracker":
            lines = ["settings:", "  user_agent: tracker-bench/1.0", "  concurrency: 50", "feeds:"]
            for i, url in enumerate(self.farm.urls()):
                lines += [f"  - name: farm {i}", f"    url: {url}"]
            (d / "feeds.yaml").write_text("\n".join(lines) + "\n")
            return [[*self.tracker(), "init"]]
        return []

    def stored(self) -> int:
        """Items in the peer's own storage (read after the cycle, outside the timed window)."""
        p, d = self.peer.name, self.dir
        if p == "feedparser":
            return _sqlite_count(d / "items.db", "SELECT count(*) FROM items")
        if p == "httpx":
            return _sqlite_count(d / "state.db", "SELECT count(*) FROM items")
        if p in ("reader", "reader-32"):
            return _sqlite_count(d / "reader.db", "SELECT count(*) FROM entries")
        if p == "rss2email":
            path = d / "r2e.json"
            if not path.exists():
                return 0
            data = json.loads(path.read_text())
            return sum(len(f.get("seen") or {}) for f in data.get("feeds", []))
        if p == "tracker":
            # item_source = one row per (feed, entry); item merges cross-feed duplicates.
            return _sqlite_count(d / "tracker.db", "SELECT count(*) FROM item_source")
        raise ValueError(p)


def _sqlite_count(path: Path, sql: str) -> int:
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as conn:
        try:
            return int(conn.execute(sql).fetchone()[0])
        except sqlite3.OperationalError:
            return 0


# --- running one process, bounded ----------------------------------------------------------------


@dataclass
class Run:
    wall: float
    cpu: float
    rss_mb: float
    status: str
    output: str


def run_bounded(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float, log: Path) -> Run:
    """Run ``cmd`` in its own session; CPU and peak RSS come from ``wait4`` (its whole reaped tree)."""
    with log.open("ab") as out:
        out.write(("$ " + " ".join(cmd) + "\n").encode())
        out.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen never waits for it again
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers the peer left behind
    code = proc.returncode
    state = "timeout" if timed_out.is_set() else ("ok" if code == 0 else f"exit {code}")
    text = log.read_text(errors="replace")
    last = text[text.rfind("$ ") :].splitlines()[1:]
    return Run(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        rss_mb=usage.ru_maxrss / 1024,
        status=state,
        output="\n".join(last[-15:]),
    )


def clean_env() -> dict[str, str]:
    """The environment minus anything that would point a peer elsewhere (TRACKER_*, proxies, venvs)."""
    drop = ("TRACKER_", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop) and "proxy" not in k.lower()}
    env["NO_PROXY"] = "*"
    return env


@contextlib.contextmanager
def farm_for(args: argparse.Namespace, feeds: int, epoch: float) -> Iterator[FeedFarm]:
    with FeedFarm(feeds, args.items, latency=args.latency, process=True, epoch=epoch, hosts=args.hosts) as farm:
        yield farm


def bench_peer(
    peer: Peer,
    feeds: int,
    args: argparse.Namespace,
    venvs: Venvs,
    tmp: Path,
    epoch: float,
    emit: Callable[[Cycle], None],
) -> list[Cycle]:
    """Setup + the three cycles for one peer at one farm size, on a fresh farm."""
    python = venvs.python(peer)
    venvs.record_versions(peer, python)
    work = tmp / f"{peer.name}-{feeds}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    env = clean_env()
    log = work / "output.log"
    out: list[Cycle] = []
    with farm_for(args, feeds, epoch) as farm:
        urls = work / "urls.txt"
        urls.write_text("\n".join(farm.urls()) + "\n")
        ws = Workspace(peer, python, work, urls, farm)
        for cmd in ws.prepare():
            r = run_bounded(cmd, work, env, args.timeout, log)
            if r.status != "ok":
                print(f"# {peer.name} setup failed ({r.status}): {' '.join(cmd)}\n{r.output}", flush=True)
                return [Cycle(feeds, peer.name, "setup", r.wall, r.cpu, r.rss_mb, 0, 0, 0, 0, r.status, r.output)]
        rng = random.Random(args.seed)
        for name in CYCLES:
            if name == "changed":
                farm.change(args.changed, rng, now=epoch + 600)
            farm.reset_stats()
            r = run_bounded(ws.cycle_cmd(), work, env, args.timeout, log)
            stats = farm.stats()
            c = Cycle(
                feeds=feeds,
                peer=peer.name,
                cycle=name,
                wall=r.wall,
                cpu=r.cpu,
                rss_mb=r.rss_mb,
                requests=int(stats["requests"]) - 1,  # the stats request counts itself
                not_modified=int(stats["not_modified"]),
                stored=ws.stored(),
                published=len(farm.all_items()),
                status=r.status,
                note="" if r.status == "ok" else r.output,
            )
            out.append(c)
            emit(c)
            if r.status != "ok":
                print(f"# {peer.name} {name} cycle {r.status}; output tail:\n{r.output}", flush=True)
                break
    return out


# --- reporting -----------------------------------------------------------------------------------

HEADER = (
    "| feeds | peer | cycle | wall s | CPU s | peak RSS MB | requests | 304s | stored / published | CPU ms/item |\n"
    "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def row(c: Cycle) -> str:
    per = c.cpu_ms_per_item
    status = "" if c.status == "ok" else f" **{c.status}**"
    return (
        f"| {c.feeds:,} | {PEERS[c.peer].label}{status} | {c.cycle} | {c.wall:.2f} | {c.cpu:.2f} | {c.rss_mb:.0f} | "
        f"{c.requests:,} | {c.not_modified:,} | {c.stored:,} / {c.published:,} | "
        f"{'' if per is None else f'{per:.2f}'} |"
    )


def _find(cycles: list[Cycle], feeds: int, peer: str, cycle: str) -> Cycle | None:
    for c in cycles:
        if c.feeds == feeds and c.peer == peer and c.cycle == cycle and c.status == "ok":
            return c
    return None


def ratio_table(cycles: list[Cycle], sizes: list[int]) -> list[str]:
    """tracker / peer for wall and CPU, per cycle: below 1 means tracker used less."""
    lines = [
        "| feeds | peer | cold wall | cold CPU | unchanged wall | unchanged CPU | changed wall | changed CPU |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n in sizes:
        for name, peer in PEERS.items():
            if name == "tracker":
                continue
            cells = []
            for cyc in CYCLES:
                t, p = _find(cycles, n, "tracker", cyc), _find(cycles, n, name, cyc)
                for attr in ("wall", "cpu"):
                    if t is None or p is None or not getattr(p, attr):
                        cells.append("–")
                    else:
                        cells.append(f"{getattr(t, attr) / getattr(p, attr):.3f}")
            if any(x != "–" for x in cells):
                lines.append(f"| {n:,} | {peer.label} | " + " | ".join(cells) + " |")
    return lines


def checks(cycles: list[Cycle], sizes: list[int]) -> list[str]:
    """The issue's targets, as PASS/FAIL lines (SKIP when a needed cycle is missing)."""
    out: list[str] = []

    def line(ok: bool | None, text: str) -> None:
        out.append(f"{'SKIP' if ok is None else 'PASS' if ok else 'FAIL'}: {text}")

    for n in sizes:
        t = _find(cycles, n, "tracker", "cold")
        r = _find(cycles, n, "reader", "cold")
        if t and r:
            line(
                r.wall >= 10 * t.wall,
                f"{n:,} feeds: tracker cold {t.wall:.2f} s is {r.wall / t.wall:.1f}x faster "
                f"than reader default {r.wall:.2f} s (target >= 10x)",
            )
        else:
            line(None, f"{n:,} feeds: tracker cold vs reader default (missing cycle)")
        best: dict[str, Cycle] = {}
        for name, peer in PEERS.items():
            c = _find(cycles, n, name, "cold")
            if name != "tracker" and c and (peer.group not in best or c.wall < best[peer.group].wall):
                best[peer.group] = c
        if t and best:
            slowest_margin = min(best.values(), key=lambda c: c.wall)
            beaten = [g for g, c in best.items() if t.wall < c.wall]
            line(
                len(beaten) == len(best),
                f"{n:,} feeds: tracker cold {t.wall:.2f} s faster than every peer at its best "
                f"(fastest peer {PEERS[slowest_margin.peer].label} {slowest_margin.wall:.2f} s; "
                f"beaten {len(beaten)}/{len(best)})",
            )
        else:
            line(None, f"{n:,} feeds: tracker cold vs every peer (missing cycle)")
        f = _find(cycles, n, "feedparser", "cold")
        tp, fp = (t.cpu_ms_per_item if t else None), (f.cpu_ms_per_item if f else None)
        if tp is not None and fp is not None:
            line(tp <= fp, f"{n:,} feeds: tracker CPU per stored item {tp:.2f} ms <= feedparser loop's {fp:.2f} ms")
        else:
            line(None, f"{n:,} feeds: CPU per stored item vs feedparser loop (missing cycle)")
        u = _find(cycles, n, "tracker", "unchanged")
        target = " (target applies at 1,000)" if n != 1000 else ""
        if t and u:
            line(
                u.cpu * 20 <= t.cpu,
                f"{n:,} feeds: tracker unchanged CPU {u.cpu:.2f} s <= 1/20 of cold CPU "
                f"{t.cpu:.2f} s (ratio 1/{t.cpu / u.cpu if u.cpu else float('inf'):.1f}){target}",
            )
        else:
            line(None, f"{n:,} feeds: tracker unchanged vs cold CPU (missing cycle)")
    return out


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        if m:
            cpu = m.group(1).strip()
    ram = "unknown"
    with contextlib.suppress(OSError):
        m = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        if m:
            ram = f"{int(m.group(1)) / 1024 / 1024:.0f} GiB"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "ram": ram, "load": load, "os": platform.platform()}


def section(args: argparse.Namespace, cycles: list[Cycle], sizes: list[int], venvs: Venvs, info: dict[str, str]) -> str:
    versions = "; ".join(
        f"{'tracker venv' if k == '' else k + ' venv'}: " + ", ".join(f"{d} {v}" for d, v in vs.items())
        for k, vs in venvs.versions.items()
    )
    parts = [
        SECTION,
        "",
        f"Run {info['date']} by `python bench/peers.py --feeds {','.join(map(str, sizes))} --items {args.items} "
        f"--latency {args.latency} --write-docs`. Machine: {info['nproc']} cores ({info['cpu']}), {info['ram']} RAM, "
        f"{info['os']}; load average {info['load']} at start, {info.get('load_end', '?')} at the end "
        "(the cores were shared with other work, so treat "
        "single numbers as ±20 %).",
        "",
        f"Versions — {versions}.",
        "",
        f"Farm: tests/feedfarm.py in its own process, N feeds × {args.items} items (RSS 2.0, ~3 paragraphs of HTML "
        f"each), spread over {args.hosts} loopback addresses, {args.latency * 1000:.0f} ms per response, ETag + "
        f"Last-Modified + gzip; restarted for each peer with the same epoch and seed, so every peer sees the same "
        f"bytes; before the *changed* cycle {args.changed:.0%} of the feeds get one new item. Each cycle is one new "
        "process (interpreter start-up and imports included). CPU = user+sys of the peer's process tree (wait4), "
        "the farm's CPU is not counted. *stored* is read from each peer's own storage after the cycle (tracker: "
        "item_source rows, one per feed entry); *published* is what the farm serves.",
        "",
        "Peers: **feedparser loop** — `feedparser.parse(url)` per URL, sequential, no conditional GET, items into "
        "SQLite; **httpx + feedparser** — httpx.AsyncClient, 50 at a time, ETag/Last-Modified kept in SQLite, "
        "parsing inline; **reader** — `make_reader(db)`, `add_feed` for all (setup), `update_feeds(workers=1|32, "
        "scheduled=False)` (reader's default `scheduled=True` would skip every feed for an hour after the cold "
        "cycle); **rss2email** — `r2e new` + `r2e opmlimport` (setup), `r2e run --no-send` (builds every email, "
        "sends none); **tracker** — `tracker init` (setup), `tracker poll --once --all`, concurrency 50, "
        "per-host 4, default parse processes.",
        "",
        HEADER,
        *[row(c) for c in cycles],
        "",
        "tracker / peer (below 1: tracker took less):",
        "",
        *ratio_table(cycles, sizes),
        "",
        "Targets (issue 8):",
        "",
        *[f"- {x}" for x in checks(cycles, sizes)],
        "",
        "Reproduce: `python bench/peers.py --keep-venvs /tmp/bench-venvs` (add `--peers tracker,reader` for a "
        "subset, `--feeds 50` for a quick look; the scripts each peer runs are in bench/peer_scripts/).",
        "",
    ]
    return "\n".join(parts)


def write_section(text: str, path: Path = DOCS) -> None:
    """Replace only the "## Peers" section (up to the next "## " heading), or append it."""
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    m = re.search(rf"^{re.escape(SECTION)}[ \t]*\n", doc, re.M)
    if m is None:
        doc = doc.rstrip("\n") + "\n\n" + text
    else:
        nxt = re.search(r"^## ", doc[m.end() :], re.M)
        end = m.end() + nxt.start() if nxt else len(doc)
        doc = doc[: m.start()] + text + ("\n" if nxt else "") + doc[end:]
    path.write_text(doc.rstrip("\n") + "\n")


# --- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feeds", default="500,1000", help="comma-separated farm sizes")
    ap.add_argument("--items", type=int, default=30)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--changed", type=float, default=0.1, help="fraction of feeds changed before cycle 3")
    ap.add_argument("--hosts", type=int, default=50, help="loopback addresses the feeds are spread over")
    ap.add_argument("--peers", default=",".join(PEERS), help=f"subset of {','.join(PEERS)}")
    ap.add_argument("--keep-venvs", type=Path, default=None, metavar="DIR", help="create/reuse the venvs in DIR")
    ap.add_argument("--timeout", type=float, default=300, help="seconds before a setup step or cycle is killed")
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--write-docs", action="store_true", help='rewrite the "## Peers" section of docs/benchmarks.md')
    ap.add_argument("--json", type=Path, default=None, help="also write the raw cycles here")
    args = ap.parse_args(argv)
    # An installed tracker has its bytecode compiled; an editable checkout may not (PYTHONDONTWRITEBYTECODE).
    compileall.compile_dir(ROOT / "tracker", quiet=1)
    sizes = [int(x) for x in args.feeds.split(",") if x.strip()]
    names = [x.strip() for x in args.peers.split(",") if x.strip()]
    unknown = [x for x in names if x not in PEERS]
    if unknown:
        ap.error(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")

    info = machine() | {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
    print(f"# {info['date']}; {info['nproc']} cores ({info['cpu']}), {info['ram']} RAM, load {info['load']}")
    print(f"# farm {args.feeds} feeds x {args.items} items, {args.latency * 1000:.0f} ms, {args.hosts} hosts")
    cycles: list[Cycle] = []
    epoch = time.time() - 3600
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory(prefix="tracker-peers-") as tmpdir:
        tmp = Path(tmpdir)
        venvs = Venvs(args.keep_venvs.resolve() if args.keep_venvs else None, tmp, args.timeout)
        for n in sizes:
            for name in names:
                try:
                    cycles += bench_peer(PEERS[name], n, args, venvs, tmp, epoch, lambda c: print(row(c), flush=True))
                except (subprocess.SubprocessError, OSError) as exc:  # a venv that will not build, ...
                    print(f"# {name} at {n} feeds: {type(exc).__name__}: {exc}", flush=True)
                    cycles.append(Cycle(n, name, "setup", 0, 0, 0, 0, 0, 0, 0, "error", str(exc)))
        print()
        print("tracker / peer (below 1: tracker took less):")
        print("\n".join(ratio_table(cycles, sizes)))
        print()
        results = checks(cycles, sizes)
        print("\n".join(results))
        for k, vs in venvs.versions.items():
            print(f"# versions ({k or 'tracker venv'}): {vs}")
        info["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "info": info,
                        "args": vars(args) | {"keep_venvs": str(args.keep_venvs), "json": str(args.json)},
                        "versions": venvs.versions,
                        "cycles": [asdict(c) for c in cycles],
                    },
                    indent=1,
                )
            )
        if args.write_docs:
            write_section(section(args, cycles, sizes, venvs, info))
            print(f"# wrote the {SECTION!r} section of {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
