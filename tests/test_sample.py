"""The embedded sample: deterministic, MyAnimeList-shaped, with planted structure."""

from __future__ import annotations

import numpy as np
import pandas as pd

from anime_recs.data.files import ANIME_COLUMNS, STATS_COLUMNS, validate_anime, validate_stats
from anime_recs.data.sample import CLUSTER_GENRES, make_sample


def test_same_seed_same_data_other_seed_other_data() -> None:
    a = make_sample(300, 200, 40, seed=7)
    b = make_sample(300, 200, 40, seed=7)
    c = make_sample(300, 200, 40, seed=8)
    pd.testing.assert_frame_equal(a.stats, b.stats)
    pd.testing.assert_frame_equal(a.all_anime, b.all_anime)
    pd.testing.assert_frame_equal(a.synopses, b.synopses)
    assert not a.stats.equals(c.stats)


def test_columns_types_and_ranges_match_the_real_files() -> None:
    sample = make_sample(300, 200, 40, seed=1)
    assert tuple(sample.all_anime.columns) == ANIME_COLUMNS
    assert tuple(sample.stats.columns) == STATS_COLUMNS
    assert list(sample.synopses.columns) == ["MAL_ID", "Name", "Score", "Genres", "sypnopsis"]
    stats = validate_stats(sample.stats)
    anime = validate_anime(sample.all_anime)
    assert set(stats["watching_status"].unique()) <= {1, 2, 3, 4, 6}
    assert (stats["rating"] == 0).mean() > 0.2  # unrated rows exist, as on MyAnimeList
    assert (stats.loc[stats["watching_status"] == 6, "rating"] == 0).all()
    assert (stats.loc[stats["watching_status"] == 6, "watched_episodes"] == 0).all()
    completed = stats.merge(anime[["MAL_ID", "Episodes"]], left_on="anime_id", right_on="MAL_ID")
    completed = completed[(completed["watching_status"] == 2) & completed["Episodes"].notna()]
    assert (completed["watched_episodes"] == completed["Episodes"]).all()
    assert set(anime["Type"]) <= {"TV", "Movie", "OVA", "Special", "ONA", "Music"}
    assert not stats.duplicated(["user_id", "anime_id"]).any()


def test_anime_of_a_cluster_share_its_genres_and_users_prefer_their_cluster() -> None:
    sample = make_sample(400, 240, 50, seed=3)
    genres = sample.all_anime["Genres"].str.split(", ")
    first_genre = np.array([CLUSTER_GENRES[c][0] for c in sample.anime_cluster])
    assert all(g in gs for g, gs in zip(first_genre, genres, strict=True))
    rated = sample.stats[sample.stats["rating"] > 0]
    cluster_of = dict(zip(sample.all_anime["MAL_ID"], sample.anime_cluster, strict=True))
    same = rated["anime_id"].map(cluster_of).to_numpy() == sample.user_cluster[rated["user_id"].to_numpy()]
    assert rated["rating"][same].mean() > rated["rating"][~same].mean() + 1.0
