"""Peer 3: lemon24/reader — ``add`` registers the feeds (setup), ``update`` is one polling cycle.

    python reader_run.py DB add URLS_FILE
    python reader_run.py DB update WORKERS

``scheduled=False`` so every cycle really asks every feed (reader 3.x's default only updates feeds
whose own update interval, 1 h, has passed — the other peers and ``tracker poll --all`` poll all).
"""

from __future__ import annotations

import sys

from reader import make_reader


def main(argv: list[str]) -> None:
    db, action = argv[0], argv[1]
    reader = make_reader(db)
    try:
        if action == "add":
            urls = [u.strip() for u in open(argv[2], encoding="utf-8") if u.strip()]
            for url in urls:
                reader.add_feed(url, exist_ok=True)
            print(f"feeds {len(urls)}")
        elif action == "update":
            reader.update_feeds(workers=int(argv[2]), scheduled=False)
        else:
            raise SystemExit(f"unknown action {action!r}")
    finally:
        reader.close()


if __name__ == "__main__":
    main(sys.argv[1:])
