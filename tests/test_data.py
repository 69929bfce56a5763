"""Data contracts: required columns, types and ranges, with errors naming file and column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from anime_recs.data.files import load_anime, load_stats, load_synopses, validate_file
from anime_recs.core.errors import DataValidationError
from anime_recs.data.sample import make_sample


@pytest.fixture(scope="module")
def sample():
    return make_sample(100, 80, 20, seed=5)


def test_valid_files_load_with_types(tmp_path: Path, sample) -> None:
    sample.stats.to_parquet(tmp_path / "s.parquet")
    sample.all_anime.to_csv(tmp_path / "a.csv", index=False)
    sample.synopses.to_csv(tmp_path / "y.csv", index=False)
    stats = load_stats(tmp_path / "s.parquet")
    assert str(stats["rating"].dtype) == "int8" and str(stats["user_id"].dtype) == "int64"
    anime = load_anime(tmp_path / "a.csv")
    assert anime["Score"].dtype == "float64"  # "Unknown" became NaN
    assert len(load_synopses(tmp_path / "y.csv")) == len(sample.synopses)


def test_csv_without_rating_names_file_and_column(tmp_path: Path, sample) -> None:
    path = tmp_path / "stats.csv"
    sample.stats.drop(columns="rating").to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"stats.csv lacks column\(s\) rating"):
        load_stats(path)


def test_out_of_range_and_non_numeric_values(tmp_path: Path, sample) -> None:
    bad = sample.stats.copy()
    bad.loc[3, "rating"] = 11
    bad.to_csv(tmp_path / "r.csv", index=False)
    with pytest.raises(DataValidationError, match="column rating must be 0..10"):
        load_stats(tmp_path / "r.csv")
    bad = sample.stats.astype({"watching_status": object})
    bad.loc[0, "watching_status"] = "done"
    bad.to_csv(tmp_path / "w.csv", index=False)
    with pytest.raises(DataValidationError, match="watching_status holds non-numeric values such as 'done'"):
        load_stats(tmp_path / "w.csv")


def test_truncated_parquet_is_a_one_line_error(tmp_path: Path, sample) -> None:
    full = tmp_path / "full.parquet"
    sample.stats.to_parquet(full)
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(DataValidationError, match="cut.parquet cannot be read .*truncated") as info:
        validate_file("stats", cut)
    assert "\n" not in str(info.value)


def test_anime_parquet_with_anime_id_column_is_accepted(mal_data: Path) -> None:
    anime = load_anime(mal_data / "anime_2020.parquet")
    assert len(anime) == 17562 and anime["MAL_ID"].is_unique
    assert anime["Score"].isna().sum() == 5141  # the mean-filled "Unknown" scores (SOURCES.md) are unknown again
    assert anime.loc[anime["MAL_ID"] == 1, "Score"].iloc[0] == 8.78
    synopses = load_synopses(mal_data / "anime_with_synopsis_head269.csv")  # column spelled `synopsis` there
    assert "sypnopsis" in synopses.columns and len(synopses) == 269


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="does not exist"):
        load_anime(tmp_path / "nope.csv")
    assert pd.isna(pd.NA)
