"""Ranking by the model: a known user's top anime and a new user's, through the same filters.

:class:`ModelRanking` is the part of :class:`~anime_recs.recommend.recommender.AnimeRecommender`
that asks the model for ranking scores and predicted ratings: :meth:`~ModelRanking.recommend`
(ids and ratings, shaped like ``implicit``'s), :meth:`~ModelRanking.recommend_by_model` (step 8's
table) and :meth:`~ModelRanking.recommend_for_fold_in` (someone new, folded into the model by
:func:`anime_recs.models.foldin.fold_in`). The catalogue (:class:`~anime_recs.recommend.catalogue.Catalogue`)
supplies the filters and tables, the ratings (:class:`~anime_recs.recommend.interactions.UserRatings`)
what a user has seen.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import pandas as pd

from anime_recs.core.errors import DataValidationError
from anime_recs.core.topk import top_k
from anime_recs.models.base import FoldIn
from anime_recs.recommend.catalogue import check_count


class Ranked(NamedTuple):
    """A ranked list: MAL_IDs, their ranking scores, predicted ratings, how many anime passed the filters, match %."""

    ids: np.ndarray
    scores: np.ndarray
    predicted: np.ndarray
    available: int
    match: np.ndarray


def match_percent(scores: np.ndarray, candidates: np.ndarray, top: np.ndarray) -> np.ndarray:
    """0-100 per ranked anime: the share of the candidate anime whose rank score is lower (one decimal).

    It orders exactly as the table does (ties aside), whatever scale a family's scores are on, so a
    person reads "matches you better than 99.7 % of what you could watch" next to the predicted rating.
    """
    pool = np.sort(scores[candidates])
    if len(top) == 0 or len(pool) == 0:
        return np.empty(0, np.float64)
    below = np.searchsorted(pool, scores[top], side="left")
    return np.round(100.0 * below / len(pool), 1)


class ModelRanking:
    """The model-ranked recommendations of :class:`~anime_recs.recommend.recommender.AnimeRecommender` (a mixin)."""

    def recommend(
        self,
        user_id: int,
        n: int = 10,
        filter_seen: bool = True,
        genres: str | Iterable[str] | None = None,
        types: str | Iterable[str] | None = None,
        min_score: float | None = None,
        max_score: float | None = None,
        items: Iterable[int] | None = None,
        exclude: Iterable[int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """MAL_IDs the model ranks highest for ``user_id``, with their predicted ratings.

        The order is the model's ranking (how much the user will want each anime); the
        second array is the predicted rating of each (raw scale), which for a ranking
        family need not be monotone in that order.

        Args:
            user_id: A user the model knows.
            n: How many.
            filter_seen: Drop anime the user has any ratings row for.
            genres: Keep anime with ANY of these genres.
            types: Keep anime of these types.
            min_score: Keep anime whose MAL ``Score`` is at least this.
            max_score: Keep anime whose MAL ``Score`` is at most this.
            items: Only rank these MAL_IDs.
            exclude: Never return these MAL_IDs.

        Returns:
            ``(mal_ids, predicted_ratings)``, best first.

        Raises:
            UserInputError: unknown user/genre/type, bad bounds, or a filter that leaves nothing.
        """
        ranked = self._rank(user_id, n, filter_seen, genres, types, min_score, max_score, items, exclude)
        return ranked.ids, ranked.predicted

    def _rank(
        self,
        user_id: int,
        n: int,
        filter_seen: bool,
        genres: str | Iterable[str] | None,
        types: str | Iterable[str] | None,
        min_score: float | None,
        max_score: float | None,
        items: Iterable[int] | None = None,
        exclude: Iterable[int] | None = None,
    ) -> Ranked:
        """The model's top ``n`` for a user after the filters (see :meth:`recommend`)."""
        n = check_count(n, "n")
        uid = self._coerce_user(user_id)
        pos = self._user_position(uid)
        steps = self._filter_steps(genres, types, min_score, max_score, "emb")
        scores = np.asarray(self.model.rank_scores(np.array([pos]))[0], dtype=np.float64)
        if scores.shape[0] != self.n_anime:
            raise DataValidationError(f"the model scored {scores.shape[0]} anime but knows {self.n_anime}; reload the model")
        base = self._emb_has_meta & np.isfinite(scores)
        if filter_seen:
            start, length = self._ratings_slice(uid)
            seen = self._r_emb[start : start + length]
            unseen = np.ones(self.n_anime, dtype=bool)
            unseen[seen[seen >= 0]] = False
            steps.insert(0, ("unseen", unseen))
        steps = self._with_id_filters(steps, items, exclude)
        mask = self._apply(base, steps, "anime")
        top = top_k(scores, n, mask)
        predicted = self.model.predict(np.full(len(top), pos), top) if len(top) else np.empty(0)
        return Ranked(self._emb_anime_ids[top], scores[top], np.asarray(predicted, np.float64), int(mask.sum()),
                      match_percent(scores, mask, top))

    def recommend_by_model(
        self,
        user_id: int,
        n: int = 10,
        types: str | Iterable[str] | None = None,
        genres: str | Iterable[str] | None = None,
        min_score: float | None = None,
        max_score: float | None = None,
    ) -> pd.DataFrame:
        """Step 8: the unseen anime the model ranks highest for ``user_id``.

        Args:
            user_id: A user the model knows.
            n: How many (the original's ``model_num_recs``).
            types: Keep anime of these types.
            genres: Keep anime with ANY of these genres.
            min_score: Keep anime whose MAL ``Score`` is at least this.
            max_score: Keep anime whose MAL ``Score`` is at most this.

        Returns:
            Columns ``MAL_ID, Name, Predicted rating`` (raw scale, e.g. 1–10),
            ``Prediction`` (the predicted rating scaled to [0, 1], as the original CSV),
            ``Rank score`` (the model's ranking score, what the rows are ordered by) and ``Match`` (0-100: the
            share of the user's candidate anime that score lower, so it falls down the table), then the
            metadata columns; best first.

        Raises:
            UserInputError: see :meth:`recommend`.
        """
        ranked = self._rank(user_id, n, True, genres, types, min_score, max_score)
        lo, hi = self.rating_scale
        frame = self._anime_frame(
            self._rows_of(ranked.ids),
            {"Match": ranked.match, "Predicted rating": ranked.predicted,
             "Prediction": ((ranked.predicted - lo) / (hi - lo)).astype(np.float32), "Rank score": ranked.scores},
        )
        frame.attrs["query_user"] = self._coerce_user(user_id)
        frame.attrs["model_family"] = self.model.family
        return self._note_short(frame, n, ranked.available, "no more unseen anime pass the filters")

    def recommend_for_fold_in(
        self,
        scored: FoldIn,
        rows: np.ndarray,
        values: np.ndarray,
        listed: np.ndarray,
        n: int = 10,
        genres: str | Iterable[str] | None = None,
        types: str | Iterable[str] | None = None,
        min_score: float | None = None,
        max_score: float | None = None,
    ) -> pd.DataFrame:
        """The table of :func:`anime_recs.recommend.newuser.recommend_new_user` from a folded-in user.

        Args:
            scored: The new user's scores over every model anime.
            rows, values: The model rows and ratings that were folded in (they explain the results).
            listed: Model rows of every anime the user listed (never recommended).
            n, genres, types, min_score, max_score: As in :meth:`recommend_by_model`.
        """
        n = check_count(n, "n")
        scores = np.asarray(scored.rank_scores, np.float64)
        unseen = np.ones(self.n_anime, dtype=bool)
        unseen[listed] = False
        steps = [("unseen", unseen), *self._filter_steps(genres, types, min_score, max_score, "emb")]
        mask = self._apply(self._emb_has_meta & np.isfinite(scores), steps, "anime")
        top = top_k(scores, n, mask)
        frame = self._anime_frame(
            self._rows_of(self._emb_anime_ids[top]),
            {"Match": match_percent(scores, mask, top), "Predicted rating": np.asarray(scored.predicted, np.float64)[top],
             "Rank score": scores[top], "Explanation": self._explain(top, rows, values)},
        )
        frame.attrs.update({"used": len(rows), "model_family": self.model.family})
        return self._note_short(frame, n, int(mask.sum()), "no more unlisted anime pass the filters")

    def _explain(self, top: np.ndarray, rows: np.ndarray, values: np.ndarray) -> list[str]:
        """Per recommendation, the best-rated listed anime closest to it (cosine of item representations)."""
        if len(top) == 0:
            return []
        best = values >= np.max(values) - 1.0  # the user's favourites explain best
        anchors, anchor_values = rows[best], values[best]
        sims = self._A[top] @ self._A[anchors].T
        pick = np.argmax(sims, axis=1)
        names = self._eng_arr[self._rows_of(self._emb_anime_ids[anchors[pick]])]
        return [f"like {name} (you: {value:g})" for name, value in zip(names, anchor_values[pick])]
