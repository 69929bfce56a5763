"""Cleaning user stats for training: vectorised filters, and the rating range recorded.

Rules run in this order, and the number of rows each removes is reported:
missing values, duplicate (user, anime) pairs, unrated (rating 0), unwatched (0 episodes),
plan-to-watch, under half watched, users with fewer than ``num_reviews`` rows.
Ratings stay on their own scale (1..10 on MyAnimeList) in every table; their min and max travel in the
artifact's metadata as the rating scale of the models (the network scales to [0, 1] privately).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from anime_recs.core.errors import UserInputError

logger = logging.getLogger(__name__)

PLAN_TO_WATCH = 6
_DENSE_IDS = 1 << 24  # catalogues with ids below this are looked up through a dense table


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
    """The range of the ratings, and min-max scaling to it: ``scaled = (raw - min) / (max - min)``."""

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


#: The ``ratings`` metadata of a preprocessed artifact whose ratings keep their own scale (every one written now).
RAW_RATINGS = "raw"


def raw_ratings(ratings: np.ndarray, metadata: dict) -> np.ndarray:
    """A preprocessed artifact's ratings on their own scale.

    Artifacts written before ratings kept their scale (no ``ratings`` key in the metadata) hold them min-max scaled
    to [0, 1]: those are mapped back here, the one place that knows, so old stores keep working.
    """
    if metadata.get("ratings") == RAW_RATINGS:
        return np.asarray(ratings)
    return np.round(Scaling(**metadata["scaling"]).to_raw(ratings), 6).astype(np.float32)


def stored_rating_range(metadata: dict) -> tuple[float, float]:
    """``(min, max)`` of the ratings as a preprocessed artifact stores them: its rating scale, or ``(0, 1)`` for an
    older artifact that holds them scaled (see :func:`raw_ratings`)."""
    if metadata.get("ratings") == RAW_RATINGS:
        scaling = Scaling(**metadata["scaling"])
        return scaling.rating_min, scaling.rating_max
    return 0.0, 1.0


def half_watched_mask(stats: pd.DataFrame, anime: pd.DataFrame) -> np.ndarray:
    """True for rows where the user watched under half of the anime's episodes.

    One-episode titles and titles with an unknown episode count are never
    flagged (the original kept one-episode titles).
    """
    ids = anime["MAL_ID"].to_numpy(dtype=np.int64)
    episodes = anime["Episodes"].to_numpy(dtype=np.float64)
    anime_ids = stats["anime_id"].to_numpy(dtype=np.int64)
    if len(ids) and ids.min() >= 0 and ids.max() < _DENSE_IDS:
        # A table indexed by id: a gather instead of a binary search per row (10x faster on 100M rows).
        table = np.full(int(ids.max()) + 2, np.nan)
        table[ids] = episodes
        unknown = len(table) - 1  # the last slot stays NaN: ids outside the catalogue
        row_episodes = table[np.where((anime_ids >= 0) & (anime_ids < unknown), anime_ids, unknown)]
    else:
        order = np.argsort(ids)
        ids, episodes = ids[order], episodes[order]
        pos = np.clip(np.searchsorted(ids, anime_ids), 0, len(ids) - 1)
        row_episodes = np.where(ids[pos] == anime_ids, episodes[pos], np.nan)
    watched = stats["watched_episodes"].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (row_episodes > 1) & (watched < row_episodes / 2.0)


# Every rule in the order it runs; a row's "code" is the 1-based index of the first rule that drops it.
RULES = ("missing_values", "duplicates", "unrated", "unwatched", "plan_to_watch", "half_watched", "few_reviews")
RowRule = Callable[[pd.DataFrame, "pd.DataFrame | None"], np.ndarray]


def row_rules(options: PreprocessOptions) -> list[tuple[str, RowRule]]:
    """The enabled rules that look at one row at a time, in order (between duplicates and few_reviews)."""
    rules: list[tuple[str, RowRule]] = []
    if options.drop_unrated:
        rules.append(("unrated", lambda frame, _: frame["rating"].to_numpy() == 0))
    if options.drop_unwatched:
        rules.append(("unwatched", lambda frame, _: frame["watched_episodes"].to_numpy() == 0))
    if options.drop_plan:
        rules.append(("plan_to_watch", lambda frame, _: frame["watching_status"].to_numpy() == PLAN_TO_WATCH))
    if options.drop_half_watched:
        rules.append(("half_watched", half_watched_mask))
    return rules


def active_rules(options: PreprocessOptions) -> list[str]:
    """Names of the rules ``options`` enables, in order (the rows of the report after ``input``)."""
    return ["missing_values", "duplicates", *(name for name, _ in row_rules(options))] + (
        ["few_reviews"] if options.num_reviews > 0 else [])


def check_options(options: PreprocessOptions, rows: int, anime: pd.DataFrame | None) -> None:
    """Refuse options and inputs no rule can work with.

    Raises:
        UserInputError: a negative ``num_reviews``, no input rows, or ``drop_half_watched`` without the anime table.
    """
    if options.num_reviews < 0:
        raise UserInputError(f"num_reviews must be >= 0 (0 keeps every user), got {options.num_reviews}; set data.num_reviews")
    if rows == 0:
        raise UserInputError("the user stats have no rows, so there is nothing to preprocess; re-run the download step "
                             "with a file that has ratings")
    if options.drop_half_watched and anime is None:
        raise UserInputError("drop_half_watched needs the all-anime table (episode counts)")


def pair_key(frame: pd.DataFrame) -> np.ndarray:
    """One int64 per (user, anime) pair, for finding repeated pairs."""
    return frame["user_id"].to_numpy(dtype=np.int64) * (1 << 24) + frame["anime_id"].to_numpy(dtype=np.int64)


def repeated(keys: np.ndarray) -> np.ndarray:
    """True for every occurrence of a key after its first (one list entry per pair; a repeat is a scraping artefact)."""
    # A stable sort puts equal keys next to each other in file order: 4x faster than a hash table here.
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    repeat = np.zeros(len(keys), dtype=bool)
    repeat[order[1:]] = ordered[1:] == ordered[:-1]
    return repeat


def few_reviews_mask(users: np.ndarray, num_reviews: int) -> np.ndarray:
    """True for rows of users with fewer than ``num_reviews`` rows."""
    codes, _ = pd.factorize(users)
    return np.bincount(codes)[codes] < num_reviews


def removed_every_row(rule: str) -> UserInputError:
    """The error for a rule that left no rows."""
    return UserInputError(f"preprocess rule {rule!r} removed every row; relax it (see data.* options)")


def scaling_of(rating_min: float, rating_max: float) -> Scaling:
    """The scaling for the remaining ratings' range.

    Raises:
        UserInputError: when every remaining rating is equal.
    """
    if rating_max <= rating_min:
        raise UserInputError(f"all remaining ratings equal {rating_min}; nothing to learn from (check the filters)")
    return Scaling(rating_min, rating_max)


def clean_frame(frame: pd.DataFrame, scaling: Scaling) -> pd.DataFrame:
    """The output columns and dtypes of the kept rows, ``rating`` as float32 on its own scale.

    ``scaling`` (the rating range) is recorded beside the table, not applied to it.
    """
    ratings = frame["rating"].to_numpy(dtype=np.float32)
    return pd.DataFrame(
        {
            "user_id": frame["user_id"].to_numpy(dtype=np.int64),
            "anime_id": frame["anime_id"].to_numpy(dtype=np.int64),
            "rating": ratings,
            "watching_status": frame["watching_status"].to_numpy(dtype=np.int8),
            "watched_episodes": frame["watched_episodes"].to_numpy(dtype=np.int32),
        }
    )


def report_frame(rows: list[tuple[str, int, int]]) -> pd.DataFrame:
    """The report table: one row per rule (``rule, rows_removed, rows_left``), ``input`` first."""
    return pd.DataFrame(rows, columns=["rule", "rows_removed", "rows_left"])


def preprocess(
    stats: pd.DataFrame, options: PreprocessOptions, anime: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, Scaling]:
    """Apply the cleaning rules and find the rating range, in memory.

    :func:`anime_recs.data.preprocess_file.preprocess_file` does the same out of core; this
    function is the reference it is tested against.

    Args:
        stats: validated user stats (see :func:`anime_recs.data.files.load_stats`).
        options: which rules to apply.
        anime: the all-anime table; needed only for ``drop_half_watched``.

    Returns:
        The clean frame (``rating`` float32, raw), a report with one row
        per rule (``rule, rows_removed, rows_left``) and the rating range.

    Raises:
        UserInputError: no input rows, a negative ``num_reviews``, a rule that removes every row,
            or ratings with no spread.
    """
    check_options(options, len(stats), anime)
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
            raise removed_every_row(rule)

    apply("missing_values", frame.isna().any(axis=1).to_numpy())
    apply("duplicates", repeated(pair_key(frame)))
    for rule, mask in row_rules(options):
        apply(rule, mask(frame, anime))
    if options.num_reviews > 0:
        apply("few_reviews", few_reviews_mask(frame["user_id"].to_numpy(), options.num_reviews))

    ratings = frame["rating"].to_numpy(dtype=np.float32)
    scaling = scaling_of(float(ratings.min()), float(ratings.max()))
    return clean_frame(frame, scaling), report_frame(report), scaling
