"""Tests of anime_recs.data.streaming: the training rows read from the parquet in batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anime_recs.core.encoding import IdEncoder, RatingArrays
from anime_recs.core.errors import DataValidationError, UserInputError
from anime_recs.data.streaming import ParquetRatings, StreamedRows, split_of_rows
from anime_recs.data.synthetic import latent_factor_ratings

N_USERS, N_ANIME, N_ROWS = 300, 120, 12_000


@pytest.fixture(scope="module")
def stats(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A preprocessed-stats parquet (raw, non-contiguous ids) in row groups of 1,000 rows."""
    rows = latent_factor_ratings(N_USERS, N_ANIME, N_ROWS, dim=4, noise=0.05, seed=3)
    frame = pd.DataFrame({
        "user_id": rows.user_idx.astype(np.int64) * 7 + 100,
        "anime_id": rows.anime_idx.astype(np.int64) * 3 + 1,
        "rating": rows.rating.astype(np.float32),
        "watching_status": np.full(N_ROWS, 2, np.int8),
        "watched_episodes": np.arange(N_ROWS, dtype=np.int32) % 24,
    })
    path = tmp_path_factory.mktemp("stream") / "preprocessed_stats.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=1_000)
    assert pq.ParquetFile(path).num_row_groups == 12
    return path, frame


def _reader(path: Path, **kwargs: int) -> ParquetRatings:
    return ParquetRatings(path, 0.1, 0.1, seed=5, **{"read_rows": 300, "shuffle_rows": 2_500, **kwargs})


def _sorted_rows(rows: RatingArrays) -> np.ndarray:
    table = np.stack([rows.user_idx.astype(np.float64), rows.anime_idx.astype(np.float64), rows.rating.astype(np.float64)], 1)
    return table[np.lexsort(table.T[::-1])]


def _concat(parts: list[RatingArrays]) -> RatingArrays:
    return RatingArrays(*(np.concatenate([getattr(p, f) for p in parts]) for f in RatingArrays._fields))


def test_split_is_a_deterministic_hash_of_the_position() -> None:
    split = split_of_rows(np.arange(200_000), 0.1, 0.2, seed=1)
    shares = np.bincount(split, minlength=3) / len(split)
    np.testing.assert_allclose(shares, [0.7, 0.1, 0.2], atol=0.01)
    np.testing.assert_array_equal(split_of_rows(np.arange(1000, 2000), 0.1, 0.2, seed=1), split[1000:2000])
    assert not np.array_equal(split_of_rows(np.arange(2000), 0.1, 0.2, seed=2), split[:2000])


def test_encoders_come_from_the_id_columns(stats: tuple[Path, pd.DataFrame]) -> None:
    path, frame = stats
    users, anime = _reader(path).encoders()
    np.testing.assert_array_equal(users.ids, IdEncoder(frame["user_id"].to_numpy()).ids)
    np.testing.assert_array_equal(anime.ids, IdEncoder(frame["anime_id"].to_numpy()).ids)


def test_streamed_rows_are_the_in_memory_rows(stats: tuple[Path, pd.DataFrame]) -> None:
    path, frame = stats
    reader = _reader(path)
    users, anime = reader.encoders()
    holdout = reader.holdout(users, anime)
    train = StreamedRows(reader, users, anime, holdout.train_rows, holdout.train_rating_sum / holdout.train_rows)
    epoch0 = list(train.epoch_batches(0, 512))
    assert all(len(b) == 512 for b in epoch0[:-1]) and sum(len(b) for b in epoch0) == len(train)
    test = RatingArrays(users.transform(holdout.test["user_id"].to_numpy()), anime.transform(holdout.test["anime_id"].to_numpy()),
                        holdout.test["rating"].to_numpy(np.float32))
    streamed = _concat([*epoch0, holdout.val, test])
    in_memory = RatingArrays(users.transform(frame["user_id"].to_numpy()), anime.transform(frame["anime_id"].to_numpy()),
                             frame["rating"].to_numpy(np.float32))
    np.testing.assert_array_equal(_sorted_rows(streamed), _sorted_rows(in_memory))  # the same multiset of rows
    assert abs(len(holdout.val) / N_ROWS - 0.1) < 0.02 and abs(len(test) / N_ROWS - 0.1) < 0.02
    assert list(holdout.test.columns) == list(frame.columns)
    np.testing.assert_allclose(train.mean_rating, np.concatenate([b.rating for b in epoch0]).mean(), rtol=1e-6)

    # Each epoch: the same training rows in another order; the same epoch twice: the same order.
    epoch1 = _concat(list(train.epoch_batches(1, 512)))
    np.testing.assert_array_equal(_sorted_rows(epoch1), _sorted_rows(_concat(epoch0)))
    assert not np.array_equal(epoch1.user_idx, _concat(epoch0).user_idx)
    np.testing.assert_array_equal(_concat(list(train.epoch_batches(1, 512))).user_idx, epoch1.user_idx)
    # The split does not depend on how the file is read.
    other = _reader(path, read_rows=4096, shuffle_rows=100_000).holdout(users, anime)
    np.testing.assert_array_equal(_sorted_rows(other.val), _sorted_rows(holdout.val))


def test_bad_input_is_one_line(stats: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    path, frame = stats
    with pytest.raises(UserInputError, match="fractions"):
        ParquetRatings(path, 0.6, 0.5, seed=1)
    broken = tmp_path / "broken.parquet"
    frame.drop(columns="rating").to_parquet(broken)
    with pytest.raises(DataValidationError, match="lacks column"):
        ParquetRatings(broken, 0.1, 0.1, seed=1)


@pytest.mark.parametrize("path_name", ["fast", "keras"])
def test_training_through_the_stream_learns(stats: tuple[Path, pd.DataFrame], path_name: str) -> None:
    from anime_recs.models.network.architecture import ModelParams
    from anime_recs.models.network.training import train_model

    path, _ = stats
    reader = _reader(path)
    users, anime = reader.encoders()
    holdout = reader.holdout(users, anime)
    train = StreamedRows(reader, users, anime, holdout.train_rows, holdout.train_rating_sum / holdout.train_rows)
    # No XLA: this is about the batches the stream feeds; the compiled head is test_training's
    # test_path_learns_and_beats_global_mean[fast]. Here it compiled twice (full and last, partial
    # batch), ~3 s of the test's 4 s of CPU.
    params = ModelParams(embedding_size=16, batch_size=500, epochs=3, start_lr=2e-2, max_lr=2e-2, min_lr=2e-3,
                         rampup_epochs=0, exp_decay=0.7, training_path=path_name, jit_compile=False)
    history = train_model(train, holdout.val, len(users), len(anime), params, verbose=False).history
    assert len(history) == 3
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0]


def test_raw_ratings_are_scaled_for_the_network_as_the_family_scales_them(tmp_path: Path,
                                                                         stats: tuple[Path, pd.DataFrame]) -> None:
    # The preprocessed table keeps the 1-10 scale; the network's [0, 1] scaling happens only where it trains.
    from anime_recs.models.base import Interactions
    from anime_recs.models.original import OriginalNetwork

    _, frame = stats
    raw = frame.assign(rating=np.round(1 + 9 * frame["rating"]).astype(np.float32))
    path = tmp_path / "raw.parquet"
    pq.write_table(pa.Table.from_pandas(raw, preserve_index=False), path, row_group_size=1_000)
    reader = ParquetRatings(path, 0.1, 0.1, seed=5, read_rows=300, shuffle_rows=2_500, rating_range=(1.0, 10.0))
    users, anime = reader.encoders()
    holdout = reader.holdout(users, anime)
    assert set(np.unique(holdout.test["rating"])) <= set(np.arange(1.0, 11.0))  # test rows keep the raw scale
    streamed = _concat([*reader.train_batches(0, 1_000, users, anime), holdout.val])
    assert len(streamed) + len(holdout.test) == len(raw)
    levels = pd.DataFrame({"user_id": np.arange(10), "anime_id": np.arange(10), "rating": np.arange(1.0, 11.0)})
    family = OriginalNetwork().scaled(Interactions.from_frame(levels, (1.0, 10.0))).rating  # what the family trains on
    assert np.array_equal(np.unique(streamed.rating), np.unique(family))  # bit for bit, every level
