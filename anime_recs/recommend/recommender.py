"""The three recommenders of steps 4–8, served from one object built once over any model family.

:class:`AnimeRecommender` is shaped like ``implicit``'s ``RecommenderBase``:
id-level methods return ``(ids, scores)`` arrays (:meth:`~AnimeRecommender.similar_items`,
:meth:`~AnimeRecommender.similar_user_ids`, :meth:`~AnimeRecommender.recommend`), and
the step-level methods wrap them into the DataFrames the pipeline logs
(:meth:`~AnimeRecommender.similar_anime`, :meth:`~AnimeRecommender.similar_users`,
:meth:`~AnimeRecommender.user_preferences`,
:meth:`~AnimeRecommender.recommend_from_similar_users`,
:meth:`~AnimeRecommender.recommend_by_model`). A pipeline step and an HTTP server
call the same functions.

The model (:mod:`anime_recs.models`) supplies the representations compared by
cosine, the ranking scores and the predicted ratings; this class adds the
catalogue, each user's ratings, filters and the tables. How a query runs: one
matrix-vector product over the cached L2-normalised representations (or the
model's ranking scores), filters as boolean masks over the candidate set (so asking for 10
gives 10 whenever 10 qualify), a linear-time partition (``np.partition``) for
the top k, and the metadata of those k rows taken from a cached table at the
end. Everything that depends only on the data (genre multi-hot matrix, type
codes, each user's ratings as a contiguous slice of user-sorted arrays found
with ``np.searchsorted``, popularity ranks, id lookup tables) is computed in the
constructor, so no query scans the ratings or anime tables.

Definitions used throughout:

* **seen**: any ratings row for that (user, anime), whatever its status.
* **favourites of a user** (similar-users table, similar-user recommendations):
  the user's anime ordered by rating (desc), then share of episodes watched
  (desc; the original's tie-break), then ``Members`` (desc), then MAL_ID; the first
  ``num_faves`` of them, optionally TV only.
* **favourites for preferences**: anime rated at or above the user's own
  ``favorite_percentile`` of their ratings (``np.percentile``, linear), as the original.
* **genre filter**: an anime qualifies if it has ANY of the requested genres (the
  original built one list per genre and concatenated them). Genres are parsed from
  the ``Genres`` column; anime whose genres are ``"Unknown"`` never match a genre filter.
* **score filter** (``min_score`` / ``max_score``): on the MyAnimeList ``Score``,
  inclusive; anime with an unknown score are dropped when either bound is given.

Users the model knows but who have no ratings rows (possible when the ratings
table handed in is a subset of the training data): :meth:`~AnimeRecommender.similar_users`
lists them with no favourites, :meth:`~AnimeRecommender.recommend_by_model` ranks
every anime (nothing is seen), :meth:`~AnimeRecommender.user_preferences` returns
empty preferences with a warning. Users with ratings but no embedding only get
:meth:`~AnimeRecommender.user_preferences`; the model-based calls raise.
"""

from __future__ import annotations

import logging
import numbers
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from anime_recs.core.encoding import IdEncoder
from anime_recs.core.parsing import as_int
from anime_recs.core.errors import DataValidationError, UserInputError
from anime_recs.core.options import config_default
from anime_recs.models.base import RecommenderModel
from anime_recs.recommend.names import NameIndex
from anime_recs.core.topk import top_k
from anime_recs.recommend.catalogue import Catalogue, count_series, check_count, is_integer
from anime_recs.recommend.interactions import UserRatings, concat_ranges
from anime_recs.recommend.ranking import ModelRanking

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserPreferences:
    """A user's favourite anime and how often each genre and source occurs among them.

    Attributes:
        user_id: The user.
        favorite_percentile: The percentile used (0.8 = the user's top 20 % of ratings).
        threshold: The rating (raw scale) at or above which an anime is a favourite;
            NaN when the user has no ratings.
        favorites: One row per favourite, best first: ``MAL_ID, Name, eng_version,
            user_rating, Genres, Source, Type, Score``.
        genres: Genre -> number of favourites with it, most frequent first.
        sources: Source material -> number of favourites, most frequent first
            (``"Unknown"`` is left out in both).
    """

    user_id: int
    favorite_percentile: float
    threshold: float
    favorites: pd.DataFrame
    genres: pd.Series
    sources: pd.Series

    def to_frame(self) -> pd.DataFrame:
        """The preferences table of the original step 6 (``User_ID_<id>_user_prefs.csv``).

        Returns:
            Columns ``MAL_ID, eng_version, Source, Genres`` (the original wrote the
            anime-table row number as an unnamed index in place of ``MAL_ID``).
        """
        return self.favorites[["MAL_ID", "eng_version", "Source", "Genres"]].reset_index(drop=True)


class AnimeRecommender(Catalogue, UserRatings, ModelRanking):
    """Similar anime, similar users, user preferences and two kinds of recommendations.

    Build it once; every query afterwards is vectorised (see the module docstring).

    Example:
        >>> rec = AnimeRecommender(model=load_model(folder), ratings=ratings, anime=anime)
        >>> rec.similar_anime("Cowboy Bebop", n=5, types=["TV"])
    """

    def __init__(
        self,
        *,
        model: RecommenderModel,
        ratings: pd.DataFrame,
        anime: pd.DataFrame,
        synopses: pd.DataFrame | None = None,
        name_index: NameIndex | None = None,
        min_ratings: int | None = None,
    ) -> None:
        """Cache everything the queries need.

        Args:
            model: A fitted model family (:mod:`anime_recs.models`); its encoders map ids to rows.
            ratings: Preprocessed interactions: ``user_id``, ``anime_id``, ``rating`` (on the model's
                rating scale, e.g. 1–10); ``watched_episodes`` is used when present.
            anime: The anime table (``MAL_ID, Name, Genres, Type, Score, Episodes``;
                ``English name, Japanese name, Source, Members`` when present).
            synopses: Optional ``MAL_ID`` + ``sypnopsis`` (or ``synopsis``) table.
            name_index: A prebuilt :class:`NameIndex` over ``anime``; built here if omitted.
            min_ratings: The fewest ratings an anime (user) needs to be returned as similar when a query
                does not say; None: the data's rule (:func:`~anime_recs.recommend.interactions.evidence_rule`).

        Raises:
            DataValidationError: on missing columns, shape mismatches or non-finite representations.
        """
        started = time.perf_counter()
        self.model = model
        self._init_embeddings(model.user_vectors(), model.item_vectors(), model.users, model.items)
        lo, hi = (float(v) for v in model.rating_scale)
        if not np.isfinite([lo, hi]).all() or hi <= lo:
            raise DataValidationError(f"rating_scale must be (min, max) with max > min, got {model.rating_scale!r}")
        self.rating_scale = (lo, hi)
        self._init_anime(anime, synopses)
        self._init_ratings(ratings)
        if min_ratings is not None:
            self.min_ratings = int(min_ratings)
        self.names = name_index if name_index is not None else NameIndex(self._meta)
        logger.info(
            "AnimeRecommender ready in %.1f s: %s; %d anime rows, %d ratings of %d users, %d genres",
            time.perf_counter() - started,
            model.describe(),
            len(self._meta),
            len(self._r_row),
            len(self._r_users),
            len(self.genres),
        )

    @staticmethod
    def _normalised(matrix: np.ndarray, what: str) -> np.ndarray:
        """float32, C-contiguous, unit rows; zero rows stay zero (cosine 0 with everything)."""
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        if matrix.ndim != 2:
            raise DataValidationError(f"{what} embeddings must be a 2-D matrix, got shape {matrix.shape}")
        if not np.isfinite(matrix).all():
            raise DataValidationError(f"{what} embeddings contain NaN or inf; retrain or re-export the model")
        norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))  # no temporary copy of the matrix
        zero = norms == 0
        if zero.any():  # expected (e.g. anime nobody rated in training); a detail for debugging, not for each answer
            logger.debug("%d %s embedding rows are all zero; their similarities are 0", int(zero.sum()), what)
        # Inputs are normally normalised already; only copy when they are not.
        if np.abs(norms[~zero] - 1).max(initial=0.0) > 1e-3:
            logger.info("normalising %s embeddings to unit length", what)
            matrix = matrix / np.where(zero, 1, norms)[:, None].astype(np.float32)
        return matrix

    def _init_embeddings(
        self, users: np.ndarray, anime: np.ndarray, user_encoder: IdEncoder, anime_encoder: IdEncoder
    ) -> None:
        self._U = self._normalised(users, "user")
        self._A = self._normalised(anime, "anime")
        if self._U.shape[1] != self._A.shape[1]:
            raise DataValidationError(
                f"user and anime embeddings differ in size ({self._U.shape[1]} vs {self._A.shape[1]})"
            )
        if len(user_encoder) != self._U.shape[0] or len(anime_encoder) != self._A.shape[0]:
            raise DataValidationError(
                f"encoders do not match the embeddings: {len(user_encoder)} user ids for {self._U.shape[0]} rows, "
                f"{len(anime_encoder)} anime ids for {self._A.shape[0]} rows; load the encoders saved with this model"
            )
        self.user_encoder = user_encoder
        self.anime_encoder = anime_encoder
        self._user_ids = np.asarray(user_encoder.ids, np.int64)
        self._emb_anime_ids = np.asarray(anime_encoder.ids, np.int64)

    @property
    def n_users(self) -> int:
        """Number of users the model has embeddings for."""
        return int(self._U.shape[0])

    @property
    def n_anime(self) -> int:
        """Number of anime the model has embeddings for."""
        return int(self._A.shape[0])

    def __repr__(self) -> str:
        return f"AnimeRecommender(users={self.n_users}, anime={self.n_anime}, dim={self._U.shape[1]})"

    def _user_position(self, user_id: object) -> int:
        """Embedding row of a user id, or a one-line error naming a valid example."""
        uid = self._coerce_user(user_id)
        pos = int(np.searchsorted(self._user_ids, uid))
        if pos < len(self._user_ids) and self._user_ids[pos] == uid:
            return pos
        example = self._random_user_pool[0] if len(self._random_user_pool) else self._user_ids[0]
        rated = "; it has ratings but too few to be trained on" if self._ratings_slice(uid)[1] else ""
        raise UserInputError(
            f"unknown user id {uid}{rated}: the model knows {self.n_users:,} users "
            f"(e.g. {int(example)}); pick one of them"
        )

    @staticmethod
    def _coerce_user(user_id: object) -> int:
        # Regression: ids beyond int64 overflowed numpy lookups (a 500 in the HTTP API); they are unknown ids.
        if is_integer(user_id) and abs(int(user_id)) < 2**63:  # type: ignore[call-overload]
            return int(user_id)  # type: ignore[call-overload]
        if (parsed := as_int(user_id)) is not None:
            return parsed
        raise UserInputError(f"a user id must be an integer, got {user_id!r}")

    def similar_items(
        self,
        query: int | str,
        n: int = 10,
        genres: str | Iterable[str] | None = None,
        types: str | Iterable[str] | None = None,
        items: Iterable[int] | None = None,
        exclude: Iterable[int] | None = None,
        min_ratings: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """MAL_IDs and cosine similarities of the anime most similar to ``query`` with enough ratings.

        Args:
            query: MAL_ID or name (forgiving of case, punctuation, accents, symbols).
            n: How many to return (fewer only when fewer qualify).
            genres: Keep anime with ANY of these genres (a name, a list, or ``"A,B"``).
            types: Keep anime of these types (``TV``, ``Movie``, ...; case-insensitive).
            items: Only rank these MAL_IDs.
            exclude: Never return these MAL_IDs.
            min_ratings: Return only anime rated by at least this many users (None: the data's rule,
                :func:`~anime_recs.recommend.interactions.evidence_rule`; the query itself needs none).

        Returns:
            ``(mal_ids, similarities)``, most similar first; the query itself is excluded.

        Raises:
            UserInputError: unknown anime/genre/type, bad ``n``, or a filter that leaves nothing.
        """
        n = check_count(n, "n")
        mal_id = self.resolve_anime(query)
        pos = self._anime_position(mal_id)
        scores = self._A @ self._A[pos]
        base = self._emb_has_meta & self.enough_evidence(min_ratings)[0]
        base[pos] = False
        steps = self._filter_steps(genres, types, None, None, "emb")
        steps = self._with_id_filters(steps, items, exclude)
        top = top_k(scores, n, self._apply(base, steps, "anime"))
        return self._emb_anime_ids[top], scores[top]

    def similar_anime(
        self,
        query: int | str,
        n: int = 10,
        genres: str | Iterable[str] | None = None,
        types: str | Iterable[str] | None = None,
        min_ratings: int | None = None,
    ) -> pd.DataFrame:
        """Step 4: the anime most similar to ``query``, with their metadata.

        Args:
            query: MAL_ID or name.
            n: How many to return.
            genres: Keep anime with ANY of these genres (the original's ``anime_rec_genres``,
                at most three there; any number here, ``None`` entries ignored).
            types: Keep anime of these types (the original's ``types``).
            min_ratings: See :meth:`similar_items`.

        Returns:
            Columns ``MAL_ID, Name, Similarity, English name, Japanese name, Genres, Type,
            Episodes, Score, Source, Members, Synopsis``; most similar first. ``attrs``
            holds ``query_id`` and ``query_name`` (and ``note`` when fewer than ``n``).

        Raises:
            UserInputError: see :meth:`similar_items`.
        """
        query_id = self.resolve_anime(query)
        ids, sims = self.similar_items(query_id, n, genres=genres, types=types, min_ratings=min_ratings)
        frame = self._anime_frame(self._rows_of(ids), {"Similarity": sims})
        frame.attrs["query_id"] = query_id
        frame.attrs["query_name"] = str(self._names_arr[self._rows_of(np.array([query_id]))[0]])
        return self._note_short(frame, n, len(ids), "no other anime passes the filters")

    def random_anime(self, rng: np.random.Generator | int | None = None) -> int:
        """A random MAL_ID among anime with both an embedding and metadata.

        Args:
            rng: A numpy Generator, or a seed.
        """
        rng = np.random.default_rng(rng)
        return int(self._random_anime_pool[rng.integers(len(self._random_anime_pool))])

    def similar_user_ids(self, user_id: int, n: int = 10, min_ratings: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Ids and cosine similarities of the ``n`` users most similar to ``user_id``.

        Only users with at least ``min_ratings`` ratings are returned (None: the data's rule, as for anime).

        Raises:
            UserInputError: unknown user or bad ``n``.
        """
        n = check_count(n, "n")
        pos = self._user_position(user_id)
        scores = self._U @ self._U[pos]
        scores[~self.enough_evidence(min_ratings)[1]] = -np.inf
        scores[pos] = -np.inf  # never the user themself
        top = top_k(scores, n, None)
        return self._user_ids[top], scores[top]

    def similar_users(self, user_id: int, n: int = 10, num_faves: int = 10, tv_only: bool = False,
                      min_ratings: int | None = None) -> pd.DataFrame:
        """Step 5: the users most similar to ``user_id`` and each one's favourite anime.

        Args:
            user_id: A user the model knows.
            n: How many similar users.
            num_faves: Favourites listed per similar user.
            tv_only: List only TV series as favourites (the original's ``TV_only``).

        Returns:
            Columns ``user_id, Similarity, n_ratings, favorite_animes`` (names as the
            original wrote them: ``'A', 'B'``) and ``favorite_ids`` (list of MAL_IDs);
            most similar first.

        Raises:
            UserInputError: unknown user or bad counts.
        """
        num_faves = check_count(num_faves, "num_faves")
        ids, sims = self.similar_user_ids(user_id, n, min_ratings)
        group, index, _ = self._favourites(ids, num_faves, tv_only=bool(tv_only))
        rows = self._r_row[index]
        # Favourites are grouped by user already: cut them at the group boundaries.
        bounds = np.searchsorted(group, np.arange(1, len(ids)))
        names = np.split(self._names_arr[rows], bounds)
        mal = np.split(self._mal_ids[rows], bounds)
        _, lengths = self._ratings_slices(ids)
        frame = pd.DataFrame(
            {
                "user_id": ids,
                "Similarity": sims,
                "n_ratings": lengths.astype(np.int64),
                # One short list per result user (n of them), formatted like the original CSV.
                "favorite_animes": [str(v.tolist())[1:-1] for v in names],
                "favorite_ids": [v.tolist() for v in mal],
                "favorite_names": [v.tolist() for v in names],  # the same names as a list (JSON answers)
            }
        )
        frame.attrs["query_user"] = self._coerce_user(user_id)
        return self._note_short(frame, n, len(ids), "the model knows no more users")

    def random_user(self, rng: np.random.Generator | int | None = None, max_ratings: int | None = None) -> int:
        """A random user the model knows who has at least one rating.

        Args:
            rng: A numpy Generator, or a seed.
            max_ratings: Only users with at most this many ratings (the original's
                ``max_ratings``, which kept random users' tables readable).

        Raises:
            UserInputError: no user qualifies.
        """
        rng = np.random.default_rng(rng)
        k = len(self._random_user_pool)
        if max_ratings is not None:
            limit = check_count(max_ratings, "max_ratings")
            k = int(np.searchsorted(self._random_user_counts, limit, side="right"))
            if k == 0:
                fewest = int(self._random_user_counts[0]) if len(self._random_user_counts) else 0
                raise UserInputError(
                    f"no user has at most {limit} ratings (the fewest is {fewest}); raise max_ratings"
                )
        if k == 0:
            raise UserInputError("no user known to the model has any ratings; check the ratings table")
        return int(self._random_user_pool[rng.integers(k)])

    def user_preferences(self, user_id: int, favorite_percentile: float | None = None) -> UserPreferences:
        """Step 6: a user's favourite anime, genres and sources.

        Args:
            user_id: A user with ratings (the model need not know them).
            favorite_percentile: Fraction in [0, 1]; e.g. 0.8 keeps anime rated at or above the
                user's 80th percentile of their own ratings (their top ~20 %). None: ``users.favorite_percentile``
                of config/config.yaml.

        Returns:
            A :class:`UserPreferences`; empty (with a warning) for a user the model knows
            but who has no ratings rows.

        Raises:
            UserInputError: a user neither in the model nor in the ratings, or a bad percentile.
        """
        q = config_default("users.favorite_percentile") if favorite_percentile is None else favorite_percentile
        if not isinstance(q, numbers.Real) or isinstance(q, bool) or not 0.0 <= float(q) <= 1.0:
            raise UserInputError(
                f"favorite_percentile must be a fraction in [0, 1] (e.g. 0.8 = 80th percentile), got {q!r}"
            )
        uid = self._coerce_user(user_id)
        _, length = self._ratings_slice(uid)
        if length == 0:
            self._user_position(uid)  # raises for a user nobody knows
            logger.warning("user %d is known to the model but has no ratings rows: no preferences", uid)
        _, index, thresholds = self._favourites(np.array([uid]), None, favorite_percentile=float(q))
        threshold = float(thresholds[0])
        rows = self._r_row[index]
        favorites = pd.DataFrame(
            {
                "MAL_ID": self._mal_ids[rows],
                "Name": self._names_arr[rows],
                "eng_version": self._eng_arr[rows],
                "user_rating": self._r_rating[index].astype(np.float64),
                "Genres": self._genres_arr[rows],
                "Source": self._source[rows],
                "Type": self._types_arr[rows],
                "Score": self._score[rows],
            }
        )
        genres = count_series(self._genre_labels, self._G[rows].sum(axis=0), "genre")
        source_counts = np.bincount(self._source_code[rows], minlength=len(self._source_labels))
        sources = count_series(self._source_labels, source_counts, "source")
        return UserPreferences(
            user_id=uid,
            favorite_percentile=float(q),
            threshold=threshold,
            favorites=favorites,
            genres=genres,
            sources=sources,
        )

    def _similar_votes(self, uid: int, n_similar: int, num_faves: int | None,
                       percentile: float | None) -> tuple[np.ndarray, np.ndarray]:
        """The ``n_similar`` most similar users and, per anime-table row, how many of them favour it."""
        sim_ids, _ = self.similar_user_ids(uid, n_similar)
        group, index, _ = self._favourites(sim_ids, num_faves, favorite_percentile=percentile)
        n_rows = len(self._meta)
        # A user rating the same anime twice must still count once.
        pairs = np.unique(group * (n_rows + 1) + self._r_row[index])
        counts = np.bincount(pairs % (n_rows + 1), minlength=n_rows)[:n_rows]
        return sim_ids, counts

    def similar_user_votes(self, user_id: int, n_similar: int = 10,
                           num_faves: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ranking of :meth:`recommend_from_similar_users` over the model's anime, for the evaluation.

        Returns:
            Per model anime (encoder row): how many of the ``n_similar`` most similar users
            favour it, the sum of their ratings of it (raw scale) and how many of them rated it.
        """
        uid = self._coerce_user(user_id)
        sim_ids, counts = self._similar_votes(uid, check_count(n_similar, "n_similar"), check_count(num_faves, "num_faves"), None)
        votes = np.where(self._emb_has_meta, counts[np.maximum(self._emb_to_row, 0)], 0).astype(np.float64)
        starts, lengths = self._ratings_slices(np.asarray(sim_ids, np.int64))
        _, index = concat_ranges(starts, lengths)
        emb = self._r_emb[index]
        ok = emb >= 0
        sums = np.bincount(emb[ok], weights=self._r_rating[index][ok], minlength=self.n_anime)
        rated = np.bincount(emb[ok], minlength=self.n_anime).astype(np.float64)
        return votes, sums, rated

    def recommend_from_similar_users(
        self,
        user_id: int,
        n: int = 10,
        n_similar: int = 10,
        num_faves: int | None = 10,
        genres: str | Iterable[str] | None = None,
        favorite_percentile: float | None = None,
    ) -> pd.DataFrame:
        """Step 7: anime the similar users favour that ``user_id`` has not seen.

        Ranked by how many of the similar users favourited each (ties: higher
        ``Score``, then smaller MAL_ID).

        Args:
            user_id: A user the model knows.
            n: How many recommendations.
            n_similar: How many similar users to ask.
            num_faves: Favourites per similar user, as in :meth:`similar_users` (so both
                tables agree); ``None`` = every anime at or above that user's
                ``favorite_percentile`` (the original step 7's rule).
            genres: Keep anime with ANY of these genres.
            favorite_percentile: Used only when ``num_faves`` is ``None`` (None: as :meth:`user_preferences`).

        Returns:
            Columns ``MAL_ID, Name, n_similar_users, Explanation`` ("7 of 10 similar users"),
            then the metadata columns.

        Raises:
            UserInputError: unknown user/genre, bad counts, nothing unseen among the
                favourites, or a genre filter that leaves nothing.
        """
        n = check_count(n, "n")
        if num_faves is not None:
            num_faves = check_count(num_faves, "num_faves")
        n_similar = check_count(n_similar, "n_similar")
        uid = self._coerce_user(user_id)
        if favorite_percentile is None:
            favorite_percentile = config_default("users.favorite_percentile")
        percentile = float(favorite_percentile) if num_faves is None else None
        sim_ids, counts = self._similar_votes(uid, n_similar, num_faves, percentile)
        unseen = counts > 0
        unseen[self._seen_rows(uid)] = False
        if not unseen.any():
            raise UserInputError(
                f"user {uid} has already seen every favourite of their {len(sim_ids)} most similar users; "
                "raise n_similar or num_faves"
            )
        mask = self._apply(unseen, self._filter_steps(genres, None, None, None, "row"), "favourites")
        rows = np.flatnonzero(mask)
        score = np.nan_to_num(self._score[rows], nan=-np.inf)
        rows = rows[np.lexsort((self._mal_ids[rows], -score, -counts[rows]))][:n]
        votes = counts[rows].astype(np.int64)
        frame = self._anime_frame(
            rows,
            {
                "n_similar_users": votes,
                "Explanation": pd.Series(votes).astype("str").to_numpy(object) + f" of {len(sim_ids)} similar users",
            },
        )
        frame.attrs["query_user"] = uid
        frame.attrs["similar_users"] = sim_ids.tolist()
        return self._note_short(frame, n, int(mask.sum()), "the similar users favour no more unseen anime")
