"""Biases + item and user neighbourhoods + latent factors, blended: the rating family.

Koren (2008) showed that neighbourhood and factor models err differently and that
their combination predicts ratings better than either. This family fits, on the
residuals ``r - (mu + b_u + b_i)`` of a bias baseline (Surprise ``BaselineOnly``):

- **item neighbourhood** (Surprise ``KNNBaseline``, item-based): the weighted mean
  residual of the user's ``k`` rated anime most similar to the target, similarity =
  Pearson correlation of baseline residuals over common users, shrunk by
  ``(n - 1) / (n - 1 + shrinkage)``;
- **user neighbourhood**: the same with the roles of users and anime swapped, among
  the ``user_candidates`` users most similar to the query user;
- **latent factors**: ``p_u · q_i`` fitted to the residuals by alternating least
  squares with a penalty proportional to each row's count (ALS-WR, Zhou et al. 2008).

Representations for ``similar_anime`` / ``similar_users`` are a truncated SVD of the
degree-normalised "who rated what" matrix (as in :mod:`.ease`): residual factors
describe taste beyond quality, which clusters anime less faithfully.

The three predictions are added to the baseline with weights fitted by least
squares on ``blend_fraction`` of each user's ratings held out from a first fit,
after which every part is refitted on all ratings. No per-data-set settings: the
weights are learned, the rest is one default configuration.

Memory: the item-item similarity matrix (4·n² bytes for n anime; ~1.2 GB at
MyAnimeList's 17,500 anime) plus a few copies of the ratings.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from .base import Interactions, RecommenderModel, biases, spectral_vectors

logger = logging.getLogger(__name__)

# Elements per block when a users x users or rows x f² intermediate is built: bounds memory.
_BLOCK_ELEMENTS = 1 << 24
# Entities x co-entities up to this size are multiplied as dense matrices (faster than sparse products).
_DENSE_LIMIT = 1 << 26


def _pearson_baseline(residual: sp.csr_matrix, rated: sp.csr_matrix, rows: np.ndarray | None, shrinkage: float) -> np.ndarray:
    """Shrunk Pearson-baseline similarity of ``rows`` of ``residual`` with all its rows (float32, dense).

    ``residual`` and ``rated`` are entities x co-entities (users x anime for user
    similarity, their transposes for anime similarity). Small matrices go through
    dense BLAS products, large ones stay sparse.
    """
    R = residual if rows is None else residual[rows]
    M = rated if rows is None else rated[rows]
    if residual.shape[0] * residual.shape[1] <= _DENSE_LIMIT:
        dense = residual.toarray()
        all_r, all_m, all_sq = dense, rated.toarray(), dense * dense
        R, M = R.toarray(), M.toarray()
        num, sq_self = R @ all_r.T, (R * R) @ all_m.T
        sq_other, common = M @ all_sq.T, M @ all_m.T
    else:
        squared = residual.multiply(residual).tocsr()
        num = (R @ residual.T).toarray()
        sq_self = (R.multiply(R) @ rated.T).toarray()  # the query's squares over common co-entities
        sq_other = (M @ squared.T).toarray()
        common = (M @ rated.T).toarray()
    with np.errstate(divide="ignore", invalid="ignore"):
        sim = num / np.sqrt(sq_self * sq_other)
    sim = np.where(np.isfinite(sim) & (common > 1), sim * (common - 1) / (common - 1 + shrinkage), 0.0)
    return sim.astype(np.float32)


def _weighted_neighbour_mean(sims: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """Row-wise mean of ``values`` over each row's ``k`` most similar columns with positive similarity (0 if none).

    The k-th largest similarity of each row is found with ``np.partition`` (cheaper than
    ``argpartition`` plus a gather); a tie at the cut keeps every tied column.
    """
    positive = np.maximum(sims, 0.0)
    if sims.shape[1] > k:
        kth = np.partition(positive, sims.shape[1] - k, axis=1)[:, sims.shape[1] - k]
        positive = np.where(positive >= kth[:, None], positive, 0.0)
    weight = positive.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(weight > 0, (positive @ values) / weight, 0.0)


def _als_side(ratings: sp.csr_matrix, fixed: np.ndarray, reg: float) -> np.ndarray:
    """Solve every row's factors given the other side's ``fixed`` factors (ALS-WR: penalty reg · count)."""
    n_rows, f = ratings.shape[0], fixed.shape[1]
    outer = np.einsum("if,ig->ifg", fixed, fixed).reshape(len(fixed), f * f)
    indicator = ratings.copy()
    indicator.data = np.ones_like(indicator.data)
    counts = np.diff(ratings.indptr)
    out = np.zeros((n_rows, f))
    block = max(1, _BLOCK_ELEMENTS // (f * f))
    eye = np.eye(f)
    for start in range(0, n_rows, block):
        stop = min(start + block, n_rows)
        gram = (indicator[start:stop] @ outer).reshape(-1, f, f) + reg * np.maximum(counts[start:stop], 1)[:, None, None] * eye
        rhs = ratings[start:stop] @ fixed
        out[start:stop] = np.linalg.solve(gram, rhs[..., None])[..., 0]
    return out


class _Parts:
    """The fitted parts (baseline, neighbourhoods, factors) before blending."""

    def __init__(self, data: Interactions, p: dict[str, Any]) -> None:
        self.k = int(p["k"])
        self.user_candidates = int(p["user_candidates"])
        self.shrinkage = float(p["shrinkage"])
        self.mu, self.b_user, self.b_item = biases(data, float(p["reg_item"]), float(p["reg_user"]), int(p["bias_sweeps"]))
        resid = data.ratings - self.mu - self.b_user[data.user_rows] - self.b_item[data.item_rows]
        self.residual = data.matrix(resid).astype(np.float32).tocsr()
        self.rated = data.matrix().astype(np.float32).tocsr()
        residual_t, rated_t = self.residual.T.tocsr(), self.rated.T.tocsr()
        self.item_sim = _pearson_baseline(residual_t, rated_t, None, self.shrinkage)
        np.fill_diagonal(self.item_sim, 0.0)
        rng = np.random.default_rng(int(p["seed"]))
        f = int(p["factors"])
        self.P = rng.normal(0, 0.1, (data.shape[0], f))
        self.Q = rng.normal(0, 0.1, (data.shape[1], f))
        for _ in range(int(p["iterations"])):
            self.P = _als_side(self.residual, self.Q, float(p["factor_reg"]))
            self.Q = _als_side(residual_t, self.P, float(p["factor_reg"]))

    def baseline(self, user_row: int) -> np.ndarray:
        return self.mu + self.b_user[user_row] + self.b_item

    def features(self, user_rows: np.ndarray) -> np.ndarray:
        """``(len(users), n_items, 3)``: item-neighbourhood, user-neighbourhood and factor terms."""
        users = np.asarray(user_rows, np.int64)
        out = np.zeros((len(users), self.item_sim.shape[0], 3), np.float32)
        block = max(1, _BLOCK_ELEMENTS // max(self.residual.shape[0], 1))
        for start in range(0, len(users), block):
            chunk = users[start : start + block]
            user_sim = _pearson_baseline(self.residual, self.rated, chunk, self.shrinkage)
            user_sim[np.arange(len(chunk)), chunk] = 0.0
            for j, (u, sims) in enumerate(zip(chunk.tolist(), user_sim)):
                out[start + j, :, 0] = self._item_term(u)
                out[start + j, :, 1] = self._user_term(sims)
        out[:, :, 2] = self.P[users] @ self.Q.T
        return out

    def _item_term(self, u: int) -> np.ndarray:
        lo, hi = self.residual.indptr[u], self.residual.indptr[u + 1]
        rated, values = self.residual.indices[lo:hi], self.residual.data[lo:hi]
        if len(rated) == 0:
            return np.zeros(self.item_sim.shape[0], np.float32)
        # item_sim is symmetric: gathering rows and transposing is ~5x faster than gathering columns.
        return _weighted_neighbour_mean(np.ascontiguousarray(self.item_sim[rated].T), values, self.k)

    def _user_term(self, sims: np.ndarray) -> np.ndarray:
        """Per anime, the similarity-weighted mean residual of its k raters most similar to the user."""
        n_items = self.residual.shape[1]
        positive = np.flatnonzero(sims > 0)
        if len(positive) == 0:
            return np.zeros(n_items, np.float32)
        if len(positive) > self.user_candidates:
            positive = positive[np.argpartition(-sims[positive], self.user_candidates - 1)[: self.user_candidates]]
        order = positive[np.lexsort((positive, -sims[positive]))]  # most similar first
        block = self.residual[order].tocsc()  # within each column, rows stay in similarity order
        block.sort_indices()
        column = np.repeat(np.arange(n_items), np.diff(block.indptr))
        rank = np.arange(block.nnz) - block.indptr[column]
        keep = rank < self.k
        weight = sims[order][block.indices[keep]]
        num = np.bincount(column[keep], weights=weight * block.data[keep], minlength=n_items)
        den = np.bincount(column[keep], weights=weight, minlength=n_items)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, num / den, 0.0)


class Neighbourhood(RecommenderModel):
    """Rating family (see the module docstring).

    Args:
        reg_item, reg_user, bias_sweeps: Bias baseline (Surprise ``BaselineOnly`` defaults).
        k: Neighbours per prediction (both neighbourhoods).
        shrinkage: Similarity shrinkage towards 0 for few common ratings.
        user_candidates: Most similar users considered by the user neighbourhood.
        factors, factor_reg, iterations: ALS-WR latent factors on the residuals.
        blend_fraction: Share of each user's ratings held out to fit the blend weights.
        embedding_size: Dimensions of the SVD representations.
        seed: Seed of the hold-out and the factor initialisation.
    """

    family = "neighbourhood"
    defaults: ClassVar[dict[str, Any]] = {"reg_item": 10.0, "reg_user": 15.0, "bias_sweeps": 10, "k": 40, "shrinkage": 100.0,
                                "user_candidates": 400, "factors": 64, "factor_reg": 0.1, "iterations": 10,
                                "blend_fraction": 0.1, "embedding_size": 64, "seed": 0}

    def _fit(self, data: Interactions) -> None:
        p = self.params
        fit_part, held = data.holdout(float(p["blend_fraction"]), int(p["seed"]))
        weights = np.ones(3)
        if len(held) >= 10:
            first = _Parts(fit_part, p)
            users, inverse = np.unique(held.user_rows, return_inverse=True)
            feats = first.features(users)[inverse, held.item_rows]
            base = first.mu + first.b_user[held.user_rows] + first.b_item[held.item_rows]
            # A little ridge keeps the weights sane when the hold-out is tiny.
            gram = feats.T.astype(np.float64) @ feats + 1e-3 * len(held) * np.eye(3)
            weights = np.linalg.solve(gram, feats.T.astype(np.float64) @ (held.ratings - base))
        self._weights = weights.astype(np.float64)
        self._parts = _Parts(data, p)
        self._U, self._V = spectral_vectors(data.matrix(), int(p["embedding_size"]), int(p["seed"]))
        self.fit_info = {"blend": [round(float(w), 3) for w in weights]}
        logger.info("neighbourhood blend weights (item, user, factors): %s", self.fit_info["blend"])

    def baseline(self) -> tuple[float, np.ndarray, np.ndarray]:
        """The bias baseline the neighbourhoods and factors correct."""
        return self._parts.mu, self._parts.b_user, self._parts.b_item

    def predict_users(self, user_rows: np.ndarray) -> np.ndarray:
        """``(len(users), n_items)`` predicted ratings (raw scale, clipped)."""
        users = np.asarray(user_rows, np.int64)
        parts = self._parts
        base = parts.mu + parts.b_user[users][:, None] + parts.b_item[None, :]
        return self.clip(base + parts.features(users) @ self._weights)

    def predict(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        """Predicted ratings of pairs (each distinct user's row is computed once)."""
        user_rows, item_rows = np.asarray(user_rows, np.int64), np.asarray(item_rows, np.int64)
        users, inverse = np.unique(user_rows, return_inverse=True)
        out = np.empty(len(user_rows))
        for start in range(0, len(users), 256):  # bounds the users x anime block in memory
            pick = (inverse >= start) & (inverse < start + 256)
            out[pick] = self.predict_users(users[start : start + 256])[inverse[pick] - start, item_rows[pick]]
        return out

    def predict_user(self, user_row: int) -> np.ndarray:
        """Predicted ratings of one user for every anime."""
        return self.predict_users(np.array([user_row]))[0]

    def rank_scores(self, user_rows: np.ndarray) -> np.ndarray:
        """The predicted ratings (this family ranks by rating)."""
        return self.predict_users(user_rows).astype(np.float32)

    def item_vectors(self) -> np.ndarray:
        """SVD item vectors."""
        return self._V

    def user_vectors(self) -> np.ndarray:
        """SVD user vectors."""
        return self._U

    def _arrays(self) -> dict[str, Any]:
        parts = self._parts
        return {"weights": self._weights, "mu": np.array([parts.mu]), "b_user": parts.b_user, "b_item": parts.b_item,
                "residual": parts.residual, "item_sim": parts.item_sim, "P": parts.P, "Q": parts.Q,
                "user_vectors": self._U, "item_vectors": self._V}

    def _from_arrays(self, arrays: dict[str, Any]) -> None:
        parts = _Parts.__new__(_Parts)
        p = self.params
        parts.k, parts.user_candidates, parts.shrinkage = int(p["k"]), int(p["user_candidates"]), float(p["shrinkage"])
        parts.mu, parts.b_user, parts.b_item = float(arrays["mu"][0]), arrays["b_user"], arrays["b_item"]
        parts.residual = arrays["residual"].astype(np.float32)
        parts.rated = parts.residual.copy()
        parts.rated.data = np.ones_like(parts.rated.data)
        parts.item_sim, parts.P, parts.Q = arrays["item_sim"], arrays["P"], arrays["Q"]
        self._parts, self._weights = parts, arrays["weights"]
        self._U, self._V = arrays["user_vectors"], arrays["item_vectors"]
