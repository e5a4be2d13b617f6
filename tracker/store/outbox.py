"""The database side of digests: watermarks, the items of a period, and the outbox.

Exactly-once rests on two rules:

- A digest is rendered into an ``outbox`` row in the same transaction that moves the
  (digest, recipient) watermark in ``digest_period`` to the period's end, and ``outbox`` is unique
  on (digest, recipient, period_end).  A crash before the commit leaves neither, so the period is
  planned again; after the commit the period is never planned again.
- A row is claimed (``sending_at``) in its own transaction before SMTP, and marked ``sent_at`` in
  one short transaction right after the server accepted DATA.  A row that is sent is never picked
  again.  See ``docs/digest.md`` for the one ambiguous window (a crash between the two).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, exists, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from tracker.digest import DigestFilter
from tracker.models import TimelineEntry
from tracker.store.queries import ITEM_LOG_COLUMNS, item_entries
from tracker.store.tables import FEED, ITEM, OUTBOX, PERIOD, SOURCE, TAG

MAX_ITEMS = 300  # per digest; a longer email is not read (the web view has the rest)


def _write(engine: Engine) -> Connection:
    return engine.connect().execution_options(sqlite_immediate=True)


# --- watermarks ---------------------------------------------------------------------------------


def watermarks(conn: Connection) -> dict[tuple[str, str], datetime]:
    """(digest, recipient) -> end of the last period rendered for it."""
    return {(r.digest, r.recipient): r.period_end for r in conn.execute(select(PERIOD))}


def watermark(conn: Connection, digest: str, recipient: str, *, lock: bool = False) -> datetime | None:
    q = select(PERIOD.c.period_end).where(PERIOD.c.digest == digest, PERIOD.c.recipient == recipient)
    if lock and conn.dialect.name == "postgresql":
        q = q.with_for_update()
    value: datetime | None = conn.execute(q).scalar_one_or_none()
    return value


def _set_watermark(conn: Connection, digest: str, recipient: str, period_end: datetime) -> None:
    res = conn.execute(
        update(PERIOD).where(PERIOD.c.digest == digest, PERIOD.c.recipient == recipient).values(period_end=period_end)
    )
    if not res.rowcount:
        conn.execute(insert(PERIOD).values(digest=digest, recipient=recipient, period_end=period_end))


# --- the items of a period ----------------------------------------------------------------------


def period_items(
    conn: Connection,
    flt: DigestFilter,
    start: datetime,
    end: datetime,
    *,
    limit: int = MAX_ITEMS,
) -> list[TimelineEntry]:
    """Relevant items ingested in (start, end] that match the filter, as status-log entries.

    ``ingested_at`` rather than ``published_at``: an article that arrives late (a feed that was
    down, a backdated post) still reaches the next digest instead of falling before its window.
    Mediators and obstacles are one "any of" list matched through ``item_tag``; feeds match
    through ``item_source`` by feed name or by the URL written in feeds.yaml.
    """
    cond = [ITEM.c.relevant.is_(True), ITEM.c.ingested_at > start, ITEM.c.ingested_at <= end]
    if flt.min_score:
        cond.append(ITEM.c.score >= flt.min_score)
    tag_cond = []
    if flt.mediators:
        tag_cond.append(and_(TAG.c.kind == "mediator", TAG.c.tag.in_(flt.mediators)))
    if flt.obstacles:
        tag_cond.append(and_(TAG.c.kind == "obstacle", TAG.c.tag.in_(flt.obstacles)))
    if tag_cond:
        cond.append(exists().where(TAG.c.item_id == ITEM.c.id, or_(*tag_cond)))
    if flt.feeds:
        names = list(flt.feeds)
        cond.append(
            exists().where(
                SOURCE.c.item_id == ITEM.c.id,
                SOURCE.c.feed_id == FEED.c.id,
                or_(FEED.c.name.in_(names), FEED.c.config_url.in_(names), FEED.c.url.in_(names)),
            )
        )
    rows: Sequence[Any] = conn.execute(
        select(*ITEM_LOG_COLUMNS)
        .where(and_(*cond))
        .order_by(ITEM.c.source_count.desc(), ITEM.c.score.desc(), ITEM.c.ingested_at.desc(), ITEM.c.id)
        .limit(limit)
    ).all()
    return item_entries(conn, rows)


def prior_entries(conn: Connection, keys: Sequence[str], before: datetime) -> list[TimelineEntry]:
    """For each key, its newest relevant item already known at ``before`` (for the status line)."""
    rows: dict[int, Any] = {}
    for key in dict.fromkeys(keys):
        row = conn.execute(
            select(*ITEM_LOG_COLUMNS)
            .select_from(TAG.join(ITEM, ITEM.c.id == TAG.c.item_id))
            .where(TAG.c.tag == key, ITEM.c.relevant.is_(True), ITEM.c.ingested_at <= before)
            .order_by(TAG.c.published_at.desc(), TAG.c.item_id.desc())
            .limit(1)
        ).first()
        if row is not None:
            rows.setdefault(row.id, row)
    return item_entries(conn, list(rows.values()))


def activity(conn: Connection, keys: Sequence[str], since: datetime, until: datetime) -> dict[str, int]:
    """Relevant items per key published after ``since`` and known at ``until``."""
    if not keys:
        return {}
    q = (
        select(TAG.c.tag, func.count())
        .join(ITEM, ITEM.c.id == TAG.c.item_id)
        .where(
            TAG.c.tag.in_(list(dict.fromkeys(keys))),
            TAG.c.published_at > since,
            ITEM.c.relevant.is_(True),
            ITEM.c.ingested_at <= until,
        )
        .group_by(TAG.c.tag)
    )
    return {r[0]: int(r[1]) for r in conn.execute(q)}


# --- enqueue ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rendered:
    """A digest ready to store: the exact bytes that will go over SMTP."""

    message_id: str
    subject: str
    message: bytes
    item_count: int


def enqueue(
    engine: Engine,
    *,
    digest: str,
    recipient: str,
    expected: datetime | None,
    period_start: datetime,
    period_end: datetime,
    render: Callable[[Connection], Rendered | None],
    now: datetime,
) -> str:
    """Render one period into the outbox and move the watermark, in one transaction.

    ``expected`` is the watermark the period was planned from; if another process moved it
    meanwhile nothing is written.  ``render`` runs inside the transaction (it reads the items) and
    returns None for an empty digest that is not to be sent: the watermark still moves.
    Returns "queued", "empty" or "skipped".
    """
    with _write(engine) as conn, conn.begin():
        if watermark(conn, digest, recipient, lock=True) != expected:
            return "skipped"
        rendered = render(conn)
        outcome = "empty"
        if rendered is not None:
            stmt = _dialect_insert(conn, OUTBOX).values(
                digest=digest,
                recipient=recipient,
                period_start=period_start,
                period_end=period_end,
                message_id=rendered.message_id,
                subject=rendered.subject,
                message=rendered.message,
                item_count=rendered.item_count,
                created_at=now,
                attempts=0,
                next_attempt_at=now,
            )
            if hasattr(stmt, "on_conflict_do_nothing"):
                stmt = stmt.on_conflict_do_nothing(index_elements=["digest", "recipient", "period_end"])
            outcome = "queued" if conn.execute(stmt).rowcount else "skipped"
        _set_watermark(conn, digest, recipient, period_end)
    return outcome


def _dialect_insert(conn: Connection, table: Any) -> Any:
    if conn.dialect.name == "postgresql":
        return pg_insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite_insert(table)
    return insert(table)


# --- delivery -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pending:
    id: int
    digest: str
    recipient: str
    message_id: str
    message: bytes
    attempts: int
    stuck: bool  # claimed before and never marked: a crash between SMTP and the commit


def _deliverable(now: datetime, stuck_before: datetime, max_attempts: int) -> list[ColumnElement[bool]]:
    return [
        OUTBOX.c.sent_at.is_(None),
        OUTBOX.c.attempts < max_attempts,
        or_(OUTBOX.c.next_attempt_at.is_(None), OUTBOX.c.next_attempt_at <= now),
        or_(OUTBOX.c.sending_at.is_(None), OUTBOX.c.sending_at < stuck_before),
    ]


def due_ids(engine: Engine, *, now: datetime, stuck_before: datetime, max_attempts: int, limit: int = 200) -> list[int]:
    with engine.connect() as conn:
        q = (
            select(OUTBOX.c.id)
            .where(*_deliverable(now, stuck_before, max_attempts))
            .order_by(OUTBOX.c.next_attempt_at, OUTBOX.c.id)
            .limit(limit)
        )
        return [r.id for r in conn.execute(q)]


def claim(engine: Engine, row_id: int, *, now: datetime, stuck_before: datetime, max_attempts: int) -> Pending | None:
    """Mark one row ``sending_at`` (committed) if it is still deliverable; None if someone else has it."""
    with _write(engine) as conn, conn.begin():
        row = conn.execute(
            select(OUTBOX).where(OUTBOX.c.id == row_id, *_deliverable(now, stuck_before, max_attempts))
        ).one_or_none()
        if row is None:
            return None
        res = conn.execute(
            update(OUTBOX)
            .where(OUTBOX.c.id == row_id, OUTBOX.c.sent_at.is_(None))
            .where(OUTBOX.c.sending_at.is_(None) if row.sending_at is None else OUTBOX.c.sending_at == row.sending_at)
            .values(sending_at=now)
        )
        if res.rowcount != 1:
            return None
    return Pending(
        id=row.id,
        digest=row.digest,
        recipient=row.recipient,
        message_id=row.message_id,
        message=bytes(row.message),
        attempts=row.attempts,
        stuck=row.sending_at is not None,
    )


def mark_sent(engine: Engine, row_id: int, *, now: datetime) -> None:
    with _write(engine) as conn, conn.begin():
        conn.execute(
            update(OUTBOX)
            .where(OUTBOX.c.id == row_id)
            .values(sent_at=now, attempts=OUTBOX.c.attempts + 1, last_error=None, next_attempt_at=None)
        )


def mark_failed(engine: Engine, row_id: int, *, error: str, next_attempt_at: datetime) -> None:
    """Give the row back with its error and the time of the next try."""
    with _write(engine) as conn, conn.begin():
        conn.execute(
            update(OUTBOX)
            .where(OUTBOX.c.id == row_id, OUTBOX.c.sent_at.is_(None))
            .values(
                sending_at=None,
                attempts=OUTBOX.c.attempts + 1,
                last_error=error[:2000],
                next_attempt_at=next_attempt_at,
            )
        )


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    pending: int  # waiting for a (re)try
    sent: int
    failed: int  # gave up after the maximum number of attempts


def counts(engine: Engine, *, max_attempts: int) -> OutboxCounts:
    with engine.connect() as conn:
        sent = conn.execute(select(func.count()).where(OUTBOX.c.sent_at.is_not(None))).scalar_one()
        dead = conn.execute(
            select(func.count()).where(OUTBOX.c.sent_at.is_(None), OUTBOX.c.attempts >= max_attempts)
        ).scalar_one()
        pending = conn.execute(
            select(func.count()).where(OUTBOX.c.sent_at.is_(None), OUTBOX.c.attempts < max_attempts)
        ).scalar_one()
    return OutboxCounts(pending=int(pending), sent=int(sent), failed=int(dead))


def rows(engine: Engine, ids: Sequence[int] | None = None) -> list[dict[str, object]]:
    """Outbox rows without the message bytes (for the CLI and tests)."""
    cols = [c for c in OUTBOX.c if c.name != "message"]
    q = select(*cols).order_by(OUTBOX.c.id)
    if ids is not None:
        q = q.where(OUTBOX.c.id.in_(list(ids)))
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]
