"""The default family: a ranking model and a rating model trained together.

No single family here wins both evaluation tables (docs/evaluation.md): EASE on
graded feedback ranks best but only predicts ratings from biases, and the blended
neighbourhood model predicts ratings best but ranks like a rating model. The
hybrid fits both on the same ratings and answers each question with the model
that is best at it:

- ranking (``model_recs``, what to watch next): :class:`~anime_recs.models.ease.EASE`;
- ratings shown next to each recommendation and ``predict``: :class:`~anime_recs.models.neighbourhood.Neighbourhood`;
- ``similar_anime`` / ``similar_users``: EASE's SVD representations of who chose what.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from anime_recs.core.errors import UserInputError
from anime_recs.models.base import FoldIn, Interactions, RecommenderModel
from anime_recs.models.ease import EASE
from anime_recs.models.neighbourhood import Neighbourhood


class Hybrid(RecommenderModel):
    """EASE for ranking + Neighbourhood for ratings.

    Args:
        ranking: Options of the EASE part.
        rating: Options of the Neighbourhood part.
    """

    family = "hybrid"

    def __init__(self, ranking: dict[str, Any] | None = None, rating: dict[str, Any] | None = None) -> None:
        if not isinstance(ranking or {}, dict) or not isinstance(rating or {}, dict):
            raise UserInputError("model family 'hybrid' takes two option groups, model.ranking and model.rating")
        self.ranker = EASE(**(ranking or {}))
        self.rater = Neighbourhood(**(rating or {}))
        self.rater.representations = False  # similar anime/users use the ranking part's vectors
        super().__init__(ranking=self.ranker.params, rating=self.rater.params)

    def _fit(self, data: Interactions) -> None:
        self.ranker.fit(data)
        self.rater.fit(data)
        self.fit_info = {"ranking": self.ranker.fit_info, "rating": self.rater.fit_info}

    def memory_estimate(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """EASE's peak, or what EASE keeps (``B``, its input, its vectors) plus the neighbourhood's peak."""
        ease_kept = 4 * n_items**2 + 8 * n_ratings + 8 * int(self.ranker.params["embedding_size"]) * (n_users + n_items)
        return max(self.ranker.memory_estimate(n_users, n_items, n_ratings),
                   ease_kept + self.rater.memory_estimate(n_users, n_items, n_ratings))

    def predict(self, user_rows: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        """The neighbourhood model's ratings."""
        return self.rater.predict(user_rows, item_rows)

    def predict_user(self, user_row: int) -> np.ndarray:
        """The neighbourhood model's ratings for every anime."""
        return self.rater.predict_user(user_row)

    def rank_scores(self, user_rows: np.ndarray) -> np.ndarray:
        """EASE's scores."""
        return self.ranker.rank_scores(user_rows)

    def fold_in(self, item_rows: np.ndarray, ratings: np.ndarray) -> FoldIn:
        """EASE's history-row scores and the neighbourhood model's folded-in ratings."""
        return FoldIn(self.ranker.history_scores(item_rows, ratings), self.rater.fold_in_ratings(item_rows, ratings))

    def item_vectors(self) -> np.ndarray:
        """EASE's SVD item vectors."""
        return self.ranker.item_vectors()

    def user_vectors(self) -> np.ndarray:
        """EASE's SVD user vectors."""
        return self.ranker.user_vectors()

    def baseline(self) -> tuple[float, np.ndarray, np.ndarray]:
        """The neighbourhood model's bias baseline (used for unknown pairs)."""
        return self.rater.baseline()

    def state_arrays(self) -> dict[str, Any]:
        return {**{f"ranking.{k}": v for k, v in self.ranker.state_arrays().items()},
                **{f"rating.{k}": v for k, v in self.rater.state_arrays().items()}}

    def set_state_arrays(self, arrays: dict[str, Any]) -> None:
        for part, prefix in ((self.ranker, "ranking."), (self.rater, "rating.")):
            part.users, part.items, part.rating_scale = self.users, self.items, self.rating_scale
            part.fit_info = self.fit_info.get(prefix[:-1], {})
            part.set_state_arrays({k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
