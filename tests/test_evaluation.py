"""Tests of anime_recs.evaluation: the split protocol, the metrics and the baselines.

Metric expectations are worked out by hand in the comments next to them.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import pytest

from anime_recs.core.errors import UserInputError
from anime_recs.evaluation import (
    DEFAULT_COLUMNS,
    Columns,
    GlobalMean,
    PeakRss,
    Popularity,
    Recommender,
    Split,
    UserItemBias,
    evaluate_models,
    protocol_split,
    ranking_metrics,
    rating_metrics,
    split_checksum,
    to_markdown,
)
from anime_recs.core.topk import top_k

from .conftest import SHARED_DATA

# --------------------------------------------------------------------------- fixtures


def frame(rows: list[tuple[int, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "anime_id", "rating"])


def make_split(train: list[tuple[int, int, float]], test: list[tuple[int, int, float]]) -> Split:
    train_df, test_df = frame(train), frame(test)
    return Split(train_df, test_df, split_checksum(test_df.user_id, test_df.anime_id), Columns())


# TRAIN items 10..50. User 1 likes 30 and 60 (60 exists only in TEST); user 2 likes 10;
# users 3 and 4 have no relevant TEST item and must be ignored.
TINY = make_split(
    train=[(1, 10, 9), (1, 20, 5), (2, 30, 8), (3, 10, 7), (4, 40, 6), (4, 50, 2)],
    test=[(1, 30, 9), (1, 60, 10), (1, 40, 3), (2, 10, 8), (3, 20, 5), (4, 20, 4)],
)
ITEM_SCORE = {10: 0.9, 20: 0.8, 30: 0.5, 40: 0.5, 50: 0.1}  # 30 and 40 tie


def fixed_scores(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    row = np.array([ITEM_SCORE[int(i)] for i in items])
    return np.tile(row, (len(users), 1))


def random_ratings(n_users: int = 40, n_items: int = 60, density: float = 0.3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    users, items = np.nonzero(mask)
    return pd.DataFrame({"user_id": users * 3 + 1, "anime_id": items * 7 + 2, "rating": rng.integers(1, 11, users.size)}).sample(
        frac=1.0, random_state=1
    )  # shuffled: the split must not depend on row order


def naive_split(df: pd.DataFrame, min_ratings: int = 5, fraction: float = 0.2, seed: int = 42) -> pd.DataFrame:
    """The protocol read literally: one rng, users ascending, rng.choice on item-sorted rows."""
    rated = df[df.rating >= 1].sort_values(["user_id", "anime_id"])
    rng = np.random.default_rng(seed)
    parts = []
    for _, rows in rated.groupby("user_id", sort=True):
        n = len(rows)
        if n < min_ratings:
            continue
        chosen = rng.choice(n, size=max(1, int(round(fraction * n))), replace=False)  # noqa: RUF046 (protocol text)
        parts.append(rows.iloc[np.sort(chosen)])
    return pd.concat(parts)[["user_id", "anime_id"]].reset_index(drop=True)


# --------------------------------------------------------------------------- rating metrics


def test_rating_metrics_hand_computed() -> None:
    # errors 1, 0, -2: RMSE = sqrt(5/3), MAE = 1
    got = rating_metrics(np.array([1.0, 2.0, 7.0]), np.array([2.0, 2.0, 5.0]))
    assert got["rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert got["mae"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "y_true, y_pred",
    [([1.0, 2.0], [1.0]), ([], []), ([1.0, 2.0], [1.0, np.nan])],
    ids=["shape", "empty", "nan"],
)
def test_rating_metrics_rejects_bad_input(y_true: list[float], y_pred: list[float]) -> None:
    with pytest.raises(UserInputError):
        rating_metrics(np.array(y_true), np.array(y_pred))


# --------------------------------------------------------------------------- ranking metrics


def test_top_k_ties_go_to_lower_column_and_pad_short_rows() -> None:
    scores = np.array([[0.5, 0.9, 0.5, 0.5, 0.1], [3.0, 2.0, 1.0, 0.0, -1.0]])
    candidates = np.array([[True, True, True, True, True], [False, True, False, True, False]])
    got = top_k(scores, 3, candidates)
    np.testing.assert_array_equal(got, [[1, 0, 2], [1, 3, -1]])


def test_ranking_metrics_hand_computed_k2() -> None:
    # User 1: candidates 30, 40, 50 (10, 20 seen); 30 and 40 tie -> [30, 40]; relevant {30, 60}.
    #   hits [1, 0]: P = 1/2, R = 1/2, nDCG = 1 / (1 + 1/log2 3), AP = (1/1) / min(2, 2) = 1/2
    # User 2: candidates 10, 20, 40, 50 -> [10, 20]; relevant {10}.
    #   hits [1, 0]: P = 1/2, R = 1, nDCG = 1, AP = 1
    # Users 3 and 4 have no relevant TEST item. Coverage: {10, 20, 30, 40} of 5 items.
    got = ranking_metrics(fixed_scores, TINY, relevant_threshold=8, k=2)
    ndcg_user1 = 1 / (1 + 1 / math.log2(3))
    assert got["n_users"] == 2
    assert got["precision"] == pytest.approx(0.5)
    assert got["recall"] == pytest.approx(0.75)
    assert got["ndcg"] == pytest.approx((ndcg_user1 + 1.0) / 2)
    assert got["map"] == pytest.approx(0.75)
    assert got["coverage"] == pytest.approx(0.8)


def test_ranking_metrics_partial_hits_k3() -> None:
    # Catalogue 1..5 (all rated by user 99, who has no relevant TEST item); user 7 has
    # no TRAIN rows, relevant {2, 3, 6}; scores rank 1 > 2 > 3 > 4 > 5 -> top [1, 2, 3].
    #   hits [0, 1, 1]: P = 2/3, R = 2/3, DCG = 1/log2 3 + 1/log2 4, IDCG = 1 + 1/log2 3 + 1/log2 4,
    #   AP = (1/2 + 2/3) / 3, coverage 3/5
    split = make_split(
        train=[(99, item, 5) for item in range(1, 6)],
        test=[(7, 2, 9), (7, 3, 8), (7, 6, 10), (7, 4, 2), (99, 9, 1)],
    )
    got = ranking_metrics(lambda u, i: np.tile(-i.astype(float), (len(u), 1)), split, relevant_threshold=8, k=3)
    dcg = 1 / math.log2(3) + 1 / math.log2(4)
    assert got["n_users"] == 1
    assert got["precision"] == pytest.approx(2 / 3)
    assert got["recall"] == pytest.approx(2 / 3)
    assert got["ndcg"] == pytest.approx(dcg / (1 + dcg))
    assert got["map"] == pytest.approx((1 / 2 + 2 / 3) / 3)
    assert got["coverage"] == pytest.approx(3 / 5)
    # More relevant items (3) than k = 2: top [1, 2], hits [0, 1]; ideal and MAP use min(k, 3) = 2.
    #   nDCG = (1/log2 3) / (1 + 1/log2 3), AP = (1/2) / 2
    got = ranking_metrics(lambda u, i: np.tile(-i.astype(float), (len(u), 1)), split, relevant_threshold=8, k=2)
    assert got["ndcg"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert got["map"] == pytest.approx(0.25)
    assert got["recall"] == pytest.approx(1 / 3)


def test_ranking_metrics_k10_with_short_candidate_lists() -> None:
    # Only 5 TRAIN items, so each top-10 holds at most 5; precision still divides by 10.
    # User 1: list [30, 40, 50], one hit at rank 1 of 2 relevant: P = 1/10, MAP = 1/2.
    # User 2: list [10, 20, 40, 50], hit at rank 1 of 1 relevant: P = 1/10, MAP = 1.
    got = ranking_metrics(fixed_scores, TINY, relevant_threshold=8, k=10)
    assert got["precision"] == pytest.approx(0.1)
    assert got["recall"] == pytest.approx(0.75)
    assert got["map"] == pytest.approx(0.75)
    assert got["coverage"] == pytest.approx(1.0)


def test_ranking_metrics_do_not_depend_on_batching() -> None:
    split = protocol_split(random_ratings())
    rng = np.random.default_rng(3)
    table = rng.random((400, 500))

    def scores(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return table[np.ix_(users, items)]

    whole = ranking_metrics(scores, split, relevant_threshold=6)
    one_user_at_a_time = ranking_metrics(scores, split, relevant_threshold=6, batch_elements=1)
    assert whole == one_user_at_a_time
    assert whole["n_users"] > 10


def test_ranking_metrics_rejects_wrong_score_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        ranking_metrics(lambda u, i: np.zeros((len(u), len(i) + 1)), TINY, relevant_threshold=8)


# --------------------------------------------------------------------------- split


def test_split_matches_the_protocol_read_literally() -> None:
    df = random_ratings(n_users=60, density=0.25)
    df.loc[df.index[:30], "rating"] = 0  # "not rated": must be dropped before counting
    split = protocol_split(df)
    expected = naive_split(df)
    np.testing.assert_array_equal(split.test[["user_id", "anime_id"]].to_numpy(), expected.to_numpy())


def test_split_rules_sizes_and_partition() -> None:
    df = random_ratings()
    light = pd.DataFrame({"user_id": [1000] * 4, "anime_id": [2, 9, 16, 23], "rating": [5, 6, 7, 8]})
    unrated = pd.DataFrame({"user_id": [1001] * 6, "anime_id": [2, 9, 16, 23, 30, 37], "rating": [0, 0, 7, 8, 9, 9]})
    split = protocol_split(pd.concat([df, light, unrated]))
    users = pd.concat([split.train, split.test]).user_id
    # 4 ratings, and 4 real ratings once the zeros are dropped: both users are below 5.
    assert not users.isin([1000, 1001]).any()
    n = df.groupby("user_id").size()
    assert set(users.unique()) == set(n[n >= 5].index)
    test_sizes = split.test.groupby("user_id").size()
    expected_sizes = np.maximum(1, np.round(0.2 * n[test_sizes.index]).astype(int))
    np.testing.assert_array_equal(test_sizes.to_numpy(), expected_sizes.to_numpy())
    both = pd.concat([split.train, split.test])
    assert len(both) == len(df[df.user_id.isin(test_sizes.index)])
    assert not both.duplicated(["user_id", "anime_id"]).any()
    for part in (split.train, split.test):
        assert part.equals(part.sort_values(["user_id", "anime_id"]).reset_index(drop=True))


def test_split_is_deterministic_and_seeded() -> None:
    df = random_ratings()
    first, again = protocol_split(df), protocol_split(df.sample(frac=1.0, random_state=7))
    assert first.checksum == again.checksum
    pd.testing.assert_frame_equal(first.test, again.test)
    pd.testing.assert_frame_equal(first.train, again.train)
    assert protocol_split(df, seed=43).checksum != first.checksum


def test_checksum_definition() -> None:
    # Sorted numerically by (user, item): "2,5" before "10,1" although "1" < "2" as text.
    text = "2,5\n2,30\n10,1\n"
    expected = hashlib.sha256(text.encode()).hexdigest()[:16]
    assert split_checksum(np.array([10, 2, 2]), np.array([1, 30, 5])) == expected


def test_checksum_of_the_real_mal_split_is_pinned() -> None:
    """Pins the protocol itself: any change to filtering, sorting or the rng walk breaks this."""
    path = SHARED_DATA / "mal2020" / "rating_complete_head100k.csv"
    if not path.is_file():
        pytest.skip("shared MAL data not present")
    df = pd.read_csv(path)
    split = protocol_split(df[df.user_id != 664])
    assert split.checksum == "34ef012acefbbabe"
    assert (len(split.train), len(split.test)) == (79614, 19901)


def test_split_rejects_duplicates_and_missing_columns() -> None:
    with pytest.raises(UserInputError, match="duplicated"):
        protocol_split(frame([(1, i, 5) for i in range(5)] + [(1, 3, 6)]))
    with pytest.raises(UserInputError, match="lack column"):
        protocol_split(frame([(1, 1, 5)]).rename(columns={"anime_id": "item"}))


# --------------------------------------------------------------------------- baselines


def planted_bias_split(seed: int = 0) -> tuple[Split, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_users, n_items = 80, 100
    user_bias = rng.normal(0, 1.0, n_users)
    item_bias = rng.normal(0, 1.0, n_items)
    users, items = np.nonzero(rng.random((n_users, n_items)) < 0.4)
    rating = np.clip(np.round(6 + user_bias[users] + item_bias[items] + rng.normal(0, 0.5, users.size)), 1, 10)
    return protocol_split(pd.DataFrame({"user_id": users, "anime_id": items, "rating": rating})), user_bias, item_bias


def test_user_item_bias_beats_global_mean_on_planted_biases() -> None:
    split, _, item_bias = planted_bias_split()
    table = evaluate_models({"mean": GlobalMean(), "bias": UserItemBias()}, split, relevant_threshold=8, rating_bounds=(1, 10))
    assert table.loc["bias", "RMSE"] < 0.6 * table.loc["mean", "RMSE"]
    assert table.loc["bias", "nDCG@10"] > table.loc["mean", "nDCG@10"]
    model = UserItemBias().fit(split.train)
    learned = model.item_bias[model.item_encoder.transform(np.arange(100))]
    assert np.corrcoef(learned, item_bias)[0, 1] > 0.9


def test_user_item_bias_is_exact_on_additive_data() -> None:
    # r = 5 + u + i exactly; with no regularisation ALS recovers it.
    users, items = np.meshgrid(np.arange(4), np.arange(5), indexing="ij")
    df = pd.DataFrame({"user_id": users.ravel(), "anime_id": items.ravel(), "rating": 5.0 + users.ravel() + items.ravel()})
    model = UserItemBias(reg_item=0.0, reg_user=0.0, n_epochs=50).fit(df)
    np.testing.assert_allclose(model.predict(df.user_id.to_numpy(), df.anime_id.to_numpy()), df.rating, atol=1e-6)
    # Unknown user and item fall back to the global mean (zero biases).
    assert model.predict(np.array([99]), np.array([99]))[0] == pytest.approx(df.rating.mean())


def test_popularity_ranks_by_liked_count_then_count() -> None:
    train = frame([(1, 10, 9), (2, 10, 9), (1, 20, 9), (2, 20, 2), (3, 20, 3), (1, 30, 1)])
    model = Popularity(relevant_threshold=8).fit(train)
    scores = model.score(np.array([1, 5]), np.array([30, 20, 10, 77]))
    # liked: 10 -> 2, 20 -> 1 (3 ratings), 30 -> 0, unknown 77 -> 0
    assert list(np.argsort(-scores[0], kind="stable")) == [2, 1, 0, 3]
    np.testing.assert_array_equal(scores[0], scores[1])
    assert model.predict(np.array([1]), np.array([10]))[0] == pytest.approx(train.rating.mean())
    by_count = Popularity().fit(train).score(np.array([1]), np.array([10, 20, 30]))[0]
    np.testing.assert_array_equal(by_count, [2, 3, 1])


def test_baselines_follow_the_recommender_protocol() -> None:
    for model in (GlobalMean(), Popularity(), UserItemBias()):
        assert isinstance(model, Recommender)


# --------------------------------------------------------------------------- running


class Extreme:
    """Predicts far above the scale, to check clipping."""

    predicts_ratings = True

    def fit(self, train: pd.DataFrame, cols: Columns = DEFAULT_COLUMNS) -> Extreme:
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.full(len(users), 100.0)

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.zeros((len(users), len(items)))


class RankOnly(Extreme):
    predicts_ratings = False


def test_evaluate_models_clips_and_reports_every_column() -> None:
    table = evaluate_models({"extreme": Extreme(), "rank": RankOnly()}, TINY, relevant_threshold=8, rating_bounds=(1, 10))
    expected_columns = [
        "RMSE", "MAE", "P@10", "R@10", "nDCG@10", "MAP@10", "Coverage@10", "fit_s", "eval_s", "peak_rss_gb", "added_rss_gb",
    ]  # fmt: skip
    assert list(table.columns) == expected_columns
    # Clipped to 10: TEST ratings 9, 10, 3, 8, 5, 4 -> errors 1, 0, 7, 2, 5, 6.
    assert table.loc["extreme", "MAE"] == pytest.approx(21 / 6)
    assert math.isnan(table.loc["rank", "RMSE"])
    assert table.loc["rank", "P@10"] == pytest.approx(0.1)
    assert (table["peak_rss_gb"] > 0).all()


def test_to_markdown_formats_numbers_and_missing_values() -> None:
    table = pd.DataFrame({"RMSE": [1.23456, np.nan], "fit_s": [0.5, 12.0]}, index=pd.Index(["a", "b"], name="model"))
    lines = to_markdown(table).splitlines()
    assert lines[0] == "| model | RMSE | fit_s |"
    assert lines[1] == "|---|---:|---:|"
    assert lines[2:] == ["| a | 1.2346 | 0.50 |", "| b | - | 12.00 |"]


def test_peak_rss_sees_a_large_allocation() -> None:
    with PeakRss() as before:
        pass
    with PeakRss() as during:
        block = np.ones(200_000_000 // 8)  # 200 MB, touched
        del block
    assert during.peak_bytes - before.peak_bytes > 150_000_000
    assert during.peak_bytes - during.start_bytes > 150_000_000
    assert before.peak_bytes - before.start_bytes < 50_000_000


# --------------------------------------------------------------------------- our families, as served


def test_family_adapter_scores_the_served_model_with_fallbacks() -> None:
    from anime_recs.evaluation import FamilyModel, SimilarUsersModel
    from anime_recs.models import build_model

    split = protocol_split(random_ratings(n_users=30, n_items=40, density=0.5))
    adapter = FamilyModel(build_model({"family": "hybrid", "ranking": {"embedding_size": 8},
                                       "rating": {"factors": 4, "embedding_size": 8}}), rating_range=(1.0, 10.0))
    adapter.fit(split.train)
    users = split.test.user_id.to_numpy()
    items = split.test.anime_id.to_numpy()
    pred = adapter.predict(users, items)
    assert pred.shape == users.shape and np.all((pred >= 1) & (pred <= 10))
    # An unseen user or item gets the bias fallback, not an error: mu + the known bias.
    mu, b_user, b_item = adapter.model.baseline()
    got = adapter.predict(np.array([-5, users[0]]), np.array([items[0], -7]))
    row_u = adapter.data.users.positions(users[:1])[0]
    row_i = adapter.data.items.positions(items[:1])[0]
    assert got == pytest.approx([mu + (b_item[row_i] if row_i >= 0 else 0), mu + b_user[row_u]])
    # score() is the served model's ranking: EASE's x_u B for the hybrid.
    grid = adapter.score(users[:3], np.sort(split.train.anime_id.unique()))
    np.testing.assert_allclose(grid, adapter.model.rank_scores(adapter.data.users.positions(users[:3])), rtol=1e-6)
    assert set(ranking_metrics(adapter.score, split, relevant_threshold=8)) >= {"precision", "ndcg"}

    # The user_recs ranking reuses the fitted family and counts similar users' favourites.
    similar = SimilarUsersModel(adapter).fit(split.train)
    votes = similar.score(users[:2], np.sort(split.train.anime_id.unique()))
    assert votes.shape[0] == 2 and votes.max() <= 10 and votes.min() >= 0 and votes.sum() > 0
    assert np.all((similar.predict(users, items) >= 1) & (similar.predict(users, items) <= 10))
