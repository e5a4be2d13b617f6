"""The pure half of digests: due periods, near-duplicate clustering, sections, rendering, headers."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default

import pytest

from tracker import digest as dg
from tracker.models import Evidence, TimelineEntry

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)  # 11:30 in Kyiv (UTC+2 in November)
SPEC = dg.DigestSpec(name="daily", recipients=("ana@example.org",), schedule="0 7 * * *", timezone="Europe/Kyiv")


def entry(
    n: int,
    title: str,
    sources: tuple[str, ...] = ("Reuters",),
    *,
    mediators: tuple[str, ...] = (),
    obstacles: tuple[str, ...] = (),
    phrases: tuple[str, ...] = (),
    hours_ago: float = 3,
    link: str | None = "default",
    score: float = 0.7,
) -> TimelineEntry:
    return TimelineEntry(
        kind="item",
        id=f"i:{n}",
        date=NOW - timedelta(hours=hours_ago),
        date_precision="day",
        date_label="",
        title=title,
        summary=f"Report number {n} about {title}.",
        link=f"https://news.example/{n}" if link == "default" else link,
        sources=sources,
        mediators=mediators,
        obstacles=obstacles,
        evidence=tuple(Evidence(mediators[0] if mediators else "x", "mediator", p, 0, len(p)) for p in phrases),
        score=score,
    )


# --- periods ------------------------------------------------------------------------------------


def test_last_fire_respects_the_digest_timezone() -> None:
    # 07:00 in Kyiv is 05:00 UTC in winter and 04:00 UTC in summer.
    assert dg.last_fire("0 7 * * *", "Europe/Kyiv", NOW) == datetime(2026, 11, 20, 5, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert dg.last_fire("0 7 * * *", "Europe/Kyiv", summer) == datetime(2026, 7, 1, 4, 0, tzinfo=UTC)
    assert dg.last_fire("0 7 * * *", "UTC", NOW) == datetime(2026, 11, 20, 7, 0, tzinfo=UTC)


def test_not_due_until_the_next_scheduled_time() -> None:
    end = datetime(2026, 11, 20, 5, 0, tzinfo=UTC)
    assert dg.due_period("0 7 * * *", "Europe/Kyiv", end, NOW) is None
    assert dg.due_period("0 7 * * *", "Europe/Kyiv", end, end + timedelta(hours=23, minutes=59)) is None
    nxt = end + timedelta(days=1)
    assert dg.due_period("0 7 * * *", "Europe/Kyiv", end, nxt) == (end, nxt)


def test_missed_periods_give_one_catch_up_period() -> None:
    watermark = datetime(2026, 11, 17, 5, 0, tzinfo=UTC)  # three daily digests were missed
    start, end = dg.due_period("0 7 * * *", "Europe/Kyiv", watermark, NOW) or (None, None)
    assert (start, end) == (watermark, datetime(2026, 11, 20, 5, 0, tzinfo=UTC))


def test_first_digest_covers_at_least_a_day_or_one_schedule_period() -> None:
    end = datetime(2026, 11, 20, 5, 0, tzinfo=UTC)
    assert dg.due_period("0 7 * * *", "Europe/Kyiv", None, NOW) == (end - timedelta(days=1), end)
    # Hourly: still 24 h back, not one hour.
    hourly = dg.due_period("0 * * * *", "UTC", None, NOW)
    assert hourly == (datetime(2026, 11, 19, 9, 0, tzinfo=UTC), datetime(2026, 11, 20, 9, 0, tzinfo=UTC))
    # Weekly (Mondays): the whole week.
    weekly = dg.due_period("0 7 * * mon", "UTC", None, NOW)
    assert weekly == (datetime(2026, 11, 9, 7, 0, tzinfo=UTC), datetime(2026, 11, 16, 7, 0, tzinfo=UTC))


def test_sparse_schedules_are_found_far_back() -> None:
    yearly = dg.last_fire("0 0 1 1 *", "UTC", NOW)
    assert yearly == datetime(2026, 1, 1, tzinfo=UTC)
    assert dg.next_fire("0 7 * * *", "UTC", NOW) == datetime(2026, 11, 21, 7, 0, tzinfo=UTC)


# --- clustering ---------------------------------------------------------------------------------


def test_near_duplicate_titles_become_one_story_led_by_the_widest_report() -> None:
    a = entry(1, "Erdogan offers to host new round of Ukraine-Russia talks in Istanbul", ("BBC",))
    b = entry(2, "Turkey's Erdoğan offers to host Ukraine, Russia talks in Istanbul", ("Reuters", "AP"))
    c = entry(3, "Zelensky says Ukraine ready for talks on prisoner exchange", ("DW",))
    stories = dg.cluster([a, c, b])
    assert [s.lead.id for s in stories] == ["i:2", "i:3"]
    assert stories[0].others == (a,)
    assert stories[0].outlets == ("Reuters", "AP", "BBC")
    assert stories[0].also == ("AP", "BBC")
    assert stories[0].importance == 3


def test_title_tokens_ignore_case_accents_punctuation_and_plurals() -> None:
    assert dg.title_tokens("Erdoğan's TALKS, in Istanbul!") == dg.title_tokens("erdogan talk istanbul")
    x = dg.title_tokens("Ceasefire talks stall over occupied regions")
    y = dg.title_tokens("Grain corridor deal extended by sixty days")
    assert dg.jaccard(x, y) == 0.0


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ("Putin rejects Vatican peace mission", "Putin rejects the Vatican's peace mission", True),
        ("Putin rejects Vatican peace mission", "Vatican envoy meets Zelensky in Kyiv", False),
        ("China sends envoy to Kyiv and Moscow", "China sends peace envoy to Moscow and Kyiv", True),
    ],
)
def test_similarity_threshold(first: str, second: str, same: bool) -> None:
    stories = dg.cluster([entry(1, first), entry(2, second)])
    assert (len(stories) == 1) is same


# --- sections -----------------------------------------------------------------------------------


def test_sections_per_key_with_each_story_shown_once() -> None:
    both = entry(
        1,
        "Istanbul talks stall over occupied regions",
        ("A", "B"),
        mediators=("turkey",),
        obstacles=("territory",),
    )
    turkey = entry(2, "Erdogan calls Putin", mediators=("turkey",))
    land = entry(3, "Referendum plans condemned", obstacles=("territory",))
    plain = entry(4, "Peace talks mentioned in passing")
    d = dg.build_digest(
        SPEC,
        "ana@example.org",
        [land, plain, turkey, both],
        period_start=NOW - timedelta(days=1),
        period_end=NOW,
        labels={"turkey": "Türkiye"},
    )
    assert [(s.kind, s.label) for s in d.sections] == [
        ("mediator", "Türkiye"),
        ("obstacle", "Territory"),
        ("other", "Other news"),
    ]
    turkey_sec, land_sec, other = d.sections
    assert [s.lead.id for s in turkey_sec.stories] == ["i:1", "i:2"]  # two outlets first
    assert [s.lead.id for s in land_sec.stories] == ["i:3"]
    assert [(s.lead.id, where) for s, where in land_sec.see_also] == [("i:1", "Türkiye")]
    assert [s.lead.id for s in other.stories] == ["i:4"]
    assert (d.item_count, d.story_count) == (4, 4)


def test_status_line_counts_activity_and_recalls_what_was_known_before() -> None:
    new = entry(2, "Newest Istanbul report", mediators=("turkey",), hours_ago=1)
    older = entry(1, "Older Istanbul report", mediators=("turkey",), hours_ago=40)
    oldest = entry(0, "Oldest Istanbul report", mediators=("turkey",), hours_ago=80)
    seed = TimelineEntry(
        kind="baseline",
        id="b:istanbul",
        date=datetime(2022, 3, 29, tzinfo=UTC),
        date_precision="month",
        date_label="March 2022",
        title="Istanbul round",
        summary="",
        mediators=("turkey", "vatican"),
    )
    start = NOW - timedelta(days=1)
    d = dg.build_digest(
        SPEC,
        "a@x.org",
        [new],
        period_start=start,
        period_end=NOW,
        history=[seed, oldest, older, new],
        activity={"turkey": 7},
    )
    assert (
        d.sections[0].status
        == "1 new · 7 in the last 30 days · before this digest (18 Nov 2026): Older Istanbul report"
    )
    d = dg.build_digest(SPEC, "a@x.org", [new], period_start=start, period_end=NOW, history=[seed])
    assert d.sections[0].status == "1 new · before this digest (March 2022): Istanbul round"
    d = dg.build_digest(SPEC, "a@x.org", [new], period_start=start, period_end=NOW)
    assert d.sections[0].status == "1 new · nothing earlier on record"
    d = dg.build_digest(
        SPEC, "a@x.org", [new], period_start=start, period_end=NOW, statuses={"turkey": "Active\r\nBcc: x"}
    )
    assert d.sections[0].status == "Active Bcc: x"


# --- rendering ----------------------------------------------------------------------------------


def hostile_digest() -> dg.Digest:
    entries = [
        entry(1, "<script>alert(1)</script>", ("Evil", "Worse"), mediators=("turkey",), phrases=("<b>x</b>",)),
        entry(2, "Title\r\nBcc: victim@example.org", mediators=("turkey",), link="javascript:alert(2)"),
        entry(
            3,
            "Normal headline about Istanbul talks",
            ("Reuters",),
            mediators=("turkey",),
            phrases=("Istanbul",),
        ),
    ]
    return dg.build_digest(
        SPEC,
        "ana@example.org",
        entries,
        period_start=NOW - timedelta(days=1),
        period_end=NOW,
        web_url="http://127.0.0.1:8000/",
        unsubscribe="mailto:digest@example.org?subject=unsubscribe",
    )


def test_html_escapes_every_feed_string_and_drops_unsafe_links() -> None:
    subject, text, html = dg.render_digest(hostile_digest())
    assert "<script>" not in html and "<b>x</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "javascript:" not in html
    assert 'href="https://news.example/3"' in html
    assert 'href="http://127.0.0.1:8000/"' in html
    assert "Normal headline about Istanbul talks" in text and "https://news.example/3" in text
    assert '"Istanbul"' in text  # evidence phrases
    assert "\r" not in subject and "\n" not in subject


def test_text_part_lists_status_sources_and_also_reported() -> None:
    _, text, _ = dg.render_digest(hostile_digest())
    assert "Mediator: Turkey" in text
    assert "Status: 3 new · nothing earlier on record" in text
    assert "Also reported by 1 outlet: Worse" in text
    assert "Unsubscribe: mailto:digest@example.org" in text
    assert "19 Nov 2026, 11:30 – 20 Nov 2026, 11:30 (Europe/Kyiv)" in text


def test_empty_digest_says_so() -> None:
    d = dg.build_digest(SPEC, "a@x.org", [], period_start=NOW - timedelta(days=1), period_end=NOW)
    subject, text, html = dg.render_digest(d)
    assert "no new entries" in subject
    assert "No new entries" in text and "No new entries" in html


def test_message_is_multipart_alternative_with_list_headers_and_no_injection() -> None:
    d = hostile_digest()
    _, text, html = dg.render_digest(d)
    msg = dg.build_message(
        d,
        sender="Peace tracker <digest@example.org>",
        date=NOW,
        subject="Top: Title\r\nBcc: victim@example.org",
        text=text,
        html=html,
    )
    raw = msg.as_bytes()
    parsed = email.message_from_bytes(raw, policy=default)
    assert isinstance(parsed, EmailMessage)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["Bcc"] is None
    assert parsed["Subject"] == "Top: Title Bcc: victim@example.org"
    assert parsed["To"] == "ana@example.org"
    assert parsed["Message-ID"] == dg.message_id_for("daily", "ana@example.org", NOW, "example.org")
    assert parsed["List-Id"].endswith("<daily.digests.example.org>")
    assert "mailto:digest@example.org?subject=unsubscribe%20daily" in parsed["List-Unsubscribe"]
    assert parsed["Date"].datetime == NOW
    html_part = parsed.get_body(("html",))
    assert html_part is not None and "&lt;script&gt;" in html_part.get_content()
    assert b"\r\nBcc:" not in raw


def test_message_id_is_stable_per_period_and_differs_between_recipients() -> None:
    a = dg.message_id_for("daily", "ana@example.org", NOW, "example.org")
    assert a == dg.message_id_for("daily", "ANA@example.org", NOW, "example.org")
    assert a != dg.message_id_for("daily", "bo@example.org", NOW, "example.org")
    assert a != dg.message_id_for("daily", "ana@example.org", NOW + timedelta(days=1), "example.org")
    assert "ana" not in a  # the address itself is not exposed


def test_one_line_and_safe_url() -> None:
    assert dg.one_line("a\r\nb\tc\u2028d\x00e") == "a b c d e"
    assert dg.one_line("x" * 200, 10) == "x" * 9 + "…"
    assert dg.safe_url("https://ex.org/a?b=1") == "https://ex.org/a?b=1"
    for bad in (
        "javascript:alert(1)",
        "data:text/html,x",
        "https://ex.org/\r\nX: y",
        'https://ex.org/"><x',
        None,
    ):
        assert dg.safe_url(bad) is None


def test_spec_from_config_reads_models_and_mappings() -> None:
    spec = dg.spec_from_config(
        {
            "name": "weekly",
            "recipients": ["a@x.org"],
            "schedule": "0 8 * * mon",
            "timezone": "Europe/Berlin",
            "filter": {"mediators": ["turkey"], "min_score": 0.5},
            "send_empty": True,
        }
    )
    assert spec.filter.mediators == ("turkey",) and spec.filter.min_score == 0.5
    assert spec.recipients == ("a@x.org",) and spec.send_empty and spec.timezone == "Europe/Berlin"
