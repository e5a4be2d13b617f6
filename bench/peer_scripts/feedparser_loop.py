"""Peer 1: the naive baseline — ``feedparser.parse(url)`` for each URL in turn, items into SQLite.

    python feedparser_loop.py URLS_FILE DB

No conditional GET on purpose: this is the loop most people write first.  Runs inside its own
venv (feedparser only), so it imports nothing from tracker.
"""

from __future__ import annotations

import sqlite3
import sys

import feedparser


def main(urls_file: str, db_path: str) -> None:
    urls = [u.strip() for u in open(urls_file, encoding="utf-8") if u.strip()]
    db = sqlite3.connect(db_path)
    db.execute(
        "CREATE TABLE IF NOT EXISTS items (feed TEXT, guid TEXT, title TEXT, link TEXT, summary TEXT,"
        " published TEXT, PRIMARY KEY (feed, guid))"
    )
    fetched = failed = 0
    for url in urls:
        d = feedparser.parse(url)
        if d.get("bozo") and not d.entries:
            failed += 1
            continue
        fetched += 1
        db.executemany(
            "INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?, ?, ?)",
            [
                (url, e.get("id") or e.get("link"), e.get("title"), e.get("link"), e.get("summary"), e.get("published"))
                for e in d.entries
            ],
        )
    db.commit()
    db.close()
    print(f"feeds {fetched} failed {failed}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
