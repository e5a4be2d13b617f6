"""Database tables (SQLModel).  Alembic migrations in ``tracker/migrations`` are derived from these.

Shape of the data:

- ``feed``: one row per configured feed, with its fetch state (validators, failures, next due time,
  lease for multi-worker polling).
- ``item``: one row per article.  ``link`` (canonical URL) is unique, so the same article seen in two
  feeds is one item.
- ``item_source``: which feed carried which item, keyed per feed by ``dedup_key`` (guid, else link,
  else content hash).  Unique on (feed_id, dedup_key): re-polling can never duplicate.
- ``item_tag``: one row per (item, tag) so that filtering a million items by tag is an index scan.
- ``fetch_log``: recent fetch outcomes per feed (pruned).
- ``baseline_event``: the seed's timeline, loaded idempotently by ``tracker init``.
- ``digest_period`` / ``outbox``: digests rendered exactly once per (digest, recipient, period).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from tracker.store.types import UTCDateTime


def _dt(*, index: bool = False, nullable: bool = True) -> object:
    return Field(default=None, sa_column=Column(UTCDateTime(), index=index, nullable=nullable))


class Feed(SQLModel, table=True):
    __tablename__ = "feed"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(sa_column=Column(Text, unique=True, nullable=False))
    config_url: str = Field(sa_column=Column(Text, nullable=False))  # URL as written in feeds.yaml
    name: str
    language: str | None = None
    enabled: bool = True
    interval_seconds: int | None = None
    title: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    last_status: int | None = None
    last_outcome: str | None = None  # ok | not_modified | error | gone
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    consecutive_failures: int = 0
    last_fetched_at: datetime | None = _dt()  # type: ignore[assignment]
    last_success_at: datetime | None = _dt()  # type: ignore[assignment]
    next_due_at: datetime | None = _dt(index=True)  # type: ignore[assignment]
    ttl_minutes: int | None = None
    item_count: int = 0
    new_items_rate: float = 0.0  # smoothed new items per day, drives the adaptive interval
    disabled_reason: str | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = _dt()  # type: ignore[assignment]


class Item(SQLModel, table=True):
    __tablename__ = "item"
    __table_args__ = (
        Index("ix_item_published_id", "published_at", "id"),
        Index("ix_item_relevant_published", "relevant", "published_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    link: str | None = Field(default=None, sa_column=Column(Text, unique=True, nullable=True))
    title: str = Field(sa_column=Column(Text, nullable=False))
    summary: str = Field(default="", sa_column=Column(Text, nullable=False))
    content_html: str = Field(default="", sa_column=Column(Text, nullable=False))
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    author: str | None = None
    language: str | None = None
    published_at: datetime = _dt(nullable=False)  # type: ignore[assignment]
    updated_at: datetime | None = _dt()  # type: ignore[assignment]
    date_fallback: str | None = None
    ingested_at: datetime = _dt(index=True, nullable=False)  # type: ignore[assignment]
    content_hash: str
    relevant: bool = False
    score: float = 0.0
    mediators: str = ""  # space-separated keys, the tag table is the index
    obstacles: str = ""
    evidence: str = Field(default="[]", sa_column=Column(Text, nullable=False))  # JSON list
    source_count: int = 1
    feed_id: int = Field(foreign_key="feed.id", index=True)  # first feed that carried it


class ItemSource(SQLModel, table=True):
    __tablename__ = "item_source"
    __table_args__ = (UniqueConstraint("feed_id", "dedup_key", name="uq_item_source_feed_key"),)

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="item.id", index=True)
    feed_id: int = Field(foreign_key="feed.id")
    dedup_key: str = Field(sa_column=Column(Text, nullable=False))
    content_hash: str
    seen_at: datetime = _dt(nullable=False)  # type: ignore[assignment]


class ItemTag(SQLModel, table=True):
    __tablename__ = "item_tag"
    __table_args__ = (Index("ix_item_tag_tag_published", "tag", "published_at", "item_id"),)

    item_id: int = Field(foreign_key="item.id", primary_key=True)
    tag: str = Field(primary_key=True)
    kind: str  # mediator | obstacle
    published_at: datetime = _dt(nullable=False)  # type: ignore[assignment]


class FetchLog(SQLModel, table=True):
    __tablename__ = "fetch_log"
    __table_args__ = (Index("ix_fetch_log_feed_at", "feed_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    feed_id: int = Field(foreign_key="feed.id")
    at: datetime = _dt(nullable=False)  # type: ignore[assignment]
    outcome: str
    status: int | None = None
    error: str | None = Field(default=None, sa_column=Column(Text))
    elapsed: float = 0.0
    new_items: int = 0
    updated_items: int = 0


class BaselineEvent(SQLModel, table=True):
    __tablename__ = "baseline_event"

    slug: str = Field(primary_key=True)
    date: datetime = _dt(nullable=False)  # type: ignore[assignment]
    precision: str
    date_label: str
    title: str
    summary: str = Field(sa_column=Column(Text, nullable=False))
    mediators: str = ""
    obstacles: str = ""
    passage: str = Field(default="", sa_column=Column(Text, nullable=False))


class DigestPeriod(SQLModel, table=True):
    """A (digest, recipient) pair's last covered period end: the digest watermark."""

    __tablename__ = "digest_period"

    digest: str = Field(primary_key=True)
    recipient: str = Field(primary_key=True)
    period_end: datetime = _dt(nullable=False)  # type: ignore[assignment]


class Outbox(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("digest", "recipient", "period_end", name="uq_outbox_period"),
        Index("ix_outbox_pending", "sent_at", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    digest: str
    recipient: str
    period_start: datetime = _dt(nullable=False)  # type: ignore[assignment]
    period_end: datetime = _dt(nullable=False)  # type: ignore[assignment]
    message_id: str
    subject: str = Field(sa_column=Column(Text, nullable=False))
    message: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # full RFC 5322 bytes
    item_count: int = 0
    created_at: datetime = _dt(nullable=False)  # type: ignore[assignment]
    attempts: int = 0
    next_attempt_at: datetime | None = _dt()  # type: ignore[assignment]
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    sending_at: datetime | None = _dt()  # type: ignore[assignment]
    sent_at: datetime | None = _dt()  # type: ignore[assignment]


class Meta(SQLModel, table=True):
    """Small key/value facts (taxonomy version, last cycle time)."""

    __tablename__ = "meta"

    key: str = Field(primary_key=True)
    value: str = Field(sa_column=Column(Text, nullable=False))


# The Core tables, for queries written with SQLAlchemy Core.
FEED = Feed.__table__  # type: ignore[attr-defined]
ITEM = Item.__table__  # type: ignore[attr-defined]
SOURCE = ItemSource.__table__  # type: ignore[attr-defined]
TAG = ItemTag.__table__  # type: ignore[attr-defined]
FETCH_LOG = FetchLog.__table__  # type: ignore[attr-defined]
BASELINE = BaselineEvent.__table__  # type: ignore[attr-defined]
PERIOD = DigestPeriod.__table__  # type: ignore[attr-defined]
OUTBOX = Outbox.__table__  # type: ignore[attr-defined]
