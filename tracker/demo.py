"""``tracker demo``: bundled sample feeds served on 127.0.0.1, so a newcomer sees a populated view at once.

The feeds (``tracker/data/demo``) are fictional, multi-language reports written for the demo.  Their
dates are tokens relative to the moment the server starts, so the view always looks current; items
dated a few minutes *after* the start stay hidden until then, so news visibly arrives while the
daemon polls.  The server answers conditional requests (ETag) like a well-behaved news site.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

DEMO_DIR = Path(__file__).parent / "data" / "demo"
_TOKEN = re.compile(r"\{(ago|iso-ago):(-?)((?:\d+[dhm])+)\}")
_PART = re.compile(r"(\d+)([dhm])")
_BLOCK = re.compile(r"<(item|entry)>.*?</\1>\s*", re.DOTALL)
_UNITS = {"d": 86400, "h": 3600, "m": 60}


@dataclass(frozen=True)
class DemoFeed:
    file: str
    name: str
    language: str | None


def load_index(directory: Path = DEMO_DIR) -> list[DemoFeed]:
    doc = yaml.safe_load((directory / "index.yaml").read_text(encoding="utf-8"))
    return [DemoFeed(f["file"], f["name"], f.get("language")) for f in doc["feeds"]]


def _offset(sign: str, spec: str) -> timedelta:
    seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(spec))
    return timedelta(seconds=-seconds if sign == "-" else seconds)


def render(template: str, *, start: datetime, now: datetime) -> str:
    """Fill the date tokens (relative to ``start``) and drop items not yet "published" at ``now``."""

    def keep(block: re.Match[str]) -> str:
        for m in _TOKEN.finditer(block.group(0)):
            if start - _offset(m.group(2), m.group(3)) > now:
                return ""
        return block.group(0)

    def fill(m: re.Match[str]) -> str:
        when = start - _offset(m.group(2), m.group(3))
        return format_datetime(when, usegmt=True) if m.group(1) == "ago" else when.isoformat()

    return _TOKEN.sub(fill, _BLOCK.sub(keep, template))


class DemoFeedServer:
    """A tiny threaded HTTP server for the sample feeds: ``/feeds/<file>``, with ETag / 304."""

    def __init__(self, port: int = 0, directory: Path = DEMO_DIR, *, start: datetime | None = None) -> None:
        self.directory = directory
        self.feeds = load_index(directory)
        self.start_time = start or datetime.now(UTC).replace(microsecond=0)
        self._templates = {f.file: (directory / f.file).read_text(encoding="utf-8") for f in self.feeds}
        self.requests = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, feed: DemoFeed) -> str:
        return f"{self.base_url}/feeds/{feed.file}"

    def body(self, file: str, now: datetime | None = None) -> bytes:
        return render(self._templates[file], start=self.start_time, now=now or datetime.now(UTC)).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                name = self.path.split("?", 1)[0].removeprefix("/feeds/")
                if name not in server._templates:
                    self.send_error(404)
                    return
                body = server.body(name)
                etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
                if etag in (self.headers.get("If-None-Match") or ""):
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                ctype = "application/atom+xml" if b"<feed" in body[:200] else "application/rss+xml"
                self.send_response(200)
                self.send_header("Content-Type", f"{ctype}; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the daemon logs every fetch already

        return Handler

    def start(self) -> DemoFeedServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="demo-feeds", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> DemoFeedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_config(path: Path, server: DemoFeedServer) -> Path:
    """feeds.yaml for the demo: the sample feeds, checked every minute so new items show up quickly."""
    lines = [
        "# Written by `tracker demo` (rewritten on every start): the bundled sample feeds.",
        "settings:",
        "  user_agent: tracker-demo/1.0",
        "  default_interval: 60s",
        "  min_interval: 30s",
        "  max_interval: 2m",
        "feeds:",
    ]
    for feed in server.feeds:
        lines += [f"  - name: {_yaml_str(feed.name)}", f"    url: {server.url(feed)}"]
        if feed.language:
            lines.append(f"    language: {feed.language}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _yaml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def free_port(preferred: int = 0, host: str = "127.0.0.1") -> int:
    """``preferred`` if nothing listens there, else a free port the kernel picks."""
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port")
