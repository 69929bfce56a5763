"""EASE on graded feedback: a closed-form item-item model that ranks what a user will like.

Steck (2019), "Embarrassingly Shallow Autoencoders for Sparse Data": with ``X`` the
users x items input and ``P = (XᵀX + λI)⁻¹``, the item-item weights with a zero
diagonal are ``B = P XᵀY − P·diag(γ)``, ``γ`` chosen so that ``diag(B) = 0``; a
user's scores are ``x_u B``. The published model uses ``Y = X`` (binary). Here the
input is graded by what each rating says (:func:`input_weights`): a merely rated anime
weighs 1, a liked one (top quarter of the scale, ``like_threshold``) ``1 + liked_weight``,
and a disliked one (bottom third, ``dislike_threshold``: 1-4 of 10, 0.5-2 of 5)
``disliked_weight``, which is never positive, so a low rating can only lower the scores
of the anime most like it (scores are linear in the input). The target is ``Y = liked``:
the model learns what a user will *like*, not only what they will watch.

λ, ``liked_weight`` and ``disliked_weight`` are chosen at every fit on validation splits
of the data the model is given (:mod:`anime_recs.models.selection`; the mean over
``validation_folds`` splits decides): λ around the rule ``l2_per_count · (mean ratings per
anime)`` (x1/2, x2, further out while the edge wins; the Gram matrix built once per input
weighting and split, one Cholesky inverse per λ), then the two weights around their
configured values. Each candidate's validation nDCG@10 goes to ``fit_info["selection"]``;
``select: false`` fits the configured values as they are.

Ratings (:meth:`EASE.predict`) come from user and item biases; representations for
``similar_anime`` / ``similar_users`` from a truncated SVD of the degree-normalised
rated/liked input (items that the same users choose point the same way).

Memory (:meth:`EASE.memory_estimate`, logged before fitting, which stops in one line if
the machine lacks it): three float64 n x n arrays at the peak (the Gram matrix is kept
for the other λ candidates), 24·n² bytes for n anime, plus ~64 bytes per rating of sparse copies.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from anime_recs.core.progress import stage
from anime_recs.core.errors import UserInputError
from anime_recs.models.base import DISLIKE_THRESHOLD, FoldIn, Interactions, RecommenderModel, biases, disliked, spectral_vectors
from anime_recs.models.linalg import BLOCK_ROWS, blocks, cross_gram, for_each_block, inverse_spd, workers
from anime_recs.models.selection import SelectionLog, validation_ndcg, validation_split

logger = logging.getLogger(__name__)


#: Elements of a dense block temporary in the validation scorer (32 M float64 = 256 MB).
_BLOCK_ELEMENTS = 1 << 25


def gram(X: sp.csr_matrix) -> np.ndarray:
    """``XᵀX`` as a dense float64 n x n array (blocks of columns, one thread per core)."""
    return cross_gram(X)


def ease_weights(X: sp.csr_matrix, Y: sp.csr_matrix, l2: float, G: np.ndarray | None = None) -> np.ndarray:
    """Item-item weights ``B`` (float32, zero diagonal) mapping input rows ``X`` to targets ``Y``.

    ``G`` is ``XᵀX`` when the caller keeps it for several λ (it is not modified). ``P = (G + λI)⁻¹``
    and ``C = P XᵀY`` are built in place (``XᵀY`` is overwritten a block of columns at a time), so the
    peak is two float64 n x n arrays (three with ``G``) plus the ratings; see :meth:`EASE.memory_estimate`.
    """
    P = gram(X) if G is None else G.copy()
    P[np.diag_indices_from(P)] += l2
    P = inverse_spd(P)
    C = cross_gram(X, Y)
    for start, stop in blocks(C.shape[1]):  # BLAS uses every core inside each product
        C[:, start:stop] = P @ C[:, start:stop]
    P *= (np.diag(C) / np.diag(P))[None, :]
    C -= P
    del P
    np.fill_diagonal(C, 0.0)
    B = np.empty(C.shape, np.float32)
    for start, stop in blocks(C.shape[0]):  # float32 a block at a time: no second full-size temporary
        B[start:stop] = C[start:stop]
    return B


def validation_scores(X: sp.csr_matrix, G: np.ndarray, M: np.ndarray, l2: float, rows: np.ndarray) -> np.ndarray:
    """``X[rows] @ B`` for ``B = ease_weights(X, Y, l2)`` without forming ``B``: what a candidate λ scores.

    ``G = XᵀX`` and ``M = XᵀY`` (dense, shared by every λ). With ``P = (G + λI)⁻¹``:
    ``x B = (x P) M − (x P) diag(γ)``, ``γ_j = (P M)_jj / P_jj``; the diagonal of ``P M`` is a
    row-wise sum (n² work). One Cholesky inverse (~n³) per λ and ``2·len(rows)·n²`` for the scores,
    whatever the number of users behind ``G``.
    """
    P = G.copy()
    P[np.diag_indices_from(P)] += l2
    P = inverse_spd(P)
    diag = np.empty(P.shape[0])
    for start, stop in blocks(P.shape[0]):
        diag[start:stop] = np.einsum("ij,ji->i", P[start:stop], M[:, start:stop])
    gamma = diag / np.diag(P)
    X64 = X.astype(np.float64).tocsr()
    scores = np.empty((len(rows), P.shape[0]), np.float32)

    def score(start: int, stop: int) -> None:
        XP = X64[rows[start:stop]] @ P  # a sparse product: one thread each, so blocks run side by side
        scores[start:stop] = XP @ M - XP * gamma[None, :]

    # Blocks bound the users x n temporaries; at least one block per core.
    step = max(1, min(_BLOCK_ELEMENTS // max(P.shape[0], 1), -(-len(rows) // workers())))
    for_each_block(score, len(rows), step)
    return scores


def input_weights(ratings: np.ndarray, rating_scale: tuple[float, float], p: dict[str, Any]) -> np.ndarray:
    """The input weight of each rating: ``disliked_weight`` (<= 0), 1, or ``1 + liked_weight``."""
    lo, hi = rating_scale
    liked = ratings >= lo + float(p["like_threshold"]) * (hi - lo) - 1e-9
    weights = 1.0 + float(p["liked_weight"]) * liked
    return np.where(disliked(ratings, rating_scale, float(p["dislike_threshold"])), float(p["disliked_weight"]), weights)


def graded_input(data: Interactions, p: dict[str, Any]) -> sp.csr_matrix:
    """Users x items float32 input of EASE (zero-weight ratings dropped)."""
    X = data.matrix(input_weights(data.ratings, data.rating_scale, p)).astype(np.float32)
    X.eliminate_zeros()
    return X.tocsr()


#: Multiples of the rule's λ tried first (centre first: a tie keeps the earlier candidate); the search goes on
#: outwards (x1/4, x4, ...) while the edge wins, at most :data:`L2_MAX_STEPS` steps each way.
L2_SCALES = (1.0, 0.5, 2.0)
L2_MAX_STEPS = 3
#: Multiples of the configured liked_weight tried after λ.
LIKED_SCALES = (0.5, 2.0)
#: disliked_weight candidates (never positive: a dislike never raises what is like it).
DISLIKED_WEIGHTS = (0.0, -0.5, -1.0)


class _Folds:
    """Repeated validation splits of one training set; a candidate's score is its mean nDCG@10 over them.

    One split of a few hundred users is noisy (on MyAnimeList head-100k the best λ on single splits
    ranged over x1-x2 of the rule), so splits are added (different seeds) until ``validation_users``
    users are scored in all, at most ``validation_folds``: a large data set scores its
    ``validation_users`` in one split. On a data set beyond ``selection_users`` users or
    ``selection_items`` items the choice is made on a random sample of that many users and their
    ratings of that many most-rated items (λ keeps its meaning: ``l2_per_count`` times the sample's
    ratings per item over the *whole* catalogue, since the Gram matrix grows with the users behind it).
    """

    def __init__(self, data: Interactions, p: dict[str, Any]) -> None:
        sample = data.subsample(int(p["selection_users"]), int(p["selection_items"]), int(p["seed"]))
        # Ratings per item over the whole catalogue of the users in the sample, against those of the sample itself.
        ratings_of_sample = int(np.isin(data.users.ids, sample.users.ids)[data.user_rows].sum()) if sample is not data else len(data)
        self.sample_share = len(sample) / max(ratings_of_sample, 1)
        self.per_item_scale = 1.0 if sample is data else \
            (ratings_of_sample / len(data.items)) / max(len(sample) / max(len(sample.items), 1), 1e-12)
        self.sample_shape = sample.shape
        self.splits, self.targets = [], []
        for fold in range(max(1, int(p["validation_folds"]))):
            split = validation_split(sample, float(p["like_threshold"]), float(p["validation_fraction"]),
                                     int(p["validation_users"]), int(p["seed"]) + fold)
            target = split.fit_part.matrix(split.fit_part.liked(float(p["like_threshold"])))
            target.eliminate_zeros()
            self.splits.append(split)
            self.targets.append(target)
            if sum(len(s.users) for s in self.splits) >= int(p["validation_users"]):
                break

    def score(self, candidates: list[dict[str, Any]]) -> list[float]:
        """Mean validation nDCG@10 of candidates that share one input weighting (one Gram matrix per fold)."""
        totals = np.zeros(len(candidates))
        for split, target in zip(self.splits, self.targets):
            X = graded_input(split.fit_part, candidates[0])
            G, M = gram(X), cross_gram(X, target)
            per_item = len(split.fit_part) / max(len(split.fit_part.items), 1) * self.per_item_scale
            for j, options in enumerate(candidates):
                stage(f"EASE selection: l2_per_count {float(options['l2_per_count']):g}, liked_weight "
                      f"{float(options['liked_weight']):g}, disliked_weight {float(options['disliked_weight']):g}")
                scores = validation_scores(X, G, M, float(options["l2_per_count"]) * per_item, split.users)
                totals[j] += validation_ndcg(scores, split)
            del G, M
        values = [float(value) for value in totals / len(self.splits)]
        for options, value in zip(candidates, values):
            logger.info("EASE selection: %s -> validation nDCG@10 %.4f", _chosen(options), value)
        return values


def select_parameters(data: Interactions, p: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Choose λ (as ``l2_per_count``), ``liked_weight`` and ``disliked_weight`` on validation splits of ``data``.

    Coordinate search from the configured values: λ (x1, x1/2, x2, then further out while the edge wins),
    then liked_weight (x1/2, x2), then disliked_weight (0, -0.5, -1).

    Returns:
        ``(chosen options, info)``; info holds every candidate's mean validation nDCG@10 and what treating
        dislikes as plain ratings (the unconstrained ``disliked_weight = 1``) would have scored.
    """
    folds = _Folds(data, p)
    log = SelectionLog()
    centre = float(p["l2_per_count"])
    lambdas = [{**p, "l2_per_count": centre * scale} for scale in L2_SCALES]
    for candidate, value in zip(lambdas, folds.score(lambdas)):
        log.add(_chosen(candidate), value)
    for direction in (0.5, 2.0):  # outwards while the last one out is the best
        scale = direction
        for _ in range(L2_MAX_STEPS):
            if log.best()["l2_per_count"] != round(centre * scale, 4):
                break
            scale *= direction
            candidate = {**p, "l2_per_count": centre * scale}
            log.add(_chosen(candidate), folds.score([candidate])[0])
    current = {**p, **log.best()}
    for scale in LIKED_SCALES:
        candidate = {**current, "liked_weight": float(p["liked_weight"]) * scale}
        log.add(_chosen(candidate), folds.score([candidate])[0])
    current = {**current, **log.best()}
    for weight in DISLIKED_WEIGHTS:
        if weight != float(current["disliked_weight"]):
            candidate = {**current, "disliked_weight": weight}
            log.add(_chosen(candidate), folds.score([candidate])[0])
    best = log.best()
    unconstrained = folds.score([{**current, **best, "disliked_weight": 1.0}])[0]
    chosen = {key: best[key] for key in ("l2_per_count", "liked_weight", "disliked_weight")}
    info = {"chosen": chosen, "val_ndcg": best["val_ndcg"], "unconstrained_val_ndcg": round(unconstrained, 5),
            "constraint_gain": round(best["val_ndcg"] - unconstrained, 5), "folds": len(folds.splits),
            "sample": {"users": folds.sample_shape[0], "items": folds.sample_shape[1], "ratings_share": round(folds.sample_share, 4)},
            "validation_users": int(np.mean([len(split.users) for split in folds.splits])), "candidates": log.tried}
    return chosen, info


def _chosen(options: dict[str, Any]) -> dict[str, Any]:
    return {key: round(float(options[key]), 4) for key in ("l2_per_count", "liked_weight", "disliked_weight")}


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
    defaults: ClassVar[dict[str, Any]] = {"l2_per_count": 80.0, "liked_weight": 2.0, "like_threshold": 0.75,
                                          "disliked_weight": 0.0, "dislike_threshold": DISLIKE_THRESHOLD, "select": True,
                                          "validation_fraction": 0.2, "validation_users": 5000, "validation_folds": 3,
                                          "selection_users": 20000, "selection_items": 10000, "embedding_size": 64,
                                          "reg_item": 10.0, "reg_user": 15.0, "bias_sweeps": 10, "seed": 0}

    def _fit(self, data: Interactions) -> None:
        p = self.params
        if float(p["disliked_weight"]) > 0:
            raise UserInputError(f"model.disliked_weight must be 0 or negative (a dislike never counts as a like), "
                                 f"got {p['disliked_weight']}")
        selection: dict[str, Any] = {}
        if p["select"]:
            chosen, selection = select_parameters(data, p)
            p = {**p, **chosen}
            logger.info("EASE chose %s on validation (nDCG@10 %.4f over %d candidates)", chosen,
                        selection["val_ndcg"], len(selection["candidates"]))
        self.chosen = {key: p[key] for key in ("l2_per_count", "liked_weight", "disliked_weight")}
        self._X = graded_input(data, p)
        target = data.matrix(data.liked(float(p["like_threshold"])))
        target.eliminate_zeros()
        per_item = len(data) / max(len(data.items), 1)
        l2 = float(p["l2_per_count"]) * per_item
        logger.info("EASE: weights for %d anime at lambda %.1f ...", len(data.items), l2)
        stage(f"EASE weights for {len(data.items):,} anime")
        self._B = ease_weights(self._X, target, l2)
        logger.info("EASE: weights done; representations (SVD) ...")
        stage("EASE representations (SVD)")
        self._mu, self._b_user, self._b_item = biases(data, float(p["reg_item"]), float(p["reg_user"]), int(p["bias_sweeps"]))
        chose = data.matrix(1.0 + float(p["liked_weight"]) * data.liked(float(p["like_threshold"]))).astype(np.float32)
        self._U, self._V = spectral_vectors(chose.tocsr(), int(p["embedding_size"]), int(p["seed"]))
        self.fit_info = {"l2": round(l2, 3), "liked": int(target.nnz), **{k: round(float(v), 4) for k, v in self.chosen.items()}}
        if selection:
            self.fit_info["selection"] = selection

    def memory_estimate(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """Peak bytes of :meth:`fit`: the larger of the weights phase and the SVD phase.

        Weights: two float64 n x n arrays (a third, the Gram matrix, and the validation scorer's blocks
        while the fit chooses its options), ~64 bytes per rating of sparse copies (the input in
        float32 and float64, row and column orders, the target) and one block of columns of a
        sparse product. SVD: ``B`` (float32 n x n) kept, the normalised input and the randomized
        SVD's dense users x (k + 10) work arrays.
        """
        n2, k = n_items**2, int(self.params["embedding_size"]) + 10
        weights = 16 * n2 + 64 * n_ratings + 24 * n_items * min(BLOCK_ROWS, n_items)
        if self.params["select"]:  # on the sample: G, M and P (n x n each), the validation scores and the scorer's blocks
            s_items = min(n_items, int(self.params["selection_items"]))
            m = min(int(self.params["validation_users"]), n_users, int(self.params["selection_users"]))
            step = min(m, max(1, _BLOCK_ELEMENTS // max(s_items, 1)))
            selecting = 24 * s_items**2 + 4 * m * s_items + 3 * 8 * step * s_items + 64 * n_ratings
            weights = max(weights, selecting)
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
        """Ranking scores of a new user: their graded history row (:func:`input_weights`) @ B.

        Exactly what a training user with the same ratings gets.
        """
        weights = input_weights(np.asarray(ratings, np.float64), self.rating_scale, {**self.params, **self.chosen})
        history = sp.csr_matrix((weights, (np.zeros(len(item_rows), np.int64), item_rows)),
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
        keys = ("l2_per_count", "liked_weight", "disliked_weight")
        # What the fit chose (older models predate the choice: their options, no dislikes).
        self.chosen = {key: self.fit_info.get(key, self.params[key] if key != "disliked_weight" else 1.0) for key in keys}
