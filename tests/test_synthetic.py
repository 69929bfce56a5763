"""The full-size animelist.csv generator: the real file's shape, grouped by user, deterministic, chunked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anime_recs.data.files import validate_stats
from anime_recs.core.errors import UserInputError
from anime_recs.data.synthetic import list_lengths, write_animelist_csv

ANIME_IDS = np.arange(1, 2_001) * 3
EPISODES = np.where(np.arange(2_000) % 10 == 0, np.nan, 12.0)


def make(path: Path, seed: int = 0, chunk_rows: int = 20_000) -> pd.DataFrame:
    write_animelist_csv(str(path), ANIME_IDS, EPISODES, n_rows=100_000, n_users=800, seed=seed, chunk_rows=chunk_rows)
    return pd.read_csv(path)


def test_shape_of_the_real_file(tmp_path: Path) -> None:
    frame = make(tmp_path / "a.csv")
    assert list(frame.columns) == ["user_id", "anime_id", "rating", "watching_status", "watched_episodes"]
    assert (tmp_path / "a.csv").read_text().startswith("user_id,anime_id,rating,")  # header unquoted, as the real file
    validate_stats(frame, "a.csv")  # types and ranges of the real data
    assert len(frame) == 100_000 and frame["user_id"].nunique() == 800
    assert frame["user_id"].is_monotonic_increasing  # grouped by user, like animelist.csv
    assert frame["rating"].eq(0).mean() == pytest.approx(0.38, abs=0.01)
    assert set(frame["anime_id"]) <= set(ANIME_IDS)
    lengths = frame.groupby("user_id").size()
    assert lengths.max() > 8 * lengths.median()  # heavy-tailed lists
    top = frame["anime_id"].value_counts()
    assert top.iloc[0] > 10 * top.median()  # popularity skew
    assert 0 < frame.duplicated(["user_id", "anime_id"]).mean() < 0.1  # a few repeats, as scraped data has
    plan = frame["watching_status"] == 6
    assert (frame.loc[plan, "rating"] == 0).all() and (frame.loc[plan, "watched_episodes"] == 0).all()


def test_same_seed_same_file_other_seed_other_file(tmp_path: Path) -> None:
    make(tmp_path / "a.csv", seed=5)
    make(tmp_path / "b.csv", seed=5)
    make(tmp_path / "c.csv", seed=6)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.csv").read_bytes() != (tmp_path / "c.csv").read_bytes()


def test_lengths_sum_exactly_and_every_user_has_a_row() -> None:
    lengths = list_lengths(np.random.default_rng(0), 1_000, 123_457)
    assert lengths.sum() == 123_457 and lengths.min() >= 1
    with pytest.raises(UserInputError, match="at least users"):
        list_lengths(np.random.default_rng(0), 10, 9)
