"""Query latency of every AnimeRecommender call at full MyAnimeList scale.

Builds synthetic data of the real shape (by default 325k users x 17.5k anime x
128-dim L2-normalised embeddings, an anime table with genres/types/scores/
synopses, and a ratings table of a few million rows), then measures the warm
p50/p99 latency of each public call over ``--queries`` random queries. Side by
side, on the same data and the same query inputs, it times a row-lookup
implementation written the way the original project did it (``argsort`` of all
similarities, then per-result DataFrame scans such as
``anime_df[anime_df.MAL_ID == id]`` and ``df[df.user_id == user]``) over
``--slow-queries`` queries, and reports the speed-up as a ratio of p50s. The
baseline is generous: it stops scanning once it has ``n`` results, where the
original looked up every candidate.

The last line is machine-readable:
``p50_ms_max=<worst p50> p99_ms_max=<worst p99> ratio_vs_rowloop_min=<smallest ratio>``.

Run from the repository root: ``.venv/bin/python bench/query.py`` (about 3
minutes and ~1.5 GB RSS at the default scale; ``--users 20000 --ratings 300000``
for a quick look).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import re
import resource
import string
import sys
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anime_recs.core.encoding import IdEncoder  # noqa: E402
from anime_recs.models.network.embeddings import PredictionHead  # noqa: E402
from anime_recs.models.original import OriginalNetwork  # noqa: E402
from anime_recs.recommend import AnimeRecommender  # noqa: E402

logger = logging.getLogger("bench.query")

# Synthetic-data vocabulary (only the generator uses it; the recommender parses genres from the data).
GENRES = (
    "Action, Adventure, Cars, Comedy, Dementia, Demons, Drama, Ecchi, Fantasy, Game, Harem, Historical, Horror, "
    "Josei, Kids, Magic, Martial Arts, Mecha, Military, Music, Mystery, Parody, Police, Psychological, Romance, "
    "Samurai, School, Sci-Fi, Seinen, Shoujo, Shoujo Ai, Shounen, Shounen Ai, Slice of Life, Space, Sports, "
    "Super Power, Supernatural, Thriller, Vampire, Yaoi, Yuri, Hentai"
).split(", ")
TYPES = np.array(["TV", "OVA", "Movie", "Special", "ONA", "Music", "Unknown"])
TYPE_P = np.array([0.285, 0.222, 0.173, 0.126, 0.109, 0.083, 0.002])
SOURCES = np.array(["Original", "Manga", "Unknown", "Visual novel", "Game", "Light novel", "Other", "Novel"])
SYLLABLES = np.array("ka ze no so ra shi ro ku ma hi to mi yu ki ha na tsu ki ai ko re ga me ta ri se n do".split())


# The trained rating head reduced to: scaled rating = sigmoid(5 * cosine).
SIGMOID_HEAD = PredictionHead(kernel=5.0, bias=0.0, gamma=1.0, beta=0.0, moving_mean=0.0, moving_variance=1.0,
                              epsilon=0.0, activation="sigmoid")


# ---------------------------------------------------------------------------
# synthetic data


def _unit_rows(rng: np.random.Generator, n: int, dim: int, chunk: int = 65536) -> np.ndarray:
    """Random unit vectors, float32, built in chunks so no float64 copy of the matrix exists."""
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + len(block)] = block
    return out


def _words(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """``n`` pseudo-Japanese words of ``k`` syllables."""
    parts = SYLLABLES[rng.integers(len(SYLLABLES), size=(n, k))]
    return np.array(["".join(row) for row in parts])


def make_anime(rng: np.random.Generator, n_anime: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An anime table and a synopsis table of the real shape."""
    mal_ids = np.sort(rng.choice(np.arange(1, 50_000), size=n_anime, replace=False)).astype(np.int64)
    w1, w2, w3 = _words(rng, n_anime, 2), _words(rng, n_anime, 3), _words(rng, n_anime, 2)
    names = pd.Series(w1).str.capitalize() + " no " + pd.Series(w2) + " " + pd.Series(w3).str.capitalize()
    names = names + np.where(rng.random(n_anime) < 0.2, "☆", "") + " " + pd.Series(np.arange(n_anime)).astype(str)
    english = np.where(rng.random(n_anime) < 0.4, "Unknown", "The " + pd.Series(w2).str.capitalize() + " Story")
    genre_mask = rng.random((n_anime, len(GENRES))) < 3.0 / len(GENRES)
    genre_mask[np.arange(n_anime), rng.integers(len(GENRES), size=n_anime)] = True
    genre_frame = pd.DataFrame(genre_mask, columns=GENRES)
    genres = genre_frame.apply(lambda row: ", ".join(row.index[row.to_numpy()]), axis=1)
    kinds = TYPES[rng.choice(len(TYPES), size=n_anime, p=TYPE_P)]
    episodes = np.where(kinds == "TV", rng.integers(10, 60, n_anime), rng.integers(1, 4, n_anime)).astype(float)
    episodes[rng.random(n_anime) < 0.03] = np.nan
    score = np.round(np.clip(rng.normal(6.5, 0.9, n_anime), 1.5, 9.2), 2)
    score[rng.random(n_anime) < 0.29] = np.nan
    anime = pd.DataFrame(
        {
            "MAL_ID": mal_ids,
            "Name": names,
            "English name": english,
            "Japanese name": "アニメ" + pd.Series(np.arange(n_anime)).astype(str),
            "Score": score,
            "Genres": genres,
            "Type": kinds,
            "Episodes": episodes,
            "Source": SOURCES[rng.integers(len(SOURCES), size=n_anime)],
            "Members": np.exp(rng.normal(8.5, 2.0, n_anime)).astype(np.int64) + 1,
        }
    )
    has_synopsis = rng.random(n_anime) < 0.9
    words = _words(rng, 200, 3)
    text = [" ".join(words[rng.integers(200, size=60)]) for _ in range(int(has_synopsis.sum()))]
    synopses = pd.DataFrame({"MAL_ID": mal_ids[has_synopsis], "sypnopsis": text})
    return anime, synopses


def make_ratings(rng: np.random.Generator, anime: pd.DataFrame, user_ids: np.ndarray, n_ratings: int) -> pd.DataFrame:
    """Interactions with a heavy-tailed number of ratings per user and popular anime rated most."""
    per_user = np.exp(rng.normal(0.0, 1.0, len(user_ids)))
    per_user = np.maximum(1, np.round(per_user / per_user.sum() * n_ratings)).astype(np.int64)
    users = np.repeat(user_ids, per_user)
    popularity = anime["Members"].to_numpy(float) ** 0.8
    picks = rng.choice(len(anime), size=len(users), p=popularity / popularity.sum())
    pair = np.unique(users.astype(np.int64) * (len(anime) + 1) + picks)
    users, picks = pair // (len(anime) + 1), pair % (len(anime) + 1)
    raw = np.clip(np.round(rng.normal(7.5, 1.7, len(users))), 1, 10)
    episodes = np.nan_to_num(anime["Episodes"].to_numpy(float)[picks], nan=12.0)
    return pd.DataFrame(
        {
            "user_id": users.astype(np.int64),
            "anime_id": anime["MAL_ID"].to_numpy()[picks],
            "rating": raw.astype(np.float32),
            "watching_status": rng.choice(np.array([1, 2, 3, 4, 6], np.int8), size=len(users)),
            "watched_episodes": np.floor(episodes * rng.random(len(users)) ** 0.3).astype(np.int32),
        }
    )


# ---------------------------------------------------------------------------
# the baseline: per-result row lookups, as the original project did


def _clean(name: str) -> str:
    """The original's name cleaning (irregular symbols, whitespace, punctuation, accents removed)."""
    for irregular in ["★", "♥", "☆", "♡", "½", "ß", "²"]:
        name = name.replace(irregular, " ")
    x = str(name).translate({ord(c): None for c in string.whitespace})
    x = re.sub(r"\W+", "", x)
    return "".join(c for c in unicodedata.normalize("NFKD", x) if not unicodedata.combining(c)).lower()


class RowLoopRecommender:
    """The original's algorithms, on the same arrays, with per-row DataFrame lookups."""

    def __init__(self, user_emb: np.ndarray, anime_emb: np.ndarray, user_ids: np.ndarray, anime_ids: np.ndarray,
                 head: PredictionHead, ratings: pd.DataFrame, anime: pd.DataFrame, synopses: pd.DataFrame) -> None:
        self.U, self.A, self.head = user_emb, anime_emb, head
        self.user_to_index = {int(u): i for i, u in enumerate(user_ids)}
        self.index_to_user = dict(enumerate(user_ids.tolist()))
        self.anime_to_index = {int(a): i for i, a in enumerate(anime_ids)}
        self.index_to_anime = dict(enumerate(anime_ids.tolist()))
        self.df = ratings
        self.anime_df = anime
        self.syn_df = synopses

    def _row(self, mal_id: int) -> pd.DataFrame:
        return self.anime_df[self.anime_df.MAL_ID == mal_id]

    def _synopsis(self, mal_id: int) -> str:
        found = self.syn_df[self.syn_df.MAL_ID == mal_id].sypnopsis.values
        return found[0] if len(found) else "None"

    def _record(self, mal_id: int, **extra: object) -> dict[str, object]:
        frame = self._row(mal_id)
        record = {"MAL_ID": mal_id, "Name": frame["Name"].values[0], **extra}
        for column in ("Genres", "Type", "Episodes", "Score", "Source", "Japanese name"):
            record[column] = frame[column].values[0]
        record["Synopsis"] = self._synopsis(mal_id)
        return record

    def lookup(self, name: str) -> int:
        cleaned = [_clean(n) for n in self.anime_df["Name"]]
        hits = self.anime_df[pd.Series(cleaned, index=self.anime_df.index) == _clean(name)]
        return int(hits.MAL_ID.values[0])

    def similar_anime(self, query: int | str, n: int = 10, genres: list[str] | None = None,
                      types: list[str] | None = None) -> pd.DataFrame:
        mal_id = self.lookup(query) if isinstance(query, str) else query
        dists = np.dot(self.A, self.A[self.anime_to_index[mal_id]])
        out = []
        for close in np.argsort(dists)[::-1]:
            decoded = self.index_to_anime[int(close)]
            if decoded == mal_id:
                continue
            frame = self._row(decoded)
            if frame.empty:
                continue
            if types and frame["Type"].values[0] not in types:
                continue
            if genres and not any(g in str(frame["Genres"].values[0]) for g in genres):
                continue
            out.append(self._record(decoded, Similarity=dists[close]))
            if len(out) == n:
                break
        return pd.DataFrame(out)

    def _fave_names(self, user: int, num_faves: int, tv_only: bool) -> str:
        fave_df = self.df[self.df.user_id == user]
        fave_df = fave_df[fave_df.rating == fave_df.rating.max()].copy()
        fave_df["name"] = [self._row(a).Name.values[0] for a in fave_df.anime_id]
        fave_df["episodes"] = [self._row(a).Episodes.values[0] for a in fave_df.anime_id]
        fave_df["type"] = [self._row(a).Type.values[0] for a in fave_df.anime_id]
        fave_df["percent"] = [row["watched_episodes"] / row["episodes"] for _, row in fave_df.iterrows()]
        if tv_only:
            fave_df = fave_df[fave_df.type == "TV"]
        fave_df = fave_df.sort_values("percent", ascending=False)
        return str(fave_df["name"].tolist()[:num_faves])[1:-1]

    def similar_users(self, user: int, n: int = 10, num_faves: int = 10, tv_only: bool = False) -> pd.DataFrame:
        dists = np.dot(self.U, self.U[self.user_to_index[user]])
        closest = np.argsort(dists)[-(n + 1):]
        rows = []
        for close in closest:
            decoded = self.index_to_user[int(close)]
            if decoded != user:
                rows.append({"similar_users": decoded, "similarity": dists[close],
                             "favorite_animes": self._fave_names(decoded, num_faves, tv_only)})
        return pd.DataFrame(rows).sort_values("similarity", ascending=False)

    def _favourites(self, user: int, percentile: float = 0.8) -> pd.DataFrame:
        watched = self.df[self.df.user_id == user]
        threshold = np.percentile(watched.rating, 100 * percentile)
        top = watched[watched.rating >= threshold].sort_values("rating", ascending=False).anime_id.values
        return self.anime_df[self.anime_df.MAL_ID.isin(top)][["MAL_ID", "Name", "Genres", "Source"]]

    def user_preferences(self, user: int, percentile: float = 0.8) -> tuple[pd.DataFrame, dict, dict]:
        faves = self._favourites(user, percentile)
        genres: dict[str, int] = {}
        for entry in faves["Genres"]:
            for genre in str(entry).split(","):
                genres[genre.strip()] = genres.get(genre.strip(), 0) + 1
        sources: dict[str, int] = {}
        for source in faves["Source"]:
            sources[source] = sources.get(source, 0) + 1
        return faves, genres, sources

    def recommend_from_similar_users(self, user: int, n: int = 10, n_similar: int = 10) -> pd.DataFrame:
        similar = self.similar_user_ids(user, n_similar)
        seen = self.df[self.df.user_id == user].anime_id.values
        lists = []
        for other in similar:
            faves = self._favourites(other)
            lists.append(faves[~faves.MAL_ID.isin(seen)].MAL_ID.values)
        counts = pd.Series(np.concatenate(lists)).value_counts()
        rows = []
        for mal_id in counts.index[:n]:
            rows.append(self._record(int(mal_id), n_user_prefs=counts[mal_id]))
        return pd.DataFrame(rows)

    def similar_user_ids(self, user: int, n: int) -> list[int]:
        dists = np.dot(self.U, self.U[self.user_to_index[user]])
        closest = np.argsort(dists)[-(n + 1):]
        return [self.index_to_user[int(c)] for c in closest[::-1] if self.index_to_user[int(c)] != user][:n]

    def recommend_by_model(self, user: int, n: int = 10, types: list[str] | None = None,
                           genres: list[str] | None = None, min_score: float | None = None,
                           max_score: float | None = None) -> pd.DataFrame:
        watched = self.df[self.df.user_id == user]
        unwatched = self.anime_df[~self.anime_df.MAL_ID.isin(watched.anime_id.values)]
        unwatched_ids = [a for a in unwatched.MAL_ID if a in self.anime_to_index]
        index = np.array([self.anime_to_index[a] for a in unwatched_ids])
        predictions = self.head.predict(self.A[index] @ self.U[self.user_to_index[user]])
        rows = []
        for i in np.argsort(-predictions):
            mal_id = unwatched_ids[i]
            frame = self._row(mal_id)
            score = frame["Score"].values[0]
            if types and frame["Type"].values[0] not in types:
                continue
            if genres and not any(g in str(frame["Genres"].values[0]) for g in genres):
                continue
            if min_score is not None and not score >= min_score:
                continue
            if max_score is not None and not score <= max_score:
                continue
            rows.append(self._record(mal_id, Prediction=predictions[i]))
            if len(rows) == n:
                break
        return pd.DataFrame(rows)

    def random_user(self, rng: np.random.Generator, max_ratings: int) -> int:
        counts = self.df["user_id"].value_counts()
        possible = counts[counts <= max_ratings].index.tolist()
        return int(possible[rng.integers(len(possible))])

    def random_anime(self, rng: np.random.Generator) -> int:
        possible = self.anime_df["Name"].unique().tolist()
        name = possible[rng.integers(len(possible))]
        return int(self.anime_df[self.anime_df.Name == name].MAL_ID.values[0])


# ---------------------------------------------------------------------------
# timing


@dataclass
class Row:
    call: str
    p50_ms: float
    p99_ms: float
    base_p50_ms: float | None
    api: bool = True  # False for the reference floors, which the summary line ignores

    @property
    def ratio(self) -> float | None:
        return None if self.base_p50_ms is None else self.base_p50_ms / self.p50_ms


def _time(call: Callable[[object], object], inputs: list[object], warmup: int = 5) -> np.ndarray:
    for item in inputs[:warmup]:
        call(item)
    gc.collect()
    times = np.empty(len(inputs))
    for i, item in enumerate(inputs):
        started = time.perf_counter()
        call(item)
        times[i] = time.perf_counter() - started
    return times * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--users", type=int, default=325_000, help="users with embeddings")
    parser.add_argument("--anime", type=int, default=17_500, help="anime with embeddings and metadata")
    parser.add_argument("--dim", type=int, default=128, help="embedding size")
    parser.add_argument("--ratings", type=int, default=5_000_000, help="approximate ratings rows")
    parser.add_argument("--queries", type=int, default=1000, help="timed queries per call")
    parser.add_argument("--slow-queries", type=int, default=20, help="timed queries per row-loop call")
    parser.add_argument("--n", type=int, default=10, help="results per query")
    parser.add_argument("--max-ratings", type=int, default=600, help="random_user(max_ratings=...)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads while timing (0 = library default); the matrix-vector products are "
                             "memory-bound, and idle BLAS threads spin when the cores are shared")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    anime, synopses = make_anime(rng, args.anime)
    user_ids = np.sort(rng.choice(np.arange(args.users * 2), size=args.users, replace=False)).astype(np.int64)
    ratings = make_ratings(rng, anime, user_ids, args.ratings)
    user_emb = _unit_rows(rng, args.users, args.dim)
    anime_emb = _unit_rows(rng, args.anime, args.dim)
    user_encoder, anime_encoder = IdEncoder(user_ids, "user"), IdEncoder(anime["MAL_ID"].to_numpy(), "anime")
    print(f"synthetic data: {args.users:,} users x {args.anime:,} anime x {args.dim} dims, "
          f"{len(ratings):,} ratings ({time.perf_counter() - started:.1f} s)")

    started = time.perf_counter()
    head = SIGMOID_HEAD
    model = OriginalNetwork.from_embeddings(user_emb, anime_emb, user_encoder, anime_encoder, head, (1.0, 10.0))
    rec = AnimeRecommender(model=model, ratings=ratings, anime=anime, synopses=synopses)
    print(f"AnimeRecommender built in {time.perf_counter() - started:.1f} s")
    base = RowLoopRecommender(user_emb, anime_emb, user_ids, anime["MAL_ID"].to_numpy(), head, ratings, anime,
                              synopses)

    q = args.queries
    users = [rec.random_user(rng) for _ in range(q)]
    anime_ids = [rec.random_anime(rng) for _ in range(q)]
    table = anime.set_index("MAL_ID")
    names = [table.loc[a, "Name"].upper().replace("☆", " ") for a in anime_ids]  # forgiving lookups
    genre_sets = [list(rng.choice(GENRES[:20], size=3, replace=False)) for _ in range(q)]
    seeds = list(range(q))
    n = args.n
    filters = {"types": ["TV", "Movie"], "min_score": 6.0, "max_score": 9.0}

    user_rows = [int(p) for p in user_encoder.transform(np.array(users))]
    anime_rows = [int(p) for p in anime_encoder.transform(np.array(anime_ids))]
    calls: list[tuple[str, Callable[[object], object], Callable[[object], object] | None, list[object]]] = [
        # Floors: the bare matrix-vector products every query needs (memory-bound), for scale.
        ("floor: user_emb @ u", lambda p: user_emb @ user_emb[p], None, user_rows),
        ("floor: anime_emb @ a", lambda p: anime_emb @ anime_emb[p], None, anime_rows),
        ("names.lookup", lambda a: rec.names.lookup(a), lambda a: base.lookup(a), names),
        ("similar_anime(id)", lambda a: rec.similar_anime(a, n), lambda a: base.similar_anime(a, n), anime_ids),
        ("similar_anime(name)", lambda a: rec.similar_anime(a, n), lambda a: base.similar_anime(a, n), names),
        ("similar_anime(3 genres, types)",
         lambda i: rec.similar_anime(anime_ids[i], n, genres=genre_sets[i], types=["TV", "Movie"]),
         lambda i: base.similar_anime(anime_ids[i], n, genres=genre_sets[i], types=["TV", "Movie"]), seeds),
        ("similar_items(id)", lambda a: rec.similar_items(a, n), None, anime_ids),
        ("similar_users", lambda u: rec.similar_users(u, n), lambda u: base.similar_users(u, n), users),
        ("similar_user_ids", lambda u: rec.similar_user_ids(u, n), None, users),
        ("user_preferences", lambda u: rec.user_preferences(u), lambda u: base.user_preferences(u), users),
        ("recommend_from_similar_users", lambda u: rec.recommend_from_similar_users(u, n, num_faves=None),
         lambda u: base.recommend_from_similar_users(u, n), users),
        ("recommend_by_model", lambda u: rec.recommend_by_model(u, n), lambda u: base.recommend_by_model(u, n), users),
        ("recommend_by_model(filters)", lambda u: rec.recommend_by_model(u, n, genres=["Action", "Comedy"], **filters),
         lambda u: base.recommend_by_model(u, n, genres=["Action", "Comedy"], **filters), users),
        ("recommend(ids)", lambda u: rec.recommend(u, n), None, users),
        ("random_anime", lambda s: rec.random_anime(s), lambda s: base.random_anime(np.random.default_rng(s)), seeds),
        ("random_user(max_ratings)", lambda s: rec.random_user(s, max_ratings=args.max_ratings),
         lambda s: base.random_user(np.random.default_rng(s), args.max_ratings), seeds),
    ]
    limits = contextlib.nullcontext()
    if args.blas_threads > 0:
        try:
            from threadpoolctl import threadpool_limits

            limits = threadpool_limits(limits=args.blas_threads, user_api="blas")
        except ImportError:
            logger.warning("threadpoolctl is not installed; BLAS uses its default thread count")
    rows: list[Row] = []
    with limits:
        rows = _time_calls(calls, args.slow_queries)
    _report(rows, q, args)
    return 0


def _time_calls(calls: list, slow_queries: int) -> list[Row]:
    rows: list[Row] = []
    for label, fast, slow, inputs in calls:
        fast_ms = _time(fast, inputs)
        slow_p50 = None
        if slow is not None:
            slow_p50 = float(np.percentile(_time(slow, inputs[:slow_queries], warmup=1), 50))
        rows.append(Row(label, float(np.percentile(fast_ms, 50)), float(np.percentile(fast_ms, 99)), slow_p50,
                        api=not label.startswith("floor")))
        print(f"  timed {label}", file=sys.stderr, flush=True)
    return rows


def _report(rows: list[Row], q: int, args: argparse.Namespace) -> None:
    import psutil

    load = ", ".join(f"{x:.1f}" for x in psutil.getloadavg())
    rss = psutil.Process().memory_info().rss / 2**30
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print()
    print(f"warm latency over {q} queries (row-loop baseline: {args.slow_queries} queries), n={args.n}, "
          f"BLAS threads {args.blas_threads or 'default'}; RSS {rss:.2f} GB, peak {peak:.2f} GB; "
          f"load average {load} on {psutil.cpu_count()} CPUs")
    header = f"| {'call':32s} | {'p50 ms':>8s} | {'p99 ms':>8s} | {'row-loop p50 ms':>15s} | {'speed-up':>8s} |"
    print(header)
    print("|" + "|".join("-" * (len(part)) for part in header.split("|")[1:-1]) + "|")
    for row in rows:
        base_text = "—" if row.base_p50_ms is None else f"{row.base_p50_ms:.1f}"
        ratio_text = "—" if row.ratio is None else f"{row.ratio:.0f}x"
        print(f"| {row.call:32s} | {row.p50_ms:8.2f} | {row.p99_ms:8.2f} | {base_text:>15s} | {ratio_text:>8s} |")
    ratios = [r.ratio for r in rows if r.ratio is not None]
    api = [r for r in rows if r.api]
    print(f"p50_ms_max={max(r.p50_ms for r in api):.2f} p99_ms_max={max(r.p99_ms for r in api):.2f} "
          f"ratio_vs_rowloop_min={min(ratios):.1f}")


if __name__ == "__main__":
    raise SystemExit(main())
