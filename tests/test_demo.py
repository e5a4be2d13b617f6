"""``tracker demo``: the newcomer's first run, in a real subprocess against its bundled sample feeds.

* it fills the web view and the API with news for several mediators within seconds, and a SIGTERM
  stops it cleanly (exit 0, no lease left);
* the sample feeds are package data: a build of the package (setuptools ``build_py``, what a wheel
  is made from) carries every file ``index.yaml`` names, and the demo server serves them from there,
  not from the source tree.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from localproc import TRACKER, clean_env, free_port, http_get

ROOT = Path(__file__).resolve().parents[1]
DEMO_INDEX = ROOT / "tracker" / "data" / "demo" / "index.yaml"


def demo_files() -> list[str]:
    return [f["file"] for f in yaml.safe_load(DEMO_INDEX.read_text(encoding="utf-8"))["feeds"]]


def test_demo_fills_the_view_for_several_mediators_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "demo.db"
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*TRACKER, "demo", "--port", str(port), "--database", f"sqlite:///{db}", "--log-format", "json"],
            cwd=tmp_path,
            env=clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    status: dict[str, Any] = {}
    try:
        # The first cycle's line first: the view caches its overview for 5 s, so asking mid-cycle
        # would pin a half-filled answer.
        deadline = time.monotonic() + 30
        while (
            time.monotonic() < deadline
            and proc.poll() is None
            and '"event": "cycle"' not in log.read_text(errors="replace")
        ):
            time.sleep(0.1)
        active: list[str] = []
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError):
                code, body = http_get(f"http://127.0.0.1:{port}/api/status")
                if code == 200:
                    status = json.loads(body)
                    active = [k for k, m in status["mediators"].items() if m["new_24h"] > 0]
                    if len(active) >= 4:
                        break
            time.sleep(0.5)
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        assert len(active) >= 4, f"news for only {active} after 30 s:\n{log.read_text(errors='replace')[-3000:]}"
        code, page = http_get(f"http://127.0.0.1:{port}/")
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        exit_code = proc.wait(30)
        stop_seconds = time.monotonic() - stopped_at
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    assert exit_code == 0, log.read_text(errors="replace")[-3000:]
    assert stop_seconds < 15
    # the API: every sample feed polled, none failing, news for several mediators in the last 24 h
    n_feeds = len(demo_files())
    assert status["feeds"]["total"] == status["feeds"]["enabled"] == n_feeds
    assert status["feeds"]["failing"] == 0
    # the web page shows them too
    assert code == 200
    html = page.decode()
    assert sum(status["mediators"][k]["label"] in html for k in active) >= 3
    # its files stay where --database points; the config it wrote lists the local sample feeds
    config = yaml.safe_load((tmp_path / "demo-feeds.yaml").read_text(encoding="utf-8"))
    assert len(config["feeds"]) == n_feeds
    assert all(f["url"].startswith("http://127.0.0.1:") for f in config["feeds"])
    assert not (tmp_path / "data").exists()
    conn = sqlite3.connect(db, timeout=10)
    try:
        items = conn.execute("SELECT count(*) FROM item").fetchone()[0]
        leased = conn.execute("SELECT count(*) FROM feed WHERE lease_owner IS NOT NULL").fetchone()[0]
    finally:
        conn.close()
    assert items >= 20 and leased == 0


def test_demo_feeds_are_package_data_and_served_from_the_installed_package(tmp_path: Path) -> None:
    pytest.importorskip("setuptools", reason="setuptools builds the package here (offline, no wheel download)")
    src, build = tmp_path / "src", tmp_path / "build"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "tracker", src / "tracker", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    r = subprocess.run(
        [sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py", "--build-lib", str(build)],
        cwd=src,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    packaged = {p.name for p in (build / "tracker" / "data" / "demo").iterdir()}
    assert {"index.yaml", *demo_files()} <= packaged

    # Import tracker from the build (nothing of the source tree on the path) and serve every sample feed.
    script = """
import json, urllib.request
import tracker, tracker.demo as demo
out = {"tracker": tracker.__file__, "dir": str(demo.DEMO_DIR), "feeds": {}}
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with demo.DemoFeedServer() as server:
    for f in server.feeds:
        with opener.open(server.url(f), timeout=10) as resp:
            body = resp.read().decode()
        out["feeds"][f.file] = [resp.status, body.count("<item>") + body.count("<entry>")]
print(json.dumps(out))
"""
    r = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=clean_env(PYTHONPATH=str(build)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert Path(out["tracker"]).is_relative_to(build), out["tracker"]
    assert Path(out["dir"]).is_relative_to(build)
    assert set(out["feeds"]) == set(demo_files())
    assert all(status == 200 and entries >= 1 for status, entries in out["feeds"].values()), out["feeds"]
