"""Offline evaluation of recommenders under one fixed, reproducible protocol.

The protocol (so that numbers from different runs and machines are comparable):

1. Keep rated interactions only (``rating >= min_rating``; 1 on MyAnimeList, where
   0 means "not rated"), then users with at least ``min_ratings`` ratings.
2. Sort the rows by (user, item). One ``numpy.random.default_rng(seed)`` walks the
   users in ascending id order; for a user with ``n`` rows it draws
   ``rng.choice(n, size=max(1, int(round(test_fraction * n))), replace=False)``
   positions among that user's item-sorted rows into TEST; the rest is TRAIN.
   :func:`split_checksum` fingerprints TEST so anyone can confirm the same split.
3. Rating metrics on TEST (RMSE, MAE) on the data's original scale.
4. Ranking metrics for every user with at least one relevant TEST item: score every
   TRAIN item the user has not rated in TRAIN, take the top ``k`` (ties to the lower
   item id), and average Precision, Recall, nDCG and MAP at ``k``; catalogue
   coverage is the share of TRAIN items that reach at least one user's top ``k``.
5. Fit time and peak resident memory of every model.

Every model implements the small :class:`Recommender` protocol (``fit`` on the TRAIN
frame, ``predict`` pairwise ratings, ``score`` a users x items matrix for ranking).
Built in: :class:`GlobalMean`, :class:`Popularity`, :class:`UserItemBias` and
:class:`EmbeddingModel`, the adapter around our Keras embedding network.
Third-party peers (Surprise, implicit) are wrapped in ``bench/peers.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

import numpy as np
import pandas as pd

from .encoding import IdEncoder, RatingArrays
from .errors import UserInputError

if TYPE_CHECKING:  # model.py imports TensorFlow; only EmbeddingModel.fit needs it at run time
    from .model import ModelParams

logger = logging.getLogger(__name__)

ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

# Users per scoring batch are chosen so one batch holds about this many scores;
# the top-k selection needs a few arrays of this size (~40 bytes per element).
DEFAULT_BATCH_ELEMENTS = 1 << 22


# --------------------------------------------------------------------------- split


@dataclass(frozen=True)
class Columns:
    """Names of the user, item and rating columns of the interaction frames."""

    user: str = "user_id"
    item: str = "anime_id"
    rating: str = "rating"


DEFAULT_COLUMNS = Columns()


@dataclass(frozen=True)
class Split:
    """The protocol's TRAIN/TEST partition.

    Attributes:
        train: TRAIN rows (user, item, rating columns), sorted by (user, item).
        test: TEST rows, same columns and order.
        checksum: First 16 hex digits of the sha256 of TEST (see :func:`split_checksum`).
        cols: The column names used in ``train`` and ``test``.
    """

    train: pd.DataFrame
    test: pd.DataFrame
    checksum: str
    cols: Columns = field(default_factory=Columns)

    def describe(self) -> dict[str, int | str]:
        """Row, user and item counts of both parts plus the checksum, for logs and reports."""
        return {
            "users": int(pd.concat([self.train[self.cols.user], self.test[self.cols.user]]).nunique()),
            "train_rows": len(self.train),
            "test_rows": len(self.test),
            "train_items": int(self.train[self.cols.item].nunique()),
            "test_only_items": int((~self.test[self.cols.item].isin(self.train[self.cols.item])).sum()),
            "checksum": self.checksum,
        }


def _int_ids(values: pd.Series, name: str) -> np.ndarray:
    """Raw ids as int64, refusing NaN or fractional ids instead of silently truncating them."""
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.to_numpy(dtype=np.int64)
    as_float = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(as_float) | (as_float != np.round(as_float))
    if bad.any():
        raise UserInputError(
            f"column {name!r} must hold integer ids; found {values[bad].iloc[:3].tolist()} in {int(bad.sum())} rows"
        )
    return as_float.astype(np.int64)


def split_checksum(users: np.ndarray, items: np.ndarray) -> str:
    """Fingerprint of a set of (user, item) pairs, independent of row order.

    The pairs are written as ``"user,item\\n"`` lines (decimal integers), sorted
    numerically by (user, item), hashed with sha256; the first 16 hex digits are
    returned. Shell equivalent for a CSV of TEST rows without header::

        cut -d, -f1,2 test.csv | sort -t, -k1,1n -k2,2n | sha256sum | cut -c1-16

    Args:
        users: User ids of the pairs.
        items: Item ids of the pairs, same length.

    Returns:
        16 lowercase hex digits.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    order = np.lexsort((items, users))
    text = pd.DataFrame({"u": users[order], "i": items[order]}).to_csv(index=False, header=False, lineterminator="\n")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def protocol_split(
    df: pd.DataFrame,
    user_col: str = "user_id",
    item_col: str = "anime_id",
    rating_col: str = "rating",
    min_ratings: int = 5,
    test_fraction: float = 0.2,
    seed: int = 42,
    min_rating: float = 1.0,
) -> Split:
    """Split interactions into TRAIN and TEST exactly as the evaluation protocol says.

    The per-user draws must be the very ``rng.choice`` calls of the protocol, in
    ascending user order, so they run as one call per user; everything else
    (filtering, sorting, offsets, masks) is vectorised.

    Args:
        df: Interactions; extra columns are ignored.
        user_col: User id column.
        item_col: Item id column.
        rating_col: Rating column.
        min_ratings: Users with fewer rated rows are dropped.
        test_fraction: Share of each user's rows drawn into TEST (rounded, at least 1).
        seed: Seed of the one generator that walks the users.
        min_rating: Rows rated below this are "not rated" and dropped (1 for
            MyAnimeList, where 0 means unrated; 0.5 for MovieLens' half stars).

    Returns:
        The :class:`Split`, both parts sorted by (user, item) with a fresh index.

    Raises:
        UserInputError: On missing columns, non-integer ids, duplicated
            (user, item) pairs, bad parameters, or when no user is left.
    """
    missing = [c for c in (user_col, item_col, rating_col) if c not in df.columns]
    if missing:
        raise UserInputError(f"interactions lack column(s) {missing}; have {list(df.columns)}")
    if not 0.0 < test_fraction < 1.0:
        raise UserInputError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if min_ratings < 1:
        raise UserInputError(f"min_ratings must be at least 1, got {min_ratings}")

    rating = pd.to_numeric(df[rating_col], errors="coerce").to_numpy(dtype=np.float64)
    keep = np.isfinite(rating) & (rating >= min_rating)
    frame = df.loc[keep, [user_col, item_col, rating_col]]
    users = _int_ids(frame[user_col], user_col)
    items = _int_ids(frame[item_col], item_col)

    order = np.lexsort((items, users))
    users, items = users[order], items[order]
    dup = (users[1:] == users[:-1]) & (items[1:] == items[:-1])
    if dup.any():
        first = int(np.flatnonzero(dup)[0])
        raise UserInputError(
            f"{int(dup.sum())} duplicated ({user_col}, {item_col}) pairs, e.g. ({users[first]}, {items[first]}); "
            "deduplicate the interactions first"
        )

    uniq, counts = np.unique(users, return_counts=True)
    kept = counts >= min_ratings
    row_kept = np.repeat(kept, counts)
    if not kept.any():
        raise UserInputError(f"no user has at least {min_ratings} ratings >= {min_rating}")
    logger.info(
        "protocol split: %d rated rows, %d/%d users with >= %d ratings",
        len(users),
        int(kept.sum()),
        len(uniq),
        min_ratings,
    )

    # Row positions after dropping the light users: the kept users' blocks stay contiguous.
    counts_k = counts[kept]
    starts_k = np.cumsum(counts_k) - counts_k
    # np.round and Python's round both round half to even on the same float product.
    sizes = np.maximum(1, np.round(test_fraction * counts_k).astype(np.int64))
    rng = np.random.default_rng(seed)
    test_pos = np.empty(int(sizes.sum()), dtype=np.int64)
    cursor = 0
    for start, n, size in zip(starts_k.tolist(), counts_k.tolist(), sizes.tolist()):
        test_pos[cursor : cursor + size] = start + rng.choice(n, size=size, replace=False)
        cursor += size
    is_test = np.zeros(int(counts_k.sum()), dtype=bool)
    is_test[test_pos] = True

    ordered = frame.iloc[order[row_kept]].reset_index(drop=True)
    ordered[user_col] = users[row_kept]
    ordered[item_col] = items[row_kept]
    train = ordered.loc[~is_test].reset_index(drop=True)
    test = ordered.loc[is_test].reset_index(drop=True)
    checksum = split_checksum(test[user_col].to_numpy(), test[item_col].to_numpy())
    logger.info("protocol split: %d train rows, %d test rows, test checksum %s", len(train), len(test), checksum)
    return Split(train=train, test=test, checksum=checksum, cols=Columns(user_col, item_col, rating_col))


# --------------------------------------------------------------------------- metrics


def rating_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Root mean squared error and mean absolute error.

    Args:
        y_true: True ratings.
        y_pred: Predicted ratings, same shape.

    Returns:
        ``{"rmse": ..., "mae": ...}``.

    Raises:
        UserInputError: On empty input, a shape mismatch or non-finite values.
    """
    true = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(y_pred, dtype=np.float64)
    if true.shape != pred.shape:
        raise UserInputError(f"y_true has shape {true.shape} but y_pred has shape {pred.shape}")
    if true.size == 0:
        raise UserInputError("rating_metrics needs at least one rating")
    if not (np.isfinite(true).all() and np.isfinite(pred).all()):
        raise UserInputError(f"rating_metrics got {int((~np.isfinite(pred)).sum())} non-finite predictions")
    err = pred - true
    return {"rmse": float(np.sqrt(np.mean(err * err))), "mae": float(np.mean(np.abs(err)))}


def top_k_items(scores: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` best candidates of every row, best first.

    Ties go to the lower column index (columns are items in ascending id order, so
    to the lower item id). Runs in linear time per row (``np.partition`` and a
    cumulative count of tied values) instead of a full sort.

    Args:
        scores: ``(n_rows, n_cols)`` float scores; ``-inf`` is a valid score.
        candidates: Boolean mask, same shape; only True cells can be returned.
        k: List length.

    Returns:
        ``(n_rows, k)`` int64 column indices; rows with fewer than ``k`` candidates
        are padded with ``-1`` at the end.
    """
    n_rows, n_cols = scores.shape
    out = np.full((n_rows, k), -1, dtype=np.int64)
    kk = min(k, n_cols)
    if n_rows == 0 or kk == 0:
        return out
    masked = np.where(candidates, scores, -np.inf)
    kth = np.partition(masked, n_cols - kk, axis=1)[:, n_cols - kk : n_cols - kk + 1]
    above = candidates & (masked > kth)
    tied = candidates & (masked == kth)
    quota = kk - above.sum(axis=1, keepdims=True)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= quota))
    rows, cols = np.nonzero(chosen)  # row-major: columns ascending within a row
    per_row = np.bincount(rows, minlength=n_rows)
    slot = np.arange(rows.size) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    top_scores = np.full((n_rows, k), -np.inf)
    out[rows, slot] = cols
    top_scores[rows, slot] = masked[rows, cols]
    # Stable: equal scores keep ascending column order, and -1 padding stays last.
    order = np.argsort(-top_scores, axis=1, kind="stable")
    return np.take_along_axis(out, order, axis=1)


def _positions(sorted_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of each value in ``sorted_ids`` or -1 when absent."""
    if sorted_ids.size == 0:
        return np.full(values.shape, -1, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, values)
    clipped = np.minimum(pos, sorted_ids.size - 1)
    return np.where(sorted_ids[clipped] == values, clipped, -1).astype(np.int64)


def ranking_metrics(
    score_fn: ScoreFn,
    split: Split,
    relevant_threshold: float,
    k: int = 10,
    batch_elements: int = DEFAULT_BATCH_ELEMENTS,
) -> dict[str, float]:
    """Top-k ranking quality on TEST, with the protocol's candidate set.

    For each user with at least one TEST rating ``>= relevant_threshold``, every
    TRAIN item the user has not rated in TRAIN is scored, and the top ``k`` (ties
    to the lower item id) are compared with the user's relevant TEST items (all of
    them, including items absent from TRAIN, which can never be hit).

    - precision = hits / k; recall = hits / #relevant
    - nDCG = sum(hit_i / log2(i + 1)) / sum_{i <= min(k, #relevant)} 1 / log2(i + 1)
    - MAP = sum(hit_i * precision@i) / min(k, #relevant)
    - coverage = distinct items in any top-k / number of TRAIN items

    Args:
        score_fn: ``score_fn(user_ids, item_ids)`` returns a ``(len(user_ids),
            len(item_ids))`` array of scores (higher is better) for raw ids; it
            is called with batches of users and all TRAIN items in ascending id
            order. A model's ``score`` method is such a function.
        split: The protocol split.
        relevant_threshold: Ratings at or above it are relevant.
        k: Cut-off.
        batch_elements: About how many scores one batch may hold; bounds memory.

    Returns:
        ``precision, recall, ndcg, map, coverage`` (floats, NaN when no user has a
        relevant TEST item) and ``n_users`` (number of users averaged over).

    Raises:
        UserInputError: On ``k < 1``.
        ValueError: When ``score_fn`` returns the wrong shape or NaN scores.
    """
    if k < 1:
        raise UserInputError(f"k must be at least 1, got {k}")
    cols = split.cols
    train_users = split.train[cols.user].to_numpy(dtype=np.int64)
    train_items = split.train[cols.item].to_numpy(dtype=np.int64)
    catalogue = np.unique(train_items)
    n_items = catalogue.size

    test = split.test
    relevant = test[cols.rating].to_numpy(dtype=np.float64) >= relevant_threshold
    rel_users = test[cols.user].to_numpy(dtype=np.int64)[relevant]
    rel_items = test[cols.item].to_numpy(dtype=np.int64)[relevant]
    users, n_relevant = np.unique(rel_users, return_counts=True)
    if users.size == 0 or n_items == 0:
        logger.warning("ranking_metrics: no user has a relevant TEST item (threshold %s)", relevant_threshold)
        nan = float("nan")
        return {"precision": nan, "recall": nan, "ndcg": nan, "map": nan, "coverage": nan, "n_users": 0}

    rel_item_pos = _positions(catalogue, rel_items)
    known = rel_item_pos >= 0
    rel_keys = np.unique(_positions(users, rel_users[known]) * n_items + rel_item_pos[known])

    seen_user = _positions(users, train_users)
    ranked_rows = seen_user >= 0
    seen_user = seen_user[ranked_rows]
    seen_item = _positions(catalogue, train_items[ranked_rows])
    by_user = np.argsort(seen_user, kind="stable")
    seen_user, seen_item = seen_user[by_user], seen_item[by_user]

    batch = max(1, batch_elements // n_items)
    top = np.empty((users.size, k), dtype=np.int64)
    for lo in range(0, users.size, batch):
        hi = min(lo + batch, users.size)
        scores = np.asarray(score_fn(users[lo:hi], catalogue))
        if scores.shape != (hi - lo, n_items):
            raise ValueError(f"score_fn returned shape {scores.shape}, expected {(hi - lo, n_items)}")
        if not np.issubdtype(scores.dtype, np.floating):
            scores = scores.astype(np.float64)
        if np.isnan(scores).any():
            raise ValueError(f"score_fn returned {int(np.isnan(scores).sum())} NaN scores")
        candidates = np.ones(scores.shape, dtype=bool)
        a, b = np.searchsorted(seen_user, [lo, hi])
        candidates[seen_user[a:b] - lo, seen_item[a:b]] = False
        top[lo:hi] = top_k_items(scores, candidates, k)

    listed = top >= 0
    user_pos = np.arange(users.size, dtype=np.int64)[:, None]
    hits = listed & np.isin(user_pos * n_items + top, rel_keys)
    n_hits = hits.sum(axis=1)
    ranks = np.arange(1, k + 1)
    discounts = 1.0 / np.log2(ranks + 1.0)
    ideal = np.minimum(k, n_relevant)
    dcg = (hits * discounts).sum(axis=1)
    idcg = np.cumsum(discounts)[ideal - 1]
    average_precision = (hits * (np.cumsum(hits, axis=1) / ranks)).sum(axis=1) / ideal
    return {
        "precision": float(np.mean(n_hits / k)),
        "recall": float(np.mean(n_hits / n_relevant)),
        "ndcg": float(np.mean(dcg / idcg)),
        "map": float(np.mean(average_precision)),
        "coverage": float(np.unique(top[listed]).size / n_items),
        "n_users": int(users.size),
    }


# --------------------------------------------------------------------------- models


@runtime_checkable
class Recommender(Protocol):
    """What :func:`evaluate_models` needs from a model (all ids are raw ids).

    ``predicts_ratings`` is False for pure ranking models (e.g. implicit-feedback
    ALS); their RMSE and MAE are reported as missing.
    """

    predicts_ratings: bool

    def fit(self, train: pd.DataFrame, cols: Columns = DEFAULT_COLUMNS) -> Recommender:
        """Learn from the TRAIN frame."""
        ...

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings of the pairs ``(users[j], items[j])`` on the raw scale."""
        ...

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``(len(users), len(items))`` ranking scores, higher is better."""
        ...


class _Indexed:
    """Shared plumbing: raw id encoders fitted on TRAIN and the global mean."""

    predicts_ratings = True

    def _fit_index(self, train: pd.DataFrame, cols: Columns) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        missing = [c for c in (cols.user, cols.item, cols.rating) if c not in train.columns]
        if missing:
            raise UserInputError(f"train frame lacks column(s) {missing}; have {list(train.columns)}")
        if len(train) == 0:
            raise UserInputError(f"{type(self).__name__}.fit got an empty train frame")
        users = train[cols.user].to_numpy(dtype=np.int64)
        items = train[cols.item].to_numpy(dtype=np.int64)
        self.user_encoder = IdEncoder(users, kind="user")
        self.item_encoder = IdEncoder(items, kind="item")
        ratings = train[cols.rating].to_numpy(dtype=np.float64)
        self.global_mean = float(ratings.mean())
        return self.user_encoder.transform(users), self.item_encoder.transform(items), ratings

    def _rows(self, encoder: IdEncoder, ids: np.ndarray) -> np.ndarray:
        # Unknown ids become -1, which indexes the trailing zero of the padded tables below.
        return encoder.transform(np.asarray(ids, dtype=np.int64), missing="minus_one")


class GlobalMean(_Indexed):
    """Predicts the mean TRAIN rating for everything; ranks all items equally (lowest ids first)."""

    def fit(self, train: pd.DataFrame, cols: Columns = DEFAULT_COLUMNS) -> GlobalMean:
        """Store the mean TRAIN rating."""
        self._fit_index(train, cols)
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The global mean for every pair."""
        return np.full(np.asarray(users).shape, self.global_mean)

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """A constant matrix: the protocol's tie rule then lists the lowest item ids."""
        return np.full((len(users), len(items)), self.global_mean)


class Popularity(_Indexed):
    """Ranks items by how many TRAIN users liked them (or rated them); predicts the global mean.

    With ``relevant_threshold`` set, the score is the number of TRAIN ratings at or
    above it, ties broken by the total number of ratings; without it, the number of
    ratings. Items unseen in TRAIN score 0.

    Args:
        relevant_threshold: Rating that counts as "liked"; None ranks by rating count.
    """

    def __init__(self, relevant_threshold: float | None = None) -> None:
        self.relevant_threshold = relevant_threshold

    def fit(self, train: pd.DataFrame, cols: Columns = DEFAULT_COLUMNS) -> Popularity:
        """Count ratings per item."""
        _, item_rows, ratings = self._fit_index(train, cols)
        n = len(self.item_encoder)
        count = np.bincount(item_rows, minlength=n).astype(np.float64)
        if self.relevant_threshold is None:
            popularity = count
        else:
            liked = np.bincount(item_rows, weights=(ratings >= self.relevant_threshold).astype(np.float64), minlength=n)
            popularity = liked + count / (count.max() + 1.0)  # tie-break inside one liked count
        self.popularity = np.append(popularity, 0.0)
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The global mean for every pair."""
        return np.full(np.asarray(users).shape, self.global_mean)

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The same popularity vector for every user."""
        row = self.popularity[self._rows(self.item_encoder, items)]
        return np.broadcast_to(row, (len(users), row.size))


class UserItemBias(_Indexed):
    """``r = mu + b_u + b_i`` with L2-regularised biases fitted by alternating least squares.

    The same estimator and defaults as Surprise's ``BaselineOnly`` with its default
    ALS options: each sweep sets every item bias, then every user bias, to its
    regularised least-squares value given the other. Unknown users or items get
    a zero bias.

    Args:
        reg_item: L2 weight on item biases (Surprise ``reg_i``).
        reg_user: L2 weight on user biases (Surprise ``reg_u``).
        n_epochs: Number of ALS sweeps.
    """

    def __init__(self, reg_item: float = 10.0, reg_user: float = 15.0, n_epochs: int = 10) -> None:
        self.reg_item = reg_item
        self.reg_user = reg_user
        self.n_epochs = n_epochs

    def fit(self, train: pd.DataFrame, cols: Columns = DEFAULT_COLUMNS) -> UserItemBias:
        """Run the ALS sweeps."""
        u, i, r = self._fit_index(train, cols)
        n_users, n_items = len(self.user_encoder), len(self.item_encoder)
        denom_i = np.bincount(i, minlength=n_items) + self.reg_item
        denom_u = np.bincount(u, minlength=n_users) + self.reg_user
        residual = r - self.global_mean
        b_u = np.zeros(n_users)
        b_i = np.zeros(n_items)
        for _ in range(self.n_epochs):
            b_i = np.bincount(i, weights=residual - b_u[u], minlength=n_items) / denom_i
            b_u = np.bincount(u, weights=residual - b_i[i], minlength=n_users) / denom_u
        self.user_bias = np.append(b_u, 0.0)
        self.item_bias = np.append(b_i, 0.0)
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``mu + b_u + b_i`` per pair (not clipped; :func:`evaluate_models` clips)."""
        return (
            self.global_mean
            + self.user_bias[self._rows(self.user_encoder, users)]
            + self.item_bias[self._rows(self.item_encoder, items)]
        )

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The predicted-rating matrix (ranking therefore follows the item bias)."""
        b_u = self.user_bias[self._rows(self.user_encoder, users)]
        b_i = self.item_bias[self._rows(self.item_encoder, items)]
        return self.global_mean + b_u[:, None] + b_i[None, :]


class EmbeddingModel(_Indexed):
    """Our Keras embedding network (:mod:`anime_recs.model`) behind the :class:`Recommender` protocol.

    ``fit`` encodes TRAIN ids with :class:`~anime_recs.encoding.IdEncoder`, min-max
    scales ratings to [0, 1] (keeping ``rating_min``/``rating_max``), holds out a
    random ``val_fraction`` of TRAIN rows as the validation set that early stopping
    watches, and calls :func:`anime_recs.training.train_model`. Predictions go
    through the NumPy :class:`~anime_recs.embeddings.PredictionHead` on the cosine of
    the L2-normalised embeddings and are mapped back to the raw rating scale.
    TensorFlow is imported only when ``fit`` runs.

    Fallbacks: a pair with a user or item unseen in TRAIN is predicted as the TRAIN
    mean rating; an unseen user gets a zero embedding in :meth:`score` (cosine 0 with
    every item, so a constant row).

    Args:
        params: :class:`~anime_recs.model.ModelParams` or a mapping of its fields
            (missing fields take the defaults); None = all defaults.
        val_fraction: Share of TRAIN rows held out for validation / early stopping.
        seed: Seed of the validation hold-out (training itself uses ``params.seed``).
        rating_range: ``(min, max)`` for the min-max scaling; None = TRAIN's own.
        verbose: Let training print one line per epoch.

    Attributes:
        history: Per-epoch training history (after ``fit``).
        best_epoch: Epoch whose weights were kept.
        stopped_early: Whether early stopping ended training.
    """

    def __init__(
        self,
        params: ModelParams | Mapping[str, Any] | None = None,
        val_fraction: float = 0.05,
        seed: int = 42,
        rating_range: tuple[float, float] | None = None,
        verbose: bool = False,
    ) -> None:
        if not 0.0 < val_fraction < 1.0:
            raise UserInputError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.params = params
        self.val_fraction = val_fraction
        self.seed = seed
        self.rating_range = rating_range
        self.verbose = verbose

    def fit(self, train: pd.DataFrame, cols: Columns = DEFAULT_COLUMNS) -> EmbeddingModel:
        """Scale, hold out the validation slice, train, and cache embeddings and head."""
        from .embeddings import PredictionHead, extract_embeddings
        from .model import ModelParams
        from .training import train_model

        params = self.params if isinstance(self.params, ModelParams) else ModelParams.from_mapping(self.params or {})
        user_rows, item_rows, ratings = self._fit_index(train, cols)
        low, high = self.rating_range or (float(ratings.min()), float(ratings.max()))
        if not high > low:
            raise UserInputError(f"cannot min-max scale ratings: min {low} is not below max {high}")
        self.rating_min, self.rating_max = low, high
        arrays = RatingArrays(
            user_rows.astype(np.int32),
            item_rows.astype(np.int32),
            np.clip((ratings - low) / (high - low), 0.0, 1.0).astype(np.float32),
        )
        order = np.random.default_rng(self.seed).permutation(len(arrays))
        n_val = max(1, round(self.val_fraction * len(arrays)))
        result = train_model(
            arrays.take(order[n_val:]),
            arrays.take(order[:n_val]),
            len(self.user_encoder),
            len(self.item_encoder),
            params,
            verbose=self.verbose,
        )
        self.history = result.history
        self.best_epoch = int(result.best_epoch)
        self.stopped_early = bool(result.stopped_early)
        logger.info(
            "EmbeddingModel: %d epochs run, best epoch %d%s",
            len(result.history),
            self.best_epoch,
            " (stopped early)" if self.stopped_early else "",
        )
        users, items = extract_embeddings(result.model)
        # A trailing zero row catches ids unseen in TRAIN (index -1).
        self.user_vectors = np.vstack([users, np.zeros((1, users.shape[1]), np.float32)])
        self.item_vectors = np.vstack([items, np.zeros((1, items.shape[1]), np.float32)])
        self.head = PredictionHead.from_model(result.model)
        return self

    def _to_raw(self, scaled: np.ndarray) -> np.ndarray:
        return scaled * (self.rating_max - self.rating_min) + self.rating_min

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted raw-scale ratings per pair; the TRAIN mean for unseen users or items."""
        u = self._rows(self.user_encoder, users)
        i = self._rows(self.item_encoder, items)
        cosine = np.einsum("ij,ij->i", self.user_vectors[u], self.item_vectors[i])
        raw = self._to_raw(self.head.predict(cosine).astype(np.float64))
        return np.where((u >= 0) & (i >= 0), raw, self.global_mean)

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted raw-scale ratings for every user x item (float32)."""
        cosine = (
            self.user_vectors[self._rows(self.user_encoder, users)] @ self.item_vectors[self._rows(self.item_encoder, items)].T
        )
        return self._to_raw(self.head.predict(cosine))


# --------------------------------------------------------------------------- running


class PeakRss:
    """Context manager measuring the process's peak resident set size inside the block.

    On Linux the kernel's high-water mark (``VmHWM``) is reset on entry by writing
    ``5`` to ``/proc/self/clear_refs`` and read on exit, so the figure is exact and
    belongs to this block alone. Elsewhere (or if the reset is refused) a thread
    samples the RSS every 20 ms, which can miss short spikes. Either way the figure
    includes everything the process already holds (libraries, data).

    Attributes:
        start_bytes: RSS on entry.
        peak_bytes: Peak RSS in bytes, set on exit.
        method: ``"vmhwm"`` or ``"sampled"``.
    """

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.start_bytes = 0
        self.peak_bytes = 0
        self.method = "sampled"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _status(field: str) -> int | None:
        """A ``/proc/self/status`` memory field in bytes, or None where there is none."""
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def _sample(self) -> None:
        import psutil

        process = psutil.Process()
        while True:
            self.peak_bytes = max(self.peak_bytes, process.memory_info().rss)
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> Self:
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError):
                Path("/proc/self/clear_refs").write_text("5")
                rss = self._status("VmRSS")
                if rss is not None and self._status("VmHWM") is not None:
                    self.method = "vmhwm"
                    self.start_bytes = rss
                    return self
        import psutil

        self.start_bytes = psutil.Process().memory_info().rss
        self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.method == "vmhwm":
            self.peak_bytes = self._status("VmHWM") or 0
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()


def evaluate_models(
    models: Mapping[str, Recommender],
    split: Split,
    relevant_threshold: float,
    rating_bounds: tuple[float, float],
    k: int = 10,
) -> pd.DataFrame:
    """Fit and evaluate every model on one split, side by side in this process.

    Predictions are clipped to ``rating_bounds`` before RMSE/MAE, as Surprise does
    for its own models, so no model gains or loses by predicting off the scale.

    Args:
        models: Display name -> unfitted model.
        split: The protocol split.
        relevant_threshold: Rating that counts as relevant for the ranking metrics.
        rating_bounds: ``(lowest, highest)`` rating of the data's scale.
        k: Ranking cut-off.

    Returns:
        One row per model, indexed by name: ``RMSE, MAE, P@k, R@k, nDCG@k, MAP@k,
        Coverage@k, fit_s, eval_s, peak_rss_gb, added_rss_gb`` (NaN RMSE/MAE for
        ranking-only models). ``eval_s`` is the time to predict TEST and rank;
        ``peak_rss_gb`` is the whole process's peak while that model was fitted and
        evaluated (so it includes the data and every library already imported);
        ``added_rss_gb`` is that peak minus the RSS just before the model started.
    """
    cols = split.cols
    test_users = split.test[cols.user].to_numpy(dtype=np.int64)
    test_items = split.test[cols.item].to_numpy(dtype=np.int64)
    test_ratings = split.test[cols.rating].to_numpy(dtype=np.float64)
    rows: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        logger.info("evaluating %s", name)
        with PeakRss() as peak:
            start = time.perf_counter()
            model.fit(split.train, cols)
            fit_s = time.perf_counter() - start
            start = time.perf_counter()
            if getattr(model, "predicts_ratings", True):
                pred = np.clip(np.asarray(model.predict(test_users, test_items), dtype=np.float64), *rating_bounds)
                errors = rating_metrics(test_ratings, pred)
            else:
                errors = {"rmse": math.nan, "mae": math.nan}
            ranking = ranking_metrics(model.score, split, relevant_threshold, k=k)
            eval_s = time.perf_counter() - start
        rows[name] = {
            "RMSE": errors["rmse"],
            "MAE": errors["mae"],
            f"P@{k}": ranking["precision"],
            f"R@{k}": ranking["recall"],
            f"nDCG@{k}": ranking["ndcg"],
            f"MAP@{k}": ranking["map"],
            f"Coverage@{k}": ranking["coverage"],
            "fit_s": fit_s,
            "eval_s": eval_s,
            "peak_rss_gb": peak.peak_bytes / 1e9,
            "added_rss_gb": max(0, peak.peak_bytes - peak.start_bytes) / 1e9,
        }
        logger.info("%s: %s", name, {key: round(value, 4) for key, value in rows[name].items()})
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    return table


def to_markdown(table: pd.DataFrame, digits: Mapping[str, int] | None = None, default_digits: int = 4) -> str:
    """Render a table as a GitHub markdown table without optional dependencies.

    Args:
        table: Rows to render; the index becomes the first column.
        digits: Decimals per column (times and memory default to 2).
        default_digits: Decimals of other float columns.

    Returns:
        The markdown text (numbers right-aligned, NaN shown as ``-``), ending in a newline.
    """
    places = {"fit_s": 2, "eval_s": 2, "peak_rss_gb": 2, "added_rss_gb": 2, **(digits or {})}
    frame = table.reset_index()

    def cell(column: str, value: Any) -> str:
        if isinstance(value, (float, np.floating)):
            return "-" if math.isnan(value) else f"{value:.{places.get(column, default_digits)}f}"
        return str(value)

    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    lines = [
        "| " + " | ".join(str(c) for c in frame.columns) + " |",
        "|" + "|".join("---:" if is_num else "---" for is_num in numeric) + "|",
    ]
    body = frame.astype(object).to_numpy()
    lines += ["| " + " | ".join(cell(c, v) for c, v in zip(frame.columns, row)) + " |" for row in body]
    return "\n".join(lines) + "\n"
