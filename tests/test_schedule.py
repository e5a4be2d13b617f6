"""The scheduling rules, one by one, in the order the module documents them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tracker.schedule import ScheduleSettings, adaptive_interval, backoff, interleave_hosts, item_rate, next_due

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
S = ScheduleSettings()
NO_JITTER = 0.5  # rand=0.5 → factor 1.0


def due(**kw: Any) -> timedelta:
    args: dict[str, Any] = {
        "now": NOW,
        "outcome": "ok",
        "consecutive_failures": 0,
        "interval": None,
        "recent_item_rate": None,
        "ttl_minutes": None,
        "max_age": None,
        "retry_after": None,
        "settings": S,
        "rand": NO_JITTER,
    }
    args.update(kw)
    return next_due(**args) - NOW


# 1. gone


def test_gone_waits_backoff_max_whatever_else_is_said() -> None:
    assert due(outcome="gone", retry_after=30, recent_item_rate=500.0) == S.backoff_max


# 2. Retry-After


@pytest.mark.parametrize("rand", [0.0, 0.5, 0.999])
def test_retry_after_is_honoured_exactly_without_jitter(rand: float) -> None:
    assert due(outcome="error", consecutive_failures=1, retry_after=120, rand=rand) == timedelta(seconds=120)


def test_retry_after_wins_over_a_longer_backoff() -> None:
    # the 6th failure would back off 160 min; the server said 90 s
    assert backoff(6, S) > timedelta(minutes=90)
    assert due(outcome="error", consecutive_failures=6, retry_after=90) == timedelta(seconds=90)


def test_retry_after_is_capped_at_backoff_max() -> None:
    assert due(outcome="error", consecutive_failures=1, retry_after=90 * 86400) == S.backoff_max


def test_retry_after_is_ignored_on_success() -> None:
    assert due(outcome="ok", retry_after=10) == S.default_interval


# 3. backoff


def test_backoff_doubles_per_failure_and_caps() -> None:
    waits = [backoff(n, S) for n in range(1, 12)]
    assert waits[0] == S.backoff_base
    for a, b in itertools.pairwise(waits):
        assert b == min(2 * a, S.backoff_max)
    assert waits[-1] == S.backoff_max
    assert backoff(10_000, S) == S.backoff_max  # no overflow


def test_error_without_retry_after_backs_off_with_jitter() -> None:
    for n in (1, 3, 5):
        assert due(outcome="error", consecutive_failures=n) == backoff(n, S)
        low = due(outcome="error", consecutive_failures=n, rand=0.0)
        high = due(outcome="error", consecutive_failures=n, rand=1.0)
        assert low == backoff(n, S) * (1 - S.jitter)
        assert high == backoff(n, S) * (1 + S.jitter)


def test_zero_failures_on_error_counts_as_first_failure() -> None:
    assert due(outcome="error", consecutive_failures=0) == S.backoff_base


# 4a. configured interval


def test_configured_interval_replaces_adaptive_and_is_not_capped() -> None:
    assert due(interval=3600, recent_item_rate=1000.0) == timedelta(hours=1)
    long = S.max_interval * 2
    assert due(interval=long, recent_item_rate=1000.0) == long
    assert due(interval=timedelta(minutes=45)) == timedelta(minutes=45)


def test_configured_interval_is_floored_at_min_interval() -> None:
    assert due(interval=10) == S.min_interval


# 4b/5. adaptive


def test_busier_feeds_are_polled_more_often() -> None:
    waits = [due(recent_item_rate=r) for r in (200.0, 48.0, 24.0, 6.0, 1.0, 0.1)]
    assert waits == sorted(waits)
    assert waits[0] < waits[-1]
    assert all(S.min_interval <= w <= S.max_interval for w in waits)


def test_adaptive_interval_targets_items_per_poll() -> None:
    rate = 12.0  # items per day → 0.5 item per poll means one poll every hour
    assert adaptive_interval(rate, S) == timedelta(days=S.items_per_poll / rate)
    assert due(recent_item_rate=rate) == timedelta(hours=1)


def test_adaptive_extremes_clamp() -> None:
    assert due(recent_item_rate=100_000.0) == S.min_interval
    assert due(recent_item_rate=0.0) == S.max_interval
    assert due(recent_item_rate=None) == S.default_interval


def test_not_modified_schedules_like_ok() -> None:
    assert due(outcome="not_modified", recent_item_rate=12.0) == due(outcome="ok", recent_item_rate=12.0)


def test_publish_times_give_the_same_answer_as_the_rate() -> None:
    times = [NOW - timedelta(hours=6 * k) for k in range(20)]  # 4 a day for 5 days
    rate = item_rate(times, now=NOW)
    assert rate == pytest.approx(20 / (19 * 6 / 24))
    assert due(recent_item_rate=times) == due(recent_item_rate=rate)


def test_item_rate_window_span_and_future_dates() -> None:
    old = [NOW - timedelta(days=30 + k) for k in range(50)]
    assert item_rate(old, now=NOW) == 0.0  # nothing recent: a quiet feed
    burst = [NOW - timedelta(minutes=k) for k in range(30)]
    assert item_rate(burst, now=NOW) == 30.0  # span floored at a day
    future = [NOW + timedelta(days=2)]
    assert item_rate(future, now=NOW) == 1.0
    assert item_rate([], now=NOW) == 0.0
    assert item_rate(burst, now=NOW, window=timedelta(minutes=9, seconds=30)) == 10.0


# 6. ttl and max-age


def test_ttl_is_a_floor() -> None:
    busy = due(recent_item_rate=500.0)
    assert busy < timedelta(minutes=90)
    assert due(recent_item_rate=500.0, ttl_minutes=90) == timedelta(minutes=90)
    # a ttl shorter than the adaptive interval changes nothing
    assert due(recent_item_rate=1.0, ttl_minutes=10) == due(recent_item_rate=1.0)


def test_max_age_is_a_floor() -> None:
    assert due(recent_item_rate=500.0, max_age=7200) == timedelta(hours=2)
    assert due(recent_item_rate=500.0, max_age=0) == due(recent_item_rate=500.0)


def test_server_asks_are_capped_at_max_interval() -> None:
    assert due(ttl_minutes=7 * 24 * 60) == S.max_interval
    assert due(max_age=30 * 86400) == S.max_interval


# 7. jitter


def test_jitter_is_deterministic_and_bounded() -> None:
    base = due(recent_item_rate=12.0)
    assert due(recent_item_rate=12.0, rand=0.0) == base * (1 - S.jitter)
    assert due(recent_item_rate=12.0, rand=1.0) == base * (1 + S.jitter)
    assert due(recent_item_rate=12.0, rand=0.3) == due(recent_item_rate=12.0, rand=0.3)
    spread = {due(recent_item_rate=12.0, rand=r / 10) for r in range(10)}
    assert len(spread) == 10


def test_jitter_never_goes_below_what_the_server_asked() -> None:
    assert due(recent_item_rate=500.0, ttl_minutes=60, rand=0.0) == timedelta(minutes=60)
    assert due(recent_item_rate=500.0, max_age=3600, rand=0.0) == timedelta(hours=1)
    assert due(recent_item_rate=100_000.0, rand=0.0) == S.min_interval
    assert due(recent_item_rate=500.0, ttl_minutes=60, rand=1.0) == timedelta(minutes=66)


# settings


def test_settings_accept_seconds_and_validate() -> None:
    # plain numbers are seconds (config files give numbers); the annotation says timedelta
    s = ScheduleSettings(default_interval=600, min_interval=60.0, max_interval=3600, jitter=0)  # type: ignore[arg-type]
    assert s.default_interval == timedelta(minutes=10)
    assert s.min_interval == timedelta(minutes=1)
    assert due(settings=s) == timedelta(minutes=10)
    with pytest.raises(ValueError):
        ScheduleSettings(jitter=1.5)
    with pytest.raises(ValueError):
        ScheduleSettings(min_interval=timedelta(hours=7))


def test_tighter_settings_change_the_answer() -> None:
    s = ScheduleSettings(min_interval=timedelta(minutes=1), max_interval=timedelta(hours=1), jitter=0)
    assert due(settings=s, recent_item_rate=100_000.0) == timedelta(minutes=1)
    assert due(settings=s, recent_item_rate=0.0) == timedelta(hours=1)


def test_hosts_take_turns_and_keep_their_own_order() -> None:
    urls = [
        "https://a.example/1",
        "https://a.example/2",
        "https://A.example/3",
        "https://b.example/1",
        "http://c.example:8080/1",
        "https://b.example/2",
        "http://c.example/1",  # another port is another host
    ]
    order = interleave_hosts(urls)
    assert sorted(order) == list(range(len(urls)))
    assert [urls[i] for i in order] == [
        "https://a.example/1",
        "https://b.example/1",
        "http://c.example:8080/1",
        "http://c.example/1",
        "https://a.example/2",
        "https://b.example/2",
        "https://A.example/3",
    ]
    assert interleave_hosts([]) == []
