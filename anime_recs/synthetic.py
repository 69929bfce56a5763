"""Synthetic ratings with a known latent structure, for tests and benchmarks.

Real rating files are large and cannot ship with the tests; these arrays have
the same shape as the encoded MyAnimeList data (``RatingArrays``) and a signal
the embedding model can learn: each rating is a squashed cosine between a
hidden user vector and a hidden anime vector, plus noise.
"""

from __future__ import annotations

import logging

import numpy as np

from .encoding import RatingArrays
from .errors import UserInputError

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
