"""Fold-in: score a user the model has never seen from their (anime, rating) pairs, without retraining.

Each family keeps its item side fixed and solves only for what describes the new user:

- ``ease`` (and the hybrid's ranking): the graded history row ``rated + liked_weight · liked``
  times the item-item weights ``B``, exactly what a training user with the same
  ratings gets (:meth:`~anime_recs.models.ease.EASE.scores_for_history`);
- ``neighbourhood`` (and the hybrid's ratings): the user's bias solved against the
  fixed ``mu`` and item biases (the same regularised mean as in training), the item
  neighbourhood term from the given residuals and the latent factors by one ridge
  solve (ALS-WR) against the fixed item factors. The *user* neighbourhood term is
  left out (it would need a Pearson pass over every training user per query);
- ``original``: the user embedding solved by ridge least squares against the fixed,
  normalised anime embeddings, with the target cosines obtained by inverting the
  prediction head (``Dense → BatchNorm → activation`` is monotone in the cosine);
  the solution is then normalised, an approximation since the network compares
  unit vectors.

:func:`fold_in` returns ranking scores and predicted ratings over every model anime;
the caller excludes what the user listed (as ``filter_seen`` does for known users).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from anime_recs.core.errors import UserInputError
from anime_recs.models.base import RecommenderModel
from anime_recs.models.ease import EASE
from anime_recs.models.hybrid import Hybrid
from anime_recs.models.neighbourhood import Neighbourhood, weighted_neighbour_mean
from anime_recs.models.original import OriginalNetwork

logger = logging.getLogger(__name__)

#: Ridge penalty of the original network's user-embedding solve (relative to the number of ratings).
EMBEDDING_RIDGE = 0.1


class FoldIn(NamedTuple):
    """A new user's scores over every model anime (encoder rows).

    Attributes:
        rank_scores: Higher = the user wants it more (as :meth:`RecommenderModel.rank_scores`).
        predicted: Predicted ratings on the raw scale (as :meth:`RecommenderModel.predict_user`).
    """

    rank_scores: np.ndarray
    predicted: np.ndarray


def _check_pairs(model: RecommenderModel, item_rows: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = np.asarray(item_rows, np.int64).ravel()
    values = np.asarray(ratings, np.float64).ravel()
    if len(rows) == 0:
        raise UserInputError("the rating list is empty; rate at least one anime the model knows")
    if len(rows) != len(values):
        raise UserInputError(f"{len(rows)} anime but {len(values)} ratings; give one rating per anime")
    if (rows < 0).any() or (rows >= len(model.items)).any():
        raise UserInputError("an anime row is outside the model; map MAL_IDs with the model's encoder first")
    lo, hi = model.rating_scale
    if not np.isfinite(values).all() or (values < lo).any() or (values > hi).any():
        raise UserInputError(f"ratings must be numbers from {lo:g} to {hi:g}")
    # A repeated anime keeps its last rating, as Interactions.from_frame does.
    _, last = np.unique(rows[::-1], return_index=True)
    keep = np.sort(len(rows) - 1 - last)
    return rows[keep], values[keep]


def ease_scores(model: EASE, item_rows: np.ndarray, ratings: np.ndarray) -> np.ndarray:
    """EASE ranking scores of a new user: graded history row @ B."""
    p = model.params
    lo, hi = model.rating_scale
    liked = (ratings >= lo + float(p["like_threshold"]) * (hi - lo) - 1e-9).astype(np.float64)
    history = sp.csr_matrix((1.0 + float(p["liked_weight"]) * liked, (np.zeros(len(item_rows), np.int64), item_rows)),
                            shape=(1, len(model.items)), dtype=np.float32)
    return model.scores_for_history(history)[0]


def neighbourhood_ratings(model: Neighbourhood, item_rows: np.ndarray, ratings: np.ndarray) -> np.ndarray:
    """Predicted ratings of a new user: bias + item neighbourhood + factors (no user neighbourhood term)."""
    parts, p = model._parts, model.params
    residual_item = ratings - parts.mu - parts.b_item[item_rows]
    b_user = float(residual_item.sum() / (len(ratings) + float(p["reg_user"])))
    residual = residual_item - b_user
    item_term = weighted_neighbour_mean(np.ascontiguousarray(parts.item_sim[item_rows].T), residual, parts.k)
    Q = np.asarray(parts.Q, np.float64)
    q = Q[item_rows]
    gram = q.T @ q + float(p["factor_reg"]) * len(ratings) * np.eye(Q.shape[1])
    factors = np.linalg.solve(gram, q.T @ residual)
    weights = np.asarray(model._weights, np.float64)
    predicted = parts.mu + b_user + parts.b_item + weights[0] * item_term + weights[2] * (Q @ factors)
    return model.clip(predicted)


def network_user_vector(model: OriginalNetwork, item_rows: np.ndarray, ratings: np.ndarray) -> np.ndarray:
    """Unit user embedding whose cosines with the rated anime best reproduce the ratings through the head."""
    lo, hi = model.rating_scale
    grid = np.linspace(-1.0, 1.0, 2001)
    outputs = model.head.predict(grid).astype(np.float64)
    order = np.argsort(outputs, kind="stable")
    scaled = np.clip((ratings - lo) / (hi - lo), outputs.min(), outputs.max())
    # The head is monotone in the cosine; invert it numerically over [-1, 1].
    target = np.interp(scaled, outputs[order], grid[order])
    V = np.asarray(model._V[item_rows], np.float64)
    gram = V.T @ V + EMBEDDING_RIDGE * len(ratings) * np.eye(V.shape[1])
    u = np.linalg.solve(gram, V.T @ target)
    norm = np.linalg.norm(u)
    return (u / norm if norm > 0 else u).astype(np.float32)


def fold_in(model: RecommenderModel, item_rows: np.ndarray, ratings: np.ndarray) -> FoldIn:
    """Ranking scores and predicted ratings over every anime for a user given only their ratings.

    Args:
        model: A fitted model of any family.
        item_rows: Encoder rows of the rated anime.
        ratings: Their ratings on the model's raw scale.

    Returns:
        A :class:`FoldIn` (the listed anime are *not* excluded here).

    Raises:
        UserInputError: empty or mismatched lists, rows outside the model, ratings off the scale.
    """
    rows, values = _check_pairs(model, item_rows, ratings)
    if isinstance(model, Hybrid):
        return FoldIn(ease_scores(model.ranker, rows, values), neighbourhood_ratings(model.rater, rows, values))
    if isinstance(model, EASE):
        mu, _, b_item = model.baseline()
        b_user = float((values - mu - b_item[rows]).sum() / (len(values) + float(model.params["reg_user"])))
        return FoldIn(ease_scores(model, rows, values), model.clip(mu + b_user + b_item))
    if isinstance(model, Neighbourhood):
        predicted = neighbourhood_ratings(model, rows, values)
        return FoldIn(predicted.astype(np.float32), predicted)
    if isinstance(model, OriginalNetwork):
        u = network_user_vector(model, rows, values)
        predicted = model.clip(model._to_raw(model.head.predict(model._V @ u)))
        return FoldIn(predicted.astype(np.float32), predicted)
    raise UserInputError(f"model family {model.family!r} has no fold-in for new users")

