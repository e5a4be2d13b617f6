"""Baseline data and the pure status-log functions."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tracker.models import TimelineEntry
from tracker.timeline import (
    changes_since,
    daily_counts,
    filter_log,
    latest_status,
    load_baseline,
    load_baseline_events,
    status_log,
    status_to_dict,
)

SEED = Path(__file__).resolve().parents[2] / "shared" / "seed" / "000_2f0dcf65f5bd8081.txt"
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def test_every_passage_is_quoted_from_the_seed() -> None:
    seed = re.sub(r"\s+", " ", SEED.read_text(encoding="utf-8"))
    for event in load_baseline_events():
        assert re.sub(r"\s+", " ", event.passage) in seed, event.slug


def test_baseline_has_every_dated_event_of_the_seed() -> None:
    events = {e.slug: e for e in load_baseline_events()}
    want = {
        "full-scale-invasion": "2022-02",
        "belarus-talks": "2022-02",
        "istanbul-talks": "2022-03",
        "bucha": "2022-04",
        "black-sea-grain-initiative": "2022-07",
        "china-12-point-plan": "2023-02",
        "african-peace-initiative": "2023-06",
        "peace-formula": "2022-11",
        "annexation-of-regions-2022": "2022-09",
        "icc-warrant-putin": "2023-03",
        "crimea-annexation-2014": "2014-03",
    }
    for slug, month in want.items():
        assert slug in events, slug
        assert events[slug].date.isoformat().startswith(month)
    assert events["african-peace-initiative"].date_label == "mid-2023"
    assert events["istanbul-talks"].mediators == ["turkey"]


def item(i: int, days_ago: float, *, mediators: tuple[str, ...] = (), obstacles: tuple[str, ...] = ()) -> TimelineEntry:
    return TimelineEntry(
        kind="item",
        id=f"i:{i}",
        date=NOW - timedelta(days=days_ago),
        date_precision="day",
        date_label="",
        title=f"item {i}",
        summary="",
        sources=(f"feed {i % 2}",),
        mediators=mediators,
        obstacles=obstacles,
    )


def test_status_log_merges_and_orders() -> None:
    items = [item(1, 1, mediators=("turkey",)), item(2, 40, obstacles=("territory",))]
    log = status_log(load_baseline(), items)
    assert [e.date for e in log] == sorted((e.date for e in log), reverse=True)
    assert log[0].id == "i:1"
    assert {e.kind for e in log} == {"baseline", "item"}
    turkey = filter_log(log, mediator="turkey")
    assert {e.id for e in turkey} >= {"i:1", "b:istanbul-talks", "b:black-sea-grain-initiative"}
    assert filter_log(log, since=NOW - timedelta(days=2)) == [items[0]]


def test_latest_status_counts_and_lists_every_key() -> None:
    items = [item(i, d, mediators=("turkey",)) for i, d in enumerate([0.5, 3, 10, 20, 45])]
    status = latest_status(
        status_log(load_baseline(), items),
        now=NOW,
        mediators={"turkey": "Turkey", "qatar": "Qatar"},
        obstacles={"territory": "Territory"},
    )
    t = status.mediators["turkey"]
    assert (t.count_7d, t.count_30d) == (2, 4)
    assert t.latest[0].id == "i:0"
    assert t.last_seen == items[0].date
    assert t.first_seen is not None and t.first_seen.year == 2022  # the baseline counts as first seen
    assert set(t.sources) == {"feed 0", "feed 1"}
    assert status.mediators["qatar"].count_30d == 0
    assert status.mediators["qatar"].headline == "Qatar: no news yet"
    d = status_to_dict(status)
    assert set(d) == {"updated_at", "mediators", "obstacles"}
    assert d["mediators"]["turkey"]["count_7d"] == 2


def test_changes_since_and_daily_counts() -> None:
    items = [item(1, 0.2, obstacles=("territory",)), item(2, 2, obstacles=("territory",)), item(3, 5)]
    assert [e.id for e in changes_since(items, NOW - timedelta(days=3))] == ["i:1", "i:2"]
    counts = daily_counts(items, "territory", now=NOW, days=7)
    assert len(counts) == 7 and counts[-1] == 1 and counts[-3] == 1 and sum(counts) == 2
