"""EASE on graded feedback: a closed-form item-item model that ranks what a user will like.

Steck (2019), "Embarrassingly Shallow Autoencoders for Sparse Data": with ``X`` the
users x items input and ``P = (XᵀX + λI)⁻¹``, the item-item weights with a zero
diagonal are ``B = P XᵀY − P·diag(γ)``, ``γ`` chosen so that ``diag(B) = 0``; a
user's scores are ``x_u B``. The published model uses ``Y = X`` (binary). Here the
input is graded, ``X = rated + liked_weight · liked`` (every rating says the user
chose the anime; a high one says they liked it), and the target is ``Y = liked``,
the anime rated in the top quarter of the scale (``like_threshold``): the model
learns what a user will *like*, not only what they will watch. The regularisation
follows a rule that scales with the data, ``λ = l2_per_count · (mean ratings per
anime)``, so one setting serves every data set (chosen on validation splits by
``anime-recs tune``).

Ratings (:meth:`EASE.predict`) come from user and item biases; representations for
``similar_anime`` / ``similar_users`` from a truncated SVD of the degree-normalised
input (items that the same users choose point the same way).

Memory (:meth:`EASE.memory_estimate`, logged before fitting, which stops in one line if
the machine lacks it): two float64 n x n arrays at the peak, 16·n² bytes for n anime
(4.9 GB at MyAnimeList's 17,500 anime), plus ~64 bytes per rating of sparse copies.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from anime_recs.core.errors import UserInputError
from anime_recs.models.base import FoldIn, Interactions, RecommenderModel, biases, spectral_vectors

logger = logging.getLogger(__name__)


#: Rows per block when a dense n x n matrix is rewritten in place (bounds the temporaries).
_BLOCK_ROWS = 2048


def inverse_spd(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive-definite float64 matrix by Cholesky, in ``matrix``'s own memory."""
    factor, _ = sla.cho_factor(matrix, lower=True, overwrite_a=True, check_finite=False)
    inverse, info = sla.lapack.dpotri(factor, lower=1, overwrite_c=1)
    if info != 0:
        raise UserInputError(f"EASE: the regularised Gram matrix is not positive definite (LAPACK info {info}); raise l2_per_count")
    # dpotri fills the lower triangle; mirror it block by block so no second n x n array is needed.
    n = inverse.shape[0]
    for start in range(0, n, _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, n)
        diagonal = inverse[start:stop, start:stop]
        diagonal[...] = np.tril(diagonal) + np.tril(diagonal, -1).T
        inverse[start:stop, stop:] = inverse[stop:, start:stop].T
    return inverse


def ease_weights(X: sp.csr_matrix, Y: sp.csr_matrix, l2: float) -> np.ndarray:
    """Item-item weights ``B`` (float32, zero diagonal) mapping input rows ``X`` to targets ``Y``.

    The Gram matrix, ``XᵀY`` and ``B`` are built a block of columns at a time, so the peak is two
    float64 n x n arrays (16·n² bytes for n items) plus the ratings; see :meth:`EASE.memory_estimate`.
    """
    X64, Y64 = X.astype(np.float64).tocsc(), Y.astype(np.float64).tocsc()
    Xt = X64.T.tocsr()
    n = X.shape[1]
    blocks = [(start, min(start + _BLOCK_ROWS, n)) for start in range(0, n, _BLOCK_ROWS)]
    P = np.empty((n, n))
    for start, stop in blocks:
        P[:, start:stop] = (Xt @ X64[:, start:stop]).toarray()
    P[np.diag_indices_from(P)] += l2
    P = inverse_spd(P)
    C = np.empty((n, n))
    for start, stop in blocks:
        C[:, start:stop] = P @ (Xt @ Y64[:, start:stop]).toarray()
    P *= (np.diag(C) / np.diag(P))[None, :]
    C -= P
    del P
    np.fill_diagonal(C, 0.0)
    B = np.empty((n, n), np.float32)
    for start, stop in blocks:  # float32 a block at a time: no second full-size temporary
        B[start:stop] = C[start:stop]
    return B


class EASE(RecommenderModel):
    """Ranking family (see the module docstring).

    Args:
        l2_per_count: λ divided by the mean number of ratings per anime.
        liked_weight: Extra input weight of a liked anime over a merely rated one.
        like_threshold: Fraction of the scale at or above which a rating is "liked".
        embedding_size: Dimensions of the SVD representations.
        reg_item, reg_user, bias_sweeps: The bias model behind :meth:`predict`.
        seed: Seed of the randomized SVD.
    """

    family = "ease"
    tuning_objective = ("nDCG@10", True)
    tuning_grid: ClassVar[dict[str, tuple[Any, ...]]] = {"l2_per_count": (40, 80, 160), "liked_weight": (1, 2, 4)}
    hybrid_part = "ranking"
    defaults: ClassVar[dict[str, Any]] = {"l2_per_count": 80.0, "liked_weight": 2.0, "like_threshold": 0.75, "embedding_size": 64,
                                "reg_item": 10.0, "reg_user": 15.0, "bias_sweeps": 10, "seed": 0}

    def _fit(self, data: Interactions) -> None:
        p = self.params
        n_items = len(data.items)
        liked = data.liked(float(p["like_threshold"]))
        self._X = (data.matrix() + float(p["liked_weight"]) * data.matrix(liked)).astype(np.float32).tocsr()
        target = data.matrix(liked)
        target.eliminate_zeros()
        per_item = len(data) / max(n_items, 1)
        l2 = float(p["l2_per_count"]) * per_item
        self._B = ease_weights(self._X, target, l2)
        self._mu, self._b_user, self._b_item = biases(data, float(p["reg_item"]), float(p["reg_user"]), int(p["bias_sweeps"]))
        self._U, self._V = spectral_vectors(self._X, int(p["embedding_size"]), int(p["seed"]))
        self.fit_info = {"l2": round(l2, 3), "liked": int(liked.sum())}

    def memory_estimate(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """Peak bytes of :meth:`fit`: the larger of the weights phase and the SVD phase.

        Weights: two float64 n x n arrays, ~64 bytes per rating of sparse copies (the input in
        float32 and float64, row and column orders, the target) and one block of columns of a
        sparse product. SVD: ``B`` (float32 n x n) kept, the normalised input and the randomized
        SVD's dense users x (k + 10) work arrays.
        """
        n2, k = n_items**2, int(self.params["embedding_size"]) + 10
        weights = 16 * n2 + 64 * n_ratings + 24 * n_items * min(_BLOCK_ROWS, n_items)
        svd = 4 * n2 + 44 * n_ratings + 40 * k * (n_users + n_items)
        return int(max(weights, svd))

    def predict(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        """``mu + b_user + b_item`` (EASE itself ranks; it does not predict ratings)."""
        return self.clip(self._mu + self._b_user[np.asarray(user_rows)] + self._b_item[np.asarray(item_rows)])

    def rank_scores(self, user_rows: np.ndarray) -> np.ndarray:
        """``x_u B`` for each user (the user's graded history times the item-item weights)."""
        return np.asarray(self._X[np.asarray(user_rows)] @ self._B, dtype=np.float32)

    def scores_for_history(self, history: sp.csr_matrix) -> np.ndarray:
        """Scores of users given as graded history rows (``rated + liked_weight · liked``) over the model's items."""
        return np.asarray(history @ self._B, dtype=np.float32)

    def history_scores(self, item_rows: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """Ranking scores of a new user: their graded history row (``rated + liked_weight · liked``) @ B.

        Exactly what a training user with the same ratings gets.
        """
        p = self.params
        lo, hi = self.rating_scale
        liked = (ratings >= lo + float(p["like_threshold"]) * (hi - lo) - 1e-9).astype(np.float64)
        history = sp.csr_matrix((1.0 + float(p["liked_weight"]) * liked, (np.zeros(len(item_rows), np.int64), item_rows)),
                                shape=(1, len(self.items)), dtype=np.float32)
        return self.scores_for_history(history)[0]

    def fold_in(self, item_rows: np.ndarray, ratings: np.ndarray) -> FoldIn:
        """History-row scores; ratings from the fixed item biases and the new user's regularised bias."""
        mu, _, b_item = self.baseline()
        b_user = float((ratings - mu - b_item[item_rows]).sum() / (len(ratings) + float(self.params["reg_user"])))
        return FoldIn(self.history_scores(item_rows, ratings), self.clip(mu + b_user + b_item))

    def item_vectors(self) -> np.ndarray:
        """SVD item vectors."""
        return self._V

    def user_vectors(self) -> np.ndarray:
        """SVD user vectors."""
        return self._U

    def state_arrays(self) -> dict[str, Any]:
        return {"X": self._X, "B": self._B, "mu": np.array([self._mu]), "b_user": self._b_user, "b_item": self._b_item,
                "user_vectors": self._U, "item_vectors": self._V}

    def set_state_arrays(self, arrays: dict[str, Any]) -> None:
        self._X, self._B = arrays["X"].astype(np.float32), arrays["B"]
        self._mu, self._b_user, self._b_item = float(arrays["mu"][0]), arrays["b_user"], arrays["b_item"]
        self._U, self._V = arrays["user_vectors"], arrays["item_vectors"]
