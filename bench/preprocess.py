"""Benchmark: preprocess a synthetic user-stats table of N rows (default 7M) with every rule on.

Prints rows/s and peak RSS of the preprocess (load parquet + rules + scaling +
write), measured in a fresh process, and the speed ratio against a row loop
over ``drop_half_watched`` like the original's (``iterrows`` + per-row episode
lookup) on ``--rowloop-rows`` rows. Last line:
``rows_per_s=<n> peak_rss_gb=<x> ratio_vs_rowloop=<r>``.

    python bench/preprocess.py            # 7M rows
    python bench/preprocess.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def synthetic_stats(rows: int, n_users: int, n_anime: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MyAnimeList-shaped stats and anime tables (vectorised)."""
    rng = np.random.default_rng(seed)
    anime_ids = np.sort(rng.choice(60_000, size=n_anime, replace=False)).astype(np.int64)
    episodes = rng.choice([1, 12, 13, 24, 26, 50], size=n_anime).astype(float)
    popularity = rng.lognormal(0.0, 1.5, size=n_anime)
    items = rng.choice(n_anime, size=rows, p=popularity / popularity.sum())
    users = np.sort(rng.integers(0, n_users, size=rows))
    status = rng.choice(np.array([1, 2, 3, 4, 6], dtype=np.int8), size=rows, p=[0.08, 0.6, 0.05, 0.05, 0.22])
    eps = episodes[items]
    watched = np.where(status == 2, eps, np.where(status == 6, 0, rng.random(rows) * eps)).astype(np.int32)
    rating = np.where(rng.random(rows) < 0.6, rng.integers(1, 11, size=rows), 0).astype(np.int8)
    stats = pd.DataFrame({"user_id": users.astype(np.int64), "anime_id": anime_ids[items], "rating": rating,
                          "watching_status": status, "watched_episodes": watched})
    anime = pd.DataFrame({"MAL_ID": anime_ids, "Episodes": episodes})
    return stats, anime


CHILD = """
import json, resource, sys, time
from anime_recs.data.files import load_stats
from anime_recs.core.io import write_parquet
from anime_recs.data.preprocess import PreprocessOptions, preprocess
import pandas as pd
start = time.perf_counter()
stats = load_stats(sys.argv[1])
anime = pd.read_parquet(sys.argv[2])
options = PreprocessOptions(num_reviews=int(sys.argv[4]), drop_half_watched=True, drop_unwatched=True, drop_plan=True, drop_unrated=True)
clean, report, _ = preprocess(stats, options, anime)
write_parquet(clean, sys.argv[3])
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "rows_out": len(clean),
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}))
"""


def rowloop_half_watched(stats: pd.DataFrame, anime: pd.DataFrame) -> pd.DataFrame:
    """The original's approach: a Python loop over rows (given a dict lookup, which it lacked)."""
    episodes = dict(zip(anime["MAL_ID"], anime["Episodes"], strict=True))
    keep = []
    for _, row in stats.iterrows():
        total = episodes.get(row["anime_id"], np.nan)
        keep.append(not (total > 1 and row["watched_episodes"] < total / 2))
    return stats[keep]


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rows", type=int, default=7_000_000, help="rows of synthetic user stats")
    parser.add_argument("--users", type=int, default=91_000, help="distinct users")
    parser.add_argument("--anime", type=int, default=17_500, help="distinct anime")
    parser.add_argument("--num-reviews", type=int, default=20, help="num_reviews rule threshold")
    parser.add_argument("--rowloop-rows", type=int, default=1_000_000, help="rows for the row-loop comparison")
    args = parser.parse_args()

    stats, anime = synthetic_stats(args.rows, args.users, args.anime)
    with tempfile.TemporaryDirectory() as tmp:
        stats_path, anime_path = Path(tmp) / "stats.parquet", Path(tmp) / "anime.parquet"
        stats.to_parquet(stats_path, index=False)
        anime.to_parquet(anime_path, index=False)
        out = subprocess.run([sys.executable, "-c", CHILD, str(stats_path), str(anime_path), str(Path(tmp) / "clean.parquet"), str(args.num_reviews)],
                             capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"preprocess child failed: {out.stderr[-2000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
    rows_per_s = args.rows / result["seconds"]

    sub = stats.iloc[: args.rowloop_rows]
    from anime_recs.data.preprocess import half_watched_mask

    start = time.perf_counter()
    vectorised = sub[~half_watched_mask(sub, anime)]
    vec_s = time.perf_counter() - start
    start = time.perf_counter()
    looped = rowloop_half_watched(sub, anime)
    loop_s = time.perf_counter() - start
    assert len(looped) == len(vectorised), "row loop and vectorised rule disagree"
    ratio = loop_s / vec_s

    print("| measure | value |\n|---|---|")
    print(f"| rows in | {args.rows:,} |\n| rows out | {result['rows_out']:,} |")
    print(f"| preprocess seconds (load + all rules + scale + write) | {result['seconds']:.2f} |")
    print(f"| rows/s | {rows_per_s:,.0f} |\n| peak RSS (GB) | {result['peak_rss_gb']:.2f} |")
    print(f"| drop_half_watched on {len(sub):,} rows: vectorised s | {vec_s:.3f} |")
    print(f"| drop_half_watched on {len(sub):,} rows: row loop s | {loop_s:.1f} |")
    print(f"rows_per_s={rows_per_s:.0f} peak_rss_gb={result['peak_rss_gb']:.2f} ratio_vs_rowloop={ratio:.0f}")



if __name__ == "__main__":
    main()
