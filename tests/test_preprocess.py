"""Each preprocess rule against a hand-computed frame, and the real head of animelist.csv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anime_recs.data.files import load_anime, load_stats
from anime_recs.core.errors import UserInputError
from anime_recs.data.preprocess import PreprocessOptions, half_watched_mask, preprocess

ANIME = pd.DataFrame({"MAL_ID": [10, 20, 30], "Episodes": [12.0, 1.0, np.nan]})


def frame() -> pd.DataFrame:
    # user, anime, rating, status, watched episodes
    rows = [
        (1, 10, 8, 2, 12),   # kept by every rule
        (1, 20, 0, 6, 0),    # unrated, unwatched, plan to watch
        (1, 30, 6, 1, 1),    # episodes unknown: never "half watched"
        (2, 10, 4, 4, 5),    # 5 of 12 episodes: under half
        (2, 20, 10, 2, 1),   # one-episode title: kept by drop_half_watched
        (2, 10, 4, 4, 5),    # duplicate of the row above-above
        (3, 10, 9, 1, 6),    # exactly half: kept
    ]
    return pd.DataFrame(rows, columns=["user_id", "anime_id", "rating", "watching_status", "watched_episodes"])


def removed(report: pd.DataFrame) -> dict[str, int]:
    return dict(zip(report["rule"], report["rows_removed"], strict=True))


def test_duplicates_and_unrated_default() -> None:
    clean, report, scaling = preprocess(frame(), PreprocessOptions(num_reviews=0))
    assert removed(report) == {"input": 0, "missing_values": 0, "duplicates": 1, "unrated": 1}
    assert len(clean) == 5
    assert (scaling.rating_min, scaling.rating_max) == (4.0, 10.0)
    # The ratings keep their scale (the range goes to the metadata; the network scales privately).
    assert sorted(clean["rating"]) == sorted([8.0, 6.0, 4.0, 10.0, 9.0])


def test_original_behaviour_keeps_unrated_as_zero() -> None:
    clean, _, scaling = preprocess(frame(), PreprocessOptions(num_reviews=0, drop_unrated=False))
    assert scaling.rating_min == 0.0 and clean["rating"].min() == 0.0 and len(clean) == 6


def test_unwatched_plan_and_half_watched_rules() -> None:
    opts = PreprocessOptions(num_reviews=0, drop_unrated=False, drop_unwatched=True)
    assert removed(preprocess(frame(), opts)[1])["unwatched"] == 1
    opts = PreprocessOptions(num_reviews=0, drop_unrated=False, drop_plan=True)
    assert removed(preprocess(frame(), opts)[1])["plan_to_watch"] == 1
    opts = PreprocessOptions(num_reviews=0, drop_unrated=False, drop_half_watched=True)
    clean, report, _ = preprocess(frame(), opts, ANIME)
    assert removed(report)["half_watched"] == 1
    assert not ((clean["user_id"] == 2) & (clean["anime_id"] == 10)).any()
    mask = half_watched_mask(frame(), ANIME)
    assert mask.tolist() == [False, False, False, True, False, True, False]


def test_num_reviews_counts_rows_left_after_other_rules() -> None:
    clean, report, _ = preprocess(frame(), PreprocessOptions(num_reviews=2))
    # after duplicates+unrated: user 1 has 2 rows, user 2 has 2, user 3 has 1
    assert removed(report)["few_reviews"] == 1
    assert set(clean["user_id"]) == {1, 2}


def test_rule_that_empties_everything_says_so() -> None:
    with pytest.raises(UserInputError, match="'few_reviews' removed every row"):
        preprocess(frame(), PreprocessOptions(num_reviews=100))


def test_half_watched_needs_the_anime_table() -> None:
    with pytest.raises(UserInputError, match="needs the all-anime table"):
        preprocess(frame(), PreprocessOptions(drop_half_watched=True))


def test_counts_on_real_animelist_head(mal_data: Path) -> None:
    stats = load_stats(mal_data / "animelist_head100k.csv")
    anime = load_anime(mal_data / "anime_2020.parquet")
    assert len(stats) == 100_004
    # Numbers documented in ../shared/data/SOURCES.md for this file.

    def only(**rule: bool) -> dict[str, int]:
        options = PreprocessOptions(**{"num_reviews": 0, "drop_unrated": False, **rule})
        return removed(preprocess(stats, options, anime)[1])

    assert only(drop_unrated=True)["unrated"] == 46_912
    assert only(drop_plan=True)["plan_to_watch"] == 29_231
    assert only(drop_unwatched=True)["unwatched"] == int((stats["watched_episodes"] == 0).sum())
    merged = stats.merge(anime[["MAL_ID", "Episodes"]], left_on="anime_id", right_on="MAL_ID", how="left")
    expected_half = int(((merged["Episodes"] > 1) & (merged["watched_episodes"] < merged["Episodes"] / 2)).sum())
    assert only(drop_half_watched=True)["half_watched"] == expected_half > 0
    clean, report, scaling = preprocess(stats, PreprocessOptions(num_reviews=20), anime)
    per_user = clean.groupby("user_id").size()
    assert per_user.min() >= 20
    assert (scaling.rating_min, scaling.rating_max) == (1.0, 10.0)
    assert clean["rating"].between(1, 10).all() and clean["rating"].dtype == np.float32
    assert report["rows_left"].iloc[-1] == len(clean)


def test_half_watched_same_through_the_dense_table_and_the_binary_search() -> None:
    # The dense id table serves ids below 2**24; bigger ids take the binary search. Both must agree.
    shifted_frame, shifted_anime = frame(), ANIME.copy()
    shifted_frame["anime_id"] += 1 << 24
    shifted_anime["MAL_ID"] += 1 << 24
    stats = pd.concat([frame(), frame().assign(anime_id=[99, -1, 0, 10, 20, 30, 31])], ignore_index=True)
    expected = [False, False, False, True, False, True, False]
    assert half_watched_mask(frame(), ANIME).tolist() == expected
    assert half_watched_mask(shifted_frame, shifted_anime).tolist() == expected
    assert half_watched_mask(stats, ANIME).tolist() == expected + [False, False, False, True, False, False, False]


def test_ratings_of_an_older_scaled_artifact_are_mapped_back_to_their_scale() -> None:
    # Artifacts written before ratings kept their scale hold them min-max scaled; every reader maps them back once.
    from anime_recs.data.preprocess import RAW_RATINGS, raw_ratings, stored_rating_range

    scaled = np.array([0.0, 7 / 9, 1.0], np.float32)
    old = {"scaling": {"rating_min": 1.0, "rating_max": 10.0}}
    assert raw_ratings(scaled, old).tolist() == [1.0, 8.0, 10.0]
    raw = np.array([1.0, 8.0, 10.0], np.float32)
    assert raw_ratings(raw, {**old, "ratings": RAW_RATINGS}).tolist() == [1.0, 8.0, 10.0]
    # The streamed network reads stored ratings: the rating scale for raw artifacts, [0, 1] for older ones.
    assert stored_rating_range({**old, "ratings": RAW_RATINGS}) == (1.0, 10.0) and stored_rating_range(old) == (0.0, 1.0)
