"""The one interface every model family implements, and the interactions it learns from.

A family learns from :class:`Interactions` (raw ids, ratings on the data's own
scale) and answers five questions, all by encoder row (see
:class:`~anime_recs.core.encoding.IdEncoder`):

- :meth:`RecommenderModel.predict`: the rating a user would give an anime (raw scale);
- :meth:`RecommenderModel.rank_scores`: how much a user wants each anime (ranking only);
- :meth:`RecommenderModel.item_vectors` / :meth:`RecommenderModel.user_vectors`: the
  representations ``similar_anime`` and ``similar_users`` compare by cosine;
- :meth:`RecommenderModel.save` / :func:`anime_recs.models.load_model`: a folder of
  numpy files that loads without TensorFlow.

:class:`~anime_recs.recommend.recommender.AnimeRecommender` (the steps, the CLI and
the server) and :mod:`anime_recs.evaluation` both call these methods, so what is
evaluated is exactly what is served.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Self

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:  # annotations only: a fresh process that loads a saved model skips pandas' ~0.4 s import
    import pandas as pd

from anime_recs.core.progress import progress
from anime_recs.core.encoding import IdEncoder
from anime_recs.core.errors import UserInputError, one_line
from anime_recs.core.io import atomic_write, write_json

logger = logging.getLogger(__name__)

MODEL_JSON = "model.json"


@dataclass(frozen=True)
class Interactions:
    """Ratings as encoder rows, ready for sparse algebra.

    Attributes:
        users: Raw user id <-> row.
        items: Raw anime id <-> row.
        user_rows: Row of every interaction's user (int32).
        item_rows: Row of every interaction's anime (int32).
        ratings: Every interaction's rating on the raw scale (float64).
        rating_scale: ``(lowest, highest)`` possible rating.
    """

    users: IdEncoder
    items: IdEncoder
    user_rows: np.ndarray
    item_rows: np.ndarray
    ratings: np.ndarray
    rating_scale: tuple[float, float]

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, rating_scale: tuple[float, float], user: str = "user_id",
                   item: str = "anime_id", rating: str = "rating") -> Interactions:
        """Encode a ratings frame (raw ids, raw ratings); duplicates of a pair keep the last rating.

        Raises:
            UserInputError: empty frame, missing columns, non-finite ratings or a bad scale.
        """
        missing = [c for c in (user, item, rating) if c not in frame.columns]
        if missing:
            raise UserInputError(f"ratings lack column(s) {missing}; have {list(frame.columns)}")
        if len(frame) == 0:
            raise UserInputError("cannot fit a model on 0 ratings; check the preprocess step's filters")
        lo, hi = (float(v) for v in rating_scale)
        if not hi > lo:
            raise UserInputError(f"rating scale must be (min, max) with max > min, got {rating_scale!r}")
        values = frame[rating].to_numpy(np.float64)
        if not np.isfinite(values).all():
            raise UserInputError("ratings contain NaN or inf; run the preprocess step first")
        users = IdEncoder(frame[user].to_numpy(np.int64), "user")
        items = IdEncoder(frame[item].to_numpy(np.int64), "anime")
        u = users.transform(frame[user].to_numpy(np.int64))
        i = items.transform(frame[item].to_numpy(np.int64))
        key = u.astype(np.int64) * len(items) + i
        _, last = np.unique(key[::-1], return_index=True)
        keep = np.sort(len(key) - 1 - last)
        return cls(users, items, u[keep], i[keep], values[keep], (lo, hi))

    def __len__(self) -> int:
        return int(self.ratings.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_users, n_items)``."""
        return len(self.users), len(self.items)

    def matrix(self, values: np.ndarray | None = None) -> sp.csr_matrix:
        """Users x items CSR matrix of ``values`` (default: 1 for every rated pair)."""
        data = np.ones(len(self), np.float64) if values is None else np.asarray(values, np.float64)
        return sp.csr_matrix((data, (self.user_rows, self.item_rows)), shape=self.shape)

    def liked(self, threshold: float) -> np.ndarray:
        """1.0 where the rating is at least ``threshold`` of the way up the scale (0.75 = top quarter)."""
        lo, hi = self.rating_scale
        return (self.ratings >= lo + threshold * (hi - lo) - 1e-9).astype(np.float64)

    def take(self, positions: np.ndarray) -> Interactions:
        """The same encoders with only the interactions at ``positions``."""
        return Interactions(self.users, self.items, self.user_rows[positions], self.item_rows[positions],
                            self.ratings[positions], self.rating_scale)

    def subsample(self, max_users: int, max_items: int, seed: int) -> Interactions:
        """At most ``max_users`` users (at random) and their ratings of the ``max_items`` most-rated items, re-encoded.

        Returns ``self`` when both caps already hold. Used where a choice made on part of a large
        data set stands for the whole (fit-time selection at full scale).
        """
        n_users, n_items = self.shape
        if n_users <= max_users and n_items <= max_items:
            return self
        rng = np.random.default_rng(seed)
        keep_users = np.zeros(n_users, bool)
        keep_users[rng.choice(n_users, min(max_users, n_users), replace=False)] = True
        counts = np.bincount(self.item_rows, minlength=n_items)
        keep_items = np.zeros(n_items, bool)
        keep_items[np.argsort(-counts, kind="stable")[:max_items]] = True
        positions = np.flatnonzero(keep_users[self.user_rows] & keep_items[self.item_rows])
        user_map = np.cumsum(keep_users) - 1
        item_map = np.cumsum(keep_items) - 1
        return Interactions(IdEncoder.from_sorted(self.users.ids[keep_users], self.users.kind),
                            IdEncoder.from_sorted(self.items.ids[keep_items], self.items.kind),
                            user_map[self.user_rows[positions]].astype(np.int32),
                            item_map[self.item_rows[positions]].astype(np.int32),
                            self.ratings[positions], self.rating_scale)

    def holdout(self, fraction: float, seed: int) -> tuple[Interactions, Interactions]:
        """Hold out ``fraction`` of each user's interactions (users with >= 5 keep all but those).

        Used by families that choose weights on data they were not fitted on.
        """
        rng = np.random.default_rng(seed)
        counts = np.bincount(self.user_rows, minlength=len(self.users))
        eligible = counts[self.user_rows] >= 5
        held = eligible & (rng.random(len(self)) < fraction)
        return self.take(np.flatnonzero(~held)), self.take(np.flatnonzero(held))


#: A rating in the bottom third of the scale says "no" (1-4 of 10, 0.5-2 of 5): it must never raise the
#: rank scores of the anime most like it (every family's contract, tests/test_models.py).
DISLIKE_THRESHOLD = 0.34


def disliked(ratings: np.ndarray, rating_scale: tuple[float, float], threshold: float = DISLIKE_THRESHOLD) -> np.ndarray:
    """True where a rating is in the bottom ``threshold`` of the scale."""
    lo, hi = rating_scale
    return np.asarray(ratings, np.float64) <= lo + threshold * (hi - lo) + 1e-9


class FoldIn(NamedTuple):
    """A new user's scores over every model anime (encoder rows).

    Attributes:
        rank_scores: Higher = the user wants it more (as :meth:`RecommenderModel.rank_scores`).
        predicted: Predicted ratings on the raw scale (as :meth:`RecommenderModel.predict_user`).
    """

    rank_scores: np.ndarray
    predicted: np.ndarray


class RecommenderModel(ABC):
    """A fitted model family behind the one recommender interface (see the module docstring).

    Subclasses set :attr:`family`, implement the abstract methods and
    :meth:`state_arrays` / :meth:`set_state_arrays` for saving.
    """

    family: ClassVar[str] = ""
    #: Every option of the family and its default; None for families that check their own options.
    defaults: ClassVar[dict[str, Any] | None] = None
    #: What ``anime-recs tune`` chooses this family's options by on validation splits: ``(metric, higher is
    #: better)``; None for a family tuned through others (the hybrid, through its halves).
    tuning_objective: ClassVar[tuple[str, bool] | None] = None
    #: The search space ``anime-recs tune`` tries when given no ``--grid``: option -> values around the default.
    tuning_grid: ClassVar[dict[str, tuple[Any, ...]]] = {}
    #: The option group of the default hybrid that this family's options fill (``ranking`` / ``rating``), if any.
    hybrid_part: ClassVar[str | None] = None

    def __init__(self, **params: Any) -> None:
        if self.defaults is not None:
            unknown = sorted(set(params) - set(self.defaults))
            if unknown:
                raise UserInputError(
                    f"unknown option(s) {unknown} for model family '{self.family}'; choose from: {', '.join(self.defaults)}"
                )
            params = {**self.defaults, **params}
        self.params: dict[str, Any] = dict(params)
        self.users = IdEncoder(np.empty(0, np.int64), "user")
        self.items = IdEncoder(np.empty(0, np.int64), "anime")
        self.rating_scale: tuple[float, float] = (0.0, 1.0)
        self.fit_info: dict[str, Any] = {}

    # -- fitting -------------------------------------------------------------
    def fit(self, data: Interactions) -> Self:
        """Learn from ``data``; returns self.

        Raises:
            UserInputError: the family's :meth:`memory_estimate` exceeds the memory available now.
        """
        self.users, self.items, self.rating_scale = data.users, data.items, data.rating_scale
        need = self.memory_estimate(*data.shape, len(data))
        if need is not None:
            check_memory(self.family, need, data)
        with progress(f"fit {self.family} on {data.shape[0]:,} users x {data.shape[1]:,} anime"):
            self._fit(data)
        if need is not None:
            self.fit_info["memory_estimate_gb"] = round(need / 1e9, 3)
        return self

    def memory_estimate(self, n_users: int, n_items: int, n_ratings: int) -> int | None:
        """Peak bytes :meth:`fit` needs for data of this size, said before any work starts (None: not estimated).

        Families that hold the whole matrix (closed forms, neighbourhoods) override this.
        """
        return None

    @abstractmethod
    def _fit(self, data: Interactions) -> None:
        """Family-specific learning."""

    # -- queries ---------------------------------------------------------------
    @abstractmethod
    def predict(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        """Predicted ratings (raw scale, clipped to it) of the pairs ``(user_rows[j], item_rows[j])``."""

    def predict_any(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        """:meth:`predict` for pairs that may hold unknown users or anime (row -1): those get :meth:`fallback`."""
        users, items = np.asarray(user_rows, np.int64), np.asarray(item_rows, np.int64)
        known = (users >= 0) & (items >= 0)
        out = np.asarray(self.fallback(users, items), np.float64).copy()
        if known.any():
            out[known] = self.predict(users[known], items[known])
        return self.clip(out)

    def fallback(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        """Ratings for pairs the model cannot score: ``mu + b_user + b_item`` with the known biases.

        Families without biases override this (the original network predicts its training mean).
        """
        users, items = np.asarray(user_rows, np.int64), np.asarray(item_rows, np.int64)
        mu, b_user, b_item = self.baseline()
        return (mu + np.where(users >= 0, b_user[np.maximum(users, 0)], 0.0)
                + np.where(items >= 0, b_item[np.maximum(items, 0)], 0.0))

    def baseline(self) -> tuple[float, np.ndarray, np.ndarray]:
        """``(mu, b_user, b_item)`` of the family's bias model."""
        return self._mu, self._b_user, self._b_item  # type: ignore[attr-defined]

    def predict_user(self, user_row: int) -> np.ndarray:
        """Predicted ratings of one user for every item (raw scale)."""
        items = np.arange(len(self.items), dtype=np.int64)
        return self.predict(np.full(len(items), user_row, np.int64), items)

    @abstractmethod
    def rank_scores(self, user_rows: np.ndarray) -> np.ndarray:
        """``(len(user_rows), n_items)`` float scores: higher = the user wants it more."""

    @abstractmethod
    def item_vectors(self) -> np.ndarray:
        """``(n_items, d)`` representations compared by cosine in ``similar_anime``."""

    @abstractmethod
    def user_vectors(self) -> np.ndarray:
        """``(n_users, d)`` representations compared by cosine in ``similar_users``."""

    def fold_in(self, item_rows: np.ndarray, ratings: np.ndarray) -> FoldIn:
        """Scores for someone the model has never seen, from checked, de-duplicated (anime row, rating) pairs.

        The item side stays fixed; only what describes the new user is solved (see
        :mod:`anime_recs.models.foldin`, which checks the pairs and calls this). Families without a
        fold-in keep this default.

        Raises:
            UserInputError: the family cannot fold in new users.
        """
        raise UserInputError(f"model family {self.family!r} has no fold-in for new users")

    def clip(self, ratings: np.ndarray) -> np.ndarray:
        """Ratings clipped to the scale."""
        return np.clip(ratings, *self.rating_scale)

    def describe(self) -> str:
        """One line for logs: family, size, fit facts."""
        facts = ", ".join(f"{k}={v}" for k, v in self.fit_info.items())
        return f"{self.family}: {len(self.users):,} users x {len(self.items):,} anime" + (f" ({facts})" if facts else "")

    # -- persistence -------------------------------------------------------------
    @abstractmethod
    def state_arrays(self) -> dict[str, np.ndarray | sp.spmatrix]:
        """Name -> array (dense or sparse) of everything the fitted model needs."""

    @abstractmethod
    def set_state_arrays(self, arrays: dict[str, Any]) -> None:
        """Restore the state written by :meth:`state_arrays`."""

    def save(self, folder: Path) -> dict[str, Path]:
        """Write ``model.json``, the encoders and the arrays into ``folder``; return name -> path."""
        folder.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        arrays: dict[str, Any] = {"user_ids": self.users.ids, "anime_ids": self.items.ids, **self.state_arrays()}
        kinds = {}
        for name, array in arrays.items():
            if sp.issparse(array):
                path = folder / f"{name}.npz"
                atomic_write(path, lambda tmp, a=array: _save_npz(tmp, a))
                kinds[name] = "sparse"
            else:
                path = folder / f"{name}.npy"
                dense = np.asarray(array)
                kinds[name] = "dense"
                if _is_item_matrix(dense, len(self.items)):  # n x n: half the disk, same answers (docs/models.md)
                    dense, kinds[name] = dense.astype(np.float16), "half"
                atomic_write(path, lambda tmp, a=dense: _save_npy(tmp, a))
            paths[path.name] = path
        meta = {"family": self.family, "params": self.params, "rating_scale": list(self.rating_scale),
                "arrays": kinds, "fit_info": self.fit_info}
        paths[MODEL_JSON] = write_json(meta, folder / MODEL_JSON)
        return paths

    @classmethod
    def _load(cls, folder: Path, meta: dict[str, Any], mmap: bool = False) -> RecommenderModel:
        model = cls(**meta.get("params", {}))
        arrays: dict[str, Any] = {}
        for name, kind in meta["arrays"].items():
            path = folder / (f"{name}.npz" if kind == "sparse" else f"{name}.npy")
            if not path.is_file():
                raise UserInputError(f"model folder {folder} lacks {path.name}; re-run the neural_network step")
            if path.is_symlink():
                raise UserInputError(f"model folder {folder}: {path.name} is a symbolic link, which is not followed; "
                                     "re-run the neural_network step")
            try:
                if kind == "sparse":
                    arrays[name] = sp.load_npz(path).tocsr()  # allow_pickle=False inside
                else:
                    loaded = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
                    arrays[name] = loaded if kind == "dense" else loaded.astype(np.float32)
            except (OSError, ValueError, EOFError, KeyError, TypeError) as exc:
                raise UserInputError(f"model folder {folder}: {path.name} cannot be read ({type(exc).__name__}: "
                                     f"{one_line(exc, 80)}); re-run the neural_network step") from None
        model.users = IdEncoder.from_sorted(arrays.pop("user_ids"), "user")
        model.items = IdEncoder.from_sorted(arrays.pop("anime_ids"), "anime")
        model.rating_scale = tuple(float(v) for v in meta["rating_scale"])  # type: ignore[assignment]
        model.fit_info = meta.get("fit_info", {})
        model.set_state_arrays(arrays)
        return model


#: Item x item matrices at least this wide are stored as float16 (smaller ones are not worth a rounding).
HALF_PRECISION_MIN_ITEMS = 256


def _is_item_matrix(array: np.ndarray, n_items: int) -> bool:
    """A float item x item matrix (EASE's B, item similarities) whose values float16 holds without overflow."""
    if array.dtype not in (np.float32, np.float64) or array.shape != (n_items, n_items) or n_items < HALF_PRECISION_MIN_ITEMS:
        return False
    return bool(np.isfinite(array).all() and np.abs(array).max(initial=0.0) < 6.0e4)


def _save_npy(path: Path, array: np.ndarray) -> None:
    # Through an open handle: np.save given a path would append ".npy" to the temporary name.
    with open(path, "wb") as handle:
        np.save(handle, array)


def _save_npz(path: Path, matrix: sp.spmatrix) -> None:
    with open(path, "wb") as handle:  # as above: save_npz would append ".npz"
        sp.save_npz(handle, sp.csr_matrix(matrix))


def read_model_json(folder: Path) -> dict[str, Any]:
    """The ``model.json`` of a saved model, or a one-line error."""
    path = folder / MODEL_JSON
    if not path.is_file():
        raise UserInputError(f"{folder} is not a saved model (no {MODEL_JSON}); run the neural_network step")
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserInputError(f"{path} is damaged ({exc}); re-run the neural_network step") from None
    if not isinstance(meta, dict) or "family" not in meta or "arrays" not in meta:
        raise UserInputError(f"{path} is incomplete (no family/arrays); re-run the neural_network step")
    return meta


def check_memory(family: str, need: int, data: Interactions) -> None:
    """Log what fitting ``family`` on ``data`` needs, and stop in one line if this machine lacks it now."""
    import psutil

    available = psutil.virtual_memory().available
    n_users, n_items = data.shape
    size = f"{n_users:,} users x {n_items:,} anime ({len(data):,} ratings)"
    logger.info("model=%s needs about %.2f GB to fit %s; %.1f GB available", family, need / 1e9, size, available / 1e9)
    if need > available:
        raise UserInputError(
            f"model={family} needs about {need / 1e9:.1f} GB to fit {size} but only {available / 1e9:.1f} GB is available; "
            "free memory or use a larger machine, raise data.num_reviews to keep fewer users, or choose model=original "
            "(trains in batches)"
        )


def biases(data: Interactions, reg_item: float, reg_user: float, sweeps: int) -> tuple[float, np.ndarray, np.ndarray]:
    """``mu``, user and item biases by alternating regularised least squares (Surprise ``BaselineOnly``).

    Returns:
        ``(mu, b_user, b_item)``.
    """
    n_users, n_items = data.shape
    mu = float(data.ratings.mean())
    u, i, residual = data.user_rows, data.item_rows, data.ratings - mu
    denom_i = np.bincount(i, minlength=n_items) + reg_item
    denom_u = np.bincount(u, minlength=n_users) + reg_user
    b_u = np.zeros(n_users)
    b_i = np.zeros(n_items)
    for _ in range(sweeps):
        b_i = np.bincount(i, weights=residual - b_u[u], minlength=n_items) / denom_i
        b_u = np.bincount(u, weights=residual - b_i[i], minlength=n_users) / denom_u
    return mu, b_u, b_i


def randomized_svd(M: sp.csr_matrix, k: int, n_iter: int, seed: int,
                   oversamples: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``sklearn.utils.extmath.randomized_svd(M, k, n_iter=n_iter, random_state=seed)``, step for step.

    The same arithmetic (Halko et al.'s range finder with LU-normalised power iterations, then a
    small SVD and sklearn's sign convention), so the same vectors to the bit, without importing
    scikit-learn: its import (scipy.stats and friends) took 1.5-2 s, more than the fits that used it.
    """
    import scipy.linalg as sla

    transpose = M.shape[0] < M.shape[1]  # sklearn's transpose="auto"
    A = M.T if transpose else M
    Q = np.random.RandomState(seed).normal(size=(A.shape[1], k + oversamples))
    if A.dtype == np.float32:
        Q = Q.astype(np.float32, copy=False)
    for _ in range(n_iter):  # power_iteration_normalizer="auto" is LU for n_iter > 2, none below
        Q = sla.lu(A @ Q, permute_l=True, check_finite=False)[0] if n_iter > 2 else A @ Q
        Q = sla.lu(A.T @ Q, permute_l=True, check_finite=False)[0] if n_iter > 2 else A.T @ Q
    Q = sla.qr(A @ Q, mode="economic", check_finite=False)[0]
    Uhat, s, Vt = sla.svd(Q.T @ A, full_matrices=False, lapack_driver="gesdd")
    U = Q @ Uhat
    # svd_flip: the largest-magnitude entry of each singular vector (of U, or of Vt when transposed) is positive.
    basis = Vt if transpose else U.T
    signs = np.sign(basis[np.arange(len(basis)), np.argmax(np.abs(basis), axis=1)])
    U *= signs[np.newaxis, :]
    Vt *= signs[:, np.newaxis]
    if transpose:
        return Vt[:k, :].T, s[:k], U[:, :k].T
    return U[:, :k], s[:k], Vt[:k, :]


def spectral_vectors(X: sp.csr_matrix, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """User and item vectors from a truncated SVD of ``D_u^-½ X D_i^-½`` (scaled by the singular values)."""
    du = np.asarray(X.sum(axis=1)).ravel()
    di = np.asarray(X.sum(axis=0)).ravel()
    norm = sp.diags(1 / np.sqrt(np.maximum(du, 1e-12))) @ X @ sp.diags(1 / np.sqrt(np.maximum(di, 1e-12)))
    k = max(1, min(dim, min(X.shape) - 1))
    U, s, Vt = randomized_svd(norm, k, n_iter=7, seed=seed)
    return (U * s).astype(np.float32), (Vt.T * s).astype(np.float32)
