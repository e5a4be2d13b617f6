"""CPU cost of turning feed bytes into Entry records, per item, three ways.

    python bench/parse.py [--feeds 200] [--items 30] [--rounds 5]

* feedparser alone: ``feedparser.parse`` as parse_feed calls it (no cleaning);
* parse_feed via feedparser: the path every document took before tracker.feedxml (forced here);
* parse_feed via the fast path: what parse_feed does now with a document the fast path accepts.

Documents: generated farm feeds (tests/feedfarm.py, ``--items`` items each) and every file of the
feedparser test corpus (../shared/corpus/feedparser-tests) that the fast path accepts.  Times are CPU
time (time.process_time), the best of ``--rounds`` rounds: the machine's cores are shared, wall time
is noise.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import feedparser  # noqa: E402
from feedfarm import FarmModel  # noqa: E402

from tracker import feedxml  # noqa: E402
from tracker.parse import parse_feed  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "feedparser-tests"
NOW = datetime(2026, 11, 20, tzinfo=UTC)
Doc = tuple[bytes, str, dict[str, str]]  # content, url, headers


def farm_docs(feeds: int, items: int) -> list[Doc]:
    model = FarmModel(feeds, items, NOW.timestamp() - 86400, None)
    base = "http://127.0.0.1:8080"
    headers = {"content-type": "application/rss+xml; charset=utf-8"}
    return [(model.render(i, base), f"{base}/feed/{i}.xml", headers) for i in range(feeds)]


def corpus_docs() -> list[Doc]:
    """Corpus files the fast path accepts (with no headers, as tests/test_corpus.py reads them)."""
    if not CORPUS.is_dir():
        return []
    docs: list[Doc] = []
    for path in sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "LICENSE"):
        content = path.read_bytes()
        url = "http://127.0.0.1/" + path.relative_to(CORPUS).as_posix()
        if feedxml.parse(content, url=url, headers={}) is not None:
            docs.append((content, url, {}))
    return docs


def best_cpu(run: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def measure(name: str, docs: Sequence[Doc], rounds: int) -> None:
    items = sum(len(parse_feed(c, url=u, headers=h, now=NOW).entries) for c, u, h in docs)
    if not items:
        print(f"{name}: no documents")
        return

    def feedparser_alone() -> None:
        for content, url, headers in docs:
            feedparser.parse(
                content,
                response_headers={**headers, "content-location": url},
                sanitize_html=False,
                resolve_relative_uris=False,
            )

    def via_feedparser() -> None:
        with mock.patch.object(feedxml, "parse", lambda *a, **k: None):
            for content, url, headers in docs:
                parse_feed(content, url=url, headers=headers, now=NOW)

    def via_fast_path() -> None:
        for content, url, headers in docs:
            parse_feed(content, url=url, headers=headers, now=NOW)

    def fast_path_parse_only() -> None:
        for content, url, headers in docs:
            feedxml.parse(content, url=url, headers=headers)

    print(f"\n{name}: {len(docs)} documents, {items} items (µs of CPU per item, best of {rounds})")
    results = {}
    for label, run in (
        ("feedparser alone", feedparser_alone),
        ("parse_feed via feedparser", via_feedparser),
        ("parse_feed via the fast path", via_fast_path),
        ("  of which feedxml.parse", fast_path_parse_only),
    ):
        results[label] = best_cpu(run, rounds) / items * 1e6
        print(f"  {label:30s} {results[label]:8.1f}")
    speedup = results["parse_feed via feedparser"] / results["parse_feed via the fast path"]
    print(f"  {'speed-up of parse_feed':30s} {speedup:8.1f}×")


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feeds", type=int, default=200)
    ap.add_argument("--items", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")  # feedparser's deprecation chatter on corpus files
    measure(f"farm feeds ({args.items} items each)", farm_docs(args.feeds, args.items), args.rounds)
    measure("feedparser corpus, files the fast path accepts", corpus_docs(), args.rounds)


if __name__ == "__main__":
    main()
