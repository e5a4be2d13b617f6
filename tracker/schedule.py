"""When is a feed due next?  Pure: everything, including ``now`` and the random draw, is passed in.

Rules, in the order ``next_due`` applies them:

1. **Gone** (HTTP 410): ``now + backoff_max``.  The caller disables the feed; this only keeps the
   column meaningful.
2. **Error with Retry-After** (429/503): exactly ``now + retry_after`` — never earlier, no jitter —
   capped at ``backoff_max`` so a nonsense header cannot park a feed for a year.
3. **Other errors**: exponential backoff, ``backoff_base * 2**(consecutive_failures - 1)`` capped at
   ``backoff_max`` (5 min, 10, 20, ... 24 h), then jitter (rule 7).
4. **Success** (ok / not modified), base interval:
   a. the feed's configured ``interval`` when set (an operator's explicit choice: not capped by
      ``max_interval``, only floored by ``min_interval``); otherwise
   b. adaptive: ``items_per_poll / rate`` — about two polls per new item with the default 0.5 —
      where ``rate`` is new items per day, given directly or estimated from recent publish times
      (``item_rate``).  No information → ``default_interval``; a silent feed (rate 0) → ``max_interval``.
5. **Clamp** the adaptive interval to ``[min_interval, max_interval]``.
6. **Ask the server**: never sooner than RSS ``<ttl>`` or Cache-Control ``max-age``, but those are
   themselves capped at ``max_interval`` (a feed asking for a week is still checked every 6 h).
7. **Jitter**: multiply by ``1 + jitter * (2 * rand - 1)`` (±10 % by default) so feeds added together
   drift apart; the result is never below the floor of rules 4a/5/6 (``min_interval``, ttl, max-age):
   jitter may only delay a feed past what the server asked, never bring it forward.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from urllib.parse import urlsplit

MAX_BACKOFF_EXPONENT = 30  # 2**30 × 5 min is far past any cap; keeps the arithmetic finite


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    """Polling policy.  Durations are timedeltas; plain numbers are accepted as seconds."""

    default_interval: timedelta = timedelta(minutes=30)  # when nothing is known about the feed
    min_interval: timedelta = timedelta(minutes=5)  # politeness floor for busy feeds
    max_interval: timedelta = timedelta(hours=6)  # quiet feeds are still checked this often
    jitter: float = 0.1  # fraction: ±10 %
    backoff_base: timedelta = timedelta(minutes=5)  # first retry after a failure
    backoff_max: timedelta = timedelta(hours=24)  # longest wait after repeated failures
    items_per_poll: float = 0.5  # adaptive target: new items expected per poll
    rate_window: timedelta = timedelta(days=7)  # publish times older than this don't count

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("jitter", "items_per_poll"):
                continue
            if isinstance(value, int | float):
                object.__setattr__(self, f.name, timedelta(seconds=value))
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if self.min_interval > self.max_interval:
            raise ValueError("min_interval must not exceed max_interval")


def _seconds(value: float | timedelta | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def backoff(consecutive_failures: int, settings: ScheduleSettings) -> timedelta:
    """Wait after the n-th failure in a row (n >= 1): base, 2×base, 4×base, ... up to backoff_max."""
    n = min(max(consecutive_failures, 1) - 1, MAX_BACKOFF_EXPONENT)
    return min(settings.backoff_base * (2**n), settings.backoff_max)


def item_rate(published: Iterable[datetime], *, now: datetime, window: timedelta = timedelta(days=7)) -> float:
    """New items per day from publish times: the items of the last ``window`` over the span they cover.

    The span is at least one day, so a first fetch that finds 30 items from the last hour reads as
    30 a day, not 720.  Future dates (clock skew) count as now.
    """
    start = now - window
    recent = [min(t, now) for t in published if t >= start]
    if not recent:
        return 0.0
    span_days = max((now - min(recent)).total_seconds() / 86400, 1.0)
    return len(recent) / span_days


def adaptive_interval(rate: float | None, settings: ScheduleSettings) -> timedelta:
    """Interval from the publishing rate (items/day), clamped to [min_interval, max_interval]."""
    if rate is None:
        base = settings.default_interval
    elif rate <= 0:
        base = settings.max_interval
    else:
        base = timedelta(days=settings.items_per_poll / rate)
    return min(max(base, settings.min_interval), settings.max_interval)


def next_due(
    *,
    now: datetime,
    outcome: str,
    consecutive_failures: int,
    interval: float | timedelta | None,
    recent_item_rate: float | Iterable[datetime] | None,
    ttl_minutes: int | None,
    max_age: float | None,
    retry_after: float | None,
    settings: ScheduleSettings,
    rand: float = 0.5,
) -> datetime:
    """When to fetch this feed again; the rules and their order are in the module docstring.

    ``interval`` (seconds or timedelta) is the feed's configured interval, ``recent_item_rate`` new
    items per day or the publish times of its recent entries, ``max_age``/``retry_after`` seconds,
    ``rand`` a uniform draw in [0, 1) for the jitter.
    """
    s = settings
    # 1. gone
    if outcome == "gone":
        return now + s.backoff_max
    failed = outcome not in ("ok", "not_modified")
    # 2. Retry-After: exactly as asked
    if failed and retry_after is not None:
        return now + min(timedelta(seconds=max(retry_after, 0.0)), s.backoff_max)
    # 3. backoff
    if failed:
        return now + _jittered(backoff(consecutive_failures, s), timedelta(0), s.jitter, rand)
    # 4. base interval: configured, else adaptive (5. clamped)
    configured = _seconds(interval)
    if configured is not None and configured > 0:
        delay = max(timedelta(seconds=configured), s.min_interval)
    else:
        if recent_item_rate is None or isinstance(recent_item_rate, int | float):
            rate = recent_item_rate
        else:
            rate = item_rate(recent_item_rate, now=now, window=s.rate_window)
        delay = adaptive_interval(rate, s)
    floor = s.min_interval
    # 6. never sooner than the server asks (its ask capped at max_interval)
    asked = max(ttl_minutes * 60.0 if ttl_minutes else 0.0, max_age or 0.0)
    if asked > 0:
        asked_delta = min(timedelta(seconds=asked), s.max_interval)
        floor = max(floor, asked_delta)
        delay = max(delay, asked_delta)
    # 7. jitter, never below the floor
    return now + _jittered(delay, floor, s.jitter, rand)


def _jittered(delay: timedelta, floor: timedelta, jitter: float, rand: float) -> timedelta:
    factor = 1.0 + jitter * (2.0 * min(max(rand, 0.0), 1.0) - 1.0)
    return max(delay * factor, floor)


def interleave_hosts(urls: Sequence[str]) -> list[int]:
    """An order for fetching ``urls`` (indices) that takes their hosts in turn, keeping each host's
    own order: a cycle's concurrent fetches spread over hosts instead of queueing behind one host's
    politeness limit, and each host needs fewer simultaneous connections."""
    by_host: dict[str, list[int]] = {}
    for i, url in enumerate(urls):
        by_host.setdefault(urlsplit(url).netloc.lower(), []).append(i)
    rounds = itertools.zip_longest(*by_host.values())
    return [i for turn in rounds for i in turn if i is not None]
