"""Fold-in: score a user the model has never seen from their (anime, rating) pairs, without retraining.

Each family keeps its item side fixed and solves only for what describes the new user
(:meth:`~anime_recs.models.base.RecommenderModel.fold_in`, implemented by the family itself):

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

import numpy as np

from anime_recs.core.errors import UserInputError
from anime_recs.models.base import FoldIn, RecommenderModel

logger = logging.getLogger(__name__)

__all__ = ["FoldIn", "fold_in"]


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


def fold_in(model: RecommenderModel, item_rows: np.ndarray, ratings: np.ndarray) -> FoldIn:
    """Ranking scores and predicted ratings over every anime for a user given only their ratings.

    Args:
        model: A fitted model of any family.
        item_rows: Encoder rows of the rated anime.
        ratings: Their ratings on the model's raw scale.

    Returns:
        A :class:`FoldIn` (the listed anime are *not* excluded here).

    Raises:
        UserInputError: empty or mismatched lists, rows outside the model, ratings off the scale, a family without fold-in.
    """
    rows, values = _check_pairs(model, item_rows, ratings)
    return model.fold_in(rows, values)
