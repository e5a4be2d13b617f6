"""Deployment files: docker-compose validates offline; the systemd unit has what it needs."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_compose_file_is_valid_for_docker_compose() -> None:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is not installed (make test installs Debian's docker-compose package)")
    r = subprocess.run([exe, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_compose_services() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert set(services) == {"tracker", "postgres", "mailpit"}
    tracker = services["tracker"]
    assert tracker["depends_on"]["postgres"]["condition"] == "service_healthy"
    env = tracker["environment"]
    assert env["TRACKER_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["TRACKER_SMTP_HOST"] == "mailpit"
    pg = services["postgres"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert any(v.startswith("pgdata:") for v in pg["volumes"])
    assert "pgdata" in doc["volumes"]
    assert {"1025:1025", "8025:8025"} <= set(services["mailpit"]["ports"])


def test_dockerfile_runs_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "\nUSER tracker\n" in text
    assert "HEALTHCHECK" in text and "/healthz" in text


def test_systemd_unit() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "deploy" / "tracker.service")
    svc = unit["Service"]
    assert svc["ExecStart"].endswith("tracker run")
    assert svc["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert svc["KillSignal"] == "SIGTERM"
    assert svc["User"] == "tracker"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
