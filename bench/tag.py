"""Tagging throughput on one core, and `tracker retag` of stored items.

    python bench/tag.py [--items 100000] [--retag 100000]

Items are generated news texts (title + 300–700 character summary): about 40 % on the peace
process in several languages, the rest ordinary news that must be rejected, as in real feeds.
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


def bench_tag(n: int) -> None:
    rng = random.Random(1)
    items = make_items(n, rng)
    tagger = Tagger()
    tagger.tag(items[0])
    t0 = time.perf_counter()
    c0 = time.process_time()
    relevant = sum(1 for text in items if tagger.tag(text).relevant)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    avg = sum(map(len, items)) / n
    print(
        f"tag: {n:,} items (avg {avg:.0f} chars, {relevant / n:.0%} relevant) in {wall:.2f} s wall / {cpu:.2f} s CPU "
        f"= {n / wall:,.0f} items/s on one core (target >= 50,000)"
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
    args = ap.parse_args()
    bench_tag(args.items)
    if args.retag:
        bench_retag(args.retag)


if __name__ == "__main__":
    main()
