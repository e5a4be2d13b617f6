"""feeds.yaml and TRACKER_* environment → frozen, validated settings.

Errors must help a person fix the file, so every validation error is reported as
``FILE:LINE: field.path: message``: the YAML is composed with line marks, and each pydantic error
location is mapped back to the line of the node it points at.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tracker.errors import ConfigError
from tracker.schedule import ScheduleSettings

if TYPE_CHECKING:  # imported when asked for: `tracker check` and `tracker feeds` need no HTTP client
    from tracker.fetch import FetchSettings

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*$")
_UNITS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_EMAIL = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[A-Za-z]{2,}$")
_HTTP_URL = re.compile(r"^https?://[^\s/?#]+")


def _duration(value: Any) -> float:
    """Seconds from 30, "30s", "5m", "2h", "1d"."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 2h or 1d")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"{value!r} is not a duration (use e.g. 90, 30s, 5m, 2h, 1d)")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


Duration = Annotated[float, BeforeValidator(_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeedConfig(_Strict):
    """One feed: where it is and what to call it."""

    url: str
    name: str = Field(min_length=1)
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
    interval: Duration | None = None  # seconds; overrides the adaptive interval
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        v = v.strip()
        if not _HTTP_URL.match(v):
            raise ValueError("must be an http:// or https:// URL")
        return v


class GlobalSettings(_Strict):
    """How tracker fetches and schedules; defaults suit a few hundred news feeds."""

    user_agent: str | None = None
    connect_timeout: Duration = 10
    read_timeout: Duration = 20
    total_timeout: Duration = 60
    concurrency: int = Field(default=50, ge=1, le=500)
    per_host_concurrency: int = Field(default=4, ge=1, le=100)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_redirects: int = Field(default=5, ge=0, le=20)
    default_interval: Duration = 1800
    min_interval: Duration = 300
    max_interval: Duration = 6 * 3600
    backoff_max: Duration = 24 * 3600

    @model_validator(mode="after")
    def _bounds(self) -> GlobalSettings:
        if self.min_interval > self.max_interval:
            raise ValueError("min_interval must not exceed max_interval")
        return self


class DigestFilter(_Strict):
    mediators: list[str] = Field(default_factory=list)
    obstacles: list[str] = Field(default_factory=list)
    feeds: list[str] = Field(default_factory=list)  # feed names
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)


class DigestConfig(_Strict):
    """A digest email: who gets it, when (cron + time zone), and which news it carries."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    recipients: list[str] = Field(min_length=1)
    schedule: str = "0 7 * * *"
    timezone: str = "UTC"
    filter: DigestFilter = Field(default_factory=DigestFilter)
    send_empty: bool = False

    @field_validator("recipients")
    @classmethod
    def _emails(cls, v: list[str]) -> list[str]:
        for addr in v:
            if not _EMAIL.match(addr):
                raise ValueError(f"{addr!r} is not an email address")
        return v

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        if len(v.split()) != 5:
            raise ValueError("schedule must be a 5-field cron expression, e.g. '0 7 * * *'")
        try:
            CronTrigger.from_crontab(v, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"bad cron expression {v!r}: {exc}") from None
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as Europe/Kyiv)") from None
        return v


class Config(_Strict):
    """The whole of feeds.yaml."""

    settings: GlobalSettings = Field(default_factory=GlobalSettings)
    feeds: list[FeedConfig] = Field(default_factory=list)
    digests: list[DigestConfig] = Field(default_factory=list)
    taxonomy: dict[str, Any] = Field(default_factory=dict)  # extends/overrides tracker/data/taxonomy.yaml

    @field_validator("taxonomy")
    @classmethod
    def _taxonomy_loads(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Overrides are checked now, not when the daemon tags its first item with them."""
        if value:
            from tracker.tag import TaxonomyError, load_taxonomy

            try:
                load_taxonomy(overrides=value)
            except TaxonomyError as exc:
                raise ValueError(str(exc).removeprefix("tracker/data/taxonomy.yaml: ")) from None
        return value

    def fetch_settings(self) -> FetchSettings:
        from tracker.fetch import FetchSettings

        s = self.settings
        kwargs: dict[str, Any] = {
            "connect_timeout": s.connect_timeout,
            "read_timeout": s.read_timeout,
            "total_timeout": s.total_timeout,
            "max_body_bytes": s.max_body_bytes,
            "max_redirects": s.max_redirects,
            "concurrency": s.concurrency,
            "per_host_concurrency": s.per_host_concurrency,
        }
        if s.user_agent:
            kwargs["user_agent"] = s.user_agent
        return FetchSettings(**kwargs)

    def schedule_settings(self) -> ScheduleSettings:
        s = self.settings
        return ScheduleSettings(
            default_interval=timedelta(seconds=s.default_interval),
            min_interval=timedelta(seconds=s.min_interval),
            max_interval=timedelta(seconds=s.max_interval),
            backoff_max=timedelta(seconds=s.backoff_max),
        )


# --- loading with line numbers ---------------------------------------------------------------


class _LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader (libyaml's when built in: ~10× faster on a long feed list) that remembers the line
    of every mapping key and sequence item."""


_STR_TAG = "tag:yaml.org,2002:str"


def _construct(loader: _LineLoader, node: yaml.Node) -> Any:
    # A plain string is its node's value: skipping construct_object's bookkeeping for those (most
    # nodes of a feed list) makes loading a 1,000-feed file about a third cheaper.
    if type(node) is yaml.ScalarNode and node.tag == _STR_TAG:
        return node.value
    return loader.construct_object(node, deep=True)


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    lines: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = _construct(loader, key_node)
        if key in out:
            raise yaml.MarkedYAMLError(
                "while constructing a mapping",
                node.start_mark,
                f"duplicate key {key!r}",
                key_node.start_mark,
            )
        out[key] = _construct(loader, value_node)
        lines[key] = key_node.start_mark.line + 1
    return _LinedDict(out, lines, node.start_mark.line + 1)


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> list[Any]:
    items = [_construct(loader, child) for child in node.value]
    return _LinedList(items, [c.start_mark.line + 1 for c in node.value], node.start_mark.line + 1)


class _LinedDict(dict[Any, Any]):
    def __init__(self, data: dict[Any, Any], lines: dict[Any, int], line: int) -> None:
        super().__init__(data)
        self.lines = lines
        self.line = line


class _LinedList(list[Any]):
    def __init__(self, data: list[Any], lines: list[int], line: int) -> None:
        super().__init__(data)
        self.lines = lines
        self.line = line


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _line_of(doc: Any, loc: tuple[int | str, ...]) -> int:
    """The line of the deepest node along ``loc`` that exists in the document."""
    line = getattr(doc, "line", 1)
    node = doc
    for part in loc:
        if isinstance(node, _LinedDict) and part in node:
            line = node.lines.get(part, line)
            node = node[part]
        elif isinstance(node, _LinedList) and isinstance(part, int) and 0 <= part < len(node):
            line = node.lines[part]
            node = node[part]
        else:
            break
    return line


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_config(text: str, *, source: str = "feeds.yaml") -> Config:
    """Validate feeds.yaml text; raises ConfigError naming source, line and field."""
    try:
        doc = yaml.load(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError(f"{source}:{line}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    if doc is None:
        doc = _LinedDict({}, {}, 1)
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}:1: the file must be a mapping with 'feeds:' (and optional 'settings:')")
    try:
        config = Config.model_validate(doc)
    except ValidationError as exc:
        messages = []
        for e in exc.errors():
            loc = tuple(e["loc"])
            # pydantic adds the validator's name for Annotated/union members; drop non-document parts
            doc_loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling; see docs/configuration.md)"
            messages.append(f"{source}:{_line_of(doc, doc_loc)}: {_field_path(doc_loc)}: {msg}")
        raise ConfigError("\n".join(messages)) from None
    _check_duplicates(config, doc, source)
    return config


def _normalise(url: str) -> str:
    return url.strip().rstrip("/").lower()


def _check_duplicates(config: Config, doc: Any, source: str) -> None:
    problems = []
    for attr, what in (("url", "URL"), ("name", "name")):
        seen: dict[str, int] = {}
        for i, feed in enumerate(config.feeds):
            key = _normalise(getattr(feed, attr)) if attr == "url" else feed.name
            if key in seen:
                first = _line_of(doc, ("feeds", seen[key], attr))
                line = _line_of(doc, ("feeds", i, attr))
                problems.append(
                    f"{source}:{line}: feeds[{i}].{attr}: duplicate feed {what} {getattr(feed, attr)!r} "
                    f"(first at line {first})"
                )
            else:
                seen[key] = i
    names = [d.name for d in config.digests]
    for i, name in enumerate(names):
        if name in names[:i]:
            problems.append(f"{source}:{_line_of(doc, ('digests', i, 'name'))}: digests[{i}].name: duplicate {name!r}")
    if problems:
        raise ConfigError("\n".join(problems))


def load_config(path: Path | str) -> Config:
    """Read and validate a feeds.yaml file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found (set --config or TRACKER_CONFIG)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text ({exc.reason})") from None
    return parse_config(text, source=str(p))
