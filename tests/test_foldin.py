"""Fold-in of new users (anime_recs.models.foldin, anime_recs.recommend.newuser): bad input and the list parsers.

How well each family folds in users is tested in test_models, on the models it already fits.
"""

from __future__ import annotations

import numpy as np
import pytest

from anime_recs.core.errors import UserInputError
from anime_recs.models import Interactions, build_model
from anime_recs.models.foldin import fold_in
from anime_recs.recommend.newuser import ratings_from_csv, ratings_from_mal_xml
from tests.test_models import FAMILY_CONFIGS, WORLD

MAL_XML = """<?xml version="1.0" encoding="UTF-8" ?>
<myanimelist>
  <myinfo><user_name>someone</user_name></myinfo>
  <anime><series_animedb_id>{a}</series_animedb_id><my_score>9</my_score><my_status>Completed</my_status></anime>
  <anime><series_animedb_id>{b}</series_animedb_id><my_score>8</my_score><my_status>Completed</my_status></anime>
  <anime><series_animedb_id>{c}</series_animedb_id><my_score>0</my_score><my_status>Plan to Watch</my_status></anime>
</myanimelist>
"""


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
    with pytest.raises(UserInputError, match="needs columns"):
        ratings_from_csv("anime_id,score\n1,2\n")
    # A rating that is not a number is kept as NaN: the one rule for every way in lists them all (newuser._resolve).
    assert np.isnan(ratings_from_csv(f"anime_id,rating\n{a},great\n").ratings).all()
