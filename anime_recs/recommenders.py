"""The three recommenders of steps 4–8, served from one object built once.

:class:`AnimeRecommender` is shaped like ``implicit``'s ``RecommenderBase``:
id-level methods return ``(ids, scores)`` arrays (:meth:`~AnimeRecommender.similar_items`,
:meth:`~AnimeRecommender.similar_user_ids`, :meth:`~AnimeRecommender.recommend`), and
the step-level methods wrap them into the DataFrames the pipeline logs
(:meth:`~AnimeRecommender.similar_anime`, :meth:`~AnimeRecommender.similar_users`,
:meth:`~AnimeRecommender.user_preferences`,
:meth:`~AnimeRecommender.recommend_from_similar_users`,
:meth:`~AnimeRecommender.recommend_by_model`). A pipeline step and an HTTP server
call the same functions.

How a query runs: one matrix-vector product over the cached L2-normalised
embeddings, filters as boolean masks over the candidate set (so asking for 10
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from .config import str_to_list
from .encoding import IdEncoder
from .errors import DataValidationError, UserInputError
from .names import MISSING_MARKER, NameIndex, normalise_name

logger = logging.getLogger(__name__)

#: Metadata columns of every anime result, in order (computed columns go after ``Name``).
RESULT_COLUMNS: tuple[str, ...] = (
    "MAL_ID",
    "Name",
    "English name",
    "Japanese name",
    "Genres",
    "Type",
    "Episodes",
    "Score",
    "Source",
    "Members",
    "Synopsis",
)
_REQUIRED_ANIME = ("MAL_ID", "Name", "Genres", "Type", "Score", "Episodes")
_REQUIRED_RATINGS = ("user_id", "anime_id", "rating")
_SYNOPSIS_COLUMNS = ("sypnopsis", "synopsis", "Synopsis")  # upstream spells it "sypnopsis"


class RatingHead(Protocol):
    """Maps the cosine between a user and an anime embedding to a scaled rating in [0, 1]."""

    def predict(self, cosine: np.ndarray) -> np.ndarray:  # pragma: no cover - protocol
        """Predicted scaled ratings, one per cosine."""
        ...


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


# ---------------------------------------------------------------------------
# small vectorised helpers


def _concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate ``range(start, start + length)`` for each pair, without a Python loop.

    Returns:
        ``(group, index)``: for every produced index, the position of its pair.
    """
    lengths = np.asarray(lengths, np.int64)
    total = int(lengths.sum())
    group = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    offsets = np.cumsum(lengths) - lengths
    index = np.arange(total, dtype=np.int64) - offsets[group] + np.asarray(starts, np.int64)[group]
    return group, index


def _rank_in_group(group: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal values of a sorted ``group`` array."""
    return np.arange(len(group)) - np.searchsorted(group, group, side="left")


def _desc_percentile(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray, q: float) -> np.ndarray:
    """``np.percentile(slice, 100*q)`` (linear) for many slices sorted in descending order.

    Groups of length 0 get NaN.
    """
    out = np.full(len(lengths), np.nan)
    ok = lengths > 0
    m = lengths[ok].astype(np.float64)
    pos = q * (m - 1)  # position in ascending order
    lo = np.floor(pos)
    hi = np.ceil(pos)
    # Ascending position k is descending position m - 1 - k.
    v_lo = values[starts[ok] + (m - 1 - lo).astype(np.int64)].astype(np.float64)
    v_hi = values[starts[ok] + (m - 1 - hi).astype(np.int64)].astype(np.float64)
    out[ok] = v_lo + (pos - lo) * (v_hi - v_lo)
    return out


class _IdLookup:
    """Raw ids -> positions, for millions of lookups at once.

    MyAnimeList ids are small integers, so a dense table answers with one gather;
    ids spread over a huge range fall back to a binary search.
    """

    _DENSE_LIMIT = 50_000_000

    def __init__(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, np.int64)
        self._dense: np.ndarray | None = None
        if len(ids) and ids.min() >= 0 and ids.max() < self._DENSE_LIMIT:
            self._dense = np.full(int(ids.max()) + 1, -1, np.int64)
            self._dense[ids] = np.arange(len(ids))
        self._order = np.argsort(ids, kind="stable")
        self._sorted = ids[self._order]

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """Positions of ``values`` (int64), -1 where absent."""
        values = np.asarray(values, np.int64)
        if self._dense is not None:
            inside = (values >= 0) & (values < len(self._dense))
            return np.where(inside, self._dense[np.where(inside, values, 0)], -1)
        if len(self._sorted) == 0:
            return np.full(values.shape, -1, np.int64)
        pos = np.minimum(np.searchsorted(self._sorted, values), len(self._sorted) - 1)
        return np.where(self._sorted[pos] == values, self._order[pos], -1)


def _top_k(scores: np.ndarray, mask: np.ndarray | None, n: int) -> np.ndarray:
    """Positions of the ``n`` best scores, best first (ties: lower position first).

    Args:
        scores: One score per position.
        mask: Candidate positions; ``None`` = every position whose score is not -inf.
        n: How many.

    ``np.partition`` finds the k-th best value in linear time; only the few
    positions at least that good are then sorted.
    """
    if mask is None:
        # The 325k-user path: no candidate copy, just a partition of the scores themselves.
        k = min(n, len(scores) - int(np.count_nonzero(scores == -np.inf)))
        if k == 0:
            return np.empty(0, np.int64)
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        top = np.flatnonzero(scores >= kth)
        return top[np.lexsort((top, -scores[top]))][:k]
    candidates = np.flatnonzero(mask)
    k = min(n, len(candidates))
    if k == 0:
        return candidates[:0]
    values = scores[candidates]
    if k < len(candidates):
        # Keep everything tied with the k-th best value, so ties at the cut are broken
        # by position (deterministic), not by the partition's internal order.
        kth = np.partition(values, len(values) - k)[len(values) - k]
        keep = np.flatnonzero(values >= kth)
        candidates, values = candidates[keep], values[keep]
    return candidates[np.lexsort((candidates, -values))][:k]


def _count_series(labels: np.ndarray, counts: np.ndarray, name: str) -> pd.Series:
    """Label -> count, most frequent first, ties alphabetically; zeros and ``Unknown`` dropped.

    Args:
        labels: Alphabetically sorted labels.
        counts: One count per label.
        name: Name of the index (``genre`` / ``source``).
    """
    keep = np.flatnonzero((counts > 0) & (labels != MISSING_MARKER))
    keep = keep[np.argsort(-counts[keep], kind="stable")]  # stable: ties stay alphabetical
    return pd.Series(
        counts[keep].astype(np.int64), index=pd.Index(labels[keep].astype(str), dtype="str", name=name), name="count"
    )


_HINTS = {
    "unseen": "the user has rated every anime the model can recommend",
    "items": "none of the given items qualifies",
    "exclude": "everything left was excluded",
}


def _is_integer(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_count(value: object, name: str) -> int:
    """A positive int option (``n``, ``num_faves`` ...), or a one-line error."""
    if not _is_integer(value) or int(value) < 1:  # type: ignore[call-overload]
        raise UserInputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def _preview(values: Sequence[object], limit: int = 60) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (", …" if len(values) > limit else "")


# ---------------------------------------------------------------------------


class AnimeRecommender:
    """Similar anime, similar users, user preferences and two kinds of recommendations.

    Build it once; every query afterwards is vectorised (see the module docstring).

    Example:
        >>> rec = AnimeRecommender(user_embeddings=U, anime_embeddings=A,
        ...                        user_encoder=users, anime_encoder=animes, head=head,
        ...                        rating_scale=(1.0, 10.0), ratings=ratings, anime=anime)
        >>> rec.similar_anime("Cowboy Bebop", n=5, types=["TV"])
    """

    def __init__(
        self,
        *,
        user_embeddings: np.ndarray,
        anime_embeddings: np.ndarray,
        user_encoder: IdEncoder,
        anime_encoder: IdEncoder,
        head: RatingHead,
        rating_scale: tuple[float, float],
        ratings: pd.DataFrame,
        anime: pd.DataFrame,
        synopses: pd.DataFrame | None = None,
        name_index: NameIndex | None = None,
    ) -> None:
        """Cache everything the queries need.

        Args:
            user_embeddings: ``(n_users, d)`` float32, L2-normalised, row i = user encoder position i.
            anime_embeddings: ``(n_anime, d)`` float32, L2-normalised, row i = anime encoder position i.
            user_encoder: Raw user id <-> embedding row.
            anime_encoder: MAL_ID <-> embedding row.
            head: ``predict(cosine) -> scaled rating`` (the model's Dense+BatchNorm+activation).
            rating_scale: ``(min, max)`` of raw ratings; raw = min + scaled * (max - min).
            ratings: Preprocessed interactions: ``user_id``, ``anime_id``, ``rating``
                (scaled to [0, 1]); ``watched_episodes`` is used when present.
            anime: The anime table (``MAL_ID, Name, Genres, Type, Score, Episodes``;
                ``English name, Japanese name, Source, Members`` when present).
            synopses: Optional ``MAL_ID`` + ``sypnopsis`` (or ``synopsis``) table.
            name_index: A prebuilt :class:`NameIndex` over ``anime``; built here if omitted.

        Raises:
            DataValidationError: on missing columns, shape mismatches or non-finite embeddings.
        """
        started = time.perf_counter()
        self._init_embeddings(user_embeddings, anime_embeddings, user_encoder, anime_encoder)
        self.head = head
        lo, hi = (float(v) for v in rating_scale)
        if not np.isfinite([lo, hi]).all() or hi <= lo:
            raise DataValidationError(f"rating_scale must be (min, max) with max > min, got {rating_scale!r}")
        self.rating_scale = (lo, hi)
        self._init_anime(anime, synopses)
        self._init_ratings(ratings)
        self.names = name_index if name_index is not None else NameIndex(self._meta)
        logger.info(
            "AnimeRecommender ready in %.1f s: %d users x %d anime embeddings (d=%d), %d anime rows, "
            "%d ratings of %d users, %d genres",
            time.perf_counter() - started,
            self.n_users,
            self.n_anime,
            self._U.shape[1],
            len(self._meta),
            len(self._r_row),
            len(self._r_users),
            len(self.genres),
        )

    # -- construction -------------------------------------------------------

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
        if zero.any():
            logger.warning("%d %s embedding rows are all zero; their similarities are 0", int(zero.sum()), what)
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

    def _init_anime(self, anime: pd.DataFrame, synopses: pd.DataFrame | None) -> None:
        missing = [c for c in _REQUIRED_ANIME if c not in anime.columns]
        if missing:
            raise DataValidationError(f"anime table lacks column(s) {missing}; expected the all-anime CSV columns")
        table = anime.drop_duplicates("MAL_ID", keep="first")
        if len(table) < len(anime):
            logger.warning("anime table: dropped %d duplicate MAL_IDs", len(anime) - len(table))
        meta = pd.DataFrame({"MAL_ID": table["MAL_ID"].to_numpy(np.int64)})
        for column in ("Name", "English name", "Japanese name", "Genres", "Type", "Source"):
            values = table[column] if column in table.columns else pd.Series(MISSING_MARKER, index=table.index)
            meta[column] = values.astype("str").fillna(MISSING_MARKER).to_numpy()
        meta["Episodes"] = pd.to_numeric(table["Episodes"], errors="coerce").to_numpy(np.float64)
        meta["Score"] = pd.to_numeric(table["Score"], errors="coerce").to_numpy(np.float64)
        members = table["Members"] if "Members" in table.columns else pd.Series(0, index=table.index)
        meta["Members"] = pd.to_numeric(members, errors="coerce").fillna(0).to_numpy(np.int64)
        meta["Synopsis"] = self._synopsis_column(meta["MAL_ID"], synopses)
        # English name when known, else the romaji Name: what the original showed people.
        eng = meta["English name"].where(meta["English name"] != MISSING_MARKER, meta["Name"])
        self._meta = meta[list(RESULT_COLUMNS)]
        n_rows = len(meta)

        self._mal_ids = meta["MAL_ID"].to_numpy(np.int64)
        self._mal_sorted = np.sort(self._mal_ids)
        self._row_lookup = _IdLookup(self._mal_ids)
        self._emb_lookup = _IdLookup(self._emb_anime_ids)
        self._names_arr = meta["Name"].to_numpy(object)
        self._eng_arr = eng.to_numpy(object)
        self._genres_arr = meta["Genres"].to_numpy(object)
        self._types_arr = meta["Type"].to_numpy(object)

        # Metadata arrays carry one extra "sentinel" row at the end, so that the row
        # index -1 (anime without metadata) reads as no genres, no type, unknown score.
        genres = meta["Genres"].str.replace(r"\s*,\s*", ",", regex=True).str.strip().str.get_dummies(sep=",")
        genres = genres.drop(columns=[c for c in genres.columns if c in ("", MISSING_MARKER)])
        self.genres: list[str] = [str(c) for c in genres.columns]
        self._genre_key = {normalise_name(g): i for i, g in enumerate(self.genres)}
        self._G = np.zeros((n_rows + 1, len(self.genres)), dtype=bool)
        self._G[:n_rows] = genres.to_numpy(dtype=bool)

        type_codes, type_names = pd.factorize(meta["Type"], sort=True)
        self.types: list[str] = [str(t) for t in type_names]
        self._type_key = {normalise_name(t): i for i, t in enumerate(self.types)}
        self._type = np.append(type_codes.astype(np.int32), -1)
        self._score = np.append(meta["Score"].to_numpy(np.float64), np.nan)
        self._episodes = np.append(meta["Episodes"].to_numpy(np.float64), np.nan)
        self._members = np.append(meta["Members"].to_numpy(np.int64), 0)
        # Popularity rank (most members first, then smaller MAL_ID): the last favourite tie-break.
        rank = np.empty(n_rows + 1, np.int64)
        rank[np.lexsort((self._mal_ids, -self._members[:-1]))] = np.arange(n_rows)
        rank[-1] = n_rows
        self._popularity_rank = rank
        self._source = np.append(meta["Source"].to_numpy(object), MISSING_MARKER)
        source_code, source_labels = pd.factorize(meta["Source"], sort=True)
        self._source_code = np.append(source_code, 0)
        self._source_labels = np.asarray(source_labels, dtype=object)
        self._genre_labels = np.asarray(self.genres, dtype=object)

        # Embedding row <-> table row.
        self._emb_to_row = self._rows_of(self._emb_anime_ids)
        self._row_to_emb = self._emb_lookup(self._mal_ids)
        self._emb_has_meta = self._emb_to_row >= 0
        self._G_emb = self._G[self._emb_to_row]
        self._type_emb = self._type[self._emb_to_row]
        self._score_emb = self._score[self._emb_to_row]
        self._random_anime_pool = self._emb_anime_ids[self._emb_has_meta]
        if not self._emb_has_meta.all():
            logger.warning(
                "%d anime have embeddings but no row in the anime table; they are never recommended",
                int((~self._emb_has_meta).sum()),
            )
        if len(self._random_anime_pool) == 0:
            raise DataValidationError("no anime is both in the anime table and in the model; wrong anime table?")

    @staticmethod
    def _synopsis_column(mal_ids: pd.Series, synopses: pd.DataFrame | None) -> pd.Series:
        if synopses is None:
            return pd.Series(np.nan, index=mal_ids.index, dtype="str")
        column = next((c for c in _SYNOPSIS_COLUMNS if c in synopses.columns), None)
        if "MAL_ID" not in synopses.columns or column is None:
            raise DataValidationError(
                f"synopses table needs MAL_ID and sypnopsis columns, has {list(synopses.columns)}"
            )
        by_id = synopses.drop_duplicates("MAL_ID").set_index("MAL_ID")[column].astype("str")
        return pd.Series(by_id.reindex(mal_ids.to_numpy()).to_numpy(), index=mal_ids.index, dtype="str")

    def _rows_of(self, mal_ids: np.ndarray) -> np.ndarray:
        """Anime-table rows of MAL_IDs (-1 where absent)."""
        return self._row_lookup(mal_ids)

    def _init_ratings(self, ratings: pd.DataFrame) -> None:
        missing = [c for c in _REQUIRED_RATINGS if c not in ratings.columns]
        if missing:
            raise DataValidationError(f"ratings lack column(s) {missing}; expected the preprocessed user stats")
        user = ratings["user_id"].to_numpy(np.int64)
        mal = ratings["anime_id"].to_numpy(np.int64)
        rating = ratings["rating"].to_numpy(np.float32)
        if not np.isfinite(rating).all():
            raise DataValidationError("ratings contain NaN ratings; run the preprocess step first")
        if "watched_episodes" in ratings.columns:
            watched = ratings["watched_episodes"].to_numpy(np.float64)
        else:
            watched = np.zeros(len(ratings))
        if len(user) > 1 and not (user[1:] >= user[:-1]).all():
            # One stable sort by user makes each user's ratings a contiguous slice; the order
            # inside a slice is settled per query, on the few slices a query touches.
            order = np.argsort(user, kind="stable")
            user, mal, rating, watched = user[order], mal[order], rating[order], watched[order]
        row = self._rows_of(mal)
        with np.errstate(divide="ignore", invalid="ignore"):
            completion = watched / self._episodes[row]
        self._r_row = row
        self._r_rating = rating
        self._r_completion_key = np.where(np.isfinite(completion), -completion, np.inf).astype(np.float32)
        self._r_emb = self._emb_lookup(mal)
        # ``user`` is sorted now, so the slices start where the id changes (no second sort).
        starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]]) if len(user) else np.empty(0, np.int64)
        self._r_users = user[starts]
        self._r_start = starts.astype(np.int64)
        self._r_len = np.diff(np.r_[starts, len(user)]).astype(np.int64)
        n_unmapped = int((self._r_row < 0).sum())
        if n_unmapped:
            logger.warning("%d ratings are of anime missing from the anime table; they are ignored", n_unmapped)

        # Users the model knows, with how many ratings each has: random_user() draws from them.
        counts = np.zeros(self.n_users, np.int64)
        known = _IdLookup(self._user_ids)(self._r_users)
        counts[known[known >= 0]] = self._r_len[known >= 0]
        self._user_n_ratings = counts
        pool = np.flatnonzero(counts > 0)
        by_count = pool[np.argsort(counts[pool], kind="stable")]
        self._random_user_pool = self._user_ids[by_count]
        self._random_user_counts = counts[by_count]

    # -- public properties ----------------------------------------------------

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

    # -- input resolution -------------------------------------------------------

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
            f"(e.g. {int(example)}); pick one of them or use random_user()"
        )

    @staticmethod
    def _coerce_user(user_id: object) -> int:
        if _is_integer(user_id):
            return int(user_id)  # type: ignore[call-overload]
        if isinstance(user_id, str) and user_id.strip().lstrip("-").isdigit():
            return int(user_id.strip())
        raise UserInputError(f"a user id must be an integer, got {user_id!r}")

    def _ratings_slice(self, user_id: int) -> tuple[int, int]:
        """``(start, length)`` of a user's rows in the sorted ratings arrays ((0, 0) if none)."""
        pos = int(np.searchsorted(self._r_users, user_id))
        if pos < len(self._r_users) and self._r_users[pos] == user_id:
            return int(self._r_start[pos]), int(self._r_len[pos])
        return 0, 0

    def _ratings_slices(self, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos = np.minimum(np.searchsorted(self._r_users, user_ids), max(len(self._r_users) - 1, 0))
        if len(self._r_users) == 0:
            return np.zeros(len(user_ids), np.int64), np.zeros(len(user_ids), np.int64)
        found = self._r_users[pos] == user_ids
        return np.where(found, self._r_start[pos], 0), np.where(found, self._r_len[pos], 0)

    def resolve_anime(self, query: int | str) -> int:
        """MAL_ID of an anime given by MAL_ID or by (forgiving) name.

        A string of digits that is not an anime's name is read as a MAL_ID.

        Raises:
            UserInputError: unknown id or name (with close matches), or a non-int/str query.
        """
        if isinstance(query, str):
            if query.strip().isdigit() and query not in self.names:
                return self.resolve_anime(int(query))  # "5114" from a config file means a MAL_ID
            return self.names.lookup(query)
        if _is_integer(query):
            mal_id = int(query)  # type: ignore[call-overload]
            if self._rows_of(np.array([mal_id]))[0] < 0:
                raise UserInputError(
                    f"unknown anime id {mal_id}: not in the anime table ({len(self._meta):,} anime, MAL_IDs "
                    f"{self._mal_sorted[0]}..{self._mal_sorted[-1]}); query by name or use random_anime()"
                )
            return mal_id
        raise UserInputError(f"an anime must be given by MAL_ID (int) or name (str), got {query!r}")

    def _anime_position(self, mal_id: int) -> int:
        pos = int(self._row_to_emb[self._rows_of(np.array([mal_id]))[0]])
        if pos < 0:
            name = self._names_arr[self._rows_of(np.array([mal_id]))[0]]
            raise UserInputError(
                f"anime {name!r} (MAL_ID {mal_id}) has no embedding: the model was trained without it "
                f"(too few ratings); pick another anime"
            )
        return pos

    @staticmethod
    def _known(requested: str | Iterable[str] | None, keys: dict[str, int], labels: Sequence[str], what: str) -> list[str]:
        """Map user-typed labels (any case) to the data's labels; unknown ones raise, listing the choices."""
        wanted = str_to_list(requested)
        unknown = [label for label in wanted if normalise_name(label) not in keys]
        if unknown:
            raise UserInputError(f"unknown {what} {unknown[0]!r}; choose from: {_preview(labels)}")
        return [labels[keys[normalise_name(label)]] for label in wanted]

    def _genre_columns(self, genres: str | Iterable[str] | None) -> list[str]:
        return self._known(genres, self._genre_key, self.genres, "genre")

    def _type_codes(self, types: str | Iterable[str] | None) -> list[str]:
        return self._known(types, self._type_key, self.types, "type")

    @staticmethod
    def _score_bounds(min_score: float | None, max_score: float | None) -> tuple[float | None, float | None]:
        for label, value in (("min_score", min_score), ("max_score", max_score)):
            if value is not None and (not isinstance(value, numbers.Real) or isinstance(value, bool)
                                      or not np.isfinite(value)):
                raise UserInputError(f"{label} must be a number or None, got {value!r}")
        if min_score is not None and max_score is not None and min_score > max_score:
            raise UserInputError(f"min_score {min_score} is above max_score {max_score}; swap them")
        return min_score, max_score

    def _filter_steps(
        self,
        genres: str | Iterable[str] | None,
        types: str | Iterable[str] | None,
        min_score: float | None,
        max_score: float | None,
        space: str,
    ) -> list[tuple[str, np.ndarray]]:
        """Boolean masks of the requested filters, labelled for error messages.

        ``space`` is ``"emb"`` (embedding rows) or ``"row"`` (anime-table rows).
        """
        G, kind, score = (
            (self._G_emb, self._type_emb, self._score_emb)
            if space == "emb"
            else (self._G[:-1], self._type[:-1], self._score[:-1])
        )
        steps: list[tuple[str, np.ndarray]] = []
        wanted_genres = self._genre_columns(genres)
        if wanted_genres:
            cols = [self.genres.index(g) for g in wanted_genres]
            steps.append((f"genres {wanted_genres}", G[:, cols].any(axis=1)))
        wanted_types = self._type_codes(types)
        if wanted_types:
            codes = [self.types.index(t) for t in wanted_types]
            steps.append((f"types {wanted_types}", np.isin(kind, codes)))
        low, high = self._score_bounds(min_score, max_score)
        if low is not None or high is not None:
            with np.errstate(invalid="ignore"):
                ok = np.isfinite(score)
                if low is not None:
                    ok &= score >= low
                if high is not None:
                    ok &= score <= high
            steps.append((f"score range [{low}, {high}]", ok))
        return steps

    @staticmethod
    def _apply(base: np.ndarray, steps: list[tuple[str, np.ndarray]], what: str) -> np.ndarray:
        """AND the filter masks into ``base``; name the filter that leaves nothing."""
        mask = base
        for label, step in steps:
            before = int(mask.sum())
            mask = mask & step
            if before and not mask.any():
                hint = _HINTS.get(label, "widen or drop it")
                raise UserInputError(
                    f"no {what} left after the {label} filter ({before:,} candidates before it); {hint}"
                )
        return mask

    def _id_mask(self, mal_ids: Iterable[int] | None, label: str) -> np.ndarray | None:
        """Embedding-row mask of MAL_IDs given as ``items`` / ``exclude``."""
        if mal_ids is None:
            return None
        ids = np.asarray(list(mal_ids) if not isinstance(mal_ids, np.ndarray) else mal_ids, np.int64).ravel()
        pos = self.anime_encoder.transform(ids, missing="minus_one")
        if label == "items" and (pos < 0).any():
            raise UserInputError(
                f"items contains MAL_IDs the model does not know: {ids[pos < 0][:5].tolist()}; drop them"
            )
        mask = np.zeros(self.n_anime, dtype=bool)
        mask[pos[pos >= 0]] = True
        return mask

    # -- ranking ---------------------------------------------------------------

    def _note_short(self, frame: pd.DataFrame, n: int, available: int, why: str) -> pd.DataFrame:
        if available < n:
            note = f"only {available} results (asked for {n}): {why}"
            logger.warning(note)
            frame.attrs["note"] = note
        return frame

    def _anime_frame(self, rows: np.ndarray, computed: dict[str, object]) -> pd.DataFrame:
        """Metadata of anime-table ``rows`` with ``computed`` columns inserted after ``Name``."""
        frame = self._meta.take(np.asarray(rows, np.int64)).reset_index(drop=True)
        for offset, (column, values) in enumerate(computed.items()):
            frame.insert(2 + offset, column, values)
        return frame

    # -- step 4: similar anime ---------------------------------------------------

    def similar_items(
        self,
        query: int | str,
        n: int = 10,
        genres: str | Iterable[str] | None = None,
        types: str | Iterable[str] | None = None,
        items: Iterable[int] | None = None,
        exclude: Iterable[int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """MAL_IDs and cosine similarities of the anime most similar to ``query``.

        Args:
            query: MAL_ID or name (forgiving of case, punctuation, accents, symbols).
            n: How many to return (fewer only when fewer qualify).
            genres: Keep anime with ANY of these genres (a name, a list, or ``"A,B"``).
            types: Keep anime of these types (``TV``, ``Movie``, ...; case-insensitive).
            items: Only rank these MAL_IDs.
            exclude: Never return these MAL_IDs.

        Returns:
            ``(mal_ids, similarities)``, most similar first; the query itself is excluded.

        Raises:
            UserInputError: unknown anime/genre/type, bad ``n``, or a filter that leaves nothing.
        """
        n = _check_count(n, "n")
        mal_id = self.resolve_anime(query)
        pos = self._anime_position(mal_id)
        scores = self._A @ self._A[pos]
        base = self._emb_has_meta.copy()
        base[pos] = False
        steps = self._filter_steps(genres, types, None, None, "emb")
        restrict = self._id_mask(items, "items")
        if restrict is not None:
            steps.insert(0, ("items", restrict))
        dropped = self._id_mask(exclude, "exclude")
        if dropped is not None:
            steps.append(("exclude", ~dropped))
        top = _top_k(scores, self._apply(base, steps, "anime"), n)
        return self._emb_anime_ids[top], scores[top]

    def similar_anime(
        self,
        query: int | str,
        n: int = 10,
        genres: str | Iterable[str] | None = None,
        types: str | Iterable[str] | None = None,
    ) -> pd.DataFrame:
        """Step 4: the anime most similar to ``query``, with their metadata.

        Args:
            query: MAL_ID or name.
            n: How many to return.
            genres: Keep anime with ANY of these genres (the original's ``anime_rec_genres``,
                at most three there; any number here, ``None`` entries ignored).
            types: Keep anime of these types (the original's ``types``).

        Returns:
            Columns ``MAL_ID, Name, Similarity, English name, Japanese name, Genres, Type,
            Episodes, Score, Source, Members, Synopsis``; most similar first. ``attrs``
            holds ``query_id`` and ``query_name`` (and ``note`` when fewer than ``n``).

        Raises:
            UserInputError: see :meth:`similar_items`.
        """
        query_id = self.resolve_anime(query)
        ids, sims = self.similar_items(query_id, n, genres=genres, types=types)
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

    # -- step 5: similar users ------------------------------------------------------

    def similar_user_ids(self, user_id: int, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Ids and cosine similarities of the ``n`` users most similar to ``user_id``.

        Raises:
            UserInputError: unknown user or bad ``n``.
        """
        n = _check_count(n, "n")
        pos = self._user_position(user_id)
        scores = self._U @ self._U[pos]
        scores[pos] = -np.inf  # never the user themself
        top = _top_k(scores, None, n)
        return self._user_ids[top], scores[top]

    def _favourites(
        self,
        user_ids: np.ndarray,
        num_faves: int | None,
        tv_only: bool = False,
        favorite_percentile: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Favourites of several users at once (see the module docstring).

        Returns:
            ``(group, index, threshold)``: position in ``user_ids`` and index into the
            ratings arrays of each favourite, grouped by user and best first within each
            user; and per user the percentile rating used (scaled; NaN without percentile
            or without ratings).
        """
        starts, lengths = self._ratings_slices(np.asarray(user_ids, np.int64))
        group, index = _concat_ranges(starts, lengths)
        rows = self._r_row[index]
        # Favourite order inside each user's slice; only these users' rows are sorted.
        order = np.lexsort(
            (self._popularity_rank[rows], self._r_completion_key[index], -self._r_rating[index], group)
        )
        index = index[order]  # ``group`` is unchanged: it is the primary key and already sorted
        keep = self._r_row[index] >= 0
        threshold = np.full(len(lengths), np.nan)
        if favorite_percentile is not None:
            offsets = np.cumsum(lengths) - lengths
            threshold = _desc_percentile(self._r_rating[index], offsets, lengths, favorite_percentile)
            keep &= self._r_rating[index] >= threshold[group]
        if tv_only:
            tv = self._type_key.get("tv", -2)
            keep &= self._type[self._r_row[index]] == tv
        group, index = group[keep], index[keep]
        if num_faves is not None:
            first = _rank_in_group(group) < num_faves
            group, index = group[first], index[first]
        return group, index, threshold

    def similar_users(self, user_id: int, n: int = 10, num_faves: int = 10, tv_only: bool = False) -> pd.DataFrame:
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
        num_faves = _check_count(num_faves, "num_faves")
        ids, sims = self.similar_user_ids(user_id, n)
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
            limit = _check_count(max_ratings, "max_ratings")
            k = int(np.searchsorted(self._random_user_counts, limit, side="right"))
            if k == 0:
                fewest = int(self._random_user_counts[0]) if len(self._random_user_counts) else 0
                raise UserInputError(
                    f"no user has at most {limit} ratings (the fewest is {fewest}); raise max_ratings"
                )
        if k == 0:
            raise UserInputError("no user known to the model has any ratings; check the ratings table")
        return int(self._random_user_pool[rng.integers(k)])

    # -- step 6: user preferences ------------------------------------------------------

    def user_preferences(self, user_id: int, favorite_percentile: float = 0.8) -> UserPreferences:
        """Step 6: a user's favourite anime, genres and sources.

        Args:
            user_id: A user with ratings (the model need not know them).
            favorite_percentile: Fraction in [0, 1]; 0.8 keeps anime rated at or above the
                user's 80th percentile of their own ratings (their top ~20 %).

        Returns:
            A :class:`UserPreferences`; empty (with a warning) for a user the model knows
            but who has no ratings rows.

        Raises:
            UserInputError: a user neither in the model nor in the ratings, or a bad percentile.
        """
        q = favorite_percentile
        if not isinstance(q, numbers.Real) or isinstance(q, bool) or not 0.0 <= float(q) <= 1.0:
            raise UserInputError(
                f"favorite_percentile must be a fraction in [0, 1] (0.8 = 80th percentile), got {q!r}"
            )
        uid = self._coerce_user(user_id)
        _, length = self._ratings_slice(uid)
        if length == 0:
            self._user_position(uid)  # raises for a user nobody knows
            logger.warning("user %d is known to the model but has no ratings rows: no preferences", uid)
        _, index, thresholds = self._favourites(np.array([uid]), None, favorite_percentile=float(q))
        threshold = float(thresholds[0])
        rows = self._r_row[index]
        lo, hi = self.rating_scale
        favorites = pd.DataFrame(
            {
                "MAL_ID": self._mal_ids[rows],
                "Name": self._names_arr[rows],
                "eng_version": self._eng_arr[rows],
                "user_rating": lo + self._r_rating[index].astype(np.float64) * (hi - lo),
                "Genres": self._genres_arr[rows],
                "Source": self._source[rows],
                "Type": self._types_arr[rows],
                "Score": self._score[rows],
            }
        )
        genres = _count_series(self._genre_labels, self._G[rows].sum(axis=0), "genre")
        source_counts = np.bincount(self._source_code[rows], minlength=len(self._source_labels))
        sources = _count_series(self._source_labels, source_counts, "source")
        return UserPreferences(
            user_id=uid,
            favorite_percentile=float(q),
            threshold=lo + threshold * (hi - lo),
            favorites=favorites,
            genres=genres,
            sources=sources,
        )

    # -- step 7: recommendations from similar users -------------------------------------

    def _seen_rows(self, user_id: int) -> np.ndarray:
        start, length = self._ratings_slice(user_id)
        rows = self._r_row[start : start + length]
        return rows[rows >= 0]

    def recommend_from_similar_users(
        self,
        user_id: int,
        n: int = 10,
        n_similar: int = 10,
        num_faves: int | None = 10,
        genres: str | Iterable[str] | None = None,
        favorite_percentile: float = 0.8,
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
            favorite_percentile: Used only when ``num_faves`` is ``None``.

        Returns:
            Columns ``MAL_ID, Name, n_similar_users, Explanation`` ("7 of 10 similar users"),
            then the metadata columns.

        Raises:
            UserInputError: unknown user/genre, bad counts, nothing unseen among the
                favourites, or a genre filter that leaves nothing.
        """
        n = _check_count(n, "n")
        if num_faves is not None:
            num_faves = _check_count(num_faves, "num_faves")
        n_similar = _check_count(n_similar, "n_similar")
        uid = self._coerce_user(user_id)
        sim_ids, _ = self.similar_user_ids(uid, n_similar)
        percentile = float(favorite_percentile) if num_faves is None else None
        group, index, _ = self._favourites(sim_ids, num_faves, favorite_percentile=percentile)
        n_rows = len(self._meta)
        # A user rating the same anime twice must still count once.
        pairs = np.unique(group * (n_rows + 1) + self._r_row[index])
        counts = np.bincount(pairs % (n_rows + 1), minlength=n_rows)[:n_rows]
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

    # -- step 8: recommendations from the model ---------------------------------------------

    def _predict_scaled(self, user_pos: int) -> np.ndarray:
        cosine = self._A @ self._U[user_pos]
        predicted = np.asarray(self.head.predict(cosine), dtype=np.float64).reshape(-1)
        if predicted.shape[0] != self.n_anime:
            raise DataValidationError(
                f"head.predict returned {predicted.shape[0]} values for {self.n_anime} anime; "
                "it must map each cosine to one rating"
            )
        return predicted

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
        """MAL_IDs and predicted raw ratings of the model's top anime for ``user_id``.

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
            ``(mal_ids, predicted_ratings)`` on the raw scale, best first.

        Raises:
            UserInputError: unknown user/genre/type, bad bounds, or a filter that leaves nothing.
        """
        ids, scaled, _ = self._recommend_scaled(
            user_id, n, filter_seen, genres, types, min_score, max_score, items, exclude
        )
        lo, hi = self.rating_scale
        return ids, lo + scaled * (hi - lo)

    def _recommend_scaled(
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
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """:meth:`recommend` on the scaled [0, 1] output, plus how many anime qualified."""
        n = _check_count(n, "n")
        uid = self._coerce_user(user_id)
        pos = self._user_position(uid)
        steps = self._filter_steps(genres, types, min_score, max_score, "emb")
        predicted = self._predict_scaled(pos)
        base = self._emb_has_meta & np.isfinite(predicted)
        if filter_seen:
            start, length = self._ratings_slice(uid)
            seen = self._r_emb[start : start + length]
            unseen = np.ones(self.n_anime, dtype=bool)
            unseen[seen[seen >= 0]] = False
            steps.insert(0, ("unseen", unseen))
        restrict = self._id_mask(items, "items")
        if restrict is not None:
            steps.insert(0, ("items", restrict))
        dropped = self._id_mask(exclude, "exclude")
        if dropped is not None:
            steps.append(("exclude", ~dropped))
        mask = self._apply(base, steps, "anime")
        top = _top_k(predicted, mask, n)
        return self._emb_anime_ids[top], predicted[top], int(mask.sum())

    def recommend_by_model(
        self,
        user_id: int,
        n: int = 10,
        types: str | Iterable[str] | None = None,
        genres: str | Iterable[str] | None = None,
        min_score: float | None = None,
        max_score: float | None = None,
    ) -> pd.DataFrame:
        """Step 8: the anime the model predicts ``user_id`` will rate highest, unseen only.

        Args:
            user_id: A user the model knows.
            n: How many (the original's ``model_num_recs``).
            types: Keep anime of these types.
            genres: Keep anime with ANY of these genres.
            min_score: Keep anime whose MAL ``Score`` is at least this.
            max_score: Keep anime whose MAL ``Score`` is at most this.

        Returns:
            Columns ``MAL_ID, Name, Predicted rating`` (raw scale, e.g. 1–10),
            ``Prediction`` (the model's scaled output in [0, 1], as the original CSV), then
            the metadata columns; best first.

        Raises:
            UserInputError: see :meth:`recommend`.
        """
        ids, scaled, available = self._recommend_scaled(user_id, n, True, genres, types, min_score, max_score)
        lo, hi = self.rating_scale
        frame = self._anime_frame(
            self._rows_of(ids), {"Predicted rating": lo + scaled * (hi - lo), "Prediction": scaled.astype(np.float32)}
        )
        frame.attrs["query_user"] = self._coerce_user(user_id)
        return self._note_short(frame, n, available, "no more unseen anime pass the filters")
