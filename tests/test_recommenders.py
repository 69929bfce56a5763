"""Contract suite for :class:`anime_recs.recommend.AnimeRecommender` over a planted model.

The data set is tiny and planted, so the right answers are known:

* 24 anime in three genre clusters (Action, Romance, Horror; 8 each) whose
  embeddings sit close to three orthogonal directions; MAL_IDs are 100, 110, ...
  (not 0..n-1, so ids and positions cannot be confused);
* 15 users in the same three clusters, each rating 4 anime of their own cluster
  highly and 1 of the next cluster badly;
* edge cases: an anime with an embedding but no metadata (MAL 555), an anime in
  the table without an embedding (MAL 999), a user the model knows with no
  ratings (9000), a user with ratings the model never saw (8000).

Expected values are recomputed here with plain pandas/numpy, independently of
the implementation, so every assertion can fail.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from anime_recs.core.encoding import IdEncoder
from anime_recs.core.errors import DataValidationError, UserInputError
from anime_recs.models.network.embeddings import PredictionHead
from anime_recs.models.original import OriginalNetwork
from anime_recs.recommend import AnimeRecommender, UserPreferences
from anime_recs.recommend.interactions import _desc_percentile
from anime_recs.core.topk import top_k

CLUSTER_GENRES = ("Action", "Romance", "Horror")
TYPES = ("TV", "TV", "TV", "Movie", "Movie", "OVA", "OVA", "Special")
EPISODES = {"TV": 12.0, "Movie": 1.0, "OVA": 2.0, "Special": 1.0}
SOURCES = ("Manga", "Original", "Light novel")
NO_META_ANIME, NO_EMBEDDING_ANIME = 555, 999
NO_RATINGS_USER, UNTRAINED_USER = 9000, 8000


# The trained Dense+BatchNorm+sigmoid head reduced to sigmoid(6 * cosine).
SIGMOID_HEAD = PredictionHead(kernel=6.0, bias=0.0, gamma=1.0, beta=0.0, moving_mean=0.0, moving_variance=1.0,
                              epsilon=0.0, activation="sigmoid")


def planted_model(user_emb: np.ndarray, anime_emb: np.ndarray, users: IdEncoder, anime: IdEncoder,
                  scale: tuple[float, float]) -> OriginalNetwork:
    """The planted embeddings as a fitted network (the family whose representations are given directly)."""
    return OriginalNetwork.from_embeddings(user_emb, anime_emb, users, anime, SIGMOID_HEAD, scale)


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _build_world() -> SimpleNamespace:
    rng = np.random.default_rng(7)
    dim = 8
    centres = np.eye(dim)
    n_per = len(TYPES)
    cluster = np.repeat(np.arange(3), n_per)
    slot = np.tile(np.arange(n_per), 3)
    mal_ids = 100 + 10 * np.arange(3 * n_per)

    names = [f"{CLUSTER_GENRES[c]} Story {j}" for c, j in zip(cluster, slot)]
    names[0] = "Onegai☆Teacher"
    names[9] = "Café Lumière"
    genres = [CLUSTER_GENRES[c] + (", Comedy" if j in (1, 4) else "") for c, j in zip(cluster, slot)]
    genres[10] = "Romance, Music"  # the only Music anime, and it is a TV series
    types = [TYPES[j] for j in slot]
    score = 5.0 + 0.5 * slot + 0.01 * cluster
    score[23] = np.nan
    anime = pd.DataFrame(
        {
            "MAL_ID": mal_ids,
            "Name": names,
            "English name": ["Please Teacher!" if i == 0 else "Unknown" for i in range(len(mal_ids))],
            "Japanese name": "Unknown",
            "Score": score,
            "Genres": genres,
            "Type": types,
            "Episodes": [EPISODES[t] for t in types],
            "Source": [SOURCES[j % 3] for j in slot],
            "Members": 1000 * (30 - np.arange(len(mal_ids))),
        }
    )
    orphan = pd.DataFrame(
        {"MAL_ID": [NO_EMBEDDING_ANIME], "Name": ["Orphan Anime"], "English name": ["Unknown"],
         "Japanese name": ["Unknown"], "Score": [9.9], "Genres": ["Action"], "Type": ["TV"],
         "Episodes": [12.0], "Source": ["Manga"], "Members": [5]}
    )
    anime = pd.concat([anime, orphan], ignore_index=True)

    anime_vec = {int(m): centres[c] + 0.15 * rng.standard_normal(dim) for m, c in zip(mal_ids, cluster)}
    anime_vec[NO_META_ANIME] = centres[0] + 0.01 * rng.standard_normal(dim)  # would top cluster 0 if allowed
    anime_encoder = IdEncoder(np.array(list(anime_vec)), "anime")
    anime_emb = _unit(np.stack([anime_vec[int(i)] for i in anime_encoder.ids]))

    user_ids = 1000 + 7 * np.arange(15)
    user_cluster = np.arange(15) // 5
    user_vec = {int(u): centres[c] + 0.15 * rng.standard_normal(dim) for u, c in zip(user_ids, user_cluster)}
    user_vec[NO_RATINGS_USER] = centres[3] + 0.15 * rng.standard_normal(dim)
    user_encoder = IdEncoder(np.array(list(user_vec)), "user")
    user_emb = _unit(np.stack([user_vec[int(i)] for i in user_encoder.ids]))

    rows = []
    for k, (uid, c) in enumerate(zip(user_ids, user_cluster)):
        m = k % 5
        own = [(m + step) % n_per for step in range(4)]
        # Raw ratings 10, 9, 9, 7: the two 9s are ordered by the share of episodes watched,
        # which here disagrees with the next tie-break (Members falls with the slot).
        for step, (j, raw) in enumerate(zip(own, (10, 9, 9, 7))):
            idx = c * n_per + j
            eps = EPISODES[types[idx]]
            watched = eps if step != 1 else eps / 2
            rows.append((uid, mal_ids[idx], raw, 2, watched))
        other = ((c + 1) % 3) * n_per + m
        rows.append((uid, mal_ids[other], 2, 4, 1))
    rows += [(UNTRAINED_USER, mal_ids[0], 8, 2, 12), (UNTRAINED_USER, mal_ids[1], 6, 2, 12)]
    ratings = pd.DataFrame(rows, columns=["user_id", "anime_id", "raw", "watching_status", "watched_episodes"])
    ratings["rating"] = ratings["raw"].astype(np.float32)  # the 1-10 scale, as preprocess writes it
    ratings = ratings.astype({"user_id": np.int64, "anime_id": np.int64, "watching_status": np.int8,
                              "watched_episodes": np.int32})
    ratings = ratings.sample(frac=1.0, random_state=3).reset_index(drop=True)  # order must not matter

    synopses = pd.DataFrame({"MAL_ID": mal_ids[:3], "sypnopsis": ["first story", "second", "third"]})
    rec = AnimeRecommender(
        model=planted_model(user_emb, anime_emb, user_encoder, anime_encoder, (1.0, 10.0)),
        ratings=ratings.drop(columns="raw"),
        anime=anime,
        synopses=synopses,
        min_ratings=0,  # each anime here has a handful of raters; the evidence rule has its own tests below
    )
    return SimpleNamespace(
        rec=rec,
        anime=anime,
        ratings=ratings,
        mal_ids=mal_ids,
        cluster_of_anime=dict(zip(mal_ids.tolist(), cluster.tolist())),
        user_ids=user_ids,
        cluster_of_user=dict(zip(user_ids.tolist(), user_cluster.tolist())),
        anime_vec={k: v / np.linalg.norm(v) for k, v in anime_vec.items()},
        user_vec={k: v / np.linalg.norm(v) for k, v in user_vec.items()},
        raw=(anime_emb, user_emb, anime_encoder, user_encoder),
    )


@pytest.fixture(scope="module")
def world() -> SimpleNamespace:
    return _build_world()


def _seen(world: SimpleNamespace, user: int) -> set[int]:
    return set(world.ratings.loc[world.ratings.user_id == user, "anime_id"].tolist())


def _reference_favourites(world: SimpleNamespace, users: list[int], num_faves: int) -> pd.DataFrame:
    """Favourites by the documented rule, computed with a plain pandas sort."""
    r = world.ratings.merge(world.anime[["MAL_ID", "Episodes", "Members", "Type"]], left_on="anime_id",
                            right_on="MAL_ID")
    r["completion"] = r["watched_episodes"] / r["Episodes"]
    r = r[r.user_id.isin(users)].sort_values(
        ["user_id", "rating", "completion", "Members", "anime_id"], ascending=[True, False, False, False, True]
    )
    return r.groupby("user_id").head(num_faves)


# --- similar anime ------------------------------------------------------------------


def test_similar_anime_are_the_query_cluster(world: SimpleNamespace) -> None:
    for query in (100, 190, 300):
        out = world.rec.similar_anime(query, n=7)
        assert len(out) == 7
        assert query not in out["MAL_ID"].tolist()
        assert {world.cluster_of_anime[m] for m in out["MAL_ID"]} == {world.cluster_of_anime[query]}
        assert out["Similarity"].is_monotonic_decreasing


def test_similar_anime_similarity_is_the_cosine(world: SimpleNamespace) -> None:
    out = world.rec.similar_anime(150, n=5)
    expected = [float(world.anime_vec[150] @ world.anime_vec[m]) for m in out["MAL_ID"]]
    np.testing.assert_allclose(out["Similarity"].to_numpy(float), expected, rtol=1e-5)


def test_similar_anime_columns_and_metadata(world: SimpleNamespace) -> None:
    out = world.rec.similar_anime(110, n=3)
    for column in ("MAL_ID", "Name", "Similarity", "Genres", "Type", "Episodes", "Score", "Synopsis"):
        assert column in out.columns
    assert out["MAL_ID"].dtype == np.int64
    table = world.anime.set_index("MAL_ID")
    for _, row in out.iterrows():  # 3 result rows: checking the join, not the implementation
        assert row["Name"] == table.loc[row["MAL_ID"], "Name"]
        assert row["Type"] == table.loc[row["MAL_ID"], "Type"]
    first = world.rec.similar_anime(110, n=10)
    synopsis = dict(zip(first["MAL_ID"], first["Synopsis"]))
    assert synopsis[100] == "first story" and synopsis[120] == "third"
    assert out.attrs["query_id"] == 110


def test_similar_anime_by_name_is_forgiving(world: SimpleNamespace) -> None:
    by_id = world.rec.similar_anime(100, n=5)
    for name in ("ONEGAI teacher", "onegai ★ teacher!", "please teacher"):
        assert world.rec.similar_anime(name, n=5)["MAL_ID"].tolist() == by_id["MAL_ID"].tolist()
    assert world.rec.resolve_anime("cafe lumiere") == 190
    assert world.rec.resolve_anime(" 150 ") == 150  # digits from a config file


def test_anime_without_metadata_or_embedding_never_returned(world: SimpleNamespace) -> None:
    out = world.rec.similar_anime(100, n=50)
    assert len(out) == 23  # 24 anime with embedding+metadata, minus the query
    assert NO_META_ANIME not in out["MAL_ID"].tolist() and NO_EMBEDDING_ANIME not in out["MAL_ID"].tolist()
    assert "only 23 results" in out.attrs["note"]


def test_genre_filter_means_any_of_the_genres(world: SimpleNamespace) -> None:
    out = world.rec.similar_anime(100, n=16, genres=["Romance", "Horror", None])
    assert len(out) == 16
    assert {world.cluster_of_anime[m] for m in out["MAL_ID"]} == {1, 2}
    mixed = world.rec.similar_anime(100, n=50, genres="action, comedy")
    expected = world.anime[world.anime.Genres.str.contains("Action|Comedy") & (world.anime.MAL_ID != 100)
                           & (world.anime.MAL_ID != NO_EMBEDDING_ANIME)]
    assert sorted(mixed["MAL_ID"]) == sorted(expected["MAL_ID"])


def test_type_filter_returns_exactly_n(world: SimpleNamespace) -> None:
    for n in range(1, 7):
        out = world.rec.similar_anime(100, n=n, types=["movie"])
        assert len(out) == n and set(out["Type"]) == {"Movie"}
    top = world.rec.similar_anime(100, n=2, types="Movie")
    assert {world.cluster_of_anime[m] for m in top["MAL_ID"]} == {0}  # the query's own movies first


def test_similar_items_matches_dataframe(world: SimpleNamespace) -> None:
    ids, sims = world.rec.similar_items(120, n=4)
    out = world.rec.similar_anime(120, n=4)
    assert ids.tolist() == out["MAL_ID"].tolist()
    np.testing.assert_allclose(sims, out["Similarity"].to_numpy(float))
    restricted, _ = world.rec.similar_items(120, n=10, items=[300, 310, 100], exclude=[100])
    assert sorted(restricted.tolist()) == [300, 310]


# --- similar users ---------------------------------------------------------------------


def test_similar_users_share_the_cluster(world: SimpleNamespace) -> None:
    for user in world.user_ids[::4]:
        ids, sims = world.rec.similar_user_ids(int(user), n=4)
        assert user not in ids.tolist()
        assert {world.cluster_of_user[int(u)] for u in ids} == {world.cluster_of_user[int(user)]}
        expected = [float(world.user_vec[int(user)] @ world.user_vec[int(u)]) for u in ids]
        np.testing.assert_allclose(sims, expected, rtol=1e-5)


def test_similar_users_favourites_follow_the_documented_rule(world: SimpleNamespace) -> None:
    user = int(world.user_ids[6])
    out = world.rec.similar_users(user, n=4, num_faves=3)
    assert list(out.columns[:4]) == ["user_id", "Similarity", "n_ratings", "favorite_animes"]
    reference = _reference_favourites(world, out["user_id"].tolist(), 3)
    names = world.anime.set_index("MAL_ID")["Name"]
    for uid, fav_ids, fav_text in zip(out["user_id"], out["favorite_ids"], out["favorite_animes"]):
        expected = reference.loc[reference.user_id == uid, "anime_id"].tolist()
        assert fav_ids == expected
        assert fav_text == str([names[m] for m in expected])[1:-1]  # the original's CSV format
    assert (out["n_ratings"] == 5).all()


def test_similar_users_tv_only(world: SimpleNamespace) -> None:
    out = world.rec.similar_users(int(world.user_ids[0]), n=4, num_faves=10, tv_only=True)
    types = world.anime.set_index("MAL_ID")["Type"]
    all_faves = [m for faves in out["favorite_ids"] for m in faves]
    assert all_faves and {types[m] for m in all_faves} == {"TV"}


def test_user_without_ratings_is_listed_without_favourites(world: SimpleNamespace) -> None:
    out = world.rec.similar_users(int(world.user_ids[0]), n=15)
    row = out[out.user_id == NO_RATINGS_USER]
    assert len(out) == 15 and len(row) == 1
    assert row["favorite_animes"].item() == "" and row["favorite_ids"].item() == [] and row["n_ratings"].item() == 0


# --- user preferences -------------------------------------------------------------------


def test_user_preferences_percentile_and_counts(world: SimpleNamespace) -> None:
    user = int(world.user_ids[3])
    prefs = world.rec.user_preferences(user, favorite_percentile=0.5)
    assert isinstance(prefs, UserPreferences)
    mine = world.ratings[world.ratings.user_id == user]
    threshold = np.percentile(mine["raw"], 50)
    assert prefs.threshold == pytest.approx(threshold, abs=1e-4)
    expected = set(mine.loc[mine["rating"] >= np.percentile(mine["rating"], 50), "anime_id"])
    assert set(prefs.favorites["MAL_ID"]) == expected
    assert prefs.favorites["user_rating"].is_monotonic_decreasing
    genres = world.anime.set_index("MAL_ID").loc[sorted(expected), "Genres"].str.split(", ").explode()
    assert prefs.genres.to_dict() == genres.value_counts().to_dict()
    assert prefs.genres.is_monotonic_decreasing and prefs.sources.is_monotonic_decreasing
    assert prefs.sources.sum() == len(expected)
    frame = prefs.to_frame()
    assert list(frame.columns) == ["MAL_ID", "eng_version", "Source", "Genres"] and len(frame) == len(expected)


def test_user_preferences_default_keeps_top_fifth(world: SimpleNamespace) -> None:
    prefs = world.rec.user_preferences(int(world.user_ids[0]))
    assert prefs.favorites["user_rating"].tolist() == [10.0]


def test_eng_version_falls_back_to_name(world: SimpleNamespace) -> None:
    prefs = world.rec.user_preferences(UNTRAINED_USER, favorite_percentile=0.0)
    assert dict(zip(prefs.favorites["MAL_ID"], prefs.favorites["eng_version"])) == {
        100: "Please Teacher!",
        110: "Action Story 1",
    }


def test_favourite_ties_fall_to_popularity() -> None:
    world = _build_world()
    ratings = world.ratings.copy()
    # Everyone finished everything, so the share watched cannot break ties.
    episodes = world.anime.set_index("MAL_ID")["Episodes"]
    ratings["watched_episodes"] = episodes.loc[ratings["anime_id"]].to_numpy().astype(np.int32)
    # Give the least popular anime of user 0's cluster the same top rating as the most popular one.
    user = int(world.user_ids[0])
    mine = ratings.index[ratings.user_id == user]
    ratings.loc[mine, "rating"] = np.float32(10.0)
    anime_emb, user_emb, anime_encoder, user_encoder = world.raw
    rec = AnimeRecommender(model=planted_model(user_emb, anime_emb, user_encoder, anime_encoder, (1, 10)),
                           ratings=ratings.drop(columns="raw"), anime=world.anime)
    favourites = rec.user_preferences(user, favorite_percentile=0.0).favorites
    members = world.anime.set_index("MAL_ID").loc[favourites["MAL_ID"], "Members"]
    assert members.is_monotonic_decreasing and len(members) == 5


def test_known_user_without_ratings_has_empty_preferences(world: SimpleNamespace) -> None:
    prefs = world.rec.user_preferences(NO_RATINGS_USER)
    assert prefs.favorites.empty and prefs.genres.empty and prefs.sources.empty and np.isnan(prefs.threshold)


@pytest.mark.parametrize("n", [1, 7, 50, 999, 1000, 5000])
def test_top_k_is_a_full_sort_prefix(n: int) -> None:
    rng = np.random.default_rng(n)
    scores = rng.integers(0, 40, size=1000).astype(np.float32)  # many ties
    mask = rng.random(1000) > 0.3
    got = top_k(scores, n, mask)
    candidates = np.flatnonzero(mask)
    expected = candidates[np.lexsort((candidates, -scores[candidates]))][:n]
    assert got.tolist() == expected.tolist()
    unmasked = np.where(mask, scores, -np.inf)
    assert top_k(unmasked, n).tolist() == expected.tolist()


@pytest.mark.parametrize("q", [0.0, 0.13, 0.5, 0.8, 0.99, 1.0])
def test_desc_percentile_matches_numpy(q: float) -> None:
    rng = np.random.default_rng(1)
    lengths = rng.integers(0, 12, size=40)
    values = np.concatenate([np.sort(rng.integers(1, 11, size=k).astype(np.float32))[::-1] for k in lengths])
    starts = np.cumsum(lengths) - lengths
    got = _desc_percentile(values, starts, lengths, q)
    for g, s, k in zip(got, starts, lengths):
        if k == 0:
            assert np.isnan(g)
        else:
            assert g == pytest.approx(np.percentile(values[s : s + k], 100 * q))


# --- recommendations from similar users -------------------------------------------------


@pytest.mark.parametrize("num_faves", [1, 2, 4])
def test_recommend_from_similar_users_counts_votes(world: SimpleNamespace, num_faves: int) -> None:
    user = int(world.user_ids[7])
    out = world.rec.recommend_from_similar_users(user, n=20, n_similar=4, num_faves=num_faves)
    similar = world.rec.similar_user_ids(user, 4)[0].tolist()
    faves = _reference_favourites(world, similar, num_faves)
    votes = faves["anime_id"].value_counts()
    votes = votes[~votes.index.isin(_seen(world, user))].rename("votes").reset_index()
    votes = votes.merge(world.anime[["MAL_ID", "Score"]], left_on="anime_id", right_on="MAL_ID")
    votes = votes.sort_values(["votes", "Score", "MAL_ID"], ascending=[False, False, True], na_position="last")
    assert out["MAL_ID"].tolist() == votes["MAL_ID"].tolist()
    assert out["n_similar_users"].tolist() == votes["votes"].tolist()
    assert out["Explanation"].tolist() == [f"{v} of 4 similar users" for v in votes["votes"]]
    assert not set(out["MAL_ID"]) & _seen(world, user)


def test_recommend_from_similar_users_percentile_rule_and_genres(world: SimpleNamespace) -> None:
    user = int(world.user_ids[0])
    out = world.rec.recommend_from_similar_users(user, n=10, n_similar=4, num_faves=None, favorite_percentile=0.0)
    similar = world.rec.similar_user_ids(user, 4)[0].tolist()
    every_rated = set(world.ratings.loc[world.ratings.user_id.isin(similar), "anime_id"]) - _seen(world, user)
    assert set(out["MAL_ID"]) == every_rated  # percentile 0 = everything they rated
    comedy = world.rec.recommend_from_similar_users(user, n=10, n_similar=4, num_faves=None,
                                                    favorite_percentile=0.0, genres="Comedy")
    assert len(comedy) and comedy["Genres"].str.contains("Comedy").all()
    assert set(comedy["MAL_ID"]) == {m for m in every_rated if "Comedy" in
                                     world.anime.set_index("MAL_ID").loc[m, "Genres"]}


def test_recommend_from_similar_users_n_limits(world: SimpleNamespace) -> None:
    out = world.rec.recommend_from_similar_users(int(world.user_ids[2]), n=2, n_similar=4, num_faves=4)
    assert len(out) == 2


def test_duplicate_rating_rows_vote_once(world: SimpleNamespace) -> None:
    # Regression guard: a user with the same anime twice in the ratings must count as one vote.
    anime_emb, user_emb, anime_encoder, user_encoder = world.raw
    doubled = pd.concat([world.ratings, world.ratings], ignore_index=True).drop(columns="raw")
    rec = AnimeRecommender(model=planted_model(user_emb, anime_emb, user_encoder, anime_encoder, (1, 10)),
                           ratings=doubled, anime=world.anime, min_ratings=0)
    user = int(world.user_ids[5])
    once = world.rec.recommend_from_similar_users(user, n=30, n_similar=4, num_faves=None, favorite_percentile=0.0)
    twice = rec.recommend_from_similar_users(user, n=30, n_similar=4, num_faves=None, favorite_percentile=0.0)
    pd.testing.assert_frame_equal(once, twice)


# --- recommendations from the model -------------------------------------------------------


def test_model_recs_exclude_everything_seen(world: SimpleNamespace) -> None:
    for user in world.user_ids:
        out = world.rec.recommend_by_model(int(user), n=100)
        assert not set(out["MAL_ID"]) & _seen(world, int(user))
        assert len(out) == 24 - 5  # every anime with embedding+metadata minus the 5 seen


def test_model_recs_are_the_users_cluster_and_predicted_on_raw_scale(world: SimpleNamespace) -> None:
    user = int(world.user_ids[11])
    out = world.rec.recommend_by_model(user, n=4)
    assert {world.cluster_of_anime[m] for m in out["MAL_ID"]} == {world.cluster_of_user[user]}
    cos = np.array([world.user_vec[user] @ world.anime_vec[m] for m in out["MAL_ID"]])
    expected = 1 + 9 / (1 + np.exp(-6 * cos))
    np.testing.assert_allclose(out["Predicted rating"].to_numpy(float), expected, rtol=1e-5)
    np.testing.assert_allclose(out["Prediction"].to_numpy(float), (expected - 1) / 9, rtol=1e-5)
    assert out["Predicted rating"].is_monotonic_decreasing


def test_model_recs_filters_return_exactly_n_when_possible(world: SimpleNamespace) -> None:
    user = int(world.user_ids[4])
    table = world.anime[world.anime.MAL_ID != NO_EMBEDDING_ANIME]
    ok = table.Type.isin(["TV", "Movie"]) & table.Score.between(6.0, 8.0) & ~table.MAL_ID.isin(_seen(world, user))
    available = int(ok.sum())
    assert available >= 3
    for n in (1, available - 1, available, available + 5):
        out = world.rec.recommend_by_model(user, n=n, types=["TV", "Movie"], min_score=6.0, max_score=8.0)
        assert len(out) == min(n, available)
        assert set(out["Type"]) <= {"TV", "Movie"} and out["Score"].between(6.0, 8.0).all()


def test_model_recs_genre_filter(world: SimpleNamespace) -> None:
    out = world.rec.recommend_by_model(int(world.user_ids[0]), n=5, genres=["Horror"])
    assert len(out) == 5 and out["Genres"].str.contains("Horror").all()


def test_recommend_matches_dataframe_and_can_keep_seen(world: SimpleNamespace) -> None:
    user = int(world.user_ids[1])
    ids, ratings = world.rec.recommend(user, n=6)
    out = world.rec.recommend_by_model(user, n=6)
    assert ids.tolist() == out["MAL_ID"].tolist()
    np.testing.assert_allclose(ratings, out["Predicted rating"].to_numpy(float))
    with_seen, _ = world.rec.recommend(user, n=30, filter_seen=False)
    assert _seen(world, user) <= set(with_seen.tolist())


def test_known_user_without_ratings_gets_every_anime(world: SimpleNamespace) -> None:
    out = world.rec.recommend_by_model(NO_RATINGS_USER, n=100)
    assert len(out) == 24


# --- random picks ------------------------------------------------------------------------------


def test_random_anime_only_recommendable(world: SimpleNamespace) -> None:
    picks = {world.rec.random_anime(seed) for seed in range(60)}
    assert picks <= set(world.mal_ids.tolist()) and len(picks) > 5
    assert world.rec.random_anime(np.random.default_rng(5)) == world.rec.random_anime(5)


def test_random_user_respects_max_ratings(world: SimpleNamespace) -> None:
    picks = {world.rec.random_user(seed) for seed in range(60)}
    assert picks <= set(world.user_ids.tolist()) and len(picks) > 5  # never 9000 (no ratings) nor 8000
    assert {world.rec.random_user(seed, max_ratings=5) for seed in range(10)} <= set(world.user_ids.tolist())


def test_random_user_max_ratings_limits_the_pool() -> None:
    world = _build_world()
    heavy_user = int(world.user_ids[0])
    more = pd.DataFrame({"user_id": heavy_user, "anime_id": world.mal_ids[8:20], "rating": np.float32(0.5),
                         "watching_status": np.int8(2), "watched_episodes": np.int32(1)})
    ratings = pd.concat([world.ratings.drop(columns="raw"), more], ignore_index=True)
    anime_emb, user_emb, anime_encoder, user_encoder = world.raw
    rec = AnimeRecommender(model=planted_model(user_emb, anime_emb, user_encoder, anime_encoder, (1, 10)),
                           ratings=ratings, anime=world.anime)
    assert heavy_user in {rec.random_user(seed) for seed in range(200)}
    assert heavy_user not in {rec.random_user(seed, max_ratings=5) for seed in range(200)}


# --- construction -------------------------------------------------------------------------------


def test_unnormalised_embeddings_are_normalised(world: SimpleNamespace) -> None:
    anime_emb, user_emb, anime_encoder, user_encoder = world.raw
    rec = AnimeRecommender(model=planted_model(user_emb * 3, anime_emb * 0.5, user_encoder, anime_encoder, (1, 10)), ratings=world.ratings,
                           anime=world.anime, min_ratings=0)
    np.testing.assert_allclose(rec.similar_items(100, 5)[1], world.rec.similar_items(100, 5)[1], rtol=1e-5)


def test_mismatched_encoder_is_rejected(world: SimpleNamespace) -> None:
    anime_emb, user_emb, anime_encoder, user_encoder = world.raw
    with pytest.raises(DataValidationError, match="encoders do not match"):
        AnimeRecommender(model=planted_model(user_emb[:-1], anime_emb, user_encoder, anime_encoder, (1, 10)),
                         ratings=world.ratings, anime=world.anime)
    with pytest.raises(DataValidationError, match="lacks column"):
        AnimeRecommender(model=planted_model(user_emb, anime_emb, user_encoder, anime_encoder, (1, 10)),
                         ratings=world.ratings, anime=world.anime.drop(columns="Genres"))


# --- bad input: one readable line, saying what is wrong and what to do ------------------------

BAD_INPUTS = [
    ("unknown anime id", lambda r: r.similar_anime(10**6), "unknown anime id 1000000"),
    ("misspelt name", lambda r: r.similar_anime("onegai teachr"), "closest matches (MAL_ID): 'Onegai☆Teacher' (100)"),
    ("nonsense name", lambda r: r.similar_anime("qqqq zzzz"), "no anime named 'qqqq zzzz'"),
    ("no embedding", lambda r: r.similar_anime(NO_EMBEDDING_ANIME), "has no embedding"),
    ("bad query type", lambda r: r.similar_anime(1.5), "MAL_ID (int) or name (str)"),
    ("unknown genre", lambda r: r.similar_anime(100, genres="va#mpire"),
     "unknown genre 'va#mpire'; choose from: Action, Comedy, Horror, Music, Romance"),
    ("unknown type", lambda r: r.similar_anime(100, types=["TV", "Music video"]),
     "unknown type 'Music video'; choose from: Movie, OVA, Special, TV"),
    ("n zero", lambda r: r.similar_anime(100, n=0), "n must be a positive integer, got 0"),
    ("n float", lambda r: r.recommend_by_model(1000, n=2.5), "n must be a positive integer"),
    ("filter empties", lambda r: r.similar_anime(100, genres="Music", types="Movie"),
     "no anime left after the types ['Movie'] filter (1 candidates before it)"),
    ("unknown user", lambda r: r.similar_users(424242), "unknown user id 424242: the model knows 16 users (e.g. "),
    ("user not int", lambda r: r.similar_users("abc"), "a user id must be an integer, got 'abc'"),
    ("untrained user", lambda r: r.recommend_by_model(UNTRAINED_USER), "has ratings but too few to be trained on"),
    ("num_faves", lambda r: r.similar_users(1000, num_faves=0), "num_faves must be a positive integer"),
    ("n_similar", lambda r: r.recommend_from_similar_users(1000, n_similar=-1), "n_similar must be a positive"),
    ("score order", lambda r: r.recommend_by_model(1000, min_score=9, max_score=8), "min_score 9 is above max_score 8"),
    ("score empties", lambda r: r.recommend_by_model(1000, min_score=50), "after the score range [50, None] filter"),
    ("score type", lambda r: r.recommend_by_model(1000, min_score="high"), "min_score must be a number"),
    ("rec genre empties", lambda r: r.recommend_from_similar_users(1000, n_similar=4, num_faves=2, genres="Music"),
     "no favourites left after the genres ['Music'] filter"),
    ("percentile", lambda r: r.user_preferences(1000, favorite_percentile=80), "fraction in [0, 1]"),
    ("prefs unknown user", lambda r: r.user_preferences(424242), "unknown user id 424242"),
    ("max_ratings too low", lambda r: r.random_user(0, max_ratings=1), "no user has at most 1 ratings (the fewest is 5)"),
    ("max_ratings zero", lambda r: r.random_user(0, max_ratings=0), "max_ratings must be a positive integer"),
    ("items unknown", lambda r: r.similar_items(100, items=[123456]), "items contains MAL_IDs the model does not know"),
]


@pytest.mark.parametrize("label, call, message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_one_helpful_line(world: SimpleNamespace, label: str, call, message: str) -> None:
    with pytest.raises(UserInputError) as caught:
        call(world.rec)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text


def test_read_ratings_reads_only_what_the_recommender_uses(tmp_path) -> None:
    from anime_recs.recommend.interactions import read_ratings

    frame = pd.DataFrame({"user_id": [1, 2], "anime_id": [5, 6], "rating": np.array([0.5, 1.0], np.float32),
                          "watching_status": np.array([2, 1], np.int8), "watched_episodes": np.array([3, 4], np.int32)})
    frame.to_parquet(tmp_path / "full.parquet")
    frame.drop(columns="watched_episodes").to_parquet(tmp_path / "ratings_only.parquet")
    full = read_ratings(tmp_path / "full.parquet")
    assert list(full.columns) == ["user_id", "anime_id", "rating", "watched_episodes"]
    assert full["rating"].dtype == np.float32 and full["watched_episodes"].dtype == np.int32  # compact, as stored
    assert list(read_ratings(tmp_path / "ratings_only.parquet").columns) == ["user_id", "anime_id", "rating"]


def test_similar_anime_and_users_need_enough_ratings() -> None:
    # Regression: on the real head-100k data "Rental Magica" got 6 of 10 similar anime rated by one user each,
    # all tied at 0.877 (a third of the anime there have exactly one rating).
    from anime_recs.recommend.interactions import evidence_rule

    rng = np.random.default_rng(0)
    n_anime, dim = 40, 6
    anime_ids = 1 + np.arange(n_anime)
    vectors = rng.standard_normal((n_anime, dim))
    single = anime_ids[30:36]  # planted: the query's closest neighbours, each rated by one user
    vectors[29:36] = vectors[0] + 0.01 * rng.standard_normal((7, dim))  # 29 is well rated, 30-35 are single raters
    users = 100 + np.arange(60)
    rows = [(u, a, 8.0) for u in users for a in rng.choice(anime_ids[:30], 10, replace=False)]
    rows += [(u, a, 8.0) for u in users[:12] for a in (anime_ids[0], anime_ids[29])]
    rows += [(users[i], a, 9.0) for i, a in enumerate(single)]
    rows += [(999, anime_ids[0], 7.0)]  # a user with one rating, a twin of user 100
    ratings = pd.DataFrame(rows, columns=["user_id", "anime_id", "rating"]).drop_duplicates(["user_id", "anime_id"])
    all_users = np.unique(ratings["user_id"])
    user_vectors = rng.standard_normal((len(all_users), dim))
    user_vectors[all_users == 999] = user_vectors[all_users == 100][0]
    anime = pd.DataFrame({"MAL_ID": anime_ids, "Name": [f"Show {i}" for i in anime_ids], "Genres": "Drama", "Type": "TV",
                          "Score": 7.0, "Episodes": 12})
    model = planted_model(_unit(user_vectors), _unit(vectors), IdEncoder(all_users, "user"), IdEncoder(anime_ids, "anime"), (1, 10))
    rec = AnimeRecommender(model=model, ratings=ratings, anime=anime)
    assert rec.min_ratings == evidence_rule(len(ratings), n_anime) == 5
    similar = rec.similar_anime(int(anime_ids[0]), n=10)
    assert not set(similar["MAL_ID"]) & set(single.tolist()) and int(anime_ids[29]) == similar["MAL_ID"].iloc[0]
    everything = rec.similar_anime(int(anime_ids[0]), n=10, min_ratings=0)
    # Without the rule the single-rater anime fill the top with the one well-rated neighbour.
    assert set(everything["MAL_ID"].iloc[:7]) == set(single.tolist()) | {int(anime_ids[29])}
    lonely = rec.similar_anime(int(single[0]), n=3)  # the query itself needs no evidence
    assert len(lonely) == 3 and not set(lonely["MAL_ID"]) & set(single.tolist())
    assert 999 not in set(rec.similar_users(100, n=5)["user_id"])
    assert 999 == rec.similar_users(100, n=5, min_ratings=0)["user_id"].iloc[0]


def test_zero_embedding_rows_are_not_announced_to_every_answer(caplog: pytest.LogCaptureFixture) -> None:
    matrix = np.array([[1.0, 0.0], [0.0, 0.0], [0.6, 0.8]], np.float32)
    with caplog.at_level("INFO"):
        unit = AnimeRecommender._normalised(matrix, "anime")
    assert not [r for r in caplog.records if "all zero" in r.getMessage()]
    np.testing.assert_allclose(unit, matrix)  # zero rows stay zero, unit rows unchanged
