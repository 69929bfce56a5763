"""Biases + item and user neighbourhoods + latent factors, blended: the rating family.

Koren (2008) showed that neighbourhood and factor models err differently and that
their combination predicts ratings better than either. This family fits, on the
residuals ``r - (mu + b_u + b_i)`` of a bias baseline (Surprise ``BaselineOnly``):

- **item neighbourhood** (Surprise ``KNNBaseline``, item-based): the weighted mean
  residual of the user's ``k`` rated anime most similar to the target, similarity =
  Pearson correlation of baseline residuals over common users, shrunk by
  ``(n - 1) / (n - 1 + shrinkage)``;
- **user neighbourhood**: the same with the roles of users and anime swapped, among
  the ``user_candidates`` users most similar to the query user; beyond ``user_pool`` users,
  similarities are computed only with the ``user_pool`` users whose latent factors are
  closest to the query user's (one Pearson pass over every user would cost ~0.4 s a query
  at 220k users; the pool costs a few ms);
- **latent factors**: ``p_u · q_i`` fitted to the residuals by alternating least
  squares with a penalty proportional to each row's count (ALS-WR, Zhou et al. 2008).

Representations for ``similar_anime`` / ``similar_users`` are a truncated SVD of the
degree-normalised "who rated what" matrix (as in :mod:`.ease`): residual factors
describe taste beyond quality, which clusters anime less faithfully.

The three predictions are added to the baseline with weights fitted by least
squares on ``blend_fraction`` of each user's ratings held out from a first fit,
after which every part is refitted on all ratings. No per-data-set settings: the
weights are learned, the rest is one default configuration.

Memory (:meth:`Neighbourhood.memory_estimate`, logged before fitting, which stops in one
line if the machine lacks it): the item-item similarity matrix (4·n² bytes for n anime;
~1.2 GB at MyAnimeList's 17,500 anime), ~100 bytes per rating, and blocks of bounded size:
similarities, ALS Gram matrices and the blend's features are computed a block at a time,
and the blend weights are fitted on at most ``blend_users`` users.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, ClassVar

import numba
import numpy as np
import scipy.sparse as sp

from anime_recs.core.progress import stage
from anime_recs.models.base import FoldIn, Interactions, RecommenderModel, biases, spectral_vectors
from anime_recs.models.linalg import for_each_block

logger = logging.getLogger(__name__)

# Elements per block when a users x users or rows x f² intermediate is built: bounds memory.
_BLOCK_ELEMENTS = 1 << 24
# Fixed rows x f² flattened outer products made at once by ALS (float64: 512 MB).
_OUTER_ELEMENTS = 1 << 26
# Entities x co-entities up to this size are multiplied as dense matrices (faster than sparse products).
_DENSE_LIMIT = 1 << 26


def _times_rows(matrix: sp.csr_matrix, rows: sp.csr_matrix) -> np.ndarray:
    """``rows @ matrix.T`` as a dense array, computed as ``(matrix @ rows.T).T``.

    Written the direct way, scipy converts the whole of ``matrix`` to CSC on every call (0.4 s at 220k users, most
    of a query's time); transposing the few ``rows`` instead costs nothing.
    """
    return np.asarray((matrix @ rows.T.tocsr()).T.toarray())


def _shrunk_pearson(num: np.ndarray, sq_self: np.ndarray, sq_other: np.ndarray, common: np.ndarray,
                    shrinkage: float) -> np.ndarray:
    """Pearson similarity from its sums, shrunk by ``(n - 1) / (n - 1 + shrinkage)``; 0 for under two common ratings."""
    with np.errstate(divide="ignore", invalid="ignore"):
        sim = num / np.sqrt(sq_self * sq_other)
    return np.where(np.isfinite(sim) & (common > 1), sim * (common - 1) / (common - 1 + shrinkage), 0.0)


def _pearson_baseline(residual: sp.csr_matrix, rated: sp.csr_matrix, rows: np.ndarray | None, shrinkage: float,
                      squared: sp.csr_matrix | None = None) -> np.ndarray:
    """Shrunk Pearson-baseline similarity of ``rows`` of ``residual`` with all its rows (float32, dense).

    ``residual`` and ``rated`` are entities x co-entities (users x anime for user
    similarity, their transposes for anime similarity); ``squared`` is ``residual``
    squared elementwise, when the caller has it. Rows are done in blocks, so the
    temporaries stay near :data:`_BLOCK_ELEMENTS` whatever the size; many rows of a small
    matrix go through dense BLAS products, the rest stay sparse.
    """
    n_entities = residual.shape[0]
    rows = np.arange(n_entities) if rows is None else np.asarray(rows, np.int64)
    out = np.empty((len(rows), n_entities), np.float32)
    dense = len(rows) >= 64 and residual.shape[0] * residual.shape[1] <= _DENSE_LIMIT
    if dense:
        all_r, all_m = residual.toarray(), rated.toarray()
        all_sq = all_r * all_r
    elif squared is None:
        squared = residual.multiply(residual).tocsr()
    block = max(1, _BLOCK_ELEMENTS // max(n_entities, 1))

    def similarities(start: int, stop: int) -> None:
        chunk = rows[start:stop]
        if dense:
            R, M = all_r[chunk], all_m[chunk]
            num, sq_self = R @ all_r.T, (R * R) @ all_m.T
            sq_other, common = M @ all_sq.T, M @ all_m.T
        else:
            R, M = residual[chunk], rated[chunk]
            num = _times_rows(residual, R)
            sq_self = _times_rows(rated, R.multiply(R))  # the query's squares over common co-entities
            sq_other = _times_rows(squared, M)
            common = _times_rows(rated, M)
        out[start:stop] = _shrunk_pearson(num, sq_self, sq_other, common, shrinkage)

    for_each_block(similarities, len(rows), block)
    return out


@numba.njit(cache=True, nogil=True)
def _pool_sums(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, pool: np.ndarray, dense: np.ndarray,
               rated: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover (compiled)
    """Pearson sums of each query user ``a`` with each user ``pool[a, b]`` over the anime both rated.

    ``indptr, indices, data``: the users x anime residual matrix (CSR); ``dense[a]``/``rated[a]``: query user
    ``a``'s residual row and which anime they rated. Returns the cross products, the query's squares, the
    pool user's squares and the counts, each ``pool``-shaped.
    """
    num, sq_self = np.zeros(pool.shape), np.zeros(pool.shape)
    sq_other, common = np.zeros(pool.shape), np.zeros(pool.shape)
    for a in range(pool.shape[0]):
        for b in range(pool.shape[1]):
            row = pool[a, b]
            for k in range(indptr[row], indptr[row + 1]):
                j = indices[k]
                if rated[a, j]:
                    mine, theirs = np.float64(dense[a, j]), np.float64(data[k])
                    num[a, b] += mine * theirs
                    sq_self[a, b] += mine * mine
                    sq_other[a, b] += theirs * theirs
                    common[a, b] += 1.0
    return num, sq_self, sq_other, common


def weighted_neighbour_mean(sims: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
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
    """Solve every row's factors given the other side's ``fixed`` factors (ALS-WR: penalty reg · count).

    Each row's Gram matrix is the sum of ``q qᵀ`` over the fixed rows it rated: a sparse
    indicator times the fixed rows' flattened outer products, a block of rows at a time. When
    those outer products would exceed :data:`_OUTER_ELEMENTS` (325k users x 64² is 10 GB), they
    are made a chunk of fixed rows at a time and the products summed.
    """
    n_rows, n_fixed, f = ratings.shape[0], len(fixed), fixed.shape[1]
    chunk = max(1, _OUTER_ELEMENTS // (f * f))
    chunks = [(start, min(start + chunk, n_fixed)) for start in range(0, n_fixed, chunk)]

    def outer(start: int, stop: int) -> np.ndarray:
        return np.einsum("if,ig->ifg", fixed[start:stop], fixed[start:stop]).reshape(stop - start, f * f)

    whole = outer(0, n_fixed) if len(chunks) == 1 else None
    indicator = ratings.copy()
    indicator.data = np.ones_like(indicator.data)
    counts = np.diff(ratings.indptr)
    out = np.zeros((n_rows, f))
    block = max(1, _BLOCK_ELEMENTS // (f * f))
    eye = np.eye(f)

    def solve(start: int, stop: int) -> None:
        if whole is not None:
            gram = indicator[start:stop] @ whole
        else:
            rated = indicator[start:stop].tocsc()  # column slices of CSC are cheap
            gram = sum(rated[:, a:b] @ outer(a, b) for a, b in chunks)
        gram = gram.reshape(-1, f, f) + reg * np.maximum(counts[start:stop], 1)[:, None, None] * eye
        rhs = ratings[start:stop] @ fixed
        out[start:stop] = np.linalg.solve(gram, rhs[..., None])[..., 0]

    for_each_block(solve, n_rows, block)
    return out


def blend_weights(features: np.ndarray, target: np.ndarray, user_term_min_gain: float) -> tuple[np.ndarray, float]:
    """Least-squares weights of the three terms on held-out residuals, the user term only where it pays.

    The user neighbourhood is the one term whose cost grows with the users (a similarity pass per query). It is
    kept when it lowers the held-out RMSE by at least ``user_term_min_gain`` (relative) over the blend of the other
    two, else its weight is 0 and it is never computed. A little ridge keeps the weights sane on a tiny hold-out.

    Returns:
        The weights (item, user, factors) and the user term's relative RMSE gain.
    """
    def fit(columns: list[int]) -> tuple[np.ndarray, float]:
        X = features[:, columns].astype(np.float64)
        w = np.linalg.solve(X.T @ X + 1e-3 * len(X) * np.eye(len(columns)), X.T @ target)
        return w, float(np.sqrt(np.mean((target - X @ w) ** 2)))

    every, rmse_every = fit([0, 1, 2])
    without, rmse_without = fit([0, 2])
    gain = (rmse_without - rmse_every) / max(rmse_without, 1e-12)
    if gain >= user_term_min_gain:
        return every, gain
    return np.array([without[0], 0.0, without[1]]), gain


def _sample_users(held: Interactions, max_users: int, seed: int) -> Interactions:
    """``held`` restricted to at most ``max_users`` of its users (all of them when there are fewer)."""
    users = np.unique(held.user_rows)
    if len(users) <= max_users:
        return held
    keep = np.random.default_rng(seed).choice(users, max_users, replace=False)
    return held.take(np.flatnonzero(np.isin(held.user_rows, keep)))


class _Parts:
    """The fitted parts (baseline, neighbourhoods, factors) before blending."""

    def __init__(self, data: Interactions, p: dict[str, Any]) -> None:
        self.configure(p)
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

    #: Whether :meth:`features` computes the user-neighbourhood term (False once the blend gives it weight 0).
    use_user_term = True

    def configure(self, p: dict[str, Any]) -> None:
        """Set the query-time options from the family's parameters."""
        self.k = int(p["k"])
        self.user_candidates = int(p["user_candidates"])
        self.user_pool = int(p.get("user_pool", Neighbourhood.defaults["user_pool"]))
        self.shrinkage = float(p["shrinkage"])

    def extend_to(self, data: Interactions, reg_user: float, factor_reg: float) -> None:
        """Give every user of ``data`` a bias, residuals and factors, keeping the fitted item side.

        Used when the parts were fitted on a sample of users: each user's bias is the regularised mean
        of their ratings against ``mu`` and the item biases (the bias model's user step) and their
        factors one ALS-WR user step against the fitted item factors; the sample's users get the same.
        """
        n_users = data.shape[0]
        counts = np.bincount(data.user_rows, minlength=n_users)
        offset = data.ratings - self.mu - self.b_item[data.item_rows]
        self.b_user = np.bincount(data.user_rows, weights=offset, minlength=n_users) / (counts + reg_user)
        self.residual = data.matrix(offset - self.b_user[data.user_rows]).astype(np.float32).tocsr()
        self.rated = data.matrix().astype(np.float32).tocsr()
        self.__dict__.pop("squared", None)
        self.__dict__.pop("pool_factors", None)
        self.P = _als_side(self.residual, self.Q, factor_reg)

    @functools.cached_property
    def squared(self) -> sp.csr_matrix:
        """The residuals squared (user similarities need them on every query)."""
        return self.residual.multiply(self.residual).tocsr()

    @functools.cached_property
    def pool_factors(self) -> np.ndarray:
        """The users' factors as float32 (the user pool is chosen by their dot products)."""
        return np.ascontiguousarray(self.P, dtype=np.float32)

    def user_similarities(self, users: np.ndarray) -> np.ndarray:
        """``(len(users), n_users)`` shrunk Pearson-baseline similarities (0 with oneself).

        Up to ``user_pool`` users, with every user; beyond, with the ``user_pool`` users whose factors have
        the largest dot product with the query user's (0 with the rest).
        """
        n_users = self.residual.shape[0]
        if n_users <= self.user_pool + 1:
            sims = _pearson_baseline(self.residual, self.rated, users, self.shrinkage, self.squared)
            sims[np.arange(len(users)), users] = 0.0
            return sims
        sims = np.zeros((len(users), n_users), np.float32)
        # Query users a few at a time: their pools' ratings (pool size x mean ratings each) stay near a block.
        per_user = self.user_pool * max(1, self.residual.nnz // n_users)
        step = max(1, _BLOCK_ELEMENTS // per_user)
        for start in range(0, len(users), step):
            chunk = users[start : start + step]
            closeness = self.pool_factors[chunk] @ self.pool_factors.T
            closeness[np.arange(len(chunk)), chunk] = -np.inf
            pool = np.argpartition(-closeness, self.user_pool - 1, axis=1)[:, : self.user_pool]
            sims[np.arange(start, start + len(chunk))[:, None], pool] = self._pool_pearson(chunk, pool)
        return sims

    def _pool_pearson(self, users: np.ndarray, pool: np.ndarray) -> np.ndarray:
        """``(len(users), pool size)``: similarity of each query user with each user of its pool.

        The four sums of the Pearson formula come from one compiled pass over the pool users' ratings
        (:func:`_pool_sums`), each looked up in its query user's dense residual row.
        """
        n_items = self.residual.shape[1]
        query = self.residual[users]
        dense = np.zeros((len(users), n_items), np.float32)
        rated = np.zeros((len(users), n_items), np.bool_)
        query_rows = np.repeat(np.arange(len(users)), np.diff(query.indptr))
        dense[query_rows, query.indices] = query.data
        rated[query_rows, query.indices] = True
        num, sq_self, sq_other, common = _pool_sums(self.residual.indptr, self.residual.indices, self.residual.data,
                                                    np.ascontiguousarray(pool, np.int64), dense, rated)
        return _shrunk_pearson(num, sq_self, sq_other, common, self.shrinkage).astype(np.float32)

    def features(self, user_rows: np.ndarray, item_rows: np.ndarray | None = None) -> np.ndarray:
        """``(len(users), len(items), 3)``: item-neighbourhood, user-neighbourhood and factor terms.

        ``item_rows`` (default: every anime) limits the work to those anime: a served answer needs ten.
        """
        users = np.asarray(user_rows, np.int64)
        items = np.arange(self.item_sim.shape[0]) if item_rows is None else np.asarray(item_rows, np.int64)
        out = np.zeros((len(users), len(items), 3), np.float32)
        block = max(1, _BLOCK_ELEMENTS // max(self.residual.shape[0], 1))
        for start in range(0, len(users), block):
            chunk = users[start : start + block]
            user_sim = self.user_similarities(chunk) if self.use_user_term else None
            for j, u in enumerate(chunk.tolist()):
                out[start + j, :, 0] = self._item_term(u, items)
                if user_sim is not None:
                    out[start + j, :, 1] = self._user_term(user_sim[j], items)
        out[:, :, 2] = self.P[users] @ self.Q[items].T
        return out

    def features_at(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        """``(len(pairs), 3)``: :meth:`features` of the pairs only, a block of users at a time."""
        users, inverse = np.unique(np.asarray(user_rows, np.int64), return_inverse=True)
        item_rows = np.asarray(item_rows, np.int64)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(users) + 1))
        out = np.empty((len(inverse), 3), np.float32)
        block = max(1, _BLOCK_ELEMENTS // (3 * max(self.item_sim.shape[0], 1)))
        for start in range(0, len(users), block):  # blocks of users bound the users x anime x 3 array
            stop = min(start + block, len(users))
            pairs = order[bounds[start] : bounds[stop]]
            out[pairs] = self.features(users[start:stop])[inverse[pairs] - start, item_rows[pairs]]
        return out

    def _item_term(self, u: int, items: np.ndarray) -> np.ndarray:
        """Per anime of ``items``, the similarity-weighted mean residual of the user's k most similar rated anime."""
        lo, hi = self.residual.indptr[u], self.residual.indptr[u + 1]
        rated, values = self.residual.indices[lo:hi], self.residual.data[lo:hi]
        if len(rated) == 0:
            return np.zeros(len(items), np.float32)
        if len(items) == self.item_sim.shape[0]:
            # item_sim is symmetric: gathering rows and transposing is ~5x faster than gathering columns.
            sims = np.ascontiguousarray(self.item_sim[rated].T)
        else:
            sims = np.ascontiguousarray(self.item_sim[np.ix_(items, rated)])
        return weighted_neighbour_mean(sims, values, self.k)

    def _user_term(self, sims: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Per anime of ``items``, the similarity-weighted mean residual of its k raters most similar to the user."""
        n_items = len(items)
        positive = np.flatnonzero(sims > 0)
        if len(positive) == 0:
            return np.zeros(n_items, np.float32)
        if len(positive) > self.user_candidates:
            positive = positive[np.argpartition(-sims[positive], self.user_candidates - 1)[: self.user_candidates]]
        order = positive[np.lexsort((positive, -sims[positive]))]  # most similar first
        block = self.residual[order].tocsc()  # within each column, rows stay in similarity order
        if n_items != self.residual.shape[1]:
            block = block[:, items]
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
        user_pool: Beyond this many users, each user's similarities are computed with this many users
            only: those whose latent factors are closest.
        user_term_min_gain: The user neighbourhood is kept only if it lowers the blend's held-out RMSE by at
            least this share (0.001 = 0.1%); else it is dropped (it costs a similarity pass per query).
        factors, factor_reg, iterations: ALS-WR latent factors on the residuals.
        blend_fraction: Share of each user's ratings held out to fit the blend weights.
        blend_users: At most this many users' held-out ratings fit them (three weights need few;
            the neighbourhood terms cost ~1 ms per user).
        embedding_size: Dimensions of the SVD representations.
        seed: Seed of the hold-out and the factor initialisation.
    """

    family = "neighbourhood"
    tuning_objective = ("RMSE", False)
    tuning_grid: ClassVar[dict[str, tuple[Any, ...]]] = {"factors": (16, 32, 64), "k": (20, 40)}
    hybrid_part = "rating"
    defaults: ClassVar[dict[str, Any]] = {"reg_item": 10.0, "reg_user": 15.0, "bias_sweeps": 10, "k": 40, "shrinkage": 100.0,
                                "user_candidates": 400, "user_pool": 2000, "user_term_min_gain": 0.001, "factors": 64, "factor_reg": 0.1, "iterations": 10,
                                "blend_fraction": 0.1, "blend_users": 2000, "fit_users": 20000, "embedding_size": 64,
                                "seed": 0}

    #: Whether :meth:`fit` makes the SVD representations (the hybrid uses its ranking part's instead).
    representations = True

    def _fit(self, data: Interactions) -> None:
        p = self.params
        sample = data.subsample(int(p["fit_users"]), data.shape[1], int(p["seed"]))
        fit_part, held = sample.holdout(float(p["blend_fraction"]), int(p["seed"]))
        weights, user_gain = np.ones(3), None
        held = _sample_users(held, int(p["blend_users"]), int(p["seed"]))
        if len(held) >= 10:
            stage("neighbourhood: blend weights")
            first = _Parts(fit_part, p)
            feats = first.features_at(held.user_rows, held.item_rows)
            base = first.mu + first.b_user[held.user_rows] + first.b_item[held.item_rows]
            weights, user_gain = blend_weights(feats, held.ratings - base, float(p["user_term_min_gain"]))
            del first  # before the final fit: never two item-similarity matrices at once
        del fit_part, held
        self._weights = weights.astype(np.float64)
        logger.info("neighbourhood: final fit on %d users ...", sample.shape[0])
        stage(f"neighbourhood: final fit on {sample.shape[0]:,} users")
        self._parts = _Parts(sample, p)
        self._parts.use_user_term = bool(self._weights[1] != 0)
        if sample is not data:  # every user's bias, residuals and factors against the sample's item side
            stage(f"neighbourhood: extending to {data.shape[0]:,} users")
            self._parts.extend_to(data, float(p["reg_user"]), float(p["factor_reg"]))
        self._U = self._V = None
        if self.representations:
            stage("neighbourhood: SVD representations")
            self._U, self._V = spectral_vectors(data.matrix(), int(p["embedding_size"]), int(p["seed"]))
        self.fit_info = {"blend": [round(float(w), 3) for w in weights],
                         "user_term": {"rmse_gain": None if user_gain is None else round(user_gain, 5),
                                       "kept": bool(self._weights[1] != 0)}}
        if sample is not data:
            self.fit_info["fit_users"] = sample.shape[0]
        logger.info("neighbourhood blend weights (item, user, factors): %s", self.fit_info["blend"])

    def memory_estimate(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """Peak bytes of :meth:`fit` (one set of parts alive at a time).

        The item similarity matrix (float32 n x n), ~100 bytes per rating (the hold-out copies
        and the residual, indicator and squared matrices in both orientations), the similarity
        blocks (about eleven float32 arrays of :data:`_BLOCK_ELEMENTS`, plus the dense inputs of a
        small matrix), ALS (the fixed side's outer products, a block of Gram matrices, the
        factors) and the SVD's users x (k + 10) work arrays.
        """
        f, k = int(self.params["factors"]), int(self.params["embedding_size"]) + 10
        biggest = max(n_users, n_items)
        similarity_blocks = 44 * min(max(_BLOCK_ELEMENTS, biggest), biggest**2)
        if n_users * n_items <= _DENSE_LIMIT:
            similarity_blocks += 12 * n_users * n_items  # the dense residual, indicator and squares
        outer_rows = min(biggest, max(1, _OUTER_ELEMENTS // (f * f)))
        gram_rows = min(biggest, max(1, _BLOCK_ELEMENTS // (f * f)))
        als = 8 * f * f * (outer_rows + 2 * gram_rows)
        factors = 8 * f * (n_users + n_items)
        share = min(1.0, int(self.params["fit_users"]) / max(n_users, 1))
        extended = 48 * n_ratings if share < 1 else 0  # every user's residual, indicator and squares beside the sample's
        svd = 40 * k * (n_users + n_items) if self.representations else 0
        return int(4 * n_items**2 + 100 * share * n_ratings + extended + similarity_blocks + als + factors + svd)

    def baseline(self) -> tuple[float, np.ndarray, np.ndarray]:
        """The bias baseline the neighbourhoods and factors correct."""
        return self._parts.mu, self._parts.b_user, self._parts.b_item

    def predict_users(self, user_rows: np.ndarray) -> np.ndarray:
        """``(len(users), n_items)`` predicted ratings (raw scale, clipped)."""
        return self._predict_block(np.asarray(user_rows, np.int64), np.arange(self._parts.item_sim.shape[0]))

    def predict(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        """Predicted ratings of pairs (each distinct user's row is computed once, over the anime asked about)."""
        user_rows, item_rows = np.asarray(user_rows, np.int64), np.asarray(item_rows, np.int64)
        users, inverse = np.unique(user_rows, return_inverse=True)
        items, columns = np.unique(item_rows, return_inverse=True)
        out = np.empty(len(user_rows))
        for start in range(0, len(users), 256):  # bounds the users x anime block in memory
            pick = (inverse >= start) & (inverse < start + 256)
            out[pick] = self._predict_block(users[start : start + 256], items)[inverse[pick] - start, columns[pick]]
        return out

    def _predict_block(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``(len(users), len(items))`` predicted ratings (raw scale, clipped)."""
        parts = self._parts
        base = parts.mu + parts.b_user[users][:, None] + parts.b_item[items][None, :]
        return self.clip(base + parts.features(users, items) @ self._weights)

    def predict_user(self, user_row: int) -> np.ndarray:
        """Predicted ratings of one user for every anime."""
        return self.predict_users(np.array([user_row]))[0]

    def rank_scores(self, user_rows: np.ndarray) -> np.ndarray:
        """The predicted ratings (this family ranks by rating)."""
        return self.predict_users(user_rows).astype(np.float32)

    def fold_in_ratings(self, item_rows: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """Predicted ratings of a new user: bias + item neighbourhood + factors.

        The user's bias is solved against the fixed ``mu`` and item biases (the same regularised
        mean as in training), the item neighbourhood term comes from the given residuals and the
        factors from one ridge solve (ALS-WR) against the fixed item factors. The *user*
        neighbourhood term is left out: it would need a Pearson pass over every training user per query.
        """
        parts, p = self._parts, self.params
        residual_item = ratings - parts.mu - parts.b_item[item_rows]
        b_user = float(residual_item.sum() / (len(ratings) + float(p["reg_user"])))
        residual = residual_item - b_user
        item_term = weighted_neighbour_mean(np.ascontiguousarray(parts.item_sim[item_rows].T), residual, parts.k)
        Q = np.asarray(parts.Q, np.float64)
        q = Q[item_rows]
        gram = q.T @ q + float(p["factor_reg"]) * len(ratings) * np.eye(Q.shape[1])
        factors = np.linalg.solve(gram, q.T @ residual)
        weights = np.asarray(self._weights, np.float64)
        predicted = parts.mu + b_user + parts.b_item + weights[0] * item_term + weights[2] * (Q @ factors)
        return self.clip(predicted)

    def fold_in(self, item_rows: np.ndarray, ratings: np.ndarray) -> FoldIn:
        """This family ranks by its predicted ratings."""
        predicted = self.fold_in_ratings(item_rows, ratings)
        return FoldIn(predicted.astype(np.float32), predicted)

    def item_vectors(self) -> np.ndarray:
        """SVD item vectors."""
        return self._V

    def user_vectors(self) -> np.ndarray:
        """SVD user vectors."""
        return self._U

    def state_arrays(self) -> dict[str, Any]:
        parts = self._parts
        return {"weights": self._weights, "mu": np.array([parts.mu]), "b_user": parts.b_user, "b_item": parts.b_item,
                "residual": parts.residual, "item_sim": parts.item_sim, "P": parts.P, "Q": parts.Q,
                **({"user_vectors": self._U, "item_vectors": self._V} if self._U is not None else {})}

    def set_state_arrays(self, arrays: dict[str, Any]) -> None:
        parts = _Parts.__new__(_Parts)
        p = self.params
        parts.configure(p)
        parts.mu, parts.b_user, parts.b_item = float(arrays["mu"][0]), arrays["b_user"], arrays["b_item"]
        parts.residual = arrays["residual"].astype(np.float32)
        parts.rated = parts.residual.copy()
        parts.rated.data = np.ones_like(parts.rated.data)
        parts.item_sim, parts.P, parts.Q = arrays["item_sim"], arrays["P"], arrays["Q"]
        self._parts, self._weights = parts, arrays["weights"]
        parts.use_user_term = bool(np.asarray(self._weights)[1] != 0)
        self._U, self._V = arrays.get("user_vectors"), arrays.get("item_vectors")
