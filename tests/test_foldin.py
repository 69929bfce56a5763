"""Fold-in of new users (anime_recs.models.foldin, anime_recs.recommend.newuser) on the planted clusters of test_models."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from anime_recs.errors import UserInputError
from anime_recs.models import Interactions, build_model
from anime_recs.models.foldin import fold_in
from anime_recs.recommend import AnimeRecommender
from anime_recs.recommend.newuser import RatingList, ratings_from_csv, ratings_from_mal_xml, recommend_new_user
from tests.test_models import FAMILY_CONFIGS, WORLD

MAL_XML = """<?xml version="1.0" encoding="UTF-8" ?>
<myanimelist>
  <myinfo><user_name>someone</user_name></myinfo>
  <anime><series_animedb_id>{a}</series_animedb_id><my_score>9</my_score><my_status>Completed</my_status></anime>
  <anime><series_animedb_id>{b}</series_animedb_id><my_score>8</my_score><my_status>Completed</my_status></anime>
  <anime><series_animedb_id>{c}</series_animedb_id><my_score>0</my_score><my_status>Plan to Watch</my_status></anime>
</myanimelist>
"""


@pytest.fixture(scope="module", params=list(FAMILY_CONFIGS))
def fitted(request: pytest.FixtureRequest) -> SimpleNamespace:
    data = Interactions.from_frame(WORLD.raw, (1.0, 10.0))
    model = build_model(FAMILY_CONFIGS[request.param]).fit(data)
    scaled = WORLD.raw.assign(rating=(WORLD.raw["rating"] - 1.0) / 9.0)
    return SimpleNamespace(family=request.param, model=model, rec=AnimeRecommender(model=model, ratings=scaled, anime=WORLD.anime))


def test_folding_in_a_training_user_ranks_like_the_trained_user(fitted: SimpleNamespace) -> None:
    overlaps = []
    for uid in WORLD.user_ids.tolist():
        own = WORLD.raw[WORLD.raw["user_id"] == uid]
        trained, _ = fitted.rec.recommend(uid, 10)
        folded = recommend_new_user(fitted.rec, RatingList(own["anime_id"].tolist(), own["rating"].astype(float).tolist()), 10)
        assert not set(folded["MAL_ID"]) & set(own["anime_id"])  # what they listed is never recommended
        overlaps.append(len(set(trained.tolist()) & set(folded["MAL_ID"].tolist())) / 10)
    assert np.mean(overlaps) >= 0.7, (fitted.family, np.mean(overlaps))


def test_a_new_fan_of_one_cluster_gets_that_cluster(fitted: SimpleNamespace) -> None:
    horror = [m for m, c in WORLD.anime_cluster.items() if c == 2][:4]
    frame = recommend_new_user(fitted.rec, RatingList(horror, [10.0, 9.0, 9.0, 8.0]), 5)
    assert len(frame) == 5
    share = np.mean([WORLD.anime_cluster[m] == 2 for m in frame["MAL_ID"]])
    assert share >= 0.6, (fitted.family, frame["MAL_ID"].tolist())
    assert frame["Explanation"].str.startswith("like ").all()
    assert frame["Predicted rating"].between(1, 10).all()


def test_fold_in_rejects_bad_lists() -> None:
    data = Interactions.from_frame(WORLD.raw, (1.0, 10.0))
    model = build_model(FAMILY_CONFIGS["ease"]).fit(data)
    with pytest.raises(UserInputError, match="empty"):
        fold_in(model, np.array([], np.int64), np.array([]))
    with pytest.raises(UserInputError, match="from 1 to 10"):
        fold_in(model, np.array([0]), np.array([11.0]))


def test_rating_list_parsers() -> None:
    a, b, c = WORLD.mal_ids[:3].tolist()
    parsed = ratings_from_mal_xml(MAL_XML.format(a=a, b=b, c=c).encode())
    assert parsed.anime == [a, b] and parsed.ratings == [9.0, 8.0] and parsed.also_seen == [c]
    assert ratings_from_csv(f"anime_id,rating\n{a},7\n{b},6.5\n").ratings == [7.0, 6.5]
    assert ratings_from_csv("name,rating\nAction tale 1,9\n").anime == ["Action tale 1"]
    for bad, reason in [("<html><body/></html>", "not a MyAnimeList"), ("not xml <", "not valid XML")]:
        with pytest.raises(UserInputError, match=reason):
            ratings_from_mal_xml(bad)
    for bad, reason in [("anime_id,score\n1,2\n", "needs columns"), (f"anime_id,rating\n{a},great\n", "not a number")]:
        with pytest.raises(UserInputError, match=reason):
            ratings_from_csv(bad)
