"""The original project's network as a model family (``model=original``).

User and anime ``Embedding`` → normalised ``Dot`` (the cosine) → ``Dense(1)`` →
``BatchNormalization`` → activation, trained on ratings min-max scaled to [0, 1]
(:mod:`anime_recs.models.network.architecture`, :mod:`anime_recs.models.network.training`). Once trained, it is served
from plain numpy: L2-normalised embeddings and the seven-number
:class:`~anime_recs.models.network.embeddings.PredictionHead`, so loading it needs no TensorFlow.
It ranks by predicted rating, as the original's ``model_recs`` did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, ClassVar

import numpy as np

from anime_recs.models.network.embeddings import PredictionHead, normalize_rows
from anime_recs.core.encoding import IdEncoder, RatingArrays
from anime_recs.core.errors import DataValidationError
from anime_recs.models.base import disliked, FoldIn, Interactions, RecommenderModel

logger = logging.getLogger(__name__)


#: Field names of :class:`~anime_recs.models.network.architecture.ModelParams`, listed here so that choosing a family
#: never imports TensorFlow (tests/test_models.py checks the two agree).
NETWORK_PARAMS: tuple[str, ...] = (
    "embedding_size", "l2_reg_factor", "kernel_initializer", "activation_function", "model_loss", "optimizer",
    "model_metrics", "batch_size", "epochs", "start_lr", "min_lr", "max_lr", "rampup_epochs", "sustain_epochs",
    "exp_decay", "monitor", "mode", "patience", "training_path", "jit_compile", "seed",
)  # fmt: skip


#: Ridge penalty of the fold-in's user-embedding solve (relative to the number of ratings).
EMBEDDING_RIDGE = 0.1


def network_param_names() -> tuple[str, ...]:
    """Names of :class:`~anime_recs.models.network.architecture.ModelParams` (without importing TensorFlow)."""
    return NETWORK_PARAMS


class OriginalNetwork(RecommenderModel):
    """The Keras embedding network behind the recommender interface.

    Args:
        val_fraction: Share of the ratings :meth:`fit` holds out for early stopping.
        **params: :class:`~anime_recs.models.network.architecture.ModelParams` fields (others are ignored).
    """

    family = "original"
    tuning_objective = ("RMSE", False)
    tuning_grid: ClassVar[dict[str, tuple[Any, ...]]] = {"embedding_size": (64, 128), "l2_reg_factor": (1e-4, 1e-3, 1e-2)}

    def __init__(self, val_fraction: float = 0.05, **params: Any) -> None:
        super().__init__(val_fraction=val_fraction, **params)
        self.history: Any = None
        self.best_epoch = -1
        self.stopped_early = False
        self.keras_model: Any = None

    @classmethod
    def from_embeddings(cls, user_embeddings: np.ndarray, anime_embeddings: np.ndarray, users: IdEncoder,
                        items: IdEncoder, head: PredictionHead, rating_scale: tuple[float, float],
                        mean_rating: float = 0.5) -> OriginalNetwork:
        """A fitted network from its tables (tests, benchmarks, or a model trained elsewhere).

        Args:
            user_embeddings: ``(n_users, d)`` rows in ``users`` order (normalised here).
            anime_embeddings: ``(n_anime, d)`` rows in ``items`` order.
            users: Raw user id <-> row.
            items: MAL_ID <-> row.
            head: The layers after the cosine.
            rating_scale: ``(min, max)`` of the raw ratings.
            mean_rating: Scaled training mean (the fallback prediction).
        """
        if len(users) != len(user_embeddings) or len(items) != len(anime_embeddings):
            raise DataValidationError(
                f"encoders do not match the embeddings: {len(users)} user ids for {len(user_embeddings)} rows, "
                f"{len(items)} anime ids for {len(anime_embeddings)} rows; load the encoders saved with this model"
            )
        model = cls()
        model.users, model.items, model.rating_scale = users, items, tuple(float(v) for v in rating_scale)
        model._U, model._V = normalize_rows(user_embeddings), normalize_rows(anime_embeddings)
        model.head, model._mean = head, float(mean_rating)
        return model

    def model_params(self) -> Any:
        """The :class:`~anime_recs.models.network.architecture.ModelParams` of this network."""
        from anime_recs.models.network.architecture import ModelParams

        names = set(network_param_names())
        return ModelParams.from_mapping({k: v for k, v in self.params.items() if k in names})

    def scaled(self, data: Interactions) -> RatingArrays:
        """The interactions as the network trains on them: rows and ratings scaled to [0, 1]."""
        lo, hi = data.rating_scale
        return RatingArrays(data.user_rows.astype(np.int32), data.item_rows.astype(np.int32),
                            np.clip((data.ratings - lo) / (hi - lo), 0.0, 1.0).astype(np.float32))

    def _fit(self, data: Interactions) -> None:
        arrays = self.scaled(data)
        order = np.random.default_rng(int(self.params.get("seed", 42))).permutation(len(arrays))
        n_val = max(1, round(float(self.params["val_fraction"]) * len(arrays)))
        self.fit_arrays(arrays.take(order[n_val:]), arrays.take(order[:n_val]), verbose=False)
        self._mean = float(arrays.rating.mean())  # unknown pairs get the mean of every rating fitted on

    def fit_arrays(self, train: Any, val: RatingArrays, strategy: Any = None, checkpoint_dir: Any = None,
                   resume: bool = False, on_epoch_end: Callable[[int, dict], None] | None = None,
                   verbose: bool = True) -> None:
        """Train on encoded, scaled rows (the neural_network step's own split and callbacks).

        ``train`` is a :class:`~anime_recs.core.encoding.RatingArrays` or, streamed from the parquet,
        a :class:`~anime_recs.data.streaming.StreamedRows`.
        """
        from anime_recs.models.network.embeddings import extract_embeddings
        from anime_recs.models.network.training import train_model

        result = train_model(train, val, len(self.users), len(self.items), self.model_params(), strategy=strategy,
                             checkpoint_dir=checkpoint_dir, resume=resume, on_epoch_end=on_epoch_end, verbose=verbose)
        self.keras_model = result.model
        self.history = result.history
        self.best_epoch, self.stopped_early = int(result.best_epoch), bool(result.stopped_early)
        self._U, self._V = extract_embeddings(result.model)
        self.head = PredictionHead.from_model(result.model)
        self._mean = float(train.rating.mean()) if isinstance(train, RatingArrays) else float(train.mean_rating)
        self.fit_info = {"epochs_run": len(result.history), "best_epoch": self.best_epoch, "stopped_early": self.stopped_early}

    def _to_raw(self, scaled: np.ndarray) -> np.ndarray:
        lo, hi = self.rating_scale
        return lo + np.asarray(scaled, np.float64) * (hi - lo)

    def fold_in_vector(self, item_rows: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """Unit user embedding whose cosines with the rated anime best reproduce the ratings through the head.

        Ridge least squares against the fixed, normalised anime embeddings, with the target cosines
        obtained by inverting the prediction head (``Dense → BatchNorm → activation`` is monotone in
        the cosine); the solution is then normalised, an approximation since the network compares unit vectors.
        """
        lo, hi = self.rating_scale
        grid = np.linspace(-1.0, 1.0, 2001)
        outputs = self.head.predict(grid).astype(np.float64)
        order = np.argsort(outputs, kind="stable")
        scaled = np.clip((ratings - lo) / (hi - lo), outputs.min(), outputs.max())
        target = np.interp(scaled, outputs[order], grid[order])
        V = np.asarray(self._V[item_rows], np.float64)
        gram = V.T @ V + EMBEDDING_RIDGE * len(ratings) * np.eye(V.shape[1])
        u = np.linalg.solve(gram, V.T @ target)
        norm = np.linalg.norm(u)
        return (u / norm if norm > 0 else u).astype(np.float32)

    def fold_in(self, item_rows: np.ndarray, ratings: np.ndarray) -> FoldIn:
        """Predicted ratings from the solved user embedding; rank scores that a dislike can only lower.

        The ranking embedding is solved from the ratings that are not dislikes (:func:`disliked`); each
        disliked anime then lowers every anime's rank score by ``(hi − lo) · max(0, cosine)`` (the largest
        over the dislikes), so rating an anime low never raises what is like it. The predicted ratings
        use every rating.
        """
        predicted = self.clip(self._to_raw(self.head.predict(self._V @ self.fold_in_vector(item_rows, ratings))))
        low = disliked(ratings, self.rating_scale)
        if not low.any():
            return FoldIn(predicted.astype(np.float32), predicted)
        kept = ~low
        liked_part = (self.head.predict(self._V @ self.fold_in_vector(item_rows[kept], ratings[kept])) if kept.any()
                      else np.full(len(self._V), float(self.head.predict(np.zeros(1))[0])))
        lo, hi = self.rating_scale
        closeness = np.maximum(np.asarray(self._V, np.float64) @ np.asarray(self._V[item_rows[low]], np.float64).T, 0.0)
        rank = self._to_raw(liked_part) - (hi - lo) * closeness.max(axis=1)
        return FoldIn(rank.astype(np.float32), predicted)

    def predict(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        """The network's output for the pairs, on the raw scale."""
        cosine = np.einsum("ij,ij->i", self._U[np.asarray(user_rows)], self._V[np.asarray(item_rows)])
        return self.clip(self._to_raw(self.head.predict(cosine)))

    def predict_user(self, user_row: int) -> np.ndarray:
        """One matrix-vector product over the anime embeddings."""
        return self.clip(self._to_raw(self.head.predict(self._V @ self._U[user_row])))

    def rank_scores(self, user_rows: np.ndarray) -> np.ndarray:
        """Predicted ratings (raw scale) for every anime."""
        return self._to_raw(self.head.predict(self._U[np.asarray(user_rows)] @ self._V.T)).astype(np.float32)

    def item_vectors(self) -> np.ndarray:
        """Normalised anime embeddings."""
        return self._V

    def user_vectors(self) -> np.ndarray:
        """Normalised user embeddings."""
        return self._U

    def fallback(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        """The training mean for every pair (what the original predicts for an unknown pair)."""
        return np.full(np.shape(user_rows), self._to_raw(np.float64(self._mean)))

    def state_arrays(self) -> dict[str, Any]:
        head = self.head.to_dict()
        self.fit_info["head"] = head
        return {"user_embeddings": self._U, "anime_embeddings": self._V, "mean": np.array([self._mean])}

    def set_state_arrays(self, arrays: dict[str, Any]) -> None:
        self._U, self._V = arrays["user_embeddings"], arrays["anime_embeddings"]
        self._mean = float(arrays["mean"][0])
        self.head = PredictionHead.from_dict(self.fit_info["head"])

    def history_frame(self) -> Any:
        """Per-epoch history (after a fit in this process)."""
        return self.history

    def hyperparameters(self) -> dict[str, Any]:
        """The network's parameters as trained."""
        return asdict(self.model_params())
