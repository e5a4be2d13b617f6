"""feeds.yaml validation: errors name the file, the line and the field; the repo's own file is valid."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tracker.config import (
    Config,
    ConfigError,
    DigestConfig,
    FeedConfig,
    GlobalSettings,
    _LineLoader,
    load_config,
    parse_config,
)
from tracker.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "feeds.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_repo_feeds_yaml_is_valid_and_broad() -> None:
    cfg = load_config(ROOT / "feeds.yaml")
    enabled = [f for f in cfg.feeds if f.enabled]
    assert len(enabled) >= 30
    assert {f.language for f in enabled} >= {"en", "uk", "ru", "tr", "fr", "es", "pt", "de"}
    names = " ".join(f.name for f in cfg.feeds)
    for outlet in ("UN News", "Vatican News", "Kyiv Independent", "Ukrainska Pravda", "Meduza", "BBC",
                   "Al Jazeera", "Anadolu", "Deutsche Welle"):  # fmt: skip
        assert outlet in names, outlet
    assert cfg.digests and cfg.digests[0].schedule == "0 7 * * *"


def test_unknown_key_names_file_line_and_field(tmp_path: Path) -> None:
    p = write(tmp_path, "feeds:\n  - name: A\n    url: https://a.example/rss\n    intervall: 5m\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert str(exc.value) == f"{p}:4: feeds[0].intervall: unknown key (check the spelling; see docs/configuration.md)"


def test_bad_url_and_bad_values(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "settings:\n  concurrency: 0\nfeeds:\n  - name: A\n    url: ftp://a.example/rss\n"
        "  - name: B\n    url: https://b.example/\n    interval: soon\n",
    )
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    lines = str(exc.value).splitlines()
    assert lines[0].startswith(f"{p}:2: settings.concurrency: ")
    assert lines[1] == f"{p}:5: feeds[0].url: must be an http:// or https:// URL"
    assert lines[2].startswith(f"{p}:8: feeds[1].interval: 'soon' is not a duration")


def test_duplicate_urls_name_both_lines(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "feeds:\n  - name: A\n    url: https://a.example/rss\n  - name: B\n    url: https://A.example/rss/\n",
    )
    with pytest.raises(ConfigError, match=re.escape(f"{p}:5: feeds[1].url: duplicate feed URL")) as exc:
        load_config(p)
    assert "(first at line 3)" in str(exc.value)


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    p = write(tmp_path, "feeds:\n  - name: A\n    url: [unclosed\n")
    with pytest.raises(ConfigError, match=re.escape(f"{p}:") + r"\d+: invalid YAML"):
        load_config(p)


def test_taxonomy_overrides_are_validated_at_load(tmp_path: Path) -> None:
    p = write(tmp_path, "feeds: []\ntaxonomy:\n  mediators:\n    turkey:\n      strong: 5\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert str(exc.value).startswith(f"{p}:2: taxonomy: mediators.turkey.strong: ")
    ok = write(tmp_path, "feeds: []\ntaxonomy:\n  mediators:\n    turkey:\n      strong: [Ankara format]\n")
    assert load_config(ok).taxonomy == {"mediators": {"turkey": {"strong": ["Ankara format"]}}}


def test_digest_validation(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "feeds: []\ndigests:\n  - name: am\n    recipients: [not-an-email]\n    schedule: '0 7 * *'\n"
        "    timezone: Mars/Base\n",
    )
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    text = str(exc.value)
    assert f"{p}:4: digests[0].recipients: " in text
    assert f"{p}:5: digests[0].schedule: " in text
    assert f"{p}:6: digests[0].timezone: unknown time zone 'Mars/Base'" in text


def test_durations_and_derived_settings(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "settings:\n  read_timeout: 15s\n  min_interval: 2m\n  max_interval: 2h\n  concurrency: 7\n"
        "feeds:\n  - name: A\n    url: https://a.example/rss\n    interval: 1h\n",
    )
    cfg = load_config(p)
    assert cfg.feeds[0].interval == 3600
    assert cfg.fetch_settings().read_timeout == 15 and cfg.fetch_settings().concurrency == 7
    sched = cfg.schedule_settings()
    assert sched.min_interval.total_seconds() == 120 and sched.max_interval.total_seconds() == 7200


def test_environment_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKER_DATABASE_URL", "postgresql://u:p@db/tracker")
    monkeypatch.setenv("TRACKER_SMTP_PASSWORD", "hunter2")
    monkeypatch.setenv("TRACKER_SMTP_PORT", "2525")
    s = Settings()
    assert s.database_url == "postgresql://u:p@db/tracker"
    assert s.smtp_port == 2525
    assert "hunter2" not in repr(s)  # secrets are SecretStr


def test_yaml_features_load_as_safe_load_does(tmp_path: Path) -> None:
    text = (
        "base: &b {language: en, enabled: true}\n"
        "feeds:\n"
        "  - <<: *b\n"
        "    name: !!str 2024\n"
        "    url: https://a.example/rss\n"
        "    interval: 90\n"
        "  - {name: 'B', url: \"https://b.example/rss\", language: null, interval: 1.5e+3}\n"
        "taxonomy: {}\n"
    )
    doc = yaml.load(text, Loader=_LineLoader)
    assert doc == yaml.safe_load(text)
    assert doc["feeds"][0]["name"] == "2024" and doc["feeds"][1]["interval"] == 1500.0
    assert doc["feeds"].lines == [3, 7] and doc["feeds"][0].lines["url"] == 5
    with pytest.raises(ConfigError, match=r"feeds.yaml:2: invalid YAML: duplicate key 'name'"):
        parse_config("feeds:\n  - {name: A, name: B}\n")


def test_check_command_exits_2_with_the_message(tmp_path: Path) -> None:
    p = write(tmp_path, "feeds:\n  - name: A\n    url: https://a.example/rss\n    colour: red\n")
    r = subprocess.run([sys.executable, "-m", "tracker", "--config", str(p), "check"], capture_output=True, text=True)
    assert r.returncode == 2
    assert f"{p}:4: feeds[0].colour: unknown key" in r.stderr.replace("\n", "")
    ok = subprocess.run(
        [sys.executable, "-m", "tracker", "check"],
        capture_output=True,
        text=True,
        env={"TRACKER_CONFIG": str(ROOT / "feeds.yaml"), "PATH": "/usr/bin:/bin"},
    )
    assert ok.returncode == 0 and "ok" in ok.stdout


def test_every_setting_is_documented() -> None:
    docs = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    models: list[type] = [Config, FeedConfig, GlobalSettings, DigestConfig]
    for model in models:
        for name in model.model_fields:  # type: ignore[attr-defined]
            assert f"`{name}`" in docs, f"{model.__name__}.{name} is not documented"
    for name in Settings.model_fields:
        assert f"TRACKER_{name.upper()}" in docs, name
