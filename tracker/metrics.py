"""Prometheus metrics and the liveness state that ``/healthz`` reports.

One registry per process (not prometheus-client's global one) so that tests can build their own and
so that only tracker's metrics and the standard ``process_*`` ones are exposed.  The daemon feeds
them through ``Poller.on_outcome`` and its jobs; ``tracker.web.ops`` serves them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

if TYPE_CHECKING:
    from tracker.store.ingest import FeedUpdate, WriteCounts

OUTCOMES = ("ok", "not_modified", "error", "gone")
disable_created_metrics()  # the *_created series double the output and no dashboard uses them

FETCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """Every metric tracker exports, on its own registry."""

    def __init__(self, *, process: bool = True) -> None:
        r = self.registry = CollectorRegistry()
        self.polls = Counter("tracker_polls", "Feed fetches by outcome.", ["outcome"], registry=r)
        for outcome in OUTCOMES:
            self.polls.labels(outcome)
        self.items_ingested = Counter("tracker_items_ingested", "New items stored.", registry=r)
        self.items_updated = Counter("tracker_items_updated", "Stored items whose content changed.", registry=r)
        self.items_relevant = Counter(
            "tracker_items_relevant", "New items the tagger marked relevant to the peace process.", registry=r
        )
        self.fetch_seconds = Histogram(
            "tracker_fetch_seconds", "Time to fetch one feed (request to last byte).", buckets=FETCH_BUCKETS, registry=r
        )
        self.cycle_seconds = Histogram(
            "tracker_poll_cycle_seconds",
            "Duration of one poll job (all feeds due at that moment).",
            buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800),
            registry=r,
        )
        self.failing_feeds = Gauge(
            "tracker_failing_feeds", "Enabled feeds whose last fetch failed (whole database).", registry=r
        )
        self.enabled_feeds = Gauge("tracker_enabled_feeds", "Enabled feeds (whole database).", registry=r)
        self.last_poll = Gauge(
            "tracker_last_poll_timestamp_seconds", "Unix time the poll job last made progress.", registry=r
        )
        self.digests_sent = Counter("tracker_digests_sent", "Digest emails accepted by the SMTP server.", registry=r)
        self.digests_failed = Counter("tracker_digests_failed", "Digest deliveries that failed.", registry=r)
        self.config_reloads = Counter("tracker_config_reloads", "Config reloads by result.", ["result"], registry=r)
        for result in ("ok", "invalid"):
            self.config_reloads.labels(result)
        if process:
            ProcessCollector(registry=r)

    def observe(self, feed: str, upd: FeedUpdate, counts: WriteCounts) -> None:
        """``Poller.on_outcome`` hook: one call per feed fetched."""
        self.polls.labels(upd.outcome).inc()
        self.fetch_seconds.observe(max(upd.elapsed, 0.0))
        if counts.new:
            self.items_ingested.inc(counts.new)
        if counts.updated:
            self.items_updated.inc(counts.updated)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


@dataclass
class Liveness:
    """Is the scheduler of this process alive?  The poll job beats on every start, feed and end."""

    stale_after: float = 120.0  # seconds without a beat before /healthz says the scheduler is stuck
    running: bool = False  # a daemon runs in this process
    heartbeat: float | None = None  # time.monotonic() of the last beat
    wall: float | None = None  # time.time() of the last beat
    started: float = field(default_factory=time.monotonic)

    def beat(self) -> None:
        self.heartbeat = time.monotonic()
        self.wall = time.time()

    def check(self, now: float | None = None) -> tuple[bool, str]:
        """(healthy, detail) for /healthz."""
        if not self.running:
            return True, "no scheduler in this process (web only)"
        t = time.monotonic() if now is None else now
        if self.heartbeat is None:
            waited = t - self.started
            return waited < self.stale_after, f"no poll yet ({waited:.0f} s since start)"
        age = t - self.heartbeat
        if age > self.stale_after:
            return False, f"last poll heartbeat {age:.0f} s ago (limit {self.stale_after:.0f} s)"
        return True, f"last poll heartbeat {age:.0f} s ago"


METRICS = Metrics()
LIVENESS = Liveness()
