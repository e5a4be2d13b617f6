"""Tagging throughput on one core, and `tracker retag` of stored items.

    python bench/tag.py [--items 100000] [--retag 100000] [--passes 3]

Items are generated news texts (title + 300–700 character summary): about 40 % on the peace
process in several languages, the rest ordinary news that must be rejected, as in real feeds.
Tagging is timed in CPU time, best of ``--passes`` passes (the machine may be shared); then CPU per
item for the relevant and the other items, and for the feed farm's items (tests/feedfarm.py, parsed).
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from feedfarm import MEDIATORS, OBSTACLES, OFF_TOPIC, PARAGRAPHS, TITLES  # noqa: E402

from tracker.tag import Tagger, tagged_text  # noqa: E402

OTHER = (
    "The regional government approved a budget that raises spending on schools, hospitals and roads, "
    "while opposition members criticised the plan for its reliance on new borrowing.",
    "Shares in technology companies rose on Tuesday after stronger than expected quarterly earnings, "
    "with investors betting that interest rates have peaked.",
    "Heavy rain caused flooding in several villages overnight; emergency services evacuated residents "
    "and warned of further storms later in the week.",
    "Le gouvernement a présenté un nouveau plan pour l'énergie et les transports publics, qui sera débattu "
    "au Parlement le mois prochain.",
    "Die Stadt plant neue Radwege und mehr Grünflächen; der Gemeinderat stimmt im Dezember darüber ab.",
    "В городе открылся новый парк, на церемонии выступил мэр и рассказал о планах благоустройства.",
)
RELEVANT_OTHER = (
    "Переговоры в Стамбуле: делегации России и Украины обсудили обмен пленными при посредничестве Турции.",
    "Ukrayna ile Rusya arasındaki barış görüşmeleri İstanbul'da yeniden başladı; Erdoğan arabuluculuk teklif etti.",
    "Les négociations de paix entre la Russie et l'Ukraine butent sur les garanties de sécurité.",
    "Die Friedensgespräche zwischen Russland und der Ukraine stocken an der Frage der Gebietsabtretungen.",
)


def make_items(n: int, rng: random.Random) -> list[str]:
    out = []
    for _ in range(n):
        if rng.random() < 0.4:
            m, o, c = rng.choice(MEDIATORS), rng.choice(OBSTACLES), rng.choice(("Istanbul", "Geneva", "Riyadh"))
            title = rng.choice(TITLES).format(m=m, o=o, c=c)
            body = rng.choice(PARAGRAPHS).format(m=m, o=o, c=c, d="Monday")
            if rng.random() < 0.3:
                body = rng.choice(RELEVANT_OTHER) + " " + body
        else:
            title = rng.choice(OFF_TOPIC)
            body = " ".join(rng.sample(OTHER, 2))
        out.append(tagged_text(title, body[: rng.randint(300, 700)]))
    return out


def farm_items(feeds: int = 40, per_feed: int = 50) -> list[str]:
    """The feed farm's items as the parser hands them to the tagger (~85 % relevant, several paragraphs)."""
    from feedfarm import FarmModel

    from tracker.parse import parse_feed

    model = FarmModel(feeds, per_feed, 1_750_000_000.0, None)
    now = datetime.now(UTC)
    return [
        e.text
        for i in range(feeds)
        for e in parse_feed(model.render(i, "http://farm.test"), url=f"http://farm.test/{i}", now=now).entries
    ]


def _cpu_per_item(tagger: Tagger, texts: list[str], passes: int) -> float:
    """Seconds of CPU a text, the best of ``passes``: the machine may be shared, the best pass is the code's."""
    best = float("inf")
    for _ in range(passes):
        c0 = time.process_time()
        for text in texts:
            tagger.tag(text)
        best = min(best, time.process_time() - c0)
    return best / max(len(texts), 1)


def bench_tag(n: int, passes: int) -> None:
    rng = random.Random(1)
    items = make_items(n, rng)
    tagger = Tagger()
    tagger.tag(items[0])
    best_wall = best_cpu = float("inf")
    for _ in range(passes):
        t0 = time.perf_counter()
        c0 = time.process_time()
        relevant = sum(1 for text in items if tagger.tag(text).relevant)
        best_wall = min(best_wall, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    avg = sum(map(len, items)) / n
    print(
        f"tag: {n:,} items (avg {avg:.0f} chars, {relevant / n:.0%} relevant), best of {passes}: {best_wall:.2f} s wall"
        f" / {best_cpu:.2f} s CPU = {n / best_cpu:,.0f} items/s on one core (target >= 50,000)"
    )
    sample = items[: min(n, 20_000)]
    rel = [t for t in sample if tagger.tag(t).relevant]
    other = [t for t in sample if not tagger.tag(t).relevant]
    farm = farm_items()
    farm_rel = sum(1 for t in farm if tagger.tag(t).relevant) / len(farm)
    print(
        f"     CPU per item: relevant {_cpu_per_item(tagger, rel, passes) * 1e6:.1f} µs, not relevant "
        f"{_cpu_per_item(tagger, other, passes) * 1e6:.1f} µs; feed-farm items (avg "
        f"{sum(map(len, farm)) / len(farm):.0f} chars, {farm_rel:.0%} relevant) "
        f"{_cpu_per_item(tagger, farm, passes) * 1e6:.1f} µs"
    )


def bench_retag(n: int) -> None:
    rng = random.Random(2)
    items = make_items(n, rng)
    with tempfile.TemporaryDirectory(prefix="tracker-retag-") as tmp:
        db = Path(tmp) / "tracker.db"
        cfg = Path(tmp) / "feeds.yaml"
        cfg.write_text("feeds:\n  - name: bench\n    url: http://127.0.0.1:9/feed.xml\n")
        env = os.environ | {"TRACKER_CONFIG": str(cfg), "TRACKER_DATABASE_URL": f"sqlite:///{db}"}
        exe = str(Path(sys.executable).with_name("tracker"))
        subprocess.run([exe, "init"], env=env, check=True, capture_output=True)
        now = datetime.now(UTC)
        with sqlite3.connect(db) as conn:
            rows = []
            for i, text in enumerate(items, 1):
                title, _, body = text.partition("\n")
                ts = (now - timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S.%f")
                rows.append((i, f"https://bench.example/{i}", title, body[:500], "", text, ts, ts, f"h{i}", 1))
            conn.executemany(
                "INSERT INTO item (id, link, title, summary, content_html, text, published_at, ingested_at,"
                " content_hash, feed_id, relevant, score, mediators, obstacles, evidence, source_count)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,0,0,'','','[]',1)",
                rows,
            )
        t0 = time.perf_counter()
        r = subprocess.run([exe, "retag"], env=env, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        print(f"retag: {n:,} stored items in {wall:.2f} s (target <= 10 s): {r.stdout.splitlines()[0]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--retag", type=int, default=100_000)
    ap.add_argument("--passes", type=int, default=3, help="tagging passes; the best (least CPU) is reported")
    args = ap.parse_args()
    bench_tag(args.items, args.passes)
    if args.retag:
        bench_retag(args.retag)


if __name__ == "__main__":
    main()
