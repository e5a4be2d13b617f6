"""What every page needs: the App, the taxonomy keys and a short-lived overview cache.

``status_overview`` is the one function behind ``/``, ``/api/status`` and ``tracker status``, so the
three always agree.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tracker.store import timeline_queries as tq
from tracker.store.timeline_queries import KeyKind, Overview, TaxonomyKey

if TYPE_CHECKING:
    from tracker.app import App

OVERVIEW_TTL = 5.0  # seconds; the daemon polls every few minutes, so a 5 s old page is current


def utcnow() -> datetime:
    return datetime.now(UTC)


def _label(key: str, obj: Any) -> str:
    for attr in ("label", "name", "title"):
        value = obj.get(attr) if isinstance(obj, dict) else getattr(obj, attr, None)
        if isinstance(value, str) and value:
            return value
    return key.replace("_", " ").replace("-", " ").title()


def _entries(group: Any) -> Iterable[tuple[str, Any]]:
    """(key, definition) pairs from a mapping or a sequence of objects with a ``key``."""
    if group is None:
        return []
    if isinstance(group, dict):
        return list(group.items())
    out = []
    for obj in group:
        if isinstance(obj, str):
            out.append((obj, obj))
            continue
        key = obj.get("key") if isinstance(obj, dict) else getattr(obj, "key", None)
        if key:
            out.append((str(key), obj))
    return out


def keys_of(taxonomy: Any) -> list[TaxonomyKey]:
    """Every mediator and obstacle key of a taxonomy, in the taxonomy's own order."""
    keys: list[TaxonomyKey] = []
    kinds: tuple[tuple[KeyKind, str], ...] = (("mediator", "mediators"), ("obstacle", "obstacles"))
    for kind, attr in kinds:
        group = taxonomy.get(attr) if isinstance(taxonomy, dict) else getattr(taxonomy, attr, None)
        for key, obj in _entries(group):
            keys.append(TaxonomyKey(key, _label(key, obj), kind))
    return keys


def taxonomy_keys(app: App) -> list[TaxonomyKey]:
    """The keys of the taxonomy the tagger uses (the versioned file plus feeds.yaml overrides)."""
    from tracker.tag import load_taxonomy

    overrides = getattr(app.config, "taxonomy", None)
    return keys_of(load_taxonomy(overrides=overrides or None))


def status_overview(app: App, keys: list[TaxonomyKey] | None = None, *, now: datetime | None = None) -> Overview:
    return tq.read_overview(app.engine, keys if keys is not None else taxonomy_keys(app), now=now or utcnow())


@dataclass
class WebState:
    """Per-process state of the web app (stored on ``FastAPI.state.tracker``)."""

    app: App
    keys: list[TaxonomyKey]
    clock: Callable[[], datetime] = utcnow
    overview_ttl: float = OVERVIEW_TTL
    _cached: tuple[float, Overview] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    poll_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def overview(self) -> Overview:
        """The overview, recomputed at most every ``overview_ttl`` seconds (one computation at a time)."""
        hit = self._cached
        if hit is not None and time.monotonic() - hit[0] < self.overview_ttl:
            return hit[1]
        with self._lock:
            hit = self._cached
            if hit is not None and time.monotonic() - hit[0] < self.overview_ttl:
                return hit[1]
            ov = status_overview(self.app, self.keys, now=self.clock())
            self._cached = (time.monotonic(), ov)
            return ov

    def invalidate(self) -> None:
        self._cached = None

    def labels(self) -> dict[str, str]:
        return {k.key: k.label for k in self.keys}
