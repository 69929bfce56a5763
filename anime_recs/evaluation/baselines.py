"""The protocol's model interface and the built-in baselines (GlobalMean, Popularity, UserItemBias)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from typing import Protocol, runtime_checkable

from anime_recs.core.encoding import IdEncoder
from anime_recs.core.errors import UserInputError
from anime_recs.evaluation.split import DEFAULT_COLUMNS, Columns


@runtime_checkable
class Recommender(Protocol):
    """What :func:`evaluate_models` needs from a model (all ids are raw ids).

    ``predicts_ratings`` is False for pure ranking models (e.g. implicit-feedback
    ALS); their RMSE and MAE are reported as missing.
    """

    predicts_ratings: bool

    def fit(self, train: pd.DataFrame, cols: Columns = DEFAULT_COLUMNS) -> Recommender:
        """Learn from the TRAIN frame."""
        ...

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings of the pairs ``(users[j], items[j])`` on the raw scale."""
        ...

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``(len(users), len(items))`` ranking scores, higher is better."""
        ...


class _Indexed:
    """Shared plumbing: raw id encoders fitted on TRAIN and the global mean."""

    predicts_ratings = True

    def _fit_index(self, train: pd.DataFrame, cols: Columns) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        missing = [c for c in (cols.user, cols.item, cols.rating) if c not in train.columns]
        if missing:
            raise UserInputError(f"train frame lacks column(s) {missing}; have {list(train.columns)}")
        if len(train) == 0:
            raise UserInputError(f"{type(self).__name__}.fit got an empty train frame")
        users = train[cols.user].to_numpy(dtype=np.int64)
        items = train[cols.item].to_numpy(dtype=np.int64)
        self.user_encoder = IdEncoder(users, kind="user")
        self.item_encoder = IdEncoder(items, kind="item")
        ratings = train[cols.rating].to_numpy(dtype=np.float64)
        self.global_mean = float(ratings.mean())
        return self.user_encoder.transform(users), self.item_encoder.transform(items), ratings

    def _rows(self, encoder: IdEncoder, ids: np.ndarray) -> np.ndarray:
        # Unknown ids become -1, which indexes the trailing zero of the padded tables below.
        return encoder.transform(np.asarray(ids, dtype=np.int64), missing="minus_one")


class GlobalMean(_Indexed):
    """Predicts the mean TRAIN rating for everything; ranks all items equally (lowest ids first)."""

    def fit(self, train: pd.DataFrame, cols: Columns = DEFAULT_COLUMNS) -> GlobalMean:
        """Store the mean TRAIN rating."""
        self._fit_index(train, cols)
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The global mean for every pair."""
        return np.full(np.asarray(users).shape, self.global_mean)

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """A constant matrix: the protocol's tie rule then lists the lowest item ids."""
        return np.full((len(users), len(items)), self.global_mean)


class Popularity(_Indexed):
    """Ranks items by how many TRAIN users liked them (or rated them); predicts the global mean.

    With ``relevant_threshold`` set, the score is the number of TRAIN ratings at or
    above it, ties broken by the total number of ratings; without it, the number of
    ratings. Items unseen in TRAIN score 0.

    Args:
        relevant_threshold: Rating that counts as "liked"; None ranks by rating count.
    """

    def __init__(self, relevant_threshold: float | None = None) -> None:
        self.relevant_threshold = relevant_threshold

    def fit(self, train: pd.DataFrame, cols: Columns = DEFAULT_COLUMNS) -> Popularity:
        """Count ratings per item."""
        _, item_rows, ratings = self._fit_index(train, cols)
        n = len(self.item_encoder)
        count = np.bincount(item_rows, minlength=n).astype(np.float64)
        if self.relevant_threshold is None:
            popularity = count
        else:
            liked = np.bincount(item_rows, weights=(ratings >= self.relevant_threshold).astype(np.float64), minlength=n)
            popularity = liked + count / (count.max() + 1.0)  # tie-break inside one liked count
        self.popularity = np.append(popularity, 0.0)
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The global mean for every pair."""
        return np.full(np.asarray(users).shape, self.global_mean)

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The same popularity vector for every user."""
        row = self.popularity[self._rows(self.item_encoder, items)]
        return np.broadcast_to(row, (len(users), row.size))


class UserItemBias(_Indexed):
    """``r = mu + b_u + b_i`` with L2-regularised biases fitted by alternating least squares.

    The same estimator and defaults as Surprise's ``BaselineOnly`` with its default
    ALS options: each sweep sets every item bias, then every user bias, to its
    regularised least-squares value given the other. Unknown users or items get
    a zero bias.

    Args:
        reg_item: L2 weight on item biases (Surprise ``reg_i``).
        reg_user: L2 weight on user biases (Surprise ``reg_u``).
        n_epochs: Number of ALS sweeps.
    """

    def __init__(self, reg_item: float = 10.0, reg_user: float = 15.0, n_epochs: int = 10) -> None:
        self.reg_item = reg_item
        self.reg_user = reg_user
        self.n_epochs = n_epochs

    def fit(self, train: pd.DataFrame, cols: Columns = DEFAULT_COLUMNS) -> UserItemBias:
        """Run the ALS sweeps."""
        from anime_recs.models.base import Interactions, biases

        u, i, r = self._fit_index(train, cols)
        data = Interactions(self.user_encoder, self.item_encoder, u, i, r, (float(r.min()), float(r.max()) + 1.0))
        _, b_u, b_i = biases(data, self.reg_item, self.reg_user, self.n_epochs)
        self.user_bias = np.append(b_u, 0.0)
        self.item_bias = np.append(b_i, 0.0)
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``mu + b_u + b_i`` per pair (not clipped; :func:`evaluate_models` clips)."""
        return (
            self.global_mean
            + self.user_bias[self._rows(self.user_encoder, users)]
            + self.item_bias[self._rows(self.item_encoder, items)]
        )

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The predicted-rating matrix (ranking therefore follows the item bias)."""
        b_u = self.user_bias[self._rows(self.user_encoder, users)]
        b_i = self.item_bias[self._rows(self.item_encoder, items)]
        return self.global_mean + b_u[:, None] + b_i[None, :]
