"""The ratings side of :class:`~anime_recs.recommend.recommender.AnimeRecommender`.

Each user's ratings are one contiguous slice of user-sorted arrays (found with
``np.searchsorted``), so a query touches only the slices it needs; favourites
of many users at once are one ``np.lexsort`` over those slices.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from anime_recs.core.errors import DataValidationError, UserInputError

logger = logging.getLogger(__name__)

_REQUIRED_RATINGS = ("user_id", "anime_id", "rating")
RATINGS_COLUMNS = (*_REQUIRED_RATINGS, "watched_episodes")  # all the recommender reads of the preprocessed stats


def evidence_rule(n_ratings: int, n_anime: int) -> int:
    """The fewest ratings an anime (or a user) needs to be returned as similar: ``max(5, √(ratings per anime))``.

    Scales with the data: 5 on the MyAnimeList head-100k (17 ratings per anime, a third of them with one
    rating, which would otherwise tie at the top of similar-anime lists), ~80 on the full file (6,200).
    """
    per_anime = n_ratings / max(n_anime, 1)
    return max(5, int(np.ceil(np.sqrt(per_anime))))


def read_ratings(path: Path | str) -> pd.DataFrame:
    """The preprocessed stats' columns the recommender uses (not ``watching_status``), as stored (compact dtypes).

    At the full MyAnimeList scale (~55M rows after preprocess) this reads a fifth less than the whole file.
    """
    present = set(pq.read_schema(path).names)
    table = pq.read_table(path, columns=[c for c in RATINGS_COLUMNS if c in present])
    # Column by column, freeing Arrow's buffers as they are converted: the peak is one copy, not two.
    return table.to_pandas(split_blocks=True, self_destruct=True)


def concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


class UserRatings:
    """Per-user rating slices and favourites (mixed into the recommender).

    Needs the catalogue's ``_rows_of``, ``_episodes``, ``_popularity_rank``, ``_type``,
    ``_type_key`` and the ``user_encoder`` of the class it is mixed into.
    """

    def _init_ratings(self, ratings: pd.DataFrame) -> None:
        missing = [c for c in _REQUIRED_RATINGS if c not in ratings.columns]
        if missing:
            raise DataValidationError(f"ratings lack column(s) {missing}; expected the preprocessed user stats")
        user = ratings["user_id"].to_numpy(np.int64)
        mal = ratings["anime_id"].to_numpy(np.int64)
        rating = ratings["rating"].to_numpy(np.float32)
        if not np.isfinite(rating).all():
            raise DataValidationError("ratings contain NaN ratings; run the preprocess step first")
        # Compact per-rating arrays (float32, int32): at the full MyAnimeList scale (~55M ratings) each
        # byte per rating is 55 MB of the recommender's memory.
        if "watched_episodes" in ratings.columns:
            watched = ratings["watched_episodes"].to_numpy(np.float32)
        else:
            watched = np.zeros(len(ratings), np.float32)
        if len(user) > 1 and not (user[1:] >= user[:-1]).all():
            # One stable sort by user makes each user's ratings a contiguous slice; the order
            # inside a slice is settled per query, on the few slices a query touches.
            order = np.argsort(user, kind="stable")
            user, mal, rating, watched = user[order], mal[order], rating[order], watched[order]
        row = self._rows_of(mal).astype(np.int32)
        with np.errstate(divide="ignore", invalid="ignore"):
            completion = watched / self._episodes.astype(np.float32)[row]
        self._r_row = row
        self._r_rating = rating
        self._r_completion_key = np.where(np.isfinite(completion), -completion, np.float32(np.inf))
        del completion
        self._r_emb = self._emb_lookup(mal).astype(np.int32)
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
        known = self.user_encoder.positions(self._r_users)
        counts[known[known >= 0]] = self._r_len[known >= 0]
        self._user_n_ratings = counts
        pool = np.flatnonzero(counts > 0)
        by_count = pool[np.argsort(counts[pool], kind="stable")]
        self._random_user_pool = self._user_ids[by_count]
        self._random_user_counts = counts[by_count]
        # How many users rated each anime (embedding rows): similar anime need enough of them.
        mapped = self._r_emb[self._r_emb >= 0]
        self._anime_n_raters = np.bincount(mapped, minlength=len(self._emb_anime_ids)).astype(np.int64)
        self.min_ratings = evidence_rule(len(mapped), int((self._anime_n_raters > 0).sum()))

    def enough_evidence(self, min_ratings: int | None) -> tuple[np.ndarray, np.ndarray, int]:
        """``(anime ok, users ok, minimum)``: anime rated by, and users with, at least ``min_ratings`` ratings.

        ``None`` means the data's own rule (:func:`evidence_rule`); 0 or 1 keeps everything.
        """
        minimum = self.min_ratings if min_ratings is None else int(min_ratings)
        if minimum < 0:
            raise UserInputError(f"min_ratings must be 0 or more, got {minimum}")
        return self._anime_n_raters >= minimum, self._user_n_ratings >= minimum, minimum

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
            user; and per user the percentile rating used (NaN without percentile
            or without ratings).
        """
        starts, lengths = self._ratings_slices(np.asarray(user_ids, np.int64))
        group, index = concat_ranges(starts, lengths)
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

    def _seen_rows(self, user_id: int) -> np.ndarray:
        start, length = self._ratings_slice(user_id)
        rows = self._r_row[start : start + length]
        return rows[rows >= 0]
