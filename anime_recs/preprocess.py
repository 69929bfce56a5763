"""Cleaning user stats for training: vectorised filters and min-max scaling.

Rules run in this order, and the number of rows each removes is reported:
missing values, duplicate (user, anime) pairs, unrated (rating 0), unwatched (0 episodes),
plan-to-watch, under half watched, users with fewer than ``num_reviews`` rows.
Then ``rating`` is min-max scaled to [0, 1]; the min and max travel in the
artifact's metadata so predictions can be mapped back to the 1..10 scale.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from .errors import UserInputError

logger = logging.getLogger(__name__)

PLAN_TO_WATCH = 6


@dataclass(frozen=True)
class PreprocessOptions:
    """Which rows to drop (names as in the original project's config)."""

    num_reviews: int = 50
    drop_half_watched: bool = False
    drop_unwatched: bool = False
    drop_plan: bool = False
    # New: rating 0 means "not rated" on MyAnimeList; the original kept it as a 0/10 rating.
    drop_unrated: bool = True


@dataclass(frozen=True)
class Scaling:
    """Min-max scaling of ratings: ``scaled = (raw - min) / (max - min)``."""

    rating_min: float
    rating_max: float

    def to_raw(self, scaled: np.ndarray) -> np.ndarray:
        """Map scaled predictions back to the raw rating scale."""
        return self.rating_min + np.asarray(scaled) * (self.rating_max - self.rating_min)

    def to_scaled(self, raw: np.ndarray) -> np.ndarray:
        """Map raw ratings to [0, 1]."""
        return (np.asarray(raw, dtype=np.float64) - self.rating_min) / (self.rating_max - self.rating_min)

    def as_dict(self) -> dict[str, float]:
        """JSON-friendly form for artifact metadata."""
        return asdict(self)


def half_watched_mask(stats: pd.DataFrame, anime: pd.DataFrame) -> np.ndarray:
    """True for rows where the user watched under half of the anime's episodes.

    One-episode titles and titles with an unknown episode count are never
    flagged (the original kept one-episode titles).
    """
    ids = anime["MAL_ID"].to_numpy(dtype=np.int64)
    episodes = anime["Episodes"].to_numpy(dtype=np.float64)
    order = np.argsort(ids)
    ids, episodes = ids[order], episodes[order]
    anime_ids = stats["anime_id"].to_numpy(dtype=np.int64)
    pos = np.clip(np.searchsorted(ids, anime_ids), 0, len(ids) - 1)
    known = ids[pos] == anime_ids
    row_episodes = np.where(known, episodes[pos], np.nan)
    watched = stats["watched_episodes"].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (row_episodes > 1) & (watched < row_episodes / 2.0)


def preprocess(
    stats: pd.DataFrame, options: PreprocessOptions, anime: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, Scaling]:
    """Apply the cleaning rules and scale ratings.

    Args:
        stats: validated user stats (see :func:`anime_recs.data.load_stats`).
        options: which rules to apply.
        anime: the all-anime table; needed only for ``drop_half_watched``.

    Returns:
        The clean frame (``rating`` float32 in [0, 1]), a report with one row
        per rule (``rule, rows_removed, rows_left``) and the scaling used.

    Raises:
        UserInputError: no input rows, a negative ``num_reviews``, a rule that removes every row,
            or ratings with no spread.
    """
    if options.num_reviews < 0:
        raise UserInputError(f"num_reviews must be >= 0 (0 keeps every user), got {options.num_reviews}; set data.num_reviews")
    if len(stats) == 0:
        raise UserInputError("the user stats have no rows, so there is nothing to preprocess; re-run the download step "
                             "with a file that has ratings")
    if options.drop_half_watched and anime is None:
        raise UserInputError("drop_half_watched needs the all-anime table (episode counts)")
    report: list[tuple[str, int, int]] = [("input", 0, len(stats))]
    frame = stats

    def apply(rule: str, drop: np.ndarray | pd.Series) -> None:
        nonlocal frame
        drop = np.asarray(drop, dtype=bool)
        removed = int(drop.sum())
        if removed:
            frame = frame.loc[~drop]
        report.append((rule, removed, len(frame)))
        logger.debug("%-18s removed %10s rows, %10s left", rule, f"{removed:,}", f"{len(frame):,}")
        if len(frame) == 0:
            raise UserInputError(f"preprocess rule {rule!r} removed every row; relax it (see data.* options)")

    apply("missing_values", frame.isna().any(axis=1).to_numpy())
    # One list entry per (user, anime); a repeated pair is a scraping artefact.
    key = frame["user_id"].to_numpy(dtype=np.int64) * (1 << 24) + frame["anime_id"].to_numpy(dtype=np.int64)
    apply("duplicates", pd.Series(key).duplicated(keep="first").to_numpy())
    if options.drop_unrated:
        apply("unrated", frame["rating"].to_numpy() == 0)
    if options.drop_unwatched:
        apply("unwatched", frame["watched_episodes"].to_numpy() == 0)
    if options.drop_plan:
        apply("plan_to_watch", frame["watching_status"].to_numpy() == PLAN_TO_WATCH)
    if options.drop_half_watched:
        apply("half_watched", half_watched_mask(frame, anime))  # type: ignore[arg-type]
    if options.num_reviews > 0:
        codes, _ = pd.factorize(frame["user_id"])
        counts = np.bincount(codes)
        apply("few_reviews", counts[codes] < options.num_reviews)

    ratings = frame["rating"].to_numpy(dtype=np.float32)
    scaling = Scaling(float(ratings.min()), float(ratings.max()))
    if scaling.rating_max <= scaling.rating_min:
        raise UserInputError(f"all remaining ratings equal {scaling.rating_min}; nothing to learn from (check the filters)")
    clean = pd.DataFrame(
        {
            "user_id": frame["user_id"].to_numpy(dtype=np.int64),
            "anime_id": frame["anime_id"].to_numpy(dtype=np.int64),
            "rating": ((ratings - scaling.rating_min) / (scaling.rating_max - scaling.rating_min)).astype(np.float32),
            "watching_status": frame["watching_status"].to_numpy(dtype=np.int8),
            "watched_episodes": frame["watched_episodes"].to_numpy(dtype=np.int32),
        }
    )
    return clean, pd.DataFrame(report, columns=["rule", "rows_removed", "rows_left"]), scaling
