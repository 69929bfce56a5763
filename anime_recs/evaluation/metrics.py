"""Rating and ranking metrics of the evaluation protocol (see :mod:`anime_recs.evaluation`)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from anime_recs.core.encoding import IdEncoder
from anime_recs.core.errors import UserInputError
from anime_recs.core.topk import top_k
from anime_recs.evaluation.split import Split

logger = logging.getLogger(__name__)

ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

# Users per scoring batch are chosen so one batch holds about this many scores;
# the top-k selection needs a few arrays of this size (~40 bytes per element).
DEFAULT_BATCH_ELEMENTS = 1 << 22


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

    rel_item_pos = IdEncoder.from_sorted(catalogue).positions(rel_items)
    known = rel_item_pos >= 0
    rel_keys = np.unique(IdEncoder.from_sorted(users).positions(rel_users[known]) * n_items + rel_item_pos[known])

    seen_user = IdEncoder.from_sorted(users).positions(train_users)
    ranked_rows = seen_user >= 0
    seen_user = seen_user[ranked_rows]
    seen_item = IdEncoder.from_sorted(catalogue).positions(train_items[ranked_rows])
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
        top[lo:hi] = top_k(scores, k, candidates)

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
