"""Peer 2: a simple async loop — httpx (50 at a time), conditional GET, feedparser, SQLite state.

    python httpx_loop.py URLS_FILE DB [CONCURRENCY]

What a careful person writes in an afternoon: ETag / Last-Modified kept between runs, gzip via
httpx, parsing done inline on the event loop.  Runs inside its own venv (httpx + feedparser).
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys

import feedparser
import httpx


async def poll(urls: list[str], db: sqlite3.Connection, concurrency: int) -> tuple[int, int, int]:
    state = {row[0]: (row[1], row[2]) for row in db.execute("SELECT url, etag, modified FROM feeds")}
    sem = asyncio.Semaphore(concurrency)
    counts = [0, 0, 0]  # ok, not modified, failed
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30, follow_redirects=True) as client:

        async def one(url: str) -> None:
            etag, modified = state.get(url, (None, None))
            headers = {"User-Agent": "httpx-loop-bench/1.0"}
            if etag:
                headers["If-None-Match"] = etag
            if modified:
                headers["If-Modified-Since"] = modified
            async with sem:
                try:
                    resp = await client.get(url, headers=headers)
                except httpx.HTTPError:
                    counts[2] += 1
                    return
            if resp.status_code == 304:
                counts[1] += 1
                return
            if resp.status_code != 200:
                counts[2] += 1
                return
            d = feedparser.parse(resp.content, response_headers={"content-type": resp.headers.get("content-type", "")})
            db.executemany(
                "INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        url,
                        e.get("id") or e.get("link"),
                        e.get("title"),
                        e.get("link"),
                        e.get("summary"),
                        e.get("published"),
                    )
                    for e in d.entries
                ],
            )
            db.execute(
                "INSERT OR REPLACE INTO feeds VALUES (?, ?, ?)",
                (url, resp.headers.get("etag"), resp.headers.get("last-modified")),
            )
            counts[0] += 1

        await asyncio.gather(*(one(u) for u in urls))
    return counts[0], counts[1], counts[2]


def main(urls_file: str, db_path: str, concurrency: int) -> None:
    urls = [u.strip() for u in open(urls_file, encoding="utf-8") if u.strip()]
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE IF NOT EXISTS feeds (url TEXT PRIMARY KEY, etag TEXT, modified TEXT)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS items (feed TEXT, guid TEXT, title TEXT, link TEXT, summary TEXT,"
        " published TEXT, PRIMARY KEY (feed, guid))"
    )
    ok, not_modified, failed = asyncio.run(poll(urls, db, concurrency))
    db.commit()
    db.close()
    print(f"ok {ok} not_modified {not_modified} failed {failed}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 50)
