"""Fit-time model selection: a family chooses its own hyper-parameters on a validation split of the data it is given.

Every fit carves a validation split out of the training data it was handed
(:meth:`~anime_recs.models.base.Interactions.holdout`: a share of each user's ratings),
scores each candidate on it by nDCG@10 over the held-out *liked* anime (the same
relevance the evaluation uses), keeps the best and refits on all of the data. TEST is
never seen: the evaluation hands the family TRAIN only.

:func:`validation_ndcg` is the vectorised metric; :class:`SelectionLog` keeps each candidate's
score for ``fit_info``, the MLflow run and the model card.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from anime_recs.core.topk import top_k

#: Rank cut-off of the selection metric (the evaluation's k).
SELECTION_K = 10


@dataclass(frozen=True)
class ValidationSplit:
    """What a candidate is fitted on and scored against.

    Attributes:
        fit_part: Interactions the candidate is fitted on (all but the held-out ones).
        users: Rows of the users scored (at most ``max_users``, those with a held-out liked anime).
        seen: ``users x items`` CSR of what each scored user rated in ``fit_part`` (never recommended).
        relevant: ``users x items`` CSR, 1 for each held-out liked anime.
    """

    fit_part: Any
    users: np.ndarray
    seen: sp.csr_matrix
    relevant: sp.csr_matrix


def validation_split(data: Any, like_threshold: float, fraction: float, max_users: int, seed: int) -> ValidationSplit:
    """Hold out ``fraction`` of each user's ratings; score at most ``max_users`` users who hold out a liked anime."""
    fit_part, held = data.holdout(fraction, seed)
    liked = held.liked(like_threshold) > 0
    candidates = np.unique(held.user_rows[liked])
    if len(candidates) > max_users:
        candidates = np.sort(np.random.default_rng(seed).choice(candidates, max_users, replace=False))
    relevant = held.matrix(liked.astype(np.float64))
    relevant.eliminate_zeros()
    return ValidationSplit(fit_part, candidates, fit_part.matrix()[candidates], relevant[candidates])


def validation_ndcg(scores: np.ndarray, split: ValidationSplit, k: int = SELECTION_K) -> float:
    """Mean nDCG@k of ``scores`` (one row per ``split.users``) against the held-out liked anime."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    seen = split.seen.tocoo()
    scores[seen.row, seen.col] = -np.inf
    top = top_k(scores, k)
    rows = np.repeat(np.arange(len(top)), top.shape[1])
    hits = np.asarray(split.relevant[rows, np.maximum(top.ravel(), 0)]).reshape(top.shape) * (top >= 0)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits @ discount[: top.shape[1]]
    n_relevant = np.minimum(np.diff(split.relevant.indptr), k)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[n_relevant]
    keep = ideal > 0
    return float((dcg[keep] / ideal[keep]).mean()) if keep.any() else 0.0


@dataclass
class SelectionLog:
    """Every candidate tried and its validation score, in order."""

    tried: list[dict[str, Any]] = field(default_factory=list)

    def add(self, candidate: dict[str, Any], score: float) -> None:
        """Record one candidate."""
        self.tried.append({**candidate, "val_ndcg": round(score, 5)})

    def best(self) -> dict[str, Any]:
        """The best candidate so far (the first of equals: candidates are tried from the rule's centre out)."""
        return max(self.tried, key=lambda row: row["val_ndcg"])
