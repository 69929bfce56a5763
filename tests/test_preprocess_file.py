"""The out-of-core preprocess against the in-memory reference: identical output, report and scaling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anime_recs.data.files import load_stats
from anime_recs.core.errors import UserInputError
from anime_recs.data.preprocess import PreprocessOptions, preprocess
from anime_recs.data.preprocess_file import Plan, preprocess_file

ANIME = pd.DataFrame({"MAL_ID": np.arange(1, 41, dtype=np.int64), "Episodes": np.r_[np.nan, 1.0, np.tile([12.0, 24.0, 1.0, 3.0], 9), 26.0, np.nan]})


def raw_stats(rows: int = 60_000, seed: int = 3) -> pd.DataFrame:
    """Messy stats: repeated pairs (far apart in the file), zeros, NaNs in every column, users not grouped."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "user_id": np.floor(rng.random(rows) ** 3 * 600).astype(np.float64),
        "anime_id": rng.integers(1, 201, rows).astype(np.float64),
        "rating": rng.choice(np.arange(11), rows, p=[0.38] + [0.062] * 10).astype(np.float64),
        "watching_status": rng.choice([1, 2, 3, 4, 6], rows).astype(np.float64),
        "watched_episodes": rng.integers(0, 30, rows).astype(np.float64),
    })
    for column in frame.columns:
        frame.loc[rng.random(rows) < 0.002, column] = np.nan
    return frame


def write_raw(frame: pd.DataFrame, path: Path) -> Path:
    # As the download step writes it: int64 columns with nulls.
    table = pa.table({c: pa.array(frame[c].to_numpy(), pa.float64(), from_pandas=True).cast(pa.int64()) for c in frame.columns})
    pq.write_table(table, path)
    return path


OPTIONS = {
    "default": PreprocessOptions(),
    "every_rule": PreprocessOptions(num_reviews=40, drop_half_watched=True, drop_unwatched=True, drop_plan=True),
    "keep_unrated_all_users": PreprocessOptions(num_reviews=0, drop_unrated=False),
}


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_out_of_core_equals_in_memory(name: str, tmp_path: Path) -> None:
    source = write_raw(raw_stats(), tmp_path / "raw.parquet")
    options = OPTIONS[name]
    expected, expected_report, expected_scaling = preprocess(load_stats(source), options, ANIME)
    # 0.005 GB forces ~11k-row batches and several buckets, so repeats cross batch boundaries.
    assert Plan.for_rows(60_000, 0.005).buckets > 1 and Plan.for_rows(60_000, 0.005).batch_rows < 60_000
    result = preprocess_file(source, tmp_path / "clean.parquet", options, ANIME, memory_limit_gb=0.005)
    clean = pd.read_parquet(tmp_path / "clean.parquet")
    pd.testing.assert_frame_equal(clean, expected)
    pd.testing.assert_frame_equal(result.report, expected_report)
    assert result.scaling == expected_scaling
    assert (result.rows, result.users, result.anime) == (len(expected), expected["user_id"].nunique(),
                                                        expected["anime_id"].nunique())
    assert expected_report.set_index("rule")["rows_removed"].drop("input").gt(0).all()  # every rule had work to do
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.parquet", "raw.parquet"]  # no scratch files left


def test_repeated_pair_keeps_the_first_in_file_order(tmp_path: Path) -> None:
    # Hand-computed: user 7 rates anime 1 twice, 100k rows apart (other batches, same bucket); the first (8) stays.
    filler = pd.DataFrame({"user_id": np.arange(100_000) % 50 + 100, "anime_id": np.arange(100_000) // 50 + 10,
                           "rating": 5, "watching_status": 2, "watched_episodes": 3}).astype(np.float64)
    first = pd.DataFrame([[7, 1, 8, 2, 3]], columns=filler.columns, dtype=np.float64)
    again = pd.DataFrame([[7, 1, 2, 2, 3], [7, 2, 10, 2, 3]], columns=filler.columns, dtype=np.float64)
    source = write_raw(pd.concat([first, filler, again], ignore_index=True), tmp_path / "raw.parquet")
    result = preprocess_file(source, tmp_path / "clean.parquet", PreprocessOptions(num_reviews=0), memory_limit_gb=0.005)
    clean = pd.read_parquet(tmp_path / "clean.parquet")
    assert result.report.set_index("rule").loc["duplicates", "rows_removed"] == 1
    user7 = clean[clean["user_id"] == 7]
    assert user7["anime_id"].tolist() == [1, 2] and user7["rating"].tolist() == [8.0, 10.0]
    assert clean["user_id"].iloc[0] == 7 and len(clean) == 100_002  # file order kept


def test_row_groups_are_sized_for_streaming(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("anime_recs.core.io.ROW_GROUP", 10_000)
    source = write_raw(raw_stats(), tmp_path / "raw.parquet")
    preprocess_file(source, tmp_path / "clean.parquet", PreprocessOptions(num_reviews=0), memory_limit_gb=0.005)
    meta = pq.ParquetFile(tmp_path / "clean.parquet").metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert len(sizes) > 1 and set(sizes[:-1]) == {10_000} and 0 < sizes[-1] <= 10_000  # full groups, whatever the batches


@pytest.mark.parametrize(("options", "message"), [
    (PreprocessOptions(num_reviews=10_000), "preprocess rule 'few_reviews' removed every row"),
    (PreprocessOptions(num_reviews=-1), "num_reviews must be >= 0"),
    (PreprocessOptions(drop_half_watched=True), "drop_half_watched needs the all-anime table"),
])
def test_errors_match_the_in_memory_rules(options: PreprocessOptions, message: str, tmp_path: Path) -> None:
    source = write_raw(raw_stats(5_000), tmp_path / "raw.parquet")
    with pytest.raises(UserInputError, match=message):
        preprocess(load_stats(source), options)
    with pytest.raises(UserInputError, match=message):
        preprocess_file(source, tmp_path / "clean.parquet", options)
    assert not (tmp_path / "clean.parquet").exists()


def test_bad_value_names_the_file_and_publishes_nothing(tmp_path: Path) -> None:
    frame = raw_stats(5_000)
    frame.loc[4_000, "rating"] = 11
    source = write_raw(frame, tmp_path / "raw.parquet")
    with pytest.raises(UserInputError, match=r"user stats file user_stats.parquet:v3: column rating must be 0..10"):
        preprocess_file(source, tmp_path / "clean.parquet", PreprocessOptions(), shown="user_stats.parquet:v3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw.parquet"]


def test_memory_plan_follows_the_limit_not_the_data() -> None:
    small, big = Plan.for_rows(109_000_000, 2.0), Plan.for_rows(109_000_000, 8.0)
    assert small.buckets > big.buckets and small.batch_rows <= big.batch_rows
    assert Plan.for_rows(1_000, 2.0).buckets == 1
    with pytest.raises(UserInputError, match="memory_limit_gb"):
        Plan.for_rows(1_000, 0.0001)
