"""Synthetic ratings with a known latent structure, for tests and benchmarks.

Real rating files are large and cannot ship with the tests; these arrays have
the same shape as the encoded MyAnimeList data (``RatingArrays``) and a signal
the embedding model can learn: each rating is a squashed cosine between a
hidden user vector and a hidden anime vector, plus noise.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pandas as pd

from anime_recs.core.encoding import RatingArrays
from anime_recs.core.errors import UserInputError

logger = logging.getLogger(__name__)

# Rows are generated in chunks so 100M-row sets stay within a few hundred MB
# of temporaries on top of the result itself.
_CHUNK = 1_000_000


def latent_factor_ratings(
    n_users: int,
    n_anime: int,
    n_rows: int,
    dim: int = 16,
    noise: float = 0.1,
    seed: int = 0,
) -> RatingArrays:
    """Generate ratings in [0, 1] from hidden user and anime factors.

    Anime are drawn with a Zipf-like popularity skew (a few titles get most
    ratings, as on MyAnimeList) and users with log-normal activity; which
    index is popular is random, not ordered. Every index is ``< n_users`` /
    ``< n_anime``, but rare ones may not occur at all.

    ``rating = clip(sigmoid(2 * sqrt(dim) * cos(u, a) + 0.5) + noise * N(0, 1), 0, 1)``

    Args:
        n_users: Number of users (embedding rows).
        n_anime: Number of anime.
        n_rows: Number of (user, anime, rating) rows.
        dim: Dimension of the hidden factors.
        noise: Standard deviation of the Gaussian noise added to each rating.
        seed: Seed; equal arguments give equal arrays.

    Returns:
        ``RatingArrays`` with int32 indices and float32 ratings, in random order.

    Raises:
        UserInputError: For non-positive sizes or negative noise.
    """
    for name, value in (("n_users", n_users), ("n_anime", n_anime), ("n_rows", n_rows), ("dim", dim)):
        if int(value) < 1:
            raise UserInputError(f"{name} must be >= 1, got {value}")
    if noise < 0:
        raise UserInputError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)

    user_f = _unit_rows(rng.standard_normal((n_users, dim), dtype=np.float32))
    anime_f = _unit_rows(rng.standard_normal((n_anime, dim), dtype=np.float32))

    popularity = 1.0 / np.arange(1, n_anime + 1, dtype=np.float64) ** 0.8
    popularity = rng.permutation(popularity)
    activity = rng.lognormal(0.0, 0.7, size=n_users)

    user_idx = _weighted_draw(rng, activity, n_rows)
    anime_idx = _weighted_draw(rng, popularity, n_rows)

    # A cosine of random dim-dimensional unit vectors has std ~1/sqrt(dim);
    # scaling by 2*sqrt(dim) spreads ratings over most of [0, 1].
    gain = np.float32(2.0 * np.sqrt(dim))
    rating = np.empty(n_rows, dtype=np.float32)
    for start in range(0, n_rows, _CHUNK):
        stop = min(start + _CHUNK, n_rows)
        cos = np.einsum("ij,ij->i", user_f[user_idx[start:stop]], anime_f[anime_idx[start:stop]])
        logit = gain * cos + np.float32(0.5)
        value = 1.0 / (1.0 + np.exp(-logit))
        if noise:
            value += np.float32(noise) * rng.standard_normal(stop - start, dtype=np.float32)
        rating[start:stop] = np.clip(value, 0.0, 1.0)
    logger.debug("generated %d synthetic ratings for %d users x %d anime", n_rows, n_users, n_anime)
    return RatingArrays(user_idx, anime_idx, rating)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Scale rows to unit L2 norm (a standard-normal row is never all zero)."""
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def _weighted_draw(rng: np.random.Generator, weights: np.ndarray, size: int) -> np.ndarray:
    """Draw ``size`` int32 indices with probability proportional to ``weights``.

    Inverse-CDF sampling in chunks: ``rng.choice(p=...)`` does the same but
    materialises float64 temporaries for all rows at once.
    """
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    out = np.empty(size, dtype=np.int32)
    last = len(weights) - 1
    for start in range(0, size, _CHUNK):
        stop = min(start + _CHUNK, size)
        drawn = np.searchsorted(cdf, rng.random(stop - start), side="right")
        # Guards against a float rounding up to exactly cdf[-1].
        np.minimum(drawn, last, out=drawn)
        out[start:stop] = drawn
    return out


# Shape of MyAnimeList's full animelist.csv (109M rows, 325k users, 17.5k anime).
FULL_ROWS, FULL_USERS, FULL_ANIME = 109_000_000, 325_000, 17_500
UNRATED_SHARE = 0.38  # rows with rating 0 ("not rated") in the real file
PLAN_SHARE = 0.22  # plan-to-watch rows; they are always unrated
_STATUS = np.array([2, 1, 3, 4, 6], dtype=np.int8)
_STATUS_P = np.array([0.60, 0.08, 0.05, 0.05, PLAN_SHARE])
_CSV_CHUNK = 4_000_000


def zipf_popularity(rng: np.random.Generator, n: int, exponent: float = 0.8) -> np.ndarray:
    """Zipf-like weights ``1 / rank ** exponent``, shuffled so the popular index is random."""
    return rng.permutation(1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent)


def list_lengths(rng: np.random.Generator, n_users: int, n_rows: int, sigma: float = 1.2) -> np.ndarray:
    """Heavy-tailed (log-normal) list lengths: at least 1 each, summing to exactly ``n_rows``."""
    if n_rows < n_users:
        raise UserInputError(f"rows ({n_rows:,}) must be at least users ({n_users:,}): every user has a list entry")
    weights = rng.lognormal(0.0, sigma, size=n_users)
    extra = np.floor(weights / weights.sum() * (n_rows - n_users)).astype(np.int64)
    lengths = 1 + extra
    short = n_rows - int(lengths.sum())  # < n_users, lost to flooring: one more row for the heaviest users
    lengths[np.argsort(-weights, kind="stable")[:short]] += 1
    return lengths


def write_animelist_csv(
    path: str,
    anime_ids: np.ndarray,
    episodes: np.ndarray,
    n_rows: int = FULL_ROWS,
    n_users: int = FULL_USERS,
    seed: int = 0,
    chunk_rows: int = _CSV_CHUNK,
) -> int:
    """Write a MyAnimeList-shaped ``animelist.csv`` in chunks; return the rows written.

    Columns ``user_id, anime_id, rating, watching_status, watched_episodes``, rows grouped
    by user (ascending ids) as in the real file; heavy-tailed list lengths, Zipf-skewed
    anime popularity, ~38% ``rating`` 0 (every plan-to-watch row among them) and a few
    repeated (user, anime) pairs, as scraped data has. At most ``chunk_rows`` rows (plus
    one user's list) are in memory at a time. Equal arguments give identical files.

    Args:
        path: the CSV to write (atomically: a temporary name, renamed when complete).
        anime_ids: the catalogue's ``MAL_ID`` values.
        episodes: each anime's episode count (NaN: unknown, treated as 24 for watched counts).
        n_rows: rows to write.
        n_users: distinct users.
        seed: random seed.
        chunk_rows: rows generated and written at a time.

    Raises:
        UserInputError: sizes below 1, or fewer rows than users.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from anime_recs.core.io import atomic_write

    for name, value in (("rows", n_rows), ("users", n_users), ("anime", len(anime_ids)), ("chunk_rows", chunk_rows)):
        if int(value) < 1:
            raise UserInputError(f"{name} must be >= 1, got {value}")
    rng = np.random.default_rng(seed)
    anime_ids = np.asarray(anime_ids, dtype=np.int64)
    eps = np.nan_to_num(np.asarray(episodes, dtype=np.float64), nan=24.0).astype(np.int64)
    popularity = zipf_popularity(rng, len(anime_ids))
    user_ids = np.sort(rng.choice(np.int64(n_users) * 11 // 10 + 1, size=n_users, replace=False)).astype(np.int64)
    lengths = list_lengths(rng, n_users, n_rows)
    # Chunks end on user boundaries so each user's list is written together.
    ends = np.cumsum(lengths)
    cuts = np.unique(np.searchsorted(ends, np.arange(chunk_rows, n_rows, chunk_rows), side="left"))
    bounds = np.concatenate([[0], cuts + 1, [n_users]])
    bounds = np.unique(np.minimum(bounds, n_users))
    unrated_other = (UNRATED_SHARE - PLAN_SHARE) / (1.0 - PLAN_SHARE)
    schema = pa.schema([(c, pa.int64()) for c in ("user_id", "anime_id", "rating", "watching_status", "watched_episodes")])

    def write(tmp: object) -> None:
        with pacsv.CSVWriter(str(tmp), schema, write_options=pacsv.WriteOptions(quoting_header="none")) as writer:
            for index, (first, last) in enumerate(itertools.pairwise(bounds)):
                chunk = np.random.default_rng([seed, index])
                users = np.repeat(user_ids[first:last], lengths[first:last])
                rows = len(users)
                items = _weighted_draw(chunk, popularity, rows)
                # Lists rarely repeat a title: draw a repeat once more, uniformly (a few repeats stay).
                repeat = pd.Series(users * (1 << 24) + items).duplicated(keep="first").to_numpy()
                items[repeat] = chunk.integers(0, len(anime_ids), size=int(repeat.sum()))
                status = _STATUS[np.searchsorted(np.cumsum(_STATUS_P), chunk.random(rows) * _STATUS_P.sum(), side="right")]
                total = eps[items]
                partial = (chunk.random(rows) * total).astype(np.int64)
                watched = np.select([status == 2, status == 6], [total, np.zeros(rows, np.int64)], default=partial)
                score = np.clip(np.rint(chunk.normal(7.5, 1.7, rows)), 1, 10).astype(np.int64)
                rated = (status != 6) & (chunk.random(rows) >= unrated_other)
                columns = [users, anime_ids[items], np.where(rated, score, 0), status.astype(np.int64), watched]
                writer.write_table(pa.table(columns, schema=schema))
                logger.info("wrote %s of %s rows", f"{int(ends[last - 1]):,}", f"{n_rows:,}")

    atomic_write(path, write)
    return n_rows

