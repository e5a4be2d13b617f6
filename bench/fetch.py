"""Fetch-stage benchmark: client CPU and wall time per request, cold (all 200) and all-304 cycles.

The feed farm runs in a child process so its CPU is not counted; feeds are spread over several
loopback addresses so the per-host limit behaves as it does with real feeds.

    .venv/bin/python bench/fetch.py --feeds 1000 --latency 0.05 --concurrency 20 50
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from feedfarm import FeedFarm

from tracker.fetch import Fetcher, FetchSettings
from tracker.models import FeedRequest, FetchResult


async def cycle(fetcher: Fetcher, reqs: list[FeedRequest]) -> tuple[list[FetchResult], float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    results = await fetcher.fetch_many(reqs)
    return results, time.process_time() - cpu, time.perf_counter() - wall


async def run(farm: FeedFarm, concurrency: int, per_host: int, rounds: int, quiet: bool = False) -> None:
    settings = FetchSettings(concurrency=concurrency, per_host_concurrency=per_host)
    cold = [FeedRequest(i, farm.url(i)) for i in range(farm.feeds)]
    async with Fetcher(settings) as fetcher:
        for r in range(rounds):
            results, cpu, wall = await cycle(fetcher, cold)
            if quiet:
                continue
            bad = [x for x in results if x.outcome != "ok"]
            size = sum(len(x.content or b"") for x in results)
            print(
                f"c={concurrency:3d} cold #{r}: {wall:6.2f} s wall, "
                f"{cpu * 1e3 / len(cold):6.3f} ms CPU/request "
                f"({len(bad)} not ok, {size / 1e6:.1f} MB decoded)"
            )
            warm = [FeedRequest(x.feed_id, x.url, x.etag, x.last_modified) for x in results]
            results, cpu, wall = await cycle(fetcher, warm)
            n304 = sum(1 for x in results if x.outcome == "not_modified")
            print(
                f"c={concurrency:3d}  304 #{r}: {wall:6.2f} s wall, "
                f"{cpu * 1e3 / len(warm):6.3f} ms CPU/request "
                f"({n304}/{len(warm)} not modified)"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--items", type=int, default=30)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[20, 50])
    ap.add_argument("--per-host", type=int, default=4)
    ap.add_argument("--hosts", type=int, default=50, help="spread feeds over 127.0.0.1..N")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    with FeedFarm(args.feeds, args.items, latency=args.latency, process=True, hosts=args.hosts) as farm:
        asyncio.run(run(farm, 50, 10, 1, quiet=True))  # warm the farm's render cache; not reported
        print(f"{args.feeds} feeds × {args.items} items, {args.latency * 1e3:.0f} ms latency, {args.hosts} hosts")
        for c in args.concurrency:
            asyncio.run(run(farm, c, args.per_host, args.rounds))


if __name__ == "__main__":
    main()
