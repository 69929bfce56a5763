"""API JSON → the raw files' columns and spellings, checked against the real 2020 file's values."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from anime_recs.data.files import ANIME_COLUMNS, SYNOPSES_COLUMNS, UNKNOWN, WATCHING_STATUS, validate_anime, validate_stats, validate_synopses
from anime_recs.data.mal.mapping import (
    LIST_STATUS,
    MEDIA_TYPES,
    RATINGS,
    SOURCES,
    anime_frames,
    anime_row,
    clean_synopsis,
    format_aired,
    format_duration,
    list_rows,
    stats_frame,
)

# Shaped like the documented GET /v2/anime/{id} answer (statistics counts come as strings there).
NODE = {
    "id": 44511, "title": "Chainsaw Man", "main_picture": {"medium": "m.jpg", "large": "l.jpg"},
    "alternative_titles": {"synonyms": ["CSM"], "en": "Chainsaw Man", "ja": "チェンソーマン"},
    "start_date": "2022-10-12", "end_date": "2022-12-28", "synopsis": "Denji is a teenage boy.\n\nHe has a devil.\n\n[Written by MAL Rewrite]",
    "mean": 8.47, "rank": 120, "popularity": 45, "num_list_users": 2500000, "num_scoring_users": 1500000, "nsfw": "white",
    "media_type": "tv", "status": "finished_airing",
    "genres": [{"id": 1, "name": "Action"}, {"id": 50, "name": "Adult Cast"}, {"id": 14, "name": "Horror"}, {"id": 42, "name": "Seinen"}],
    "num_episodes": 12, "start_season": {"year": 2022, "season": "fall"}, "source": "manga", "average_episode_duration": 1470,
    "rating": "r", "studios": [{"id": 569, "name": "MAPPA"}],
    "statistics": {"status": {"watching": "120000", "completed": "1900000", "on_hold": "40000", "dropped": "30000",
                              "plan_to_watch": "400000"}, "num_list_users": 2490000},
}  # fmt: skip


def test_anime_row_has_every_column_in_the_originals_spelling() -> None:
    row = anime_row(NODE)
    assert list(row) == list(ANIME_COLUMNS)
    assert row["Name"] == "Chainsaw Man" and row["Japanese name"] == "チェンソーマン"
    assert row["Score"] == 8.47 and row["Type"] == "TV" and row["Episodes"] == 12
    assert row["Genres"] == "Action, Adult Cast, Horror, Seinen"
    assert row["Aired"] == "Oct 12, 2022 to Dec 28, 2022" and row["Premiered"] == "Fall 2022"
    assert row["Source"] == "Manga" and row["Rating"] == "R - 17+ (violence & profanity)"
    assert row["Duration"] == "24 min. per ep."  # 1470 s: the website drops the seconds
    assert row["Ranked"] == "120.0" and row["Popularity"] == 45 and row["Members"] == 2500000
    assert (row["Watching"], row["Completed"], row["On-Hold"], row["Dropped"], row["Plan to Watch"]) == (120000, 1900000, 40000, 30000, 400000)
    assert row["Producers"] == row["Licensors"] == row["Favorites"] == row["Score-10"] == row["Score-1"] == UNKNOWN


def test_missing_fields_become_unknown() -> None:
    row = anime_row({"id": 7, "title": "Bare", "media_type": "pv", "num_episodes": 0, "mean": None, "source": "brand_new_kind"})
    for column in ("Score", "Genres", "English name", "Type", "Episodes", "Aired", "Premiered", "Studios", "Source", "Duration",
                   "Rating", "Ranked", "Members", "Watching"):
        assert row[column] == UNKNOWN, column


@pytest.mark.parametrize(("node", "expected"), [
    ({"start_date": "2016-09-17", "end_date": "2016-09-17", "status": "finished_airing"}, "Sep 17, 2016"),
    ({"start_date": "2016-09-17", "status": "finished_airing"}, "Sep 17, 2016"),
    ({"start_date": "2021-04", "status": "currently_airing"}, "Apr, 2021 to ?"),
    ({"start_date": "2005", "end_date": "2006", "status": "finished_airing"}, "2005 to 2006"),
    ({"status": "not_yet_aired"}, UNKNOWN),
])
def test_aired_like_the_website(node: dict, expected: str) -> None:
    assert format_aired(node) == expected


@pytest.mark.parametrize(("seconds", "episodes", "expected"), [
    (1440, 26, "24 min. per ep."), (7800, 1, "2 hr. 10 min."), (3600, 1, "1 hr."), (30, 1, "30 sec."),
    (30, 12, "30 sec. per ep."), (95, 1, "1 min."), (0, 1, UNKNOWN), (None, 1, UNKNOWN), (1440, UNKNOWN, "24 min. per ep."),
])
def test_duration_like_the_website(seconds: int | None, episodes: object, expected: str) -> None:
    assert format_duration(seconds, episodes) == expected


def test_enumerations_are_the_real_files_values(mal_data: Path) -> None:
    real = pd.read_parquet(mal_data / "anime_2020.parquet", columns=["Type", "Source", "Rating", "Duration", "Aired", "Premiered"])
    assert set(MEDIA_TYPES.values()) <= set(real["Type"])
    new_since_2020 = {"Web novel", "Mixed media"}  # source kinds MyAnimeList added after the scrape
    assert set(SOURCES.values()) - new_since_2020 <= set(real["Source"])
    assert set(RATINGS.values()) == set(real["Rating"]) - {UNKNOWN}
    assert {"24 min. per ep.", "2 hr. 10 min.", "30 sec."} <= set(real["Duration"])
    assert {"Sep 17, 2016", "Apr, 2021 to ?", "Apr 3, 1998 to Apr 24, 1999"} <= set(real["Aired"])
    assert anime_row(NODE)["Premiered"].split()[0] in {p.split()[0] for p in real["Premiered"] if p != UNKNOWN}


def test_list_status_codes_are_the_originals() -> None:
    assert {code: name.replace("_", " ") for name, code in LIST_STATUS.items()} == {**WATCHING_STATUS, 3: "on hold"}
    entries = [{"node": {"id": 5}, "list_status": {"status": "on_hold", "score": 0, "num_episodes_watched": 3}},
               {"node": {"id": 6}, "list_status": {"status": "plan_to_watch", "score": 0, "num_episodes_watched": 0}},
               {"node": {"id": 7}, "list_status": {"status": "rewatching??", "score": 9}},
               {"node": {"id": 8}, "list_status": {"status": "completed", "score": 9, "num_episodes_watched": 12}}]
    rows, unknown = list_rows(4, entries)
    assert rows == [[5, 0, 3, 3], [6, 0, 6, 0], [8, 9, 2, 12]] and unknown == 1


def test_frames_pass_the_pipelines_validation_and_have_no_duplicates() -> None:
    later = {**NODE, "mean": 8.5}
    anime, synopses = anime_frames([NODE, {"id": 1, "title": "Cowboy Bebop", "media_type": "tv"}, later])
    assert list(anime.columns) == list(ANIME_COLUMNS) and list(synopses.columns) == list(SYNOPSES_COLUMNS)
    assert anime["MAL_ID"].tolist() == [1, 44511] and anime.loc[1, "Score"] == 8.5  # the later answer wins
    checked = validate_anime(anime)
    assert checked.loc[0, "Score"] != checked.loc[0, "Score"]  # Unknown score -> NaN, as for the original file
    assert validate_synopses(synopses).loc[1, "sypnopsis"] == "Denji is a teenage boy. He has a devil."
    stats = stats_frame([3, 9], [[[5, 7, 2, 12], [6, 0, 1, 2], [5, 8, 2, 12]], [[5, 10, 2, 12]]])
    assert stats[["user_id", "anime_id", "rating"]].values.tolist() == [[3, 5, 8], [3, 6, 0], [9, 5, 10]]
    assert len(validate_stats(stats)) == 3
    assert len(stats_frame([], [])) == 0


def test_clean_synopsis() -> None:
    assert clean_synopsis("A.\n\nB.  (Source: ANN)\n\n[Written by MAL Rewrite]") == "A. B. (Source: ANN)"
    assert clean_synopsis(None) == ""
