"""The served objects behind the protocol: a model family, and the similar-users recommender.

The evaluation scores exactly what the steps serve: :class:`FamilyModel` calls a
:class:`~anime_recs.models.base.RecommenderModel`'s ``predict`` and
``rank_scores`` (what ``model_recs`` ranks by), and :class:`SimilarUsersModel` calls
:meth:`~anime_recs.recommend.recommender.AnimeRecommender.similar_user_votes`, the
ranking of ``user_recs``.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from anime_recs.models.base import Interactions, RecommenderModel
from anime_recs.evaluation.split import DEFAULT_COLUMNS, Columns

logger = logging.getLogger(__name__)


class FamilyModel:
    """A model family under the protocol (:class:`~anime_recs.evaluation.baselines.Recommender`).

    Args:
        model: An unfitted model (e.g. ``build_model(config)``).
        rating_range: ``(min, max)`` of the rating scale; None = TRAIN's own.
    """

    def __init__(self, model: RecommenderModel, rating_range: tuple[float, float] | None = None) -> None:
        self.model = model
        self.rating_range = rating_range
        self.predicts_ratings = True

    def fit(self, train: pd.DataFrame, cols: Columns = DEFAULT_COLUMNS) -> FamilyModel:
        """Encode TRAIN and fit the family."""
        ratings = train[cols.rating].to_numpy(np.float64)
        scale = self.rating_range or (float(ratings.min()), float(ratings.max()))
        self.data = Interactions.from_frame(train, scale, cols.user, cols.item, cols.rating)
        self.model.fit(self.data)
        self.fitted_on = id(train)
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The family's ratings; pairs with an unknown user or anime get its fallback."""
        return self.model.predict_any(self.data.users.positions(users), self.data.items.positions(items))

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The family's ranking scores (zeros for users unseen in TRAIN, -inf for unknown anime)."""
        user_rows = self.data.users.positions(users)
        item_rows = self.data.items.positions(items)
        out = np.zeros((len(users), len(items)), np.float64)
        known = user_rows >= 0
        if known.any():
            scores = np.asarray(self.model.rank_scores(user_rows[known]), np.float64)
            out[known] = np.where(item_rows >= 0, scores[:, np.maximum(item_rows, 0)], -np.inf)
        return out


def placeholder_catalogue(item_ids: np.ndarray) -> pd.DataFrame:
    """An anime table with only ids, for data sets without metadata (MovieLens in the benchmark)."""
    ids = np.asarray(item_ids, np.int64)
    text = np.full(len(ids), "Unknown", dtype=object)
    return pd.DataFrame({"MAL_ID": ids, "Name": ids.astype(str), "Genres": text, "Type": text,
                         "Score": np.nan, "Episodes": np.nan})


class SimilarUsersModel:
    """``recommend_from_similar_users`` (the ``user_recs`` step) under the protocol.

    Ranks by how many of the ``n_similar`` most similar users (by the family's user
    representations) have the anime among their ``num_faves`` favourites, exactly as the
    step does; predicts the mean rating those similar users gave the anime, or the
    family's own prediction where none of them rated it.

    Args:
        family: The adapter of the family whose user representations are used; fitted by
            :meth:`fit` unless it was already fitted on the same TRAIN frame (then only the
            recommender is built, and ``fit_s`` counts just that).
        n_similar: Similar users asked (the step's ``recs_n_sim_ID``).
        num_faves: Favourites per similar user (the step's ``num_faves``).
    """

    def __init__(self, family: FamilyModel, n_similar: int = 10, num_faves: int = 10) -> None:
        self.family = family
        self.n_similar = n_similar
        self.num_faves = num_faves
        self.predicts_ratings = True

    def fit(self, train: pd.DataFrame, cols: Columns = DEFAULT_COLUMNS) -> SimilarUsersModel:
        """Fit the family, then build the recommender over TRAIN as the steps do."""
        from anime_recs.recommend import AnimeRecommender

        if getattr(self.family, "fitted_on", None) != id(train):  # reuse a family fitted on this TRAIN
            self.family.fit(train, cols)
        data = self.family.data
        ratings = pd.DataFrame({"user_id": data.users.ids[data.user_rows], "anime_id": data.items.ids[data.item_rows],
                                "rating": data.ratings})
        self.recommender = AnimeRecommender(model=self.family.model, ratings=ratings,
                                            anime=placeholder_catalogue(data.items.ids))
        return self

    def _votes(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per user: votes over the model's anime, and the similar users' summed and counted ratings."""
        rec = self.recommender
        votes = np.zeros((len(users), rec.n_anime))
        sums = np.zeros_like(votes)
        counts = np.zeros_like(votes)
        for j, user in enumerate(np.asarray(users).tolist()):
            if user not in self.family.data.users:
                continue
            votes[j], sums[j], counts[j] = rec.similar_user_votes(user, self.n_similar, self.num_faves)
        return votes, sums, counts

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Mean rating of the similar users who rated the anime, else the family's prediction."""
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        out = self.family.predict(users, items)
        distinct, inverse = np.unique(users, return_inverse=True)
        _, sums, counts = self._votes(distinct)
        cols = self.family.data.items.positions(items)
        known = cols >= 0
        rated = np.zeros(len(users), bool)
        rated[known] = counts[inverse[known], cols[known]] > 0
        rows, c = inverse[rated], cols[rated]
        out[rated] = sums[rows, c] / counts[rows, c]
        return out

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Votes of the similar users (ties then go to the lower anime id, as everywhere in the protocol)."""
        votes, _, _ = self._votes(users)
        cols = self.family.data.items.positions(items)
        return np.where(cols >= 0, votes[:, np.maximum(cols, 0)], 0.0)
